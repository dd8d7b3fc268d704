"""Any OpenAI-compatible chat server (OpenAI, a vLLM/llama.cpp/TGI server, a proxy).

Spec: ``openai:<model>`` for api.openai.com, ``openai:<model>@<base_url>`` for any
other server. The API key is read from the environment only (``FBENV_OPENAI_API_KEY``,
then ``OPENAI_API_KEY``), so a spec, which is what pickles and cache keys carry, never
holds a secret. A batch's requests go to the server concurrently: the server does the
batching, we only keep enough requests in flight. Retries and timeouts are the official
client's, which already backs off on 408/409/429/5xx and honours ``Retry-After``.
A request's ``choices`` are not sent (the OpenAI API has no such field): the model
replies freely and the caller's parser reads the reply, as for any free-text backend.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from fbenv.errors import BackendError, InvalidArgumentError, MissingExtraError, check_type
from fbenv.llm.base import Backend, ChatRequest, ChatResult

DEFAULT_BASE_URL = "https://api.openai.com/v1"
API_KEY_ENV_VARS = ("FBENV_OPENAI_API_KEY", "OPENAI_API_KEY")
# What vLLM's and llama.cpp's docs tell users to pass to servers started without --api-key.
LOCAL_PLACEHOLDER_KEY = "EMPTY"

# The model may itself contain "@" (Vertex-style "name@version"): the base URL starts at
# the first "@http(s)://".
_SPEC_RE = re.compile(r"^(?P<model>.*?)@(?P<url>https?://.*)$", re.DOTALL)


def _import_openai():
    try:
        import openai
    except ImportError as exc:
        raise MissingExtraError("openai", "openai", "The OpenAI-compatible backend") from exc
    return openai


def parse_spec(arg: str) -> tuple[str, str]:
    """``"<model>[@<base_url>]"`` -> ``(model, base_url)``, rejecting what would fail later anyway."""
    if not isinstance(arg, str):
        raise InvalidArgumentError(f"openai backend spec: expects str, actual {type(arg).__name__}")
    m = _SPEC_RE.match(arg)
    if m:
        model, base_url = m.group("model"), m.group("url")
    elif "@" in arg:
        raise InvalidArgumentError(
            "openai backend spec: expects 'openai:<model>@<base_url>' with an http:// or https:// "
            f"base URL, actual {('openai:' + arg)!r}"
        )
    else:
        model, base_url = arg, DEFAULT_BASE_URL
    if not model.strip():
        raise InvalidArgumentError(
            "openai backend spec: expects 'openai:<model>[@<base_url>]', "
            f"actual an empty model in {('openai:' + arg)!r}"
        )
    return model, _check_base_url(base_url)


def _check_base_url(base_url: str) -> str:
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise InvalidArgumentError(f"openai backend base_url: malformed URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(
            f"openai backend base_url: expects http(s)://host[:port]/path, actual {base_url!r}"
        )
    if parts.username is not None or parts.password is not None:
        # Do not echo the URL: it holds a credential, and specs end up in logs and pickles.
        raise InvalidArgumentError(
            "openai backend base_url: credentials in the URL are refused (specs are logged and "
            f"pickled); put the key in ${API_KEY_ENV_VARS[0]} instead. Host: {parts.hostname!r}"
        )
    return base_url.rstrip("/")


def is_local_url(base_url: str) -> bool:
    """True for loopback hosts, where servers usually run without authentication."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_key_from_env(base_url: str) -> str:
    for name in API_KEY_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    if is_local_url(base_url):
        return LOCAL_PLACEHOLDER_KEY
    raise InvalidArgumentError(
        f"openai backend: no API key for {base_url}: expects ${API_KEY_ENV_VARS[0]} or "
        f"${API_KEY_ENV_VARS[1]} to be set (use any value, e.g. {LOCAL_PLACEHOLDER_KEY}, for a "
        "server without authentication)"
    )


class OpenAIBackend(Backend):
    """Chat completions from an OpenAI-compatible HTTP server, one HTTP request per ChatRequest.

    ``max_retries`` and ``timeout`` (seconds per attempt) go to the ``openai`` client.
    ``max_concurrency`` bounds requests in flight per backend, so a large batch does not
    trip the server's rate limit. Only the spec survives pickling: a rebuilt backend
    reads its key from its own process's environment and uses the default settings.
    """

    def __init__(
        self,
        model: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        max_retries: int = 2,
        timeout: float = 60.0,
        max_concurrency: int = 8,
    ):
        check_type("OpenAIBackend.model", model, str)
        if not model.strip():
            raise InvalidArgumentError("OpenAIBackend.model: expects a model name, actual an empty string")
        check_type("OpenAIBackend.base_url", base_url, str)
        check_type("OpenAIBackend.max_retries", max_retries, int)
        check_type("OpenAIBackend.timeout", timeout, (int, float))
        check_type("OpenAIBackend.max_concurrency", max_concurrency, int)
        if max_retries < 0:
            raise InvalidArgumentError(f"OpenAIBackend.max_retries: expects >= 0, actual {max_retries}")
        if not timeout > 0:
            raise InvalidArgumentError(f"OpenAIBackend.timeout: expects > 0 seconds, actual {timeout}")
        if max_concurrency < 1:
            raise InvalidArgumentError(
                f"OpenAIBackend.max_concurrency: expects >= 1, actual {max_concurrency}"
            )
        self._openai = _import_openai()
        self.model = model
        self.base_url = _check_base_url(base_url)
        default_url = self.base_url == DEFAULT_BASE_URL
        self.spec = f"openai:{model}" if default_url else f"openai:{model}@{self.base_url}"
        self.max_retries = max_retries
        self.timeout = float(timeout)
        self.max_concurrency = max_concurrency
        _api_key_from_env(self.base_url)  # fail now, not at the first step, when there is no key
        self._lock = threading.Lock()
        self._client = None
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_spec(cls, arg: str) -> "OpenAIBackend":
        return cls(*parse_spec(arg))

    def _client_and_pool(self):
        with self._lock:
            if self._client is None:
                # The key lives only inside the client, read afresh, never on self.
                self._client = self._openai.OpenAI(
                    base_url=self.base_url,
                    api_key=_api_key_from_env(self.base_url),
                    max_retries=self.max_retries,
                    timeout=self.timeout,
                )
            if self._pool is None and self.max_concurrency > 1:
                self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="fbenv-openai")
            return self._client, self._pool

    def _generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        client, pool = self._client_and_pool()
        if pool is None or len(requests) == 1:
            return [self._one(client, i, len(requests), r) for i, r in enumerate(requests)]
        futures = [pool.submit(self._one, client, i, len(requests), r) for i, r in enumerate(requests)]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:  # after a failure, do not send what has not started
                f.cancel()

    def _one(self, client, index: int, total: int, request: ChatRequest) -> ChatResult:
        s = request.sampling
        kwargs: dict = {
            "model": self.model,
            "messages": request.as_dicts(),
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
        }
        if s.seed is not None:
            kwargs["seed"] = s.seed
        if s.stop:
            kwargs["stop"] = list(s.stop)
        start = time.perf_counter()
        try:
            response = client.chat.completions.create(**kwargs)
        except self._openai.OpenAIError as exc:
            raise self._error(index, total, f"{type(exc).__name__}: {exc}", client) from None
        latency = time.perf_counter() - start
        if not response.choices:
            raise self._error(index, total, "the response has no choices", client)
        choice = response.choices[0]
        usage = response.usage
        return ChatResult(
            text=(choice.message.content if choice.message is not None else None) or "",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency,
            finish_reason=choice.finish_reason or "stop",
        )

    def _error(self, index: int, total: int, detail: str, client) -> BackendError:
        key = getattr(client, "api_key", "")
        if key and key != LOCAL_PLACEHOLDER_KEY:
            detail = detail.replace(key, "<api key>")
        return BackendError(
            f"OpenAI-compatible backend: request {index + 1} of {total} to model {self.model!r} at "
            f"{self.base_url} failed after up to {self.max_retries} retries "
            f"(timeout {self.timeout:g}s): {detail[:1000]}"
        )

    def close(self) -> None:
        with self._lock:
            pool, client = self._pool, self._client
            self._pool = self._client = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            client.close()
