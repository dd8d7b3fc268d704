"""vLLM request/result translation, and the typed error where vLLM is not installed.

The engine itself needs a GPU, so it does not run here; nothing below pretends it does.
The result objects are plain stand-ins with RequestOutput's attribute names.
"""

from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import pytest

from fbenv.errors import InvalidArgumentError, MissingExtraError
from fbenv.llm import ChatRequest, Sampling, build_backend
from fbenv.llm.vllm_backend import (
    VLLMBackend,
    chat_result,
    chat_results,
    conversations,
    sampling_kwargs,
    structured_outputs,
)


def output(text: str, prompt_ids, token_ids, finish_reason="stop"):
    completion = SimpleNamespace(index=0, text=text, token_ids=token_ids, finish_reason=finish_reason)
    return SimpleNamespace(request_id="0", prompt_token_ids=prompt_ids, outputs=[completion], finished=True)


def test_sampling_kwargs_carry_every_setting():
    s = Sampling(max_tokens=12, temperature=0.8, top_p=0.95, seed=7, stop=("\n\n", "User:"))
    assert sampling_kwargs(s) == {"max_tokens": 12, "temperature": 0.8, "top_p": 0.95, "seed": 7, "stop": ["\n\n", "User:"]}


def test_sampling_kwargs_defaults_are_greedy_and_unseeded():
    assert sampling_kwargs(Sampling()) == {"max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": None, "stop": []}


def test_choices_become_a_guided_choice():
    assert structured_outputs(Sampling(choices=("Rating: 1", "Rating: 2"))) == {"choice": ["Rating: 1", "Rating: 2"]}
    assert structured_outputs(Sampling()) is None
    assert "choices" not in sampling_kwargs(Sampling(choices=("a", "b")))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed (needs a GPU)")
def test_sampling_kwargs_are_accepted_by_vllm():
    import vllm

    params = vllm.SamplingParams(**sampling_kwargs(Sampling(max_tokens=5, temperature=0.5, seed=3, stop=("x",))))
    assert (params.max_tokens, params.seed, params.stop) == (5, 3, ["x"])


def test_conversations_keep_order_roles_and_content():
    requests = [
        ChatRequest.of([{"role": "system", "content": "Be Ann."}, {"role": "user", "content": "hi"}]),
        ChatRequest.of([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]),
    ]
    assert conversations(requests) == [
        [{"role": "system", "content": "Be Ann."}, {"role": "user", "content": "hi"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
    ]
    assert conversations([]) == []


def test_chat_result_reads_text_tokens_and_finish_reason():
    result = chat_result(output("Hello there", [1, 2, 3, 4, 5], [10, 11, 12], "length"), latency_s=0.25)
    assert (result.text, result.prompt_tokens, result.completion_tokens, result.latency_s, result.finish_reason) == (
        "Hello there", 5, 3, 0.25, "length"
    )
    assert not result.cached


def test_chat_result_tolerates_missing_ids_and_finish_reason():
    result = chat_result(output("", None, (), None))
    assert (result.text, result.prompt_tokens, result.completion_tokens, result.finish_reason) == ("", 0, 0, "stop")


def test_chat_result_without_completions_is_a_typed_error():
    with pytest.raises(InvalidArgumentError):
        chat_result(SimpleNamespace(prompt_token_ids=[1], outputs=[]))


def test_chat_results_keep_order_and_split_batch_time():
    results = chat_results([output("a", [1], [1]), output("b c", [1, 2], [1, 2])], 2, elapsed_s=1.0)
    assert [r.text for r in results] == ["a", "b c"]
    assert [r.latency_s for r in results] == [0.5, 0.5]
    with pytest.raises(InvalidArgumentError, match="expects 3 outputs"):
        chat_results([output("a", [1], [1])], 3, elapsed_s=1.0)


def test_missing_vllm_is_a_typed_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # absent even where vllm is installed
    with pytest.raises(MissingExtraError, match=r"fbenv\[vllm\]"):
        build_backend("vllm:Qwen/Qwen2.5-0.5B-Instruct")


def test_vllm_is_absent_here_and_import_error_is_still_typed():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed")
    with pytest.raises(MissingExtraError) as info:
        VLLMBackend("some/model")
    assert isinstance(info.value, ImportError)


@pytest.mark.parametrize("spec", ["vllm:", "vllm:   "])
def test_empty_model_is_rejected_before_importing(spec):
    with pytest.raises(InvalidArgumentError, match="vllm:<model>"):
        build_backend(spec)
