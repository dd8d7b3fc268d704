"""The batched protocol, scripted backend, record/replay cache, spec sharing and batching."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading

import pytest

from fbenv.errors import InvalidArgumentError, ReplayMissError, UnknownNameError
from fbenv.llm import BatchGroup, ChatRequest, ScriptedBackend, build_backend, get_backend
from fbenv.llm.cache import CachedBackend, request_key


def req(text: str, **sampling) -> ChatRequest:
    return ChatRequest.of([{"role": "user", "content": text}], **sampling)


def test_scripted_rules_groups_and_stop():
    b = ScriptedBackend([(r"rate (\w+)", "Rating: 4 for {0}. Done"), (r"seed", "s={seed}")], default="?")
    out = b.chat([req("please rate lamps", stop=(".",)), req("seed", seed=7), req("other")])
    assert [r.text for r in out] == ["Rating: 4 for lamps", "s=7", "?"]


def test_scripted_pickles_with_rules():
    b = ScriptedBackend([("x", "y")], default="z")
    c = pickle.loads(pickle.dumps(b))
    assert c.chat([req("x"), req("q")])[0].text == "y" and c.chat([req("q")])[0].text == "z"


def test_bad_specs_are_typed():
    with pytest.raises(UnknownNameError, match="Did you mean 'openai'"):
        get_backend("opneai:gpt@http://x")
    with pytest.raises(InvalidArgumentError):
        get_backend("")
    with pytest.raises(InvalidArgumentError, match="temperature"):
        req("x", temperature=-1)
    with pytest.raises(InvalidArgumentError, match="role"):
        ChatRequest.of([{"role": "robot", "content": "hi"}])


def test_shared_instance_per_spec(tmp_path):
    a = get_backend("embedded", cache="replay", cache_path=tmp_path / "c.sqlite")
    b = get_backend("embedded", cache="replay", cache_path=tmp_path / "c.sqlite")
    assert a is b and isinstance(a, CachedBackend)
    assert a._inner is None  # replay never loads the model
    c = pickle.loads(pickle.dumps(a))
    assert c is a  # unpickling in the same process resolves to the shared instance


def test_backends_pickle_as_their_spec_and_load_in_a_fresh_process(tmp_path):
    """The loading process rebuilds them through its own registry, sharing its instances."""
    cached = get_backend("embedded", cache="replay", cache_path=tmp_path / "c.sqlite")
    plain = build_backend("openai:m@http://127.0.0.1:9")  # a local URL: no key needed
    path = tmp_path / "backends.pkl"
    path.write_bytes(pickle.dumps((cached, plain)))
    code = (
        "import pickle, sys; cached, plain = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "from fbenv.llm import get_backend; "
        "print(type(cached).__name__, cached.spec, cached.mode, cached.path == sys.argv[2], cached._inner); "
        "print(type(plain).__name__, plain.spec, plain is get_backend(plain.spec, cache='off'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path / "c.sqlite")], capture_output=True, text=True,
        cwd=tmp_path, env={**os.environ, "FBENV_LLM_CACHE": "off"}, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == [
        "CachedBackend embedded replay True None",
        "OpenAIBackend openai:m@http://127.0.0.1:9 True",
    ]


class Counting(ScriptedBackend):
    def __init__(self):
        super().__init__([(r"(\d+)", "echo {0}")], default="none")
        self.batch_sizes: list[int] = []

    def _generate(self, requests):
        self.batch_sizes.append(len(requests))
        return super()._generate(requests)


def test_cache_readwrite_then_replay(tmp_path):
    inner = Counting()
    path = tmp_path / "cache.sqlite"
    rw = CachedBackend("fake", "readwrite", path, lambda: inner)
    first = rw.chat([req("1"), req("2", temperature=0.8, seed=3)])
    again = rw.chat([req("1"), req("2", temperature=0.8, seed=3)])
    assert [r.text for r in first] == [r.text for r in again] == ["echo 1", "echo 2"]
    assert inner.batch_sizes == [2] and all(r.cached for r in again)
    # unseeded sampling is never cached: its output is not a function of the request
    rw.chat([req("3", temperature=0.8)])
    rw.chat([req("3", temperature=0.8)])
    assert inner.batch_sizes == [2, 1, 1]

    replay = CachedBackend("fake", "replay", path, make_inner=Counting)
    assert replay.chat([req("1")])[0].text == "echo 1"
    with pytest.raises(ReplayMissError, match="never recorded"):
        replay.chat([req("4")])
    with pytest.raises(ReplayMissError, match="neither greedy nor seeded"):
        replay.chat([req("3", temperature=0.8)])


def test_cache_key_covers_sampling():
    base = request_key("s", req("x"))
    assert base == request_key("s", req("x", seed=99))  # greedy ignores the seed
    assert base != request_key("s", req("x", max_tokens=7))
    assert base != request_key("t", req("x"))
    assert request_key("s", req("x", temperature=1, seed=1)) != request_key("s", req("x", temperature=1, seed=2))


def test_cache_keys_stay_those_already_recorded():
    """Recorded caches must keep hitting: these keys were computed by earlier releases."""
    sampled = ChatRequest.of(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Rate the lamp: é"}],
        max_tokens=16, temperature=0.7, seed=3, stop=("\n",),
    )
    assert request_key("transformers:HuggingFaceTB/SmolLM2-135M-Instruct", sampled) == (
        "1c7c99e754b96542fb0ed7b18dbf3f5cb59366a99526ecc2b3f8a684f491532c"
    )
    chosen = req("Pick one", choices=("yes", "no"))
    assert request_key("embedded", chosen) == "a724ecf90d06158707b7340ffe29d26d8d0991fcfbc3f717f5f113baf5fce559"


def test_batch_group_merges_concurrent_calls_in_index_order():
    backend = Counting()
    group = BatchGroup(max_workers=4)

    def participant(i: int):
        first = backend.chat([req(str(i))])[0].text
        # participants 0 and 2 make a second call; the others are done by then
        second = backend.chat([req(str(10 + i))])[0].text if i % 2 == 0 else None
        return first, second

    out = group.run([lambda i=i: participant(i) for i in range(4)])
    assert out == [("echo 0", "echo 10"), ("echo 1", None), ("echo 2", "echo 12"), ("echo 3", None)]
    assert backend.batch_sizes == [4, 2]
    assert [r.messages[0].content for r in backend.calls] == ["0", "1", "2", "3", "10", "12"]


def test_batch_group_propagates_errors_without_deadlock():
    backend = Counting()
    group = BatchGroup(max_workers=3)

    def participant(i: int):
        if i == 1:
            raise ValueError("boom")
        return backend.chat([req(str(i))])[0].text

    with pytest.raises(ValueError, match="boom"):
        group.run([lambda i=i: participant(i) for i in range(3)])
    assert threading.active_count() < 20
