"""OpenAIBackend against a real loopback HTTP server through the real openai client."""

from __future__ import annotations

import pickle
import sys
import time

import pytest

from fbenv.errors import BackendError, InvalidArgumentError, MissingExtraError
from fbenv.llm import ChatRequest, build_backend, clear_shared, get_backend
from fbenv.llm.openai_backend import DEFAULT_BASE_URL, OpenAIBackend, parse_spec

SECRET = "sk-fbenv-test-0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("FBENV_OPENAI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FBENV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FBENV_LLM_CACHE", "off")
    yield
    clear_shared()


@pytest.fixture
def make_backend(llm_server):
    made: list[OpenAIBackend] = []

    def make(**kwargs) -> OpenAIBackend:
        backend = OpenAIBackend("test-model", llm_server.url, **kwargs)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def req(text: str, system: str | None = "You are terse.", **sampling) -> ChatRequest:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return ChatRequest.of(messages, **sampling)


# -- generation ---------------------------------------------------------------------------

def test_batch_results_in_request_order_with_usage(llm_server, make_backend):
    backend = make_backend()
    n = 8
    # Later requests are answered first, so order must come from the request index.
    llm_server.delay = lambda body: 0.02 * (n - int(body["messages"][-1]["content"].split("-")[1]))
    results = backend.chat([req(f"echo word-{i}") for i in range(n)])
    assert [r.text for r in results] == [f"word-{i}" for i in range(n)]
    # "You are terse." (3 words) + "echo word-i" (2 words); the reply is one word.
    assert [(r.prompt_tokens, r.completion_tokens) for r in results] == [(5, 1)] * n
    assert all(r.finish_reason == "stop" and r.latency_s > 0 and not r.cached for r in results)
    assert llm_server.max_in_flight > 1, "a batch's requests should be in flight together"
    assert backend.stats.batches == 1 and backend.stats.requests == n


def test_max_concurrency_one_sends_one_at_a_time(llm_server, make_backend):
    backend = make_backend(max_concurrency=1)
    llm_server.delay = 0.01
    results = backend.chat([req(f"echo {i}") for i in range(4)])
    assert [r.text for r in results] == ["0", "1", "2", "3"]
    assert llm_server.max_in_flight == 1


def test_sampling_settings_reach_the_server(llm_server, make_backend):
    backend = make_backend()
    [result] = backend.chat([req("what seed?", max_tokens=7, temperature=0.7, top_p=0.9, seed=1234, stop=("END", "###"))])
    assert result.text == "seed=1234"
    [body] = llm_server.bodies
    assert body["model"] == "test-model"
    assert body["messages"] == [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "what seed?"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"], body["stop"]) == (
        7, 0.7, 0.9, 1234, ["END", "###"]
    )


def test_unset_seed_and_stop_are_not_sent(llm_server, make_backend):
    make_backend().chat([req("echo hi", system=None)])
    [body] = llm_server.bodies
    assert "seed" not in body and "stop" not in body
    assert body["temperature"] == 0.0 and body["max_tokens"] == 64


def test_stop_and_length_come_back_from_the_server(llm_server, make_backend):
    stopped, cut = make_backend().chat([
        req("echo alpha beta END gamma", stop=("END",)),
        req("echo one two three four", max_tokens=2),
    ])
    assert stopped.text.strip() == "alpha beta" and stopped.finish_reason == "stop"
    assert (cut.text, cut.finish_reason, cut.completion_tokens) == ("one two", "length", 2)


# -- failures -----------------------------------------------------------------------------

def test_503_is_retried_by_the_client(llm_server, make_backend):
    backend = make_backend(max_retries=2)
    llm_server.fail_next(2, status=503)
    [result] = backend.chat([req("echo survived")])
    assert result.text == "survived"
    assert [h.get("x-stainless-retry-count") for h in llm_server.headers] == ["0", "1", "2"]


def test_exhausted_retries_raise_backend_error_without_the_key(llm_server, make_backend, monkeypatch):
    monkeypatch.setenv("FBENV_OPENAI_API_KEY", SECRET)
    backend = make_backend(max_retries=2)
    llm_server.fail_next(3, status=503)
    with pytest.raises(BackendError) as info:
        backend.chat([req("echo never")])
    message = str(info.value)
    assert "'test-model'" in message and llm_server.url in message and "503" in message
    assert SECRET not in message and SECRET not in repr(info.value)
    assert len(llm_server.bodies) == 3  # 1 try + 2 client retries, none of our own
    assert llm_server.headers[0]["authorization"] == f"Bearer {SECRET}"


def test_client_errors_are_not_retried(llm_server, make_backend):
    backend = make_backend(max_retries=2)
    llm_server.fail_next(1, status=400)
    with pytest.raises(BackendError, match="400"):
        backend.chat([req("echo bad")])
    assert len(llm_server.bodies) == 1


def test_timeout_is_honoured(llm_server, make_backend):
    backend = make_backend(timeout=0.3, max_retries=0)
    llm_server.delay = 5.0
    start = time.perf_counter()
    with pytest.raises(BackendError, match="(?i)timed out|timeout"):
        backend.chat([req("echo slow")])
    assert time.perf_counter() - start < 2.0


def test_connection_refused_is_a_backend_error():
    backend = OpenAIBackend("m", "http://127.0.0.1:9/v1", max_retries=0, timeout=2)
    with pytest.raises(BackendError, match="127.0.0.1:9"):
        backend.chat([req("echo x")])
    backend.close()


def test_missing_openai_package_is_a_typed_error(monkeypatch, llm_server):
    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` raise ImportError
    with pytest.raises(MissingExtraError, match=r"fbenv\[openai\]"):
        OpenAIBackend("m", llm_server.url)


# -- the key ------------------------------------------------------------------------------

def test_key_comes_from_env_and_never_from_the_spec(llm_server, monkeypatch):
    monkeypatch.setenv("FBENV_OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-other-one")
    backend = get_backend(f"openai:test-model@{llm_server.url}")
    backend.chat([req("echo a")])
    assert llm_server.headers[-1]["authorization"] == f"Bearer {SECRET}"
    for text in (backend.spec, repr(backend), str(vars(backend))):
        assert SECRET not in text
    assert SECRET.encode() not in pickle.dumps(backend)

    monkeypatch.delenv("FBENV_OPENAI_API_KEY")
    clear_shared()
    get_backend(f"openai:test-model@{llm_server.url}").chat([req("echo b")])
    assert llm_server.headers[-1]["authorization"] == "Bearer sk-the-other-one"


def test_loopback_without_a_key_uses_a_placeholder(llm_server, make_backend):
    make_backend().chat([req("echo a")])
    assert llm_server.headers[-1]["authorization"] == "Bearer EMPTY"


@pytest.mark.parametrize("url", [DEFAULT_BASE_URL, "https://llm.example.com/v1", "http://10.0.0.5:8000/v1"])
def test_remote_without_a_key_is_refused_at_construction(url):
    with pytest.raises(InvalidArgumentError, match="FBENV_OPENAI_API_KEY"):
        OpenAIBackend("m", url)


# -- specs --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("gpt-4o-mini", ("gpt-4o-mini", DEFAULT_BASE_URL)),
        ("Qwen/Qwen2.5-7B@http://127.0.0.1:8000/v1", ("Qwen/Qwen2.5-7B", "http://127.0.0.1:8000/v1")),
        ("m@http://localhost:8000/v1/", ("m", "http://localhost:8000/v1")),
        ("claude@2024@https://proxy.example.com/v1", ("claude@2024", "https://proxy.example.com/v1")),
    ],
)
def test_spec_parses(arg, expected):
    assert parse_spec(arg) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "openai:",
        "openai:   ",
        "openai:@http://127.0.0.1:8000/v1",
        "openai:m@",
        "openai:m@localhost:8000/v1",
        "openai:m@ftp://127.0.0.1/v1",
        "openai:m@http://",
        "openai:m@http://127.0.0.1:notaport/v1",
    ],
)
def test_bad_specs_are_typed_errors(spec):
    with pytest.raises(InvalidArgumentError):
        build_backend(spec)


def test_credentials_in_the_url_are_refused_without_echoing_them():
    with pytest.raises(InvalidArgumentError) as info:
        build_backend("openai:m@http://user:hunter2@127.0.0.1:8000/v1")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("kwargs", [{"max_retries": -1}, {"timeout": 0}, {"max_concurrency": 0}, {"max_retries": 1.5}])
def test_bad_settings_are_typed_errors(kwargs, llm_server):
    with pytest.raises(InvalidArgumentError):
        OpenAIBackend("m", llm_server.url, **kwargs)


def test_spec_round_trips_and_default_url_is_implicit(llm_server, monkeypatch):
    backend = OpenAIBackend("test-model", llm_server.url + "/")
    assert backend.spec == f"openai:test-model@{llm_server.url}"
    rebuilt = build_backend(backend.spec)
    assert (rebuilt.model, rebuilt.base_url, rebuilt.spec) == ("test-model", llm_server.url, backend.spec)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert OpenAIBackend("gpt-4o-mini").spec == "openai:gpt-4o-mini"


def test_pickle_rebuilds_a_working_backend(llm_server):
    backend = OpenAIBackend("test-model", llm_server.url)
    blob = pickle.dumps(backend)
    backend.close()
    clone = pickle.loads(blob)
    assert clone is not backend and isinstance(clone, OpenAIBackend)
    assert clone.spec == backend.spec
    assert [r.text for r in clone.chat([req("echo again"), req("echo twice")])] == ["again", "twice"]


def test_record_replay_cache_wraps_it(llm_server, tmp_path):
    spec = f"openai:test-model@{llm_server.url}"
    path = tmp_path / "llm.sqlite"
    first = get_backend(spec, cache="readwrite", cache_path=path).chat([req("echo cached")])
    clear_shared()
    second = get_backend(spec, cache="replay", cache_path=path).chat([req("echo cached")])
    assert first[0].text == second[0].text == "cached"
    assert second[0].cached and len(llm_server.bodies) == 1


# -- end to end: an env's simulated person served over HTTP ---------------------------------


def test_advisor_customer_served_over_http_with_seeds_and_batching(monkeypatch):
    """make_vec's merged calls reach the server concurrently; every call carries the env's seed."""
    import fbenv
    from llm_server import OpenAICompatServer

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = OpenAICompatServer(rules=[(r"Rating: N", "Rating: 5"), (r"assistant says", "BUY A")])
    server.delay = 0.2  # long enough for the batch's requests to overlap at the server
    with server:
        vec = fbenv.make_vec("fbenv/Advisor-v0", 4, interface="discrete", simulator="llm",
                             llm=f"openai:test-model@{server.url}", llm_cache="off",
                             feedback_timing="foresight", llm_temperature=0.7, llm_prompting="holistic")
        vec.reset(seed=[10, 11, 12, 13])
        _, reward, terminated, _, info = vec.step([16, 16, 16, 16])
        vec.close()
    assert terminated.all() and (reward == 1.0).all()  # every customer bought A and rated 5
    assert [info["chosen"][i] for i in range(4)] == ["A"] * 4
    assert len(server.bodies) == 8 and server.max_in_flight == 4
    sent_seeds = sorted(b["seed"] for b in server.bodies)
    env_seeds = sorted(s for i in range(4) for s in info["llm_seeds"][i])
    assert sent_seeds == env_seeds and all(b["temperature"] == 0.7 for b in server.bodies)
