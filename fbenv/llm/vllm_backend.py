"""vLLM's offline engine (``vllm.LLM``) in-process: ``vllm:<model>``, for GPU machines.

One batch becomes one ``LLM.chat`` call with a ``SamplingParams`` per request, so each
request keeps its own seed, temperature and stop strings while vLLM schedules the batch.
The translation to and from vLLM lives in plain functions that never import vllm, so it
is tested on machines without a GPU; only :class:`VLLMBackend` touches the engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from fbenv.errors import BackendError, InvalidArgumentError, MissingExtraError, check_type
from fbenv.llm.base import Backend, ChatRequest, ChatResult, Sampling


def sampling_kwargs(sampling: Sampling) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` (temperature 0 is greedy in vLLM too)."""
    return {
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": sampling.seed,
        "stop": list(sampling.stop),
    }


def structured_outputs(sampling: Sampling) -> dict[str, Any] | None:
    """Keyword arguments for ``vllm.sampling_params.StructuredOutputsParams``: ``choices``
    become vLLM's guided choice (the reply is exactly one of them), or None without choices."""
    return {"choice": list(sampling.choices)} if sampling.choices else None


def conversations(requests: Sequence[ChatRequest]) -> list[list[dict[str, str]]]:
    """The ``messages`` argument of ``LLM.chat``: one OpenAI-style conversation per request."""
    return [r.as_dicts() for r in requests]


def chat_result(output: Any, latency_s: float = 0.0) -> ChatResult:
    """A ``ChatResult`` from one ``vllm.RequestOutput`` (read by attribute, duck-typed)."""
    if not output.outputs:
        raise InvalidArgumentError("vLLM RequestOutput: expects at least one completion, actual none")
    completion = output.outputs[0]
    return ChatResult(
        text=completion.text,
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(completion.token_ids or ()),
        latency_s=latency_s,
        # None only while a request is still streaming; an offline result has finished.
        finish_reason=completion.finish_reason or "stop",
    )


def chat_results(outputs: Sequence[Any], n_requests: int, elapsed_s: float) -> list[ChatResult]:
    """Results in request order; the batch's wall time is shared equally, as in the HF backend."""
    if len(outputs) != n_requests:
        raise InvalidArgumentError(
            f"vLLM LLM.chat: expects {n_requests} outputs, one per request, actual {len(outputs)}"
        )
    per_request = elapsed_s / n_requests if n_requests else 0.0
    return [chat_result(o, per_request) for o in outputs]


class VLLMBackend(Backend):
    """``vllm:<model>``: a local or hub model served by ``vllm.LLM(model=..., **engine_kwargs)``.

    ``engine_kwargs`` (e.g. ``gpu_memory_utilization``, ``tensor_parallel_size``) do not
    survive pickling, which rebuilds from the spec.
    """

    def __init__(self, model: str, **engine_kwargs: Any):
        check_type("VLLMBackend.model", model, str)
        if not model.strip():
            raise InvalidArgumentError("vllm backend: expects 'vllm:<model>', actual no model")
        self.model = model
        self.spec = f"vllm:{model}"
        self.engine_kwargs = dict(engine_kwargs)
        try:
            import vllm
        except ImportError as exc:
            raise MissingExtraError("vllm", "vllm", "The vLLM backend (it needs a CUDA GPU)") from exc
        self._vllm = vllm
        self._lock = threading.Lock()  # LLM is not thread-safe; it batches internally anyway
        self.llm = vllm.LLM(model=model, **self.engine_kwargs)

    @classmethod
    def from_spec(cls, arg: str) -> "VLLMBackend":
        return cls(arg)

    def _generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        llm = self.__dict__.get("llm")
        if llm is None:
            raise BackendError(f"vLLM backend {self.model!r} was closed; get a new one from the registry")
        params = [self._params(r.sampling) for r in requests]
        start = time.perf_counter()
        with self._lock:
            outputs = llm.chat(conversations(requests), params, use_tqdm=False)
        return chat_results(outputs, len(requests), time.perf_counter() - start)

    def _params(self, sampling: Sampling):
        kwargs = sampling_kwargs(sampling)
        constraint = structured_outputs(sampling)
        if constraint is not None:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(**constraint)
        return self._vllm.SamplingParams(**kwargs)

    def close(self) -> None:
        self.__dict__.pop("llm", None)  # vLLM frees GPU memory when the engine is collected
