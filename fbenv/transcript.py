"""The conversation of an episode: typed turns with a speaker, and each seat's view of it.

A task says who said what (``transcript.say("customer", text)``); a turn may be meant
for some seats only (``to=``, e.g. the catalogue only the assistant sees). Each seat
gets its own chat view, in which its own turns are ``assistant`` and everyone else's are
``user`` (the role flip of tau2-bench's user simulator), so the same transcript prompts
an LLM policy in any seat. ``info["messages"]`` and ``render()`` come from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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
    def __init__(self) -> None:
        self.turns: list[Turn] = []

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
        out = []
        for t in self.visible(seat):
            if t.speaker == SYSTEM:
                out.append(Message("system", t.text))
            elif t.speaker == seat:
                out.append(Message("assistant", t.text))
            else:
                prefix = f"{names[t.speaker]}: " if names and t.speaker in names else ""
                out.append(Message("user", prefix + t.text))
        return out

    def as_info(self, seat: str, names: Mapping[str, str] | None = None) -> list[dict[str, str]]:
        """``info["messages"]``: the seat's chat view as plain dicts."""
        return [m.as_dict() for m in self.messages(seat, names)]

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
