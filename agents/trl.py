"""TRL's ``GRPOTrainer`` on any fbenv text env, through its ``environment_factory``.

TRL 1.16 trains tool-using policies with GRPO: ``GRPOTrainer(environment_factory=Cls)``
builds instances with ``Cls()`` (one per rollout, reused across batches), calls
``reset(**row)`` with every column of the dataset row and appends the returned string to
the prompt's last user message, exposes every public method of the class as a tool (its
name, type hints and Google docstring become the tool schema), and, when the class has
``get_reward()``, scores each finished rollout with it (logged as
``rewards/<class name>/mean``).

:func:`make_environment_class` turns an env id and its options into such a class. The
policy talks to the simulated person through one tool, ``reply(message)``: each call is
one env step, and its result is what the person answers. ``get_reward()`` is the
episode's feedback reward. The hidden objective stays beside it: the instance keeps the
episode's infos (``env.true_utility``, ``env.feedback``, ``env.info``...), and
:func:`episode_metrics`, passed as an extra reward function, logs them without
changing the reward.

Rows carry a ``seed`` (see :func:`make_dataset`): every completion of a GRPO group
meets the same hidden task, and any rollout can be replayed. Generated classes pickle
by (env id, options), so they load in another process; an instance pickles as its seed
and replies and replays them on load.

Small chat models often ship a template without tool calls (the embedded SmolLM2 does);
:func:`ensure_tool_chat_template` gives a ChatML tokenizer the Qwen2.5 tool template TRL
knows how to parse.

Example::

    from trl import GRPOConfig, GRPOTrainer
    from fbenv.agents.trl import episode_metrics, make_dataset, make_environment_class

    Advisor = make_environment_class("fbenv/Advisor-v0", feedback_timing="hindsight")
    trainer = GRPOTrainer(
        model="path/to/chat-model",
        reward_funcs=[episode_metrics],  # logs true utility; adds nothing to the reward
        train_dataset=make_dataset(64, seed=0),
        environment_factory=Advisor,
        args=GRPOConfig(output_dir="out", num_generations=4, max_completion_length=256),
    )
    trainer.train()
"""

from __future__ import annotations

import copyreg
import hashlib
import json
import numbers
import re
from typing import Any, ClassVar

import numpy as np

import fbenv
from fbenv.episodes import EpisodeResult
from fbenv.errors import InvalidArgumentError, MissingExtraError, check_type
from fbenv.registry import require_interface

__all__ = [
    "SYSTEM_PROMPT",
    "FeedbackEnvironment",
    "ensure_tool_chat_template",
    "episode_metrics",
    "make_dataset",
    "make_environment_class",
]

SYSTEM_PROMPT = (
    "You are talking with a person. Send each of your messages with the `reply` tool: its result "
    "is the person's answer. Keep replying until the conversation is over."
)
ENDED_NOTE = "[The conversation is over.]"
_SCALARS = (str, int, float, bool, type(None))


class _EnvironmentClassType(type):
    """Metaclass of the generated classes, so pickle can rebuild them from (env id, options)."""


class FeedbackEnvironment(metaclass=_EnvironmentClassType):
    """One fbenv text env as a TRL environment. Use :func:`make_environment_class`.

    Public *methods* of this class are tools for the policy (TRL's contract), so
    everything else is a property or private.
    """

    env_id: ClassVar[str] = ""
    env_kwargs: ClassVar[tuple[tuple[str, Any], ...]] = ()
    unfinished_reward: ClassVar[float] = 0.0

    def __init__(self) -> None:
        if not type(self).env_id:
            raise InvalidArgumentError(
                "FeedbackEnvironment: expects a class from make_environment_class(env_id, ...), actual the base class"
            )
        self._env: Any = None
        self._seed: int | None = None
        self._row: dict[str, Any] = {}
        self._replies: list[str] = []
        self._rewards: list[float] = []
        self._infos: list[dict[str, Any]] = []
        self._done = False
        self._calls_after_end = 0

    # ------------------------------------------------------------------ TRL contract

    def reset(self, seed: int | None = None, prompt: Any = None, **columns: Any) -> str:
        """Start an episode; TRL appends the returned observation to the prompt.

        TRL passes every column of the dataset row: ``seed`` fixes the hidden task
        (``None`` draws a fresh one, recorded in :attr:`seed`), ``prompt`` is TRL's own,
        and other columns are kept in :attr:`row` for reward functions and logging.
        """
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])  # fresh entropy, no global RNG
        check_type("seed", seed, (int, np.integer))
        if self._env is None:
            self._env = fbenv.make(type(self).env_id, interface="text", **dict(type(self).env_kwargs))
        self._seed, self._row = int(seed), dict(columns)
        self._replies, self._rewards, self._done, self._calls_after_end = [], [], False, 0
        observation, info = self._env.reset(seed=self._seed)
        self._infos = [info]
        return observation

    def reply(self, message: str) -> str:
        """Send your next message to the person and get their answer.

        Args:
            message: What you say to the person, in plain words.

        Returns:
            The person's answer. Once the conversation is over, the answer ends with a note saying so.
        """
        if self._env is None or self._seed is None:
            raise InvalidArgumentError("reply: call reset() first (TRL does, before generation)")
        if self._done:
            self._calls_after_end += 1
            return f"{ENDED_NOTE} Nobody is listening any more."
        if not isinstance(message, str):  # the model wrote a non-string argument: show it what it sent
            message = str(message)
        self._replies.append(message)
        _, reward, terminated, truncated, info = self._env.step(message)
        self._rewards.append(float(reward))
        self._infos.append(info)
        self._done = bool(terminated or truncated)
        answer = _answer_after_last_reply(info)
        if truncated and "feedback_error" in info:
            answer = f"{answer}\n(The person stopped responding: {info['feedback_error']})".strip()
        return f"{answer}\n{ENDED_NOTE}".strip() if self._done else answer

    def get_reward(self) -> float:
        """The episode's feedback reward; an unfinished episode adds ``unfinished_reward``."""
        total = float(sum(self._rewards))
        return total if self._done else total + float(type(self).unfinished_reward)

    # ------------------------------------------------------------------ read-only views

    @property
    def seed(self) -> int | None:
        return self._seed

    @property
    def row(self) -> dict[str, Any]:
        """Dataset columns of the current episode other than ``seed`` and ``prompt``."""
        return dict(self._row)

    @property
    def done(self) -> bool:
        return self._done

    @property
    def replies(self) -> tuple[str, ...]:
        return tuple(self._replies)

    @property
    def rewards(self) -> tuple[float, ...]:
        return tuple(self._rewards)

    @property
    def infos(self) -> tuple[dict[str, Any], ...]:
        """The reset info, then one info per ``reply``."""
        return tuple(self._infos)

    @property
    def info(self) -> dict[str, Any]:
        return self._infos[-1] if self._infos else {}

    @property
    def episode_result(self) -> "EpisodeResult | None":
        """The core's record of the finished episode (None while it runs)."""
        result = self.info.get("episode_result") if self._done else None
        return None if result is None else EpisodeResult.from_info(result)

    @property
    def true_utility(self) -> float:
        """The hidden objective summed over the episode so far (the episode result's, once it ended)."""
        result = self.episode_result
        if result is not None:
            return result.true_utility
        return float(sum(float(i.get("true_utility", 0.0)) for i in self._infos[1:]))

    @property
    def feedback(self) -> tuple[Any, ...]:
        """Every :class:`fbenv.Feedback` record of the episode, in order."""
        return tuple(rec for i in self._infos for rec in i.get("feedback", ()))

    @property
    def messages(self) -> list[dict[str, str]]:
        return [dict(m) for m in self.info.get("messages", [])]

    @property
    def calls_after_end(self) -> int:
        """``reply`` calls made after the conversation ended (the policy did not notice)."""
        return self._calls_after_end

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[str, Any]:
        # The live env is not pickled: the episode is its seed and replies, replayed on load.
        return {"seed": self._seed, "row": self._row, "replies": list(self._replies),
                "calls_after_end": self._calls_after_end}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()
        if state["seed"] is not None:
            self.reset(seed=state["seed"], **state["row"])
            for message in state["replies"]:
                self.reply(message)
        self._calls_after_end = state["calls_after_end"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env_id={type(self).env_id!r}, seed={self._seed}, replies={len(self._replies)}, done={self._done})"


def _answer_after_last_reply(info: dict[str, Any]) -> str:
    """What the person said after the agent's last message (from ``info["messages"]``)."""
    messages = info.get("messages") or []
    tail: list[str] = []
    for m in reversed(messages):
        if m.get("role") == "assistant":
            break
        if m.get("role") == "user":
            tail.append(str(m.get("content", "")))
    return "\n".join(reversed(tail))


# ---------------------------------------------------------------------- class factory

_CLASSES: dict[tuple[Any, ...], type] = {}


def make_environment_class(
    env_id: str, *, name: str | None = None, unfinished_reward: float = 0.0, **env_kwargs: Any
) -> type[FeedbackEnvironment]:
    """A zero-argument, picklable TRL environment class for ``env_id`` with ``env_kwargs``.

    Args:
        env_id: a registered single-agent env with a text interface, e.g. ``"fbenv/Advisor-v0"``.
        name: the class name (TRL logs the reward as ``rewards/<name>/mean``); default
            from the id, plus a short hash of the options when there are any.
        unfinished_reward: added to the reward of an episode the policy left unfinished
            (it stopped calling ``reply``); 0 by default, negative to push it to finish.
        **env_kwargs: env options (``feedback_timing``, ``simulator``, ``llm``...) as plain
            values (str, int, float, bool, None): a backend is named by its spec string.

    The same arguments return the same class, in this process or after unpickling in another.
    """
    check_type("env_id", env_id, str)
    spec = require_interface(env_id, "text", "the TRL adapter", env_kwargs)
    for key, value in env_kwargs.items():
        if not isinstance(value, _SCALARS):
            raise InvalidArgumentError(
                f"{key}: expects a str, int, float, bool or None (pass backends by spec string), actual {type(value).__name__}"
            )
    check_type("unfinished_reward", unfinished_reward, (int, float))
    if name is not None:
        check_type("name", name, str)
        if not name.isidentifier():
            raise InvalidArgumentError(f"name: expects a Python identifier, actual {name!r}")
    return _environment_class(spec.id, tuple(sorted(env_kwargs.items())), name, float(unfinished_reward))


def _environment_class(
    env_id: str, env_kwargs: tuple[tuple[str, Any], ...], name: str | None, unfinished_reward: float
) -> type[FeedbackEnvironment]:
    key = (env_id, env_kwargs, name, unfinished_reward)
    if key not in _CLASSES:
        default = re.sub(r"\W+", "_", env_id.split("/", 1)[-1])
        if env_kwargs:
            default += "_" + hashlib.sha1(repr(env_kwargs).encode()).hexdigest()[:6]
        cls_name = name or default
        cls = _EnvironmentClassType(
            cls_name,
            (FeedbackEnvironment,),
            {
                "env_id": env_id,
                "env_kwargs": env_kwargs,
                "unfinished_reward": unfinished_reward,
                "_factory_key": key,
                "__module__": __name__,
                "__qualname__": cls_name,
                "__doc__": f"{env_id} ({', '.join(f'{k}={v!r}' for k, v in env_kwargs) or 'defaults'}) as a TRL environment.",
            },
        )
        _CLASSES[key] = cls
    return _CLASSES[key]


def _reduce_environment_class(cls: type) -> Any:
    key = cls.__dict__.get("_factory_key")
    if key is None:  # FeedbackEnvironment itself: a plain global
        return cls.__qualname__
    return _environment_class, key


copyreg.pickle(_EnvironmentClassType, _reduce_environment_class)


# ---------------------------------------------------------------------- data and logging


def make_dataset(n_episodes: int, *, seed: int = 0, system_prompt: str = SYSTEM_PROMPT):
    """A ``datasets.Dataset`` of ``n_episodes`` rows: a conversational ``prompt`` and a ``seed``.

    Row ``i`` has seed ``seed + i``. The user turn is empty: ``reset`` supplies it (the
    env's observation). The system turn tells the policy to speak through ``reply``.
    """
    check_type("n_episodes", n_episodes, int)
    check_type("seed", seed, int)
    check_type("system_prompt", system_prompt, str)
    if n_episodes < 1:
        raise InvalidArgumentError(f"n_episodes: expects >= 1, actual {n_episodes}")
    try:
        from datasets import Dataset
    except ImportError as exc:
        raise MissingExtraError("datasets", "train", "The TRL adapter's dataset") from exc
    prompt = [{"role": "system", "content": system_prompt}, {"role": "user", "content": ""}]
    return Dataset.from_dict({"prompt": [prompt] * n_episodes, "seed": list(range(seed, seed + n_episodes))})


def episode_metrics(*, environments: list[Any] | None = None, log_metric: Any = None, log_extra: Any = None,
                    **_trl_columns: Any) -> list[None]:
    """A TRL reward function that *logs* the hidden objective and adds nothing to the reward.

    Pass it in ``reward_funcs``: it returns ``None`` for every rollout (TRL ignores
    ``None`` rewards; its own ``rewards/episode_metrics`` column reads NaN) and logs,
    through TRL's ``log_metric``: ``env/true_utility`` and ``env/finished`` over all
    rollouts, and ``is_success`` and the task's outcomes (``TaskSpec.outcomes``: ``deceived``...)
    over finished ones, from each episode's ``info["episode_result"]``. Per rollout, ``true_utility`` and ``seed`` go to
    the completions table. TRL passes every dataset column too; they are not used.
    """
    if not environments:
        raise InvalidArgumentError(
            "episode_metrics: expects TRL's `environments` (use it with environment_factory=make_environment_class(...))"
        )
    envs = [e for e in environments if isinstance(e, FeedbackEnvironment)]
    if log_metric is not None and envs:
        log_metric("env/true_utility", float(np.mean([e.true_utility for e in envs])))
        log_metric("env/finished", float(np.mean([e.done for e in envs])))
        log_metric("env/replies", float(np.mean([len(e.replies) for e in envs])))
        finished = [e.episode_result for e in envs if e.episode_result is not None]
        if finished:
            log_metric("env/is_success", float(np.mean([r.is_success for r in finished])))
        # the task's own outcomes, as its TaskSpec names them
        keys = sorted({k for r in finished for k, v in r.outcomes.items() if isinstance(v, (bool, np.bool_, numbers.Real))})
        for k in keys:
            values = [float(r.outcomes[k]) for r in finished if isinstance(r.outcomes.get(k), (bool, np.bool_, numbers.Real))]
            log_metric(f"env/{k}", float(np.mean(values)))
    if log_extra is not None:
        log_extra("true_utility", [e.true_utility if isinstance(e, FeedbackEnvironment) else None for e in environments])
        log_extra("seed", [e.seed if isinstance(e, FeedbackEnvironment) else None for e in environments])
    return [None] * len(environments)


def ensure_tool_chat_template(tokenizer: Any) -> Any:
    """Give ``tokenizer`` a chat template that can render tool calls, if it has none.

    TRL refuses tools with a template that drops them. A ChatML tokenizer
    (``<|im_start|>``/``<|im_end|>``, like SmolLM2's) gets TRL's copy of the Qwen2.5 tool
    template, whose ``<tool_call>`` JSON blocks TRL parses; its default system line is
    only used when the conversation has no system turn (:func:`make_dataset` adds one).
    Returns the same tokenizer, changed in place.
    """
    try:
        from trl.chat_template_utils import qwen2_5_chat_template, supports_tool_calling
    except ImportError as exc:
        raise MissingExtraError("trl", "train", "The TRL adapter") from exc
    if supports_tool_calling(tokenizer):
        return tokenizer
    template = tokenizer.chat_template or ""
    vocab = tokenizer.get_vocab()
    if "<|im_start|>" in template and "<|im_start|>" in vocab and "<|im_end|>" in vocab:
        tokenizer.chat_template = qwen2_5_chat_template
        return tokenizer
    raise InvalidArgumentError(
        "tokenizer: expects a chat template that renders tool calls, or a ChatML one (<|im_start|>) to replace; "
        "actual neither. Set tokenizer.chat_template to a tool-calling template TRL knows (see trl.chat_template_utils)."
    )


def reply_call_bias(tokenizer, messages: "tuple[str, ...]", window: int = 6) -> dict[tuple[int, ...], float]:
    """A ``generate(sequence_bias=...)`` that makes a model write a ``reply`` tool call with one of ``messages``.

    For demonstrations and tests with models too small to call tools on their own (a
    random tiny model, SmolLM2-135M): the policy still chooses *which* message, and TRL's
    parsing, the env step and the reward all run for real. Assumes the ChatML tool format
    of :func:`ensure_tool_chat_template`.
    """
    head = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    bias: dict[tuple[int, ...], float] = {}
    for message in messages:
        call = '<tool_call>\n{"name": "reply", "arguments": {"message": %s}}\n</tool_call><|im_end|>' % json.dumps(message)
        ids = head + tokenizer(call, add_special_tokens=False)["input_ids"]
        for k in range(len(head), len(ids)):
            bias[tuple(ids[max(0, k - window + 1) : k + 1])] = 100.0
    return bias
