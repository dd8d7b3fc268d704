"""A real OpenAI-compatible chat server on loopback, for testing HTTP backends end to end.

Replies come from ordered regex rules on the last user message (like ScriptedBackend);
a reply template may use ``{0}``... for groups and ``{seed}``. Tokens are words, so
tests can predict ``usage``: prompt tokens are the words of all messages, completion
tokens the words of the reply, cut to ``max_tokens`` (finish_reason ``length``) or at a
stop string (``stop``). Every request's JSON body and headers are recorded (in
``bodies`` and ``headers``, faulted requests included); ``delay`` slows every answer.

Faults
------
``server.fault_next(n, kind)`` makes the next ``n`` requests fail as ``kind``, one fault
per request, in arrival order (a client's retries are requests too: to make a backend
with ``max_retries=r`` give up, fault ``r + 1`` requests). Kinds:

* ``"500"``, ``"429"`` (or any HTTP error status from 400 to 599 as a string): that
  status with an OpenAI-style error body and ``retry-after-ms`` (default 1, so client
  backoff stays short; ``retry_after_ms=None`` leaves the header out).
* ``"malformed_json"``: 200, ``application/json``, a body cut off halfway.
* ``"html"``: 200, ``text/html``, a page that is not JSON (a proxy's error page).
* ``"no_choices"``: 200 with ``"choices": []``; ``"missing_choices"``: no ``choices`` key.
* ``"null_message"``: 200 whose choice has ``"message": null``.
* ``"usage_strings"``: 200 whose ``usage`` token counts are strings that are not
  numbers (``"5 tokens"``; the client itself reads a numeric ``"5"`` as 5).
* ``"hang"``: never answers: the handler waits until the server stops (far longer than
  any client timeout), then closes the connection.
* ``"drop"``: closes the connection without sending any response.

``match=`` (a regex, searched in the last user message like the rules) restricts a
fault to requests that match; others are answered normally and leave it pending.
``fault_hits`` counts, per kind, the requests that were faulted; ``pending_faults`` is
how many faults are still to come; ``clear_faults()`` drops them. ``fail_next(n,
status)`` is the older spelling of ``fault_next(n, str(status))``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The 200-with-a-bad-body kinds and the connection kinds; any "4xx"/"5xx" string is a status kind.
BODY_FAULTS = ("malformed_json", "html", "no_choices", "missing_choices", "null_message", "usage_strings")
CONNECTION_FAULTS = ("hang", "drop")
FAULT_KINDS = ("500", "429", *BODY_FAULTS, *CONNECTION_FAULTS)
HANG_S = 3600.0  # a hung handler returns when the server stops, or after this long
DROP = object()  # a payload meaning: close the connection without answering


@dataclass(frozen=True)
class _Fault:
    kind: str
    retry_after_ms: int | None
    match: re.Pattern | None


def _status_of(kind: str) -> int | None:
    return int(kind) if kind.isdigit() and 400 <= int(kind) <= 599 else None


class OpenAICompatServer:
    def __init__(self, rules: Sequence[tuple[str, str]] = (), default: str = "OK"):
        self.rules = [(re.compile(p, re.IGNORECASE | re.DOTALL), r) for p, r in rules]
        self.default = default
        self.bodies: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay: float | Callable[[dict], float] = 0.0
        self.fault_hits: Counter[str] = Counter()  # kind -> requests faulted that way
        self._faults: list[_Fault] = []  # one per coming (matching) request
        self._lock = threading.Lock()
        self._released = threading.Event()  # set on stop: delayed handlers return at once
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------
    def fault_next(self, n: int, kind: str, *, retry_after_ms: int | None = 1, match: str | None = None) -> None:
        """Fault the next ``n`` requests (those matching ``match``, if given) as ``kind``; see the module doc."""
        if not isinstance(kind, str) or (kind not in FAULT_KINDS and _status_of(kind) is None):
            raise ValueError(f"fault kind: expects one of {FAULT_KINDS} or an HTTP error status, actual {kind!r}")
        if n < 0:
            raise ValueError(f"fault count: expects >= 0, actual {n}")
        pattern = re.compile(match, re.IGNORECASE | re.DOTALL) if match is not None else None
        with self._lock:
            self._faults.extend([_Fault(kind, retry_after_ms, pattern)] * n)

    def fail_next(self, n: int, status: int = 503, retry_after_ms: int | None = 1) -> None:
        """Answer the next ``n`` requests with ``status``; ``retry_after_ms`` keeps client backoff short."""
        self.fault_next(n, str(status), retry_after_ms=retry_after_ms)

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "OpenAICompatServer":
        self._released.clear()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fbenv-test-llm-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "OpenAICompatServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- behaviour -------------------------------------------------------------------
    @staticmethod
    def last_user_message(body: dict) -> str:
        users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
        return str(users[-1]) if users else ""

    def reply(self, body: dict) -> tuple[str, str, int, int]:
        """(text, finish_reason, prompt_tokens, completion_tokens) for a request body."""
        messages = body.get("messages", [])
        last = self.last_user_message(body)
        text = self.default
        for pattern, template in self.rules:
            m = pattern.search(last)
            if m:
                text = template.format(*m.groups(), seed=body.get("seed"))
                break
        finish = "stop"
        stop = body.get("stop") or []
        for s in [stop] if isinstance(stop, str) else stop:
            if s and s in text:
                text = text[: text.index(s)]
        words = text.split()
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if max_tokens is not None and len(words) > max_tokens:
            words, finish = words[:max_tokens], "length"
            text = " ".join(words)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        return text, finish, prompt_tokens, len(words)

    def _take_fault(self, body: dict) -> _Fault | None:  # under the lock
        last = self.last_user_message(body)
        for i, fault in enumerate(self._faults):
            if fault.match is None or fault.match.search(last):
                self.fault_hits[fault.kind] += 1
                return self._faults.pop(i)
        return None

    def _handle(self, body: dict, headers: dict[str, str]) -> tuple[int, dict | bytes | object, dict[str, str]]:
        """(status, payload, extra headers); the payload is a JSON dict, raw bytes, or DROP."""
        with self._lock:
            self.bodies.append(body)
            self.headers.append(headers)
            n = len(self.bodies)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            fault = self._take_fault(body)
        try:
            if fault is not None and fault.kind == "hang":
                self._released.wait(HANG_S)
                return 0, DROP, {}
            if fault is not None and fault.kind == "drop":
                return 0, DROP, {}
            delay = self.delay(body) if callable(self.delay) else self.delay
            if delay > 0:
                self._released.wait(delay)
            status = _status_of(fault.kind) if fault is not None else None
            if status is not None:
                extra = {"retry-after-ms": str(fault.retry_after_ms)} if fault.retry_after_ms is not None else {}
                error = {"message": f"simulated failure {status}", "type": "server_error", "code": None}
                return status, {"error": error}, extra
            text, finish, prompt_tokens, completion_tokens = self.reply(body)
            completion = {
                "id": f"chatcmpl-test-{n}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", ""),
                "system_fingerprint": "fbenv-test",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": finish,
                }],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
            if fault is None:
                return 200, completion, {}
            return 200, *_faulty_body(fault.kind, completion)
        finally:
            with self._lock:
                self.in_flight -= 1


def _faulty_body(kind: str, completion: dict) -> tuple[dict | bytes, dict[str, str]]:
    """A 200 body broken as ``kind`` says, and the headers to send with it."""
    if kind == "malformed_json":
        text = json.dumps(completion)
        return text[: len(text) // 2].encode(), {}
    if kind == "html":
        page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        return page, {"Content-Type": "text/html"}
    if kind == "no_choices":
        completion["choices"] = []
    elif kind == "missing_choices":
        del completion["choices"]
    elif kind == "null_message":
        completion["choices"][0]["message"] = None
    elif kind == "usage_strings":
        completion["usage"] = {k: f"{v} tokens" for k, v in completion["usage"].items()}
    else:
        raise AssertionError(f"not a body fault: {kind!r}")
    return completion, {}


def _handler_for(server: OpenAICompatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects
        timeout = 10  # an idle keep-alive connection does not hold its thread forever
        disable_nagle_algorithm = True  # headers and body are separate writes: avoid a 40 ms stall

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            try:
                body = json.loads(raw)
            except ValueError:
                return self._send(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
            status, payload, extra = server._handle(body, {k.lower(): v for k, v in self.headers.items()})
            if payload is DROP:
                self.close_connection = True  # the socket closes with nothing written
                return
            self._send(status, payload, extra)

        def _send(self, status: int, payload: dict | bytes, extra: dict[str, str] | None = None) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            headers = {"Content-Type": "application/json", **(extra or {})}
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a timeout test)

        def log_message(self, format: str, *args) -> None:  # keep test output clean
            pass

    return Handler
