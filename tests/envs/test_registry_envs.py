"""Generated from the registry: every env, interface, variant and simulator passes the checker.

The LLM simulator is driven by a choosing backend, which answers every offered choice
like the local backends do: a task's LLM path must parse all of it, with no fallback.
"""

from __future__ import annotations

import re

import gymnasium as gym
import pytest

import fbenv
from fbenv.llm import ScriptedBackend
from fbenv.testing import case_id, check_interfaces_agree, check_spec_card, check_task, single_agent_specs, task_cases

CASES = task_cases()


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_task_passes_checker(case):
    task, kwargs = case
    check_task(task, **kwargs)


@pytest.mark.parametrize("task", single_agent_specs(), ids=lambda s: s.name)
def test_free_text_llm_replies_pass_checker(task):
    """A server that replies freely (no scored choices) still steps without a crash."""
    if "llm" not in task.simulators:
        pytest.skip("no LLM simulator")
    person = ScriptedBackend([(r"Rating: N", "Rating: 4")], default="I am not sure.")
    check_task(task, interface=task.interfaces[-1], simulator="llm", llm=person)


@pytest.mark.parametrize("task", [t for t in fbenv.REGISTRY if {"text", "discrete"} <= set(t.interfaces)],
                         ids=lambda s: s.name)
def test_interfaces_share_the_hidden_task(task):
    check_interfaces_agree(lambda **kw: fbenv.make(task.id, **kw), seeds=tuple(range(10)))


@pytest.mark.parametrize("task", fbenv.REGISTRY, ids=lambda s: s.name)
def test_caller_mistakes_are_typed_at_make(task):
    with pytest.raises(fbenv.UnknownNameError, match="interface"):
        fbenv.make(task.id, interfacee="text")
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'discrete'"):
        fbenv.make(task.id, interface="discrete_")
    with pytest.raises(fbenv.InvalidArgumentError, match="expects str or Backend"):
        fbenv.make(task.id, llm=3)
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'openai'"):
        fbenv.make(task.id, llm="opneai:gpt@http://127.0.0.1:1/v1")
    with pytest.raises(fbenv.InvalidArgumentError, match="llm_temperature"):
        fbenv.make(task.id, llm_temperature=-1)
    with pytest.raises(fbenv.UnknownNameError, match="on_backend_error"):
        fbenv.make(task.id, on_backend_error="ignore")
    with pytest.raises(fbenv.UnknownNameError, match="role of"):
        fbenv.make(task.id, simulator={"nobody": "llm"})
    with pytest.raises(fbenv.UnknownNameError, match=task.id):
        fbenv.make(task.id.replace("-v", "x-v"))


@pytest.mark.parametrize("task", single_agent_specs(), ids=lambda s: s.name)
def test_discrete_twin_needs_no_kwargs(task):
    if task.discrete_id is None:
        pytest.skip("one view only")
    env = gym.make(task.discrete_id)
    assert isinstance(env.action_space, gym.spaces.Discrete) and env.unwrapped.interface == "discrete"
    env.reset(seed=0)
    twin = gym.make(task.id, interface="discrete")
    twin.reset(seed=0)
    assert env.unwrapped.hidden_task() == twin.unwrapped.hidden_task()
    assert fbenv.spec(task.discrete_id) is task
    env.close()
    twin.close()


def test_gymnasium_prefix_import_works():
    env = gym.make("fbenv:fbenv/Advisor-v0")
    env.reset(seed=0)
    env.close()


SHIPPED = [s for s in fbenv.REGISTRY if s.entry_point.startswith("fbenv.envs.")]  # not the test toys


@pytest.mark.parametrize("task", SHIPPED, ids=lambda s: s.name)
def test_spec_card_has_every_section(task):
    check_spec_card(task)
    assert "Shared options" in fbenv.registry.spec_card(task)


def test_registry_is_the_only_list_and_ids_are_unique():
    ids = [s.id for s in fbenv.REGISTRY]
    assert len(ids) == len(set(ids))
    for s in fbenv.REGISTRY:
        assert s.id in gym.registry or s.multi_agent
    first = fbenv.REGISTRY[0]
    assert fbenv.register(first) is first  # the same spec again: a no-op
    import dataclasses

    with pytest.raises(fbenv.InvalidArgumentError, match="already registered"):
        fbenv.register(dataclasses.replace(first, summary="another task under the same id"))


def test_every_task_has_a_row_in_the_readme_table():
    """The README's task table is where a newcomer finds a task: a registered task without a row is missing."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = set(re.findall(r"^\| `(fbenv/[^`]+)`", readme, re.M))
    missing = [s.id for s in fbenv.REGISTRY if s.id.startswith("fbenv/") and s.id not in rows]
    assert not missing, f"README task table lacks rows for {missing}"
