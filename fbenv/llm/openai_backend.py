"""Any OpenAI-compatible chat server (OpenAI, a vLLM/llama.cpp/TGI server, a proxy).

Spec: ``openai:<model>`` for api.openai.com, ``openai:<model>@<base_url>`` for any
other server. The API key is read from the environment only (``FBENV_OPENAI_API_KEY``,
then ``OPENAI_API_KEY``), so a spec, which is what pickles and cache keys carry, never
holds a secret. A batch's requests go to the server concurrently: the server does the
batching, we only keep enough requests in flight. Retries and timeouts are the official
client's, which already backs off on 408/409/429/5xx and honours ``Retry-After``.
Every way a request can fail (an HTTP error after those retries, a timeout, a refused or
dropped connection, a 2xx body that is not JSON or not a usable completion) raises
:class:`~fbenv.errors.BackendError` naming the request, model, base URL and what went
wrong, never the API key.
A request's ``choices`` are not sent (the OpenAI API has no such field): the model
replies freely and the caller's parser reads the reply, as for any free-text backend.
"""

from __future__ import annotations

import ipaddress
import json
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


def _describe(exc: BaseException) -> str:
    """``Type: message``, with the underlying cause (the client's own messages are terse)."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) != str(exc):
        text += f" ({type(cause).__name__}: {cause})"
    return text


class _Malformed(Exception):
    """A 2xx response that is not a usable chat completion."""


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _token_count(usage: object, name: str) -> int:
    value = getattr(usage, name, None)
    if value is None:  # servers that do not count tokens omit them
        return 0
    # What the client's lax validation accepts, even when another field made it give up:
    # "5" and 5.0 are read as 5.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Malformed(f"usage.{name}: expects an int >= 0, actual {type(value).__name__} {_short(value)}")
    return value


def _read_completion(response: object) -> tuple[str, str, int, int]:
    """(text, finish_reason, prompt_tokens, completion_tokens) of the first choice, or _Malformed.

    The client does not reject a body that fails its validation: it builds the object
    loosely, so any field may be missing (None) or of any JSON type, and a 2xx body that
    is not JSON and not labelled as JSON comes back as a str.
    """
    if not hasattr(response, "choices"):
        raise _Malformed(f"not a chat completion: {type(response).__name__} {_short(response)}")
    choices = response.choices
    if choices is None:
        raise _Malformed("the response has no choices (no 'choices' field)")
    if not isinstance(choices, list):
        raise _Malformed(f"choices: expects a list, actual {type(choices).__name__} {_short(choices)}")
    if not choices:
        raise _Malformed("the response has no choices (choices: [])")
    choice = choices[0]
    if not hasattr(choice, "message"):
        raise _Malformed(f"choices[0]: expects an object, actual {type(choice).__name__} {_short(choice)}")
    message = choice.message
    if message is None:
        raise _Malformed("choices[0] has no message (message: null or missing)")
    if not hasattr(message, "content"):
        raise _Malformed(f"choices[0].message: expects an object, actual {type(message).__name__} {_short(message)}")
    content = message.content
    if content is not None and not isinstance(content, str):
        raise _Malformed(f"choices[0].message.content: expects str, actual {type(content).__name__} {_short(content)}")
    finish_reason = getattr(choice, "finish_reason", None)
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise _Malformed(
            f"choices[0].finish_reason: expects str, actual {type(finish_reason).__name__} {_short(finish_reason)}"
        )
    usage = getattr(response, "usage", None)
    if usage is not None and not hasattr(usage, "prompt_tokens"):
        raise _Malformed(f"usage: expects an object, actual {type(usage).__name__} {_short(usage)}")
    return (
        content or "",  # null content (a refusal, a tool call) reads as an empty reply
        finish_reason or "stop",
        _token_count(usage, "prompt_tokens"),
        _token_count(usage, "completion_tokens"),
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
            raise self._error(index, total, _describe(exc), client) from None
        except json.JSONDecodeError as exc:  # a 2xx whose body is not JSON: the client does not wrap it
            raise self._error(index, total, f"the response body is not valid JSON ({_describe(exc)})", client) from exc
        except Exception as exc:  # whatever else the client or its HTTP stack lets through
            raise self._error(index, total, f"unexpected {_describe(exc)}", client) from exc
        latency = time.perf_counter() - start
        try:
            text, finish_reason, prompt_tokens, completion_tokens = _read_completion(response)
        except _Malformed as exc:
            raise self._error(index, total, f"malformed response: {exc}", client) from None
        return ChatResult(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency,
            finish_reason=finish_reason,
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
