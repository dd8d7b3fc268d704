"""The conversation of an episode: typed turns with a speaker, and each seat's view of it.

A task says who said what (``transcript.say("customer", text)``); a turn may be meant
for some seats only (``to=``, e.g. the catalogue only the assistant sees). Each seat
gets its own chat view, in which its own turns are ``assistant`` and everyone else's are
``user`` (the role flip of tau2-bench's user simulator), so the same transcript prompts
an LLM policy in any seat. ``info["messages"]`` and ``render()`` come from here.

A long episode (a bandit's hundreds of rounds) keeps a window: with ``keep_rounds=N``
the transcript holds its ``system`` turns and the last ``N`` rounds, so a step costs the
same at round 1,000 as at round 1 and an LLM policy's context stays bounded. A round
begins at each learner turn (the env base marks it), or where the task marks it with
:meth:`Transcript.begin_round` (e.g. when a new suggestion arrives, before the learner's turn).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fbenv.errors import InvalidArgumentError
from fbenv.llm.base import Message

SYSTEM = "system"


@dataclass(frozen=True)
class Turn:
    speaker: str  # a seat name, or "system" for instructions and context
    text: str
    to: frozenset[str] | None = None  # the seats that see it; None: everyone

    def seen_by(self, seat: str | None) -> bool:
        return seat is None or self.to is None or seat in self.to or seat == self.speaker


class Transcript:
    def __init__(self, keep_rounds: int | None = None) -> None:
        if keep_rounds is not None and (not isinstance(keep_rounds, int) or keep_rounds < 1):
            raise InvalidArgumentError(f"Transcript.keep_rounds: expects None or an int >= 1, actual {keep_rounds!r}")
        self.turns: list[Turn] = []
        self.keep_rounds = keep_rounds
        self._starts: list[int] = []  # where each round begins in ``turns``
        self._marked = False  # the task began the coming round itself
        # info["messages"] per (seat, names): one entry per turn (its dict, or None where the seat
        # does not see it), extended as turns are said and cut like the turns at a trim, so a
        # step costs O(new turns) rather than a pass over the transcript
        self._views: dict[tuple[str, int], tuple[Any, list[dict[str, str] | None]]] = {}

    def begin_round(self) -> None:
        """A new round begins with the next turn said (older rounds may be dropped now)."""
        self._starts.append(len(self.turns))
        self._marked = True
        self._trim()

    def learner_turn_begins(self) -> None:
        """Called by the env base before the learner's turn: it begins a round, unless the
        task already began this one."""
        if not self._marked:
            self._starts.append(len(self.turns))
            self._trim()
        self._marked = False

    def _trim(self) -> None:
        n = self.keep_rounds
        if n is None or len(self._starts) <= n:
            return
        cut = self._starts[-n]
        keep = [k for k, t in enumerate(self.turns[:cut]) if t.speaker == SYSTEM]
        head = [self.turns[k] for k in keep]
        dropped = cut - len(head)
        for key, (names, entries) in list(self._views.items()):
            if len(entries) < cut:  # not brought up to date lately: rebuilt when next asked
                del self._views[key]
            else:
                entries[:cut] = [entries[k] for k in keep]
        self.turns[:cut] = head
        self._starts = [k - dropped for k in self._starts[-n:]]

    def say(self, speaker: str, text: str, *, to: Iterable[str] | None = None) -> Turn:
        if not isinstance(speaker, str) or not speaker:
            raise InvalidArgumentError(f"Transcript.say: expects a speaker name, actual {speaker!r}")
        if not isinstance(text, str):
            raise InvalidArgumentError(f"Transcript.say: expects str text, actual {type(text).__name__}")
        turn = Turn(speaker, text, None if to is None else frozenset(to))
        self.turns.append(turn)
        return turn

    def __len__(self) -> int:
        return len(self.turns)

    def last(self, speaker: str | None = None) -> Turn | None:
        """The last turn (of ``speaker``, if given)."""
        return next((t for t in reversed(self.turns) if speaker is None or t.speaker == speaker), None)

    def visible(self, seat: str | None = None) -> list[Turn]:
        return [t for t in self.turns if t.seen_by(seat)]

    def messages(self, seat: str, names: Mapping[str, str] | None = None) -> list[Message]:
        """``seat``'s chat view: its turns are ``assistant``, others' ``user``, context ``system``.

        With ``names``, others' turns are prefixed with the speaker's name (useful when a
        seat hears more than one other speaker).
        """
        return [Message(role, text) for role, text in self._chat(self.turns, seat, names)]

    @staticmethod
    def _chat(turns: Iterable[Turn], seat: str, names: Mapping[str, str] | None) -> list[tuple[str, str]]:
        out = []
        for t in turns:
            if not t.seen_by(seat):
                continue
            if t.speaker == SYSTEM:
                out.append(("system", t.text))
            elif t.speaker == seat:
                out.append(("assistant", t.text))
            else:
                prefix = f"{names[t.speaker]}: " if names and t.speaker in names else ""
                out.append(("user", prefix + t.text))
        return out

    def as_info(self, seat: str, names: Mapping[str, str] | None = None) -> list[dict[str, str]]:
        """``info["messages"]``: the seat's chat view as plain dicts (fresh ones at every call)."""
        key = (seat, id(names))
        kept, entries = self._views.get(key, (None, None))
        if entries is None or kept is not names:
            entries = []
            self._views[key] = (names, entries)
        for t in self.turns[len(entries):]:
            if not t.seen_by(seat):
                entries.append(None)
            elif t.speaker == SYSTEM:
                entries.append({"role": "system", "content": t.text})
            elif t.speaker == seat:
                entries.append({"role": "assistant", "content": t.text})
            else:
                prefix = f"{names[t.speaker]}: " if names and t.speaker in names else ""
                entries.append({"role": "user", "content": prefix + t.text})
        return [dict(d) for d in entries if d is not None]

    def render(
        self,
        names: Mapping[str, str],
        *,
        seat: str | None = None,
        include_system: bool = False,
        upto: int | None = None,
    ) -> str:
        """The transcript as text: context first (with ``include_system``), then ``Name: text`` lines.

        ``seat`` limits it to what that seat sees; ``upto`` slices the turns first
        (``-1``: all but the last turn).
        """
        turns = [t for t in self.turns[:upto] if t.seen_by(seat)]
        lines = [t.text for t in self.turns if t.speaker == SYSTEM and t.seen_by(seat)] if include_system else []
        lines += [f"{names.get(t.speaker, t.speaker)}: {t.text}" for t in turns if t.speaker != SYSTEM]
        return "\n".join(lines)
