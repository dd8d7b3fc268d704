"""Generated from the registry: every env, interface, variant and simulator passes the checker."""

from __future__ import annotations

import importlib

import gymnasium as gym
import pytest

import fbenv
from fbenv.llm import ScriptedBackend
from fbenv.testing import check_fbenv_env, check_fbenv_parallel_env, multi_agent_specs, single_agent_specs

# A scripted simulated person: rates 4, buys what it is told about first, or asks.
PERSON = ScriptedBackend(
    [(r"Rating: N", "Rating: 4"), (r"assistant says: \"[^\"]*\b([ABCD])\b", "BUY {0}")],
    default="ASK which one fits my needs?",
)

CASES = [
    pytest.param(s, interface, variant, id=f"{s.name}-{interface}-{'-'.join(map(str, variant.values())) or 'default'}")
    for s in single_agent_specs()
    for interface in s.interfaces
    for variant in s.variants
]


@pytest.mark.parametrize("task, interface, variant", CASES)
def test_rule_simulator_passes_checker(task, interface, variant):
    check_fbenv_env(task, interface=interface, simulator="rule", **variant)


@pytest.mark.parametrize("task, interface, variant", CASES)
def test_llm_simulator_passes_checker(task, interface, variant):
    if "llm" not in task.simulators:
        pytest.skip("no LLM simulator")
    check_fbenv_env(task, interface=interface, simulator="llm", llm=PERSON, **variant)


@pytest.mark.parametrize("task", single_agent_specs(), ids=lambda s: s.name)
def test_interfaces_share_the_hidden_task(task):
    from fbenv.testing import check_interfaces_agree

    check_interfaces_agree(lambda **kw: gym.make(task.id, **kw), seeds=tuple(range(10)))


@pytest.mark.parametrize("task", single_agent_specs(), ids=lambda s: s.name)
def test_caller_mistakes_are_typed(task):
    with pytest.raises(fbenv.UnknownNameError, match="interface"):
        gym.make(task.id, interfacee="text")
    with pytest.raises(fbenv.UnknownNameError, match="Did you mean 'discrete'"):
        gym.make(task.id, interface="discrete_")
    with pytest.raises(fbenv.InvalidArgumentError, match="expects str or Backend"):
        gym.make(task.id, llm=3)
    with pytest.raises(fbenv.UnknownNameError, match=task.id):
        fbenv.make(task.id.replace("-v", "x-v"))


def test_gymnasium_prefix_import_works():
    env = gym.make("fbenv:fbenv/Advisor-v0")
    env.reset(seed=0)
    env.close()


def test_registry_is_the_only_list():
    ids = [s.id for s in fbenv.REGISTRY]
    assert len(ids) == len(set(ids))
    for s in fbenv.REGISTRY:
        assert s.id in gym.registry or s.multi_agent
        card = importlib.import_module(s.entry_point.partition(":")[0]).__doc__ or ""
        for section in ("## Description", "## Observation", "## Action", "## Reward", "## True utility", "## Version history"):
            assert section in card, f"{s.id} spec card lacks {section}"


@pytest.mark.parametrize("task", multi_agent_specs(), ids=lambda s: s.name)
def test_multi_agent_envs_pass_checker(task):
    check_fbenv_parallel_env(lambda: fbenv.make(task.id))
