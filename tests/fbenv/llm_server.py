"""A real OpenAI-compatible chat server on loopback, for testing HTTP backends end to end.

Replies come from ordered regex rules on the last user message (like ScriptedBackend);
a reply template may use ``{0}``... for groups and ``{seed}``. Tokens are words, so
tests can predict ``usage``: prompt tokens are the words of all messages, completion
tokens the words of the reply, cut to ``max_tokens`` (finish_reason ``length``) or at a
stop string (``stop``). Every request's JSON body and headers are recorded; the server
can fail the next N requests or delay its answers, to exercise retries and timeouts.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OpenAICompatServer:
    def __init__(self, rules: Sequence[tuple[str, str]] = (), default: str = "OK"):
        self.rules = [(re.compile(p, re.IGNORECASE | re.DOTALL), r) for p, r in rules]
        self.default = default
        self.bodies: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay: float | Callable[[dict], float] = 0.0
        self._fail: list[tuple[int, int | None]] = []  # (status, retry-after-ms) per coming request
        self._lock = threading.Lock()
        self._released = threading.Event()  # set on stop: delayed handlers return at once
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 503, retry_after_ms: int | None = 1) -> None:
        """Answer the next ``n`` requests with ``status``; ``retry_after_ms`` keeps client backoff short."""
        with self._lock:
            self._fail.extend([(status, retry_after_ms)] * n)

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "OpenAICompatServer":
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
    def reply(self, body: dict) -> tuple[str, str, int, int]:
        """(text, finish_reason, prompt_tokens, completion_tokens) for a request body."""
        messages = body.get("messages", [])
        users = [m.get("content", "") for m in messages if m.get("role") == "user"]
        last = users[-1] if users else ""
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

    def _handle(self, body: dict, headers: dict[str, str]) -> tuple[int, dict, dict[str, str]]:
        with self._lock:
            self.bodies.append(body)
            self.headers.append(headers)
            n = len(self.bodies)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            failure = self._fail.pop(0) if self._fail else None
        try:
            delay = self.delay(body) if callable(self.delay) else self.delay
            if delay > 0:
                self._released.wait(delay)
            if failure is not None:
                status, retry_ms = failure
                extra = {"retry-after-ms": str(retry_ms)} if retry_ms is not None else {}
                error = {"message": f"simulated failure {status}", "type": "server_error", "code": None}
                return status, {"error": error}, extra
            text, finish, prompt_tokens, completion_tokens = self.reply(body)
            return 200, {
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
            }, {}
        finally:
            with self._lock:
                self.in_flight -= 1


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
            self._send(status, payload, extra)

        def _send(self, status: int, payload: dict, extra: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a timeout test)

        def log_message(self, format: str, *args) -> None:  # keep test output clean
            pass

    return Handler
