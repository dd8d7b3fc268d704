"""A deterministic pattern -> reply backend for tests and examples.

Rules are tried in order against the last user message (or, with ``on="all"``, the
whole conversation joined); the first regex that matches gives the reply. A reply may
use ``{0}``, ``{1}``... for the match's groups and ``{seed}`` for the request's seed.
Scripted backends pickle with their rules, so they cross process boundaries intact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fbenv.errors import InvalidArgumentError, check_choice
from fbenv.llm.base import Backend, ChatRequest, ChatResult


class ScriptedBackend(Backend):
    def __init__(
        self,
        rules: Sequence[tuple[str, str]] = (),
        default: str = "OK",
        on: str = "last_user",
        name: str = "scripted",
    ):
        self.on = check_choice("ScriptedBackend.on", on, ("last_user", "all"))
        try:
            self._rules = [(re.compile(p, re.IGNORECASE | re.DOTALL), r) for p, r in rules]
        except re.error as exc:
            raise InvalidArgumentError(f"ScriptedBackend.rules: invalid regex: {exc}") from exc
        self.rules = tuple((p, r) for p, r in rules)
        self.default = default
        self.spec = name
        self.model = name
        self.calls: list[ChatRequest] = []

    def _text(self, request: ChatRequest) -> str:
        if self.on == "all":
            return "\n".join(m.content for m in request.messages)
        users = [m.content for m in request.messages if m.role == "user"]
        return users[-1] if users else ""

    def _generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        out = []
        for req in requests:
            self.calls.append(req)
            text = self._text(req)
            reply = self.default
            for pattern, template in self._rules:
                m = pattern.search(text)
                if m:
                    reply = template.format(*m.groups(), seed=req.sampling.seed)
                    break
            reply = reply[: req.sampling.max_tokens * 8]
            for s in req.sampling.stop:
                if s and s in reply:
                    reply = reply[: reply.index(s)]
            out.append(
                ChatResult(
                    text=reply,
                    prompt_tokens=sum(len(m.content.split()) for m in req.messages),
                    completion_tokens=len(reply.split()),
                )
            )
        return out

    def __reduce__(self):
        return (ScriptedBackend, (self.rules, self.default, self.on, self.spec))


class ChoosingBackend(Backend):
    """Answers any task's LLM roles in the way scoring backends do, with no model.

    A request with ``choices`` is answered with one of them, and every choice gets a
    log-probability (the chosen one 0.6 of the mass, the rest shared), like the local
    transformers backends; ``pick="first"`` always takes the first choice, ``"hash"``
    (default) picks by a hash of the messages and seed, so episodes vary but repeat, and
    ``"blind"`` gives every choice the same probability (a simulator that reads nothing:
    the floor `fbenv fidelity` measures an LLM against). A
    request without choices gets ``default``. The registry-generated tests drive every
    task's LLM path with it and require zero parse failures and zero fallbacks.
    """

    scores_choices = True

    def __init__(self, pick: str = "hash", default: str = "It went well, and I noticed what mattered."):
        self.pick = check_choice("ChoosingBackend.pick", pick or "hash", ("first", "hash", "blind"))
        self.default = default
        self.spec = f"choosing:{self.pick}"
        self.model = "choosing"
        self.calls: list[ChatRequest] = []

    @classmethod
    def from_spec(cls, arg: str) -> "ChoosingBackend":
        return cls(arg or "hash")

    def _generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        import hashlib
        import math

        out = []
        for req in requests:
            self.calls.append(req)
            choices = req.sampling.choices
            prompt_tokens = sum(len(m.content.split()) for m in req.messages)
            if not choices:
                out.append(ChatResult(self.default, prompt_tokens, len(self.default.split())))
                continue
            n = len(choices)
            if self.pick == "blind":
                out.append(ChatResult(choices[0], prompt_tokens, len(choices[0].split()),
                                      choice_logprobs=tuple([-math.log(n)] * n)))
                continue
            if self.pick == "first":
                i = 0
            else:
                blob = "\n".join(m.content for m in req.messages) + f"|{req.sampling.seed}"
                i = int(hashlib.sha256(blob.encode()).hexdigest(), 16) % len(choices)
            n = len(choices)
            rest = math.log(0.4 / (n - 1)) if n > 1 else 0.0
            logprobs = tuple((math.log(0.6) if n > 1 else 0.0) if j == i else rest for j in range(n))
            out.append(ChatResult(choices[i], prompt_tokens, len(choices[i].split()), choice_logprobs=logprobs))
        return out

    def __reduce__(self):
        return (ChoosingBackend, (self.pick, self.default))
