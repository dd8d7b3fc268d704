"""Every way a backend can fail reaches the caller as a BackendError, and quickly.

OpenAIBackend runs against the loopback server's faults (see ``fault_next`` in
llm_server.py) with short timeouts and one client retry; toy Backend subclasses check
the guarantee ``Backend.generate_batch`` gives every backend kind.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from fbenv.errors import BackendError, InvalidArgumentError, ReplayMissError
from fbenv.llm import ChatRequest, ChatResult
from fbenv.llm.base import Backend
from fbenv.llm.openai_backend import OpenAIBackend

SECRET = "sk-fbenv-faults-0123456789abcdef"
RETRIES = 1
TIMEOUT = 0.3  # seconds per attempt


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("FBENV_OPENAI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def backend(llm_server):
    made = OpenAIBackend("test-model", llm_server.url, max_retries=RETRIES, timeout=TIMEOUT)
    yield made
    made.close()


def req(text: str) -> ChatRequest:
    return ChatRequest.of([{"role": "user", "content": text}])


def raises_backend_error(fn) -> BackendError:
    """The BackendError ``fn`` raises; any other exception type fails the test."""
    try:
        fn()
    except BackendError as exc:
        assert type(exc) is BackendError, f"a subclass escaped: {type(exc).__name__}"
        return exc
    except Exception as exc:  # noqa: BLE001 - the point is that nothing else escapes
        pytest.fail(f"{type(exc).__name__} escaped instead of BackendError: {exc}")
    pytest.fail("no error was raised")


# kind -> (pattern the message must match, requests the server sees: retried or not)
FAULTS = {
    "500": (r"InternalServerError: Error code: 500", 1 + RETRIES),
    "429": (r"RateLimitError: Error code: 429", 1 + RETRIES),
    "malformed_json": (r"not valid JSON \(JSONDecodeError", 1),
    "html": (r"not a chat completion: str '<html>", 1),
    "no_choices": (r"no choices \(choices: \[\]\)", 1),
    "missing_choices": (r"no choices \(no 'choices' field\)", 1),
    "null_message": (r"choices\[0\] has no message", 1),
    "usage_strings": (r"usage\.prompt_tokens: expects an int >= 0, actual str '\d+ tokens'", 1),
    "hang": (r"APITimeoutError: Request timed out\. \(ReadTimeout", 1 + RETRIES),
    "drop": (r"APIConnectionError: .*\(RemoteProtocolError: Server disconnected", 1 + RETRIES),
}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_every_fault_is_a_backend_error_naming_it(kind, llm_server, backend, monkeypatch):
    monkeypatch.setenv("FBENV_OPENAI_API_KEY", SECRET)
    pattern, attempts = FAULTS[kind]
    llm_server.fault_next(1 + RETRIES, kind)  # enough for every attempt, retries included
    start = time.perf_counter()
    error = raises_backend_error(lambda: backend.chat([req("echo x")]))
    elapsed = time.perf_counter() - start

    message = str(error)
    assert "request 1 of 1" in message and "'test-model'" in message and llm_server.url in message
    assert re.search(pattern, message), message
    assert SECRET not in message and SECRET not in repr(error)
    assert llm_server.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert len(llm_server.bodies) == attempts and llm_server.fault_hits[kind] == attempts
    # one attempt per timeout plus the client's backoff (about 0.5 s) per retry
    assert elapsed < (1 + RETRIES) * TIMEOUT + RETRIES * 0.6 + 1.0


def test_connection_refused_is_a_backend_error_naming_it():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    backend = OpenAIBackend("test-model", url, max_retries=0, timeout=TIMEOUT)
    error = raises_backend_error(lambda: backend.chat([req("echo x")]))
    backend.close()
    assert url in str(error) and "ConnectError" in str(error)


def test_one_faulty_request_fails_the_batch(llm_server, backend):
    llm_server.fault_next(1 + RETRIES, "malformed_json", match="^echo 2$")
    error = raises_backend_error(lambda: backend.chat([req(f"echo {i}") for i in range(4)]))
    assert "request 3 of 4" in str(error) and "not valid JSON" in str(error)
    assert llm_server.fault_hits == {"malformed_json": 1} and llm_server.pending_faults == RETRIES


@pytest.mark.parametrize("kind", ["500", "hang", "drop", "malformed_json"])
def test_the_backend_works_again_once_the_server_recovers(kind, llm_server):
    backend = OpenAIBackend("test-model", llm_server.url, max_retries=0, timeout=TIMEOUT)
    llm_server.fault_next(1, kind)
    raises_backend_error(lambda: backend.chat([req("echo lost")]))
    assert llm_server.pending_faults == 0
    assert [r.text for r in backend.chat([req("echo back"), req("echo again")])] == ["back", "again"]
    backend.close()


def test_a_retry_that_succeeds_hides_the_fault(llm_server, backend):
    llm_server.fault_next(RETRIES, "drop")
    [result] = backend.chat([req("echo fine")])
    assert result.text == "fine" and llm_server.fault_hits["drop"] == RETRIES


def test_fail_next_is_fault_next_with_a_status(llm_server, backend):
    llm_server.fail_next(1 + RETRIES, status=503)
    assert "503" in str(raises_backend_error(lambda: backend.chat([req("echo x")])))
    assert llm_server.fault_hits["503"] == 1 + RETRIES


@pytest.mark.parametrize("kind", ["bogus", "200", "600", 500])
def test_unknown_fault_kinds_are_refused(kind, llm_server):
    with pytest.raises(ValueError, match="fault kind"):
        llm_server.fault_next(1, kind)


# -- the guarantee every backend kind gets from Backend.generate_batch ----------------------

class Toy(Backend):
    spec = model = "toy"

    def __init__(self, generate):
        self.generate = generate

    def _generate(self, requests):
        return self.generate(requests)


def ok(requests):
    return [ChatResult(text="ok") for _ in requests]


def test_a_foreign_exception_becomes_a_chained_backend_error():
    cause = ValueError("the tokenizer broke")

    def boom(requests):
        raise cause

    error = raises_backend_error(lambda: Toy(boom).chat([req("a")]))
    assert str(error) == "Toy (toy): ValueError: the tokenizer broke"
    assert error.__cause__ is cause


@pytest.mark.parametrize(
    ("generate", "pattern"),
    [
        (lambda rs: ok(rs)[1:], r"returned 1 results for 2 requests"),
        (lambda rs: ok(rs) + ok(rs), r"returned 4 results for 2 requests"),
        (lambda rs: None, r"returned a NoneType for 2 requests"),
        (lambda rs: ["ok" for _ in rs], r"returned a str among its results, expects ChatResult"),
    ],
)
def test_wrong_results_are_a_backend_error(generate, pattern):
    backend = Toy(generate)
    with pytest.raises(BackendError, match=pattern):
        backend.chat([req("a"), req("b")])
    assert backend.stats.batches == 0  # a failed batch is not counted as work done


@pytest.mark.parametrize("error", [ReplayMissError("not recorded"), InvalidArgumentError("bad")])
def test_fbenv_errors_pass_through_unchanged(error):
    def fail(requests):
        raise error

    with pytest.raises(type(error)) as info:
        Toy(fail).chat([req("a")])
    assert info.value is error


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_interrupts_are_not_wrapped(error):
    def stop(requests):
        raise error()

    with pytest.raises(error):
        Toy(stop).chat([req("a")])


def test_a_working_toy_backend_is_unchanged():
    backend = Toy(ok)
    assert [r.text for r in backend.chat([req("a"), req("b")])] == ["ok", "ok"]
    assert (backend.stats.batches, backend.stats.requests) == (1, 2)
