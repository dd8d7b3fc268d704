"""Prompting agents for the text interface, over any fbenv LLM backend.

* :class:`ZeroShotAgent` answers from the transcript alone: ``info["messages"]`` (or the
  str observation) becomes one chat request with a configurable system prompt.
* :class:`ReflexionAgent` also learns from feedback without touching weights (Reflexion,
  Shinn et al. 2023; Self-Refine): after each episode it turns the verbal feedback, the
  reward and outcome records (hindsight) into a short lesson, keeps the last
  ``memory_size`` lessons and puts them in its system prompt; within an episode, feedback
  not already visible in the transcript is shown too.

Conventions (read these before wiring an agent to an env):

* **Backends.** ``llm`` is a spec string (``"embedded"``, ``"openai:<model>@<url>"``,
  ``"scripted"``...) or a :class:`~fbenv.llm.Backend`, resolved through
  :func:`fbenv.llm.get_backend` on first use: the instance is shared with every env naming
  the same spec and the record/replay cache applies (``llm_cache``). Constructors never
  load a model.
* **Roles.** The env's transcript is already written from the agent's seat: ``user`` is
  the simulated person, ``assistant`` the agent. The env's ``system`` messages (task
  context, e.g. a catalogue only the agent sees) are appended to the agent's own system
  prompt, since chat templates expect a single leading system message.
* **Seeds.** Every request's seed is drawn from ``self.np_random`` (seeded by
  ``reset(seed)``), so a run repeats exactly; ``last_requests`` keeps them for the record.
* **Batching.** :meth:`ZeroShotAgent.act_batch` sends one batched ``backend.chat`` for
  many envs (``fbenv.make_vec``); slot ``i`` is sub-env ``i``. With Gymnasium's default
  ``NEXT_STEP`` autoreset, pass ``mask=~(terminated | truncated)`` to skip envs whose
  next step only resets them, and ``None`` for those slots in :meth:`update_batch`.
* **Ground truth is not feedback.** ``info["true_utility"]``, ``is_success`` and the
  like are for measuring the agent; the feedback agent never reads them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fbenv.agents.base import Agent, Transition
from fbenv.errors import InvalidArgumentError, check_choice, check_int, check_number, check_type
from fbenv.feedback import Feedback
from fbenv.llm.base import ROLES, Backend, ChatRequest, ChatResult, Message, Sampling
from fbenv.llm.cache import CACHE_MODES
from fbenv.llm.registry import BACKEND_KINDS, get_backend

__all__ = ["ZeroShotAgent", "ReflexionAgent", "unbatch_infos", "REFLECTION_MODES"]

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful and honest assistant. Reply to the user's last message directly and concisely."
)
DEFAULT_REFLECTION_PROMPT = (
    "You are reviewing your own earlier attempt at a task. Read the conversation and the feedback it "
    "earned, then write one short lesson (one sentence) that would earn better feedback next time. The "
    "next task will be different, so keep the lesson general: no names or numbers from this conversation. "
    "Reply with the lesson only."
)
REFLECTION_MODES = ("llm", "feedback")
_SEED_HIGH = 2**31 - 1  # the range fbenv's simulators draw their seeds from


def unbatch_infos(infos: Mapping[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Split a Gymnasium vector env's batched info dict into one dict per sub-env.

    Vector envs store ``info[key]`` as an array over sub-envs plus a ``_key`` mask of the
    envs that reported it; nested dicts (``final_info``) are split the same way.
    """
    check_type("num_envs", num_envs, int)
    out: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, value in infos.items():
        if key.startswith("_") and key[1:] in infos:
            continue
        mask = infos.get(f"_{key}")
        if isinstance(value, Mapping):
            parts = unbatch_infos(value, num_envs)
            for i in range(num_envs):
                if mask is None or mask[i]:
                    out[i][key] = parts[i]
            continue
        if len(value) != num_envs:
            raise InvalidArgumentError(
                f"unbatch_infos: expects info[{key!r}] with {num_envs} entries, actual {len(value)}"
            )
        for i in range(num_envs):
            if mask is None or mask[i]:
                item = value[i]
                out[i][key] = item.item() if isinstance(item, np.generic) else item
    return out


@dataclass
class _Episode:
    """What the feedback agent saw in one sub-env's current episode."""

    actions: list[str] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    last_feedback: tuple[Feedback, ...] = ()  # the final step's records: the outcome
    reward: float = 0.0
    messages: list[dict[str, str]] = field(default_factory=list)


class ZeroShotAgent(Agent):
    """Answer each turn with one chat request built from the transcript.

    Args:
        llm: backend spec or :class:`~fbenv.llm.Backend` (see the module docs).
        llm_cache: ``"off"``, ``"readwrite"`` or ``"replay"``; default ``$FBENV_LLM_CACHE``.
        system_prompt: the agent's own instructions, put before the env's system text
            (``""`` for none).
        max_tokens, temperature, top_p, stop: sampling settings of every reply.
    """

    name = "zero_shot"

    def __init__(
        self,
        llm: "str | Backend" = "embedded",
        *,
        llm_cache: str | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
    ) -> None:
        super().__init__()
        cls = type(self).__name__
        check_type(f"{cls}(llm)", llm, (str, Backend))
        if isinstance(llm, str):
            if not llm:
                raise InvalidArgumentError(f"{cls}(llm): expects a non-empty backend spec, actual ''")
            check_choice(f"{cls}(llm) backend kind", llm.partition(":")[0], BACKEND_KINDS)
        if llm_cache is not None:
            check_choice(f"{cls}(llm_cache)", llm_cache, CACHE_MODES)
        self.llm_spec = llm
        self.llm_cache = llm_cache
        self.system_prompt = check_type(f"{cls}(system_prompt)", system_prompt, str)
        self.sampling = self._sampling(cls, max_tokens, temperature, top_p, stop)
        self._backend: Backend | None = None
        self.last_requests: list[ChatRequest] = []
        self.last_results: list[ChatResult] = []

    @staticmethod
    def _sampling(cls: str, max_tokens: object, temperature: object, top_p: object, stop: object) -> Sampling:
        max_tokens = check_int(f"{cls}(max_tokens)", max_tokens, 1)
        temperature = check_number(f"{cls}(temperature)", temperature, 0.0)
        top_p = check_number(f"{cls}(top_p)", top_p, 0.0, 1.0, low_open=True)
        if isinstance(stop, str) or not isinstance(stop, Sequence) or not all(isinstance(s, str) for s in stop):
            raise InvalidArgumentError(f"{cls}(stop): expects a sequence of str, actual {stop!r}")
        return Sampling(max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=tuple(stop))

    # ----------------------------------------------------------------- plumbing

    @property
    def backend(self) -> Backend:
        """The shared backend, resolved on first use (so constructing an agent is free)."""
        if self._backend is None:
            self._backend = get_backend(self.llm_spec, cache=self.llm_cache)
        return self._backend

    @property
    def last_seeds(self) -> tuple[int | None, ...]:
        """The seeds of the requests sent by the last ``act``/``act_batch``."""
        return tuple(r.sampling.seed for r in self.last_requests)

    def reset(self, seed: int | None = None) -> None:
        """Reseed ``np_random`` (and so every later request's seed) and forget everything."""
        super().reset(seed)
        self.last_requests, self.last_results = [], []
        self._forget()

    def _forget(self) -> None:
        """Subclasses drop what they learned here."""

    def _draw_seed(self) -> int:
        return int(self.np_random.integers(0, _SEED_HIGH))

    def _requests(self, messages_list: list[list[Message]], max_tokens: int | None = None) -> list[ChatRequest]:
        """One request per conversation, each with its own seed from ``np_random``."""
        s = self.sampling
        return [
            ChatRequest(
                tuple(msgs),
                Sampling(max_tokens=max_tokens or s.max_tokens, temperature=s.temperature, top_p=s.top_p,
                         seed=self._draw_seed(), stop=s.stop),
            )
            for msgs in messages_list
        ]

    # ----------------------------------------------------------------- prompts

    def _conversation(self, observation: Any, info: Mapping[str, Any]) -> tuple[list[str], list[Message]]:
        """The env's system texts and its user/assistant turns, from messages or the observation."""
        cls = type(self).__name__
        raw = info.get("messages")
        if raw is not None and len(raw) > 0:
            if isinstance(raw, (str, bytes)) or not isinstance(raw, (Sequence, np.ndarray)):
                raise InvalidArgumentError(
                    f"{cls}: expects info['messages'] as a list of {{'role', 'content'}} dicts, "
                    f"actual {type(raw).__name__}"
                )
            system: list[str] = []
            turns: list[Message] = []
            for m in raw:
                if isinstance(m, Message):
                    role, content = m.role, m.content
                elif isinstance(m, Mapping) and "role" in m and "content" in m:
                    role, content = m["role"], m["content"]
                else:
                    raise InvalidArgumentError(
                        f"{cls}: expects each info['messages'] entry to have 'role' and 'content', actual {m!r}"
                    )
                if role not in ROLES:
                    raise InvalidArgumentError(f"{cls}: expects message roles in {ROLES}, actual {role!r}")
                if role == "system":
                    system.append(str(content))
                else:
                    turns.append(Message(role, content))
            return system, turns
        if not isinstance(observation, str):
            raise InvalidArgumentError(
                f"{cls}: expects a str observation or info['messages'] (make the env with interface='text'), "
                f"actual {type(observation).__name__}"
            )
        return [], [Message("user", observation)]

    def _extra_system(self, slot: int, turns: list[Message]) -> list[str]:
        """More system text for ``slot`` (the feedback agent's lessons and notes)."""
        return []

    def messages_for(self, observation: Any, info: Mapping[str, Any], slot: int = 0) -> list[Message]:
        """The chat messages this agent sends for one observation (sub-env ``slot``)."""
        check_type(f"{type(self).__name__}.act: info", info, Mapping)
        env_system, turns = self._conversation(observation, info)
        parts = [self.system_prompt] + env_system + self._extra_system(slot, turns)
        system = "\n\n".join(p for p in parts if p)
        return ([Message("system", system)] if system else []) + turns

    # ----------------------------------------------------------------- acting

    def act(self, observation: Any, info: Mapping[str, Any]) -> str:
        """The reply to one env's current turn."""
        return self.act_batch([observation], [info])[0]

    def act_batch(
        self,
        observations: Sequence[Any],
        infos: "Sequence[Mapping[str, Any]] | Mapping[str, Any]",
        mask: Sequence[bool] | np.ndarray | None = None,
    ) -> list[str]:
        """Replies for many envs from one batched backend call.

        ``infos`` is a list of per-env dicts or a vector env's batched info dict. Slots
        whose ``mask`` is False get ``""`` and cost no request (nor a seed).
        """
        cls = type(self).__name__
        if isinstance(observations, (str, bytes)) or not isinstance(observations, (Sequence, np.ndarray)):
            raise InvalidArgumentError(
                f"{cls}.act_batch: expects a sequence of observations, actual {type(observations).__name__}"
            )
        n = len(observations)
        if isinstance(infos, Mapping):
            infos = unbatch_infos(infos, n)
        elif isinstance(infos, (str, bytes)) or not isinstance(infos, Sequence):
            raise InvalidArgumentError(
                f"{cls}.act_batch: expects a list of info dicts or a vector info dict, actual {type(infos).__name__}"
            )
        if len(infos) != n:
            raise InvalidArgumentError(f"{cls}.act_batch: expects {n} infos (one per observation), actual {len(infos)}")
        if mask is None:
            active = list(range(n))
        else:
            if len(mask) != n:
                raise InvalidArgumentError(f"{cls}.act_batch: expects a mask of {n} bools, actual {len(mask)}")
            active = [i for i in range(n) if bool(mask[i])]
        batch = [self.messages_for(observations[i], infos[i], slot=i) for i in active]
        replies = [""] * n
        if batch:
            requests = self._requests(batch)
            results = self.backend.chat(requests)
            self.last_requests, self.last_results = requests, list(results)
            for i, result in zip(active, results):
                replies[i] = result.text.strip()
        return replies

    def update(self, transition: Transition) -> None:
        """A zero-shot agent learns nothing."""

    def update_batch(self, transitions: Sequence[Transition | None]) -> None:
        """One transition per sub-env (``None`` to skip a slot); a zero-shot agent ignores them."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(llm={self.llm_spec!r})"


class ReflexionAgent(ZeroShotAgent):
    """A prompting agent that carries verbal feedback into its next attempts.

    After each episode it writes one lesson from what it said, the feedback records it got
    (their ``text``, or ``source`` and score), and its return, and keeps the most recent
    ``memory_size`` lessons (see :attr:`memory`) in its system prompt for every later
    episode. ``reflection="llm"`` asks the backend to write the lesson (Reflexion; the
    digest stands in when the reply is empty); ``"feedback"`` stores the feedback digest
    itself, which needs no model call and suits small models. Within an episode, feedback
    the transcript does not already show (e.g. a critic's note) is put in the prompt too.

    Args (besides :class:`ZeroShotAgent`'s):
        memory_size: how many lessons to keep (0: remember nothing across episodes).
        reflection: ``"llm"`` or ``"feedback"``.
        reflection_prompt: system prompt of the reflection request.
        reflection_max_tokens: token budget of a written lesson.
        max_lesson_chars: lessons are cut to this many characters.
    """

    name = "reflexion"

    def __init__(
        self,
        llm: "str | Backend" = "embedded",
        *,
        llm_cache: str | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        memory_size: int = 3,
        reflection: str = "llm",
        reflection_prompt: str = DEFAULT_REFLECTION_PROMPT,
        reflection_max_tokens: int = 64,
        max_lesson_chars: int = 400,
    ) -> None:
        super().__init__(
            llm, llm_cache=llm_cache, system_prompt=system_prompt, max_tokens=max_tokens,
            temperature=temperature, top_p=top_p, stop=stop,
        )
        self.memory_size = check_int("ReflexionAgent(memory_size)", memory_size, 0)
        self.reflection = check_choice("ReflexionAgent(reflection)", reflection, REFLECTION_MODES)
        self.reflection_prompt = check_type("ReflexionAgent(reflection_prompt)", reflection_prompt, str)
        self.reflection_max_tokens = check_int("ReflexionAgent(reflection_max_tokens)", reflection_max_tokens, 1)
        self.max_lesson_chars = check_int("ReflexionAgent(max_lesson_chars)", max_lesson_chars, 16)
        self._forget()

    def _forget(self) -> None:
        self._memory: deque[str] = deque(maxlen=self.memory_size)
        self._episodes: dict[int, _Episode] = {}
        self.episodes_seen = 0
        self.reflection_requests: list[ChatRequest] = []

    @property
    def memory(self) -> tuple[str, ...]:
        """The lessons in the system prompt, oldest first (at most ``memory_size``)."""
        return tuple(self._memory)

    # ----------------------------------------------------------------- prompts

    def _extra_system(self, slot: int, turns: list[Message]) -> list[str]:
        parts = []
        if self._memory:
            parts.append(
                "Lessons from your earlier attempts (most recent last):\n" + "\n".join(f"- {m}" for m in self._memory)
            )
        episode = self._episodes.get(slot)
        if episode is not None:
            # feedback the transcript already shows (a user's reply) is not repeated
            shown = " ".join(" ".join(t.content.split()) for t in turns)
            notes = [
                self._describe(f) for f in episode.feedback
                if self._describe(f) and not (f.text and " ".join(f.text.split()) in shown)
            ]
            if notes:
                parts.append("Feedback so far in this conversation:\n" + "\n".join(f"- {n}" for n in notes))
        return parts

    @staticmethod
    def _describe(record: Feedback) -> str:
        """One line for a feedback record: its source and text, or its score."""
        source = getattr(record.source, "value", record.source)
        if record.text:
            return f"{source}: {' '.join(record.text.split())}"
        if record.scalar is not None:
            scale = f" on {record.scale[0]:g}-{record.scale[1]:g}" if record.scale else ""
            return f"{source}: score {record.scalar:g}{scale}"
        if record.preference is not None:
            return f"{source}: preferred option {record.preference}"
        return ""

    def _digest(self, episode: _Episode) -> str:
        """A finished episode as one short lesson: the last reply, the outcome's feedback
        (the final step's records: decision, hindsight, rating) and the return. It is the
        lesson in ``"feedback"`` mode and when a written reflection comes back empty."""
        said = " ".join(episode.actions[-1].split()) if episode.actions else ""
        if len(said) > 160:
            said = said[:157] + "..."
        feedback = "; ".join(line for line in (self._describe(f) for f in episode.last_feedback) if line)
        text = f'When you said "{said}", the feedback was: {feedback or "none"}. Reward: {episode.reward:.2f}.'
        return self._cut(text)

    def _cut(self, text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= self.max_lesson_chars else text[: self.max_lesson_chars - 3] + "..."

    def _reflection_messages(self, episode: _Episode) -> list[Message]:
        names = {"user": "User", "assistant": "You"}
        convo = "\n".join(
            f"{names[m['role']]}: {m['content']}" for m in episode.messages if m.get("role") in names
        )
        if not convo:
            convo = "\n".join(f"You: {a}" for a in episode.actions)
        feedback = "\n".join(f"- {line}" for line in (self._describe(f) for f in episode.feedback) if line) or "- none"
        user = f"Conversation:\n{convo}\n\nFeedback:\n{feedback}\nReward: {episode.reward:.2f}\n\nLesson:"
        system = [Message("system", self.reflection_prompt)] if self.reflection_prompt else []
        return system + [Message("user", user)]

    def _lesson_from(self, reply: str, episode: _Episode) -> str:
        lines = [ln.strip() for ln in reply.strip().splitlines() if ln.strip()]
        text = lines[0] if lines else ""
        if text.lower().startswith("lesson:"):
            text = text[len("lesson:"):].strip()
        return self._cut(text) if text else self._digest(episode)

    # ----------------------------------------------------------------- learning

    def update(self, transition: Transition) -> None:
        """Read one step's feedback; at the episode's end, write a lesson."""
        self.update_batch([transition])

    def update_batch(self, transitions: Sequence[Transition | None]) -> None:
        """One transition per sub-env (``None`` skips a slot); lessons of episodes that end
        here are written in one batched reflection call."""
        if isinstance(transitions, (str, bytes)) or not isinstance(transitions, Sequence):
            raise InvalidArgumentError(
                "ReflexionAgent.update_batch: expects a sequence of Transition or None, "
                f"actual {type(transitions).__name__}"
            )
        finished: list[_Episode] = []
        for slot, t in enumerate(transitions):
            if t is None:
                continue
            check_type("ReflexionAgent.update: transition", t, Transition)
            check_type("ReflexionAgent.update: transition.info", t.info, Mapping)
            records = t.info.get("feedback", ())
            if isinstance(records, (Feedback, str, bytes)) or not isinstance(records, (Sequence, np.ndarray)):
                raise InvalidArgumentError(
                    "ReflexionAgent.update: expects info['feedback'] as a tuple of Feedback, "
                    f"actual {type(records).__name__}"
                )
            for r in records:
                check_type("ReflexionAgent.update: info['feedback'] entry", r, Feedback)
            episode = self._episodes.setdefault(slot, _Episode())
            episode.actions.append(str(t.action))
            episode.feedback.extend(records)
            episode.last_feedback = tuple(records)
            episode.reward += float(t.reward)
            messages = t.info.get("messages")
            if messages is not None and len(messages) > 0:
                episode.messages = [dict(m) for m in messages if isinstance(m, Mapping)]
            if t.terminated or t.truncated:
                finished.append(self._episodes.pop(slot))
        if finished:
            self.episodes_seen += len(finished)
            if self.memory_size > 0:
                for lesson in self._write_lessons(finished):
                    if lesson in self._memory:  # a repeated lesson becomes the most recent, not a duplicate
                        self._memory.remove(lesson)
                    self._memory.append(lesson)

    def _write_lessons(self, episodes: list[_Episode]) -> list[str]:
        if self.reflection == "feedback":
            return [self._digest(e) for e in episodes]
        requests = self._requests([self._reflection_messages(e) for e in episodes], self.reflection_max_tokens)
        results = self.backend.chat(requests)
        self.reflection_requests = requests
        return [self._lesson_from(r.text, e) for r, e in zip(results, episodes)]

    def __repr__(self) -> str:
        memory = f"{len(self._memory)}/{self.memory_size}"
        return f"ReflexionAgent(llm={self.llm_spec!r}, memory={memory}, reflection={self.reflection!r})"
