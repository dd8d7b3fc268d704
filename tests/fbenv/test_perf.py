"""Throughput measurement: it must count batches right, whatever the timings say."""

from __future__ import annotations

from fbenv.llm import ScriptedBackend
from fbenv.perf import RecordingBackend, measure_overhead, measure_vector


def person() -> ScriptedBackend:
    """Answers Advisor's holistic prompts (one decision, one rating per customer)."""
    return ScriptedBackend([(r"Rating: N", "Rating: 4"), (r"assistant says", "BUY B")], default="?")


def test_batched_makes_fewer_backend_calls_for_the_same_requests():
    backend = person()
    v = measure_vector("fbenv/Advisor-v0", backend, num_envs=4, steps=2, interface="discrete",
                       feedback_timing="foresight", llm_prompting="holistic")
    # every customer decides and rates at once: one batch per phase instead of one call per env
    assert v.sync_calls == 4 * v.batched_calls
    assert v.batched_s > 0 and v.sync_s > 0


def test_overhead_replays_exactly_the_timed_batches():
    backend = person()
    o = measure_overhead("fbenv/Advisor-v0", backend, num_envs=3, steps=2, interface="discrete",
                         llm_prompting="holistic")
    assert o.batches >= 2 and o.requests == 3 * o.batches
    assert o.env_s > 0 and o.backend_s > 0


def test_recording_backend_keeps_batches_in_order():
    inner = person()
    rec = RecordingBackend(inner)
    from fbenv.llm import ChatRequest

    rec.chat([ChatRequest.of([{"role": "user", "content": "Rating: N"}])])
    rec.chat([ChatRequest.of([{"role": "user", "content": "x"}])] * 2)
    assert [len(r) for r, _ in rec.batches] == [1, 2]
    assert inner.stats.batches == 2
