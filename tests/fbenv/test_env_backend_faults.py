"""A backend failure under each ``on_backend_error`` policy: typed, flagged, never paid.

Advisor's LLM customer is served by the loopback OpenAI-compatible server, which fails
on purpose (``fault_next``): 500s, 429s, malformed JSON, no choices, hangs past the
timeout, dropped connections. Under ``raise`` the step raises ``BackendError`` and nothing
else; under ``truncate`` the episode is truncated with ``info["feedback_error"]``, reward 0,
and the count is reported; either way the env works again once the server does.
"""

from __future__ import annotations

import numpy as np
import pytest

import fbenv
from fbenv.errors import BackendError
from fbenv.llm.openai_backend import OpenAIBackend

KINDS = ("500", "429", "malformed_json", "no_choices", "null_message", "hang", "drop")
COMPARE = 16  # Advisor's "compare every product truthfully"


@pytest.fixture
def customer_server(llm_server):
    llm_server.rules = [(__import__("re").compile(p, 2 | 16), r) for p, r in
                        ((r"What do you do", "I'll leave without buying."), (r"Rating: N", "Rating: 4"))]
    return llm_server


@pytest.fixture
def backend(customer_server, monkeypatch):
    for name in ("FBENV_OPENAI_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    made = OpenAIBackend("test-model", customer_server.url, max_retries=0, timeout=0.3)
    yield made
    made.close()


def advisor(backend, policy):
    # the holistic prompts: one decision, one rating, which the test server answers by pattern
    return fbenv.make("fbenv/Advisor-v0", interface="discrete", simulator="llm", llm=backend, on_backend_error=policy,
                      llm_prompting="holistic")


def works_again(env, server):
    server.clear_faults()
    env.reset(seed=1)
    _, reward, terminated, truncated, info = env.step(COMPARE)
    assert terminated and not truncated and "feedback_error" not in info and info["decision"] == "leave"
    assert reward == pytest.approx(0.75)  # "Rating: 4"


@pytest.mark.parametrize("kind", KINDS)
def test_raise_policy_raises_a_backend_error_and_nothing_else(kind, backend, customer_server):
    env = advisor(backend, "raise")
    env.reset(seed=0)
    customer_server.fault_next(5, kind)
    try:
        env.step(COMPARE)
    except BackendError as exc:
        assert type(exc) is BackendError
    except Exception as exc:  # noqa: BLE001 - the point: no other type escapes
        pytest.fail(f"{type(exc).__name__} escaped instead of BackendError: {exc}")
    else:
        pytest.fail("the failed call was not raised")
    assert env.unwrapped.parse_stats.backend_errors == 1
    works_again(env, customer_server)


@pytest.mark.parametrize("kind", KINDS)
def test_truncate_policy_truncates_and_pays_nothing(kind, backend, customer_server):
    env = advisor(backend, "truncate")
    env.reset(seed=0)
    customer_server.fault_next(5, kind)
    _, reward, terminated, truncated, info = env.step(COMPARE)
    assert truncated and not terminated and reward == 0.0
    assert "backend failed" in info["feedback_error"] and "Advisor user" in info["feedback_error"]
    assert info["episode_result"]["feedback_error"] == info["feedback_error"]
    assert info["true_utility"] == 0.0 and not info["is_success"]
    assert env.unwrapped.parse_stats.backend_errors == 1
    works_again(env, customer_server)


def test_a_batched_run_survives_an_outage(backend, customer_server):
    """Eight envs step together; the server fails a stretch of requests; the run goes on."""
    envs = fbenv.make_vec("fbenv/Advisor-v0", 8, interface="discrete", simulator="llm", llm=backend,
                          on_backend_error="truncate", llm_prompting="holistic")
    envs.reset(seed=0)
    customer_server.fault_next(8, "500")  # the first batch: every env's decision call
    cut, finished, paid_for_failures = 0, 0, 0.0
    for step in range(3):  # fail, autoreset, decide and rate
        _, rewards, terminated, truncated, infos = envs.step(np.full(8, COMPARE))
        if step == 0:
            # The batch fails at its first error, so how many of the 8 faults its other
            # requests used up depends on timing: the outage ends here, whatever is left.
            customer_server.clear_faults()
        errors = infos.get("feedback_error", np.array([None] * 8))
        failed = np.array([bool(e) for e in errors]) & truncated
        cut += int(failed.sum())
        paid_for_failures += float(np.abs(rewards[failed]).sum())
        finished += int(terminated.sum())
    envs.close()
    assert cut == 8 and finished == 8 and paid_for_failures == 0.0
