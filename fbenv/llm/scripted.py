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
