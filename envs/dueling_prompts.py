"""DuelingPrompts: find the best prompt from a user's pairwise preferences (APOHF).

## Description

From *Prompt Optimization with Human Feedback* (Lin et al., APOHF). An assistant answers
one question (e.g. "Why is the sky blue?") through one of ``n_prompts`` candidate
prompts. Each prompt asks for a combination of five response traits: an example,
numbered steps, technical terms, a warm tone, a closing summary. A user has a hidden
taste over those traits and cannot score a response, only compare two. Each step the
agent picks a pair of prompts, the user reads their two responses and says which is
better. The agent's job is to find, and keep playing, the prompt whose responses the
user likes best: a dueling bandit whose arms have known feature vectors and a hidden
linear utility.

## Observation

- ``interface="text"``: one string: the question, the numbered candidate prompts and
  how to answer, the running tally (wins/duels per prompt) and the last three duels.
  ``info["messages"]`` has the same context and the last three duels as chat messages
  (the window keeps a step's cost flat over long episodes).
- ``interface="discrete"``: ``Box(0, 1, (7K + 1,))`` with ``K = n_prompts``: each
  prompt's five trait bits (``5K``, prompt-major: the arms' feature vectors), each
  prompt's share of duels won so far (``K``, 0.5 before its first duel against another
  prompt), each prompt's number of duels over the horizon (``K``), and the share of the
  horizon played (1).

## Action

- ``text``: a pair of prompt ids, e.g. ``"3 vs 5"``: the first two integers in the
  reply. A reply that names no two ids in ``[0, K)`` is an observation (the user asks
  for a valid pair, ``info["invalid_action"]``), never a crash.
- ``discrete``: ``Discrete(K * K)``: action ``a`` is the pair ``(a // K, a % K)``
  (first, second); its text is ``"<first> vs <second>"``. ``info["pair"]`` is the pair
  as a tuple, which is what a dueling agent such as
  ``fbenv.agents.bandits.DoubleThompsonSampling`` takes as its action
  (``Transition(action=info["pair"], info=info)``; it reads ``info["preference"]``).
  A pair of the same prompt twice is allowed (the no-regret steady state of a dueling
  bandit) and carries no information.

## Reward

1.0 when the user prefers the first prompt of the pair, else 0.0 (an invalid reply:
0.0). ``info["preference"]`` is the index of the winner within the pair (0 first, 1
second), as in ``Feedback.preference``. The reward is the raw comparison outcome: it
says nothing by itself about how good either prompt is, which is why the true utility
and regret are reported beside it.

## Feedback source

One ``user`` record per valid step in ``info["feedback"]``: ``preference`` (0 or 1),
``distribution`` (the user's probability of preferring each of the two), and its text.

## True utility

Prompt ``k`` has features ``x_k`` (its trait bits) and the user a hidden weight vector
``w`` (standard normal, drawn at reset); the utility is ``w . x_k`` scaled so that the
worst candidate is 0 and the best 1. The rule user prefers the first prompt with the
Bradley-Terry probability ``sigmoid(beta * (u_first - u_second))``.
``info["true_utility"]`` is the utility of the better prompt of the pair (0 for an
invalid reply), so ``info["regret"] = 1 - true_utility`` is the weak dueling regret and
``info["is_success"]`` says the best prompt was in the pair. Every step's info also
carries ``cumulative_regret`` (weak), ``cumulative_strong_regret`` (1 minus the mean
utility of the pair, summed) and ``invalid_actions``; they are the task's outcomes.

## Episode end

Never terminated (there is no goal state). Truncated after ``horizon`` steps, valid or
not; also truncated when an LLM simulator gives up (``on_parse_error``) or its backend
fails under ``on_backend_error="truncate"``, with ``info["feedback_error"]`` and no reward.

## Arguments

``n_prompts`` (8; 2 to 32 candidate prompts, each a distinct trait combination),
``horizon`` (200 duels), ``beta`` (10.0: the Bradley-Terry scale, how consistently the
user prefers the better response; the preference noise comes from a generator drawn from
``np_random`` at reset, so both simulators see the same coin flips), ``llm_prompting``
(``"focused"`` or ``"holistic"``: see LLM simulator), plus the shared options (``fbenv
info`` lists them). Role, for ``simulator={...}``: ``user`` (compares two responses).

## LLM simulator

Both responses are generated from shipped templates: the question's plain or technical
answer, as a paragraph or numbered steps, with an example, a warm opening and closing,
or a summary line as the prompt asks. ``llm_prompting="focused"`` (the default): for
each trait in which the two responses differ, the model reads each response on its own
and chooses between two statements about it, which echo what the trait looks like in a
reply ("The reply has Step 1, Step 2 and Step 3." / "The reply has no Step 1.", the
topic's own example or summary line; scored choices calibrated against the same question
about ``N/A``).
The calibrated probabilities are what the user perceives; its hidden taste weighs them
with the rule's own formula, ``sigmoid(beta * sum_f w_f (p_first,f - p_second,f))`` (``w``
scaled as the utility is), and the reset-drawn coin turns that probability into the
preference. A reader that gets
every statement right reproduces the rule user; one that reads nothing says 0.5 and
flips coins. ``"holistic"``: one question with both responses and the user's likes and
dislikes in front of the model, scored choices ``Preference: A`` / ``Preference: B``
(calibrated against both responses replaced by ``N/A``, which removes a position
bias), whose probability of ``A`` goes through the same coin. A pair of the same prompt
asks no model (nothing to compare). ``fbenv fidelity`` probes it with scripted pairs
(best prompt first, worst prompt first, uniform random) on 20-step episodes; the
direction is that the best prompt wins its duels more often than the worst wins its own.

Measured with ``fbenv fidelity fbenv/DuelingPrompts-v0 --seeds 10`` (SmolLM2-135M,
greedy; 30 episodes per variant): ``focused`` reaches a rule-vs-LLM Spearman of 0.80 on
episode rewards (floor 0.05) and 0.85 on the user's preference probability per duel, and
keeps the direction (+0.425; rule +0.900); ``holistic`` is close to noise (0.25 on rewards,
0.01 per duel, direction +0.075). Before the statements echoed the reply (they described
the trait: "The reply uses numbered steps."), ``focused`` measured 0.48 per duel: the
per-trait rank correlation with the truth was 0.55 / 0.07 / 0.68 / 0.85 / -0.10
(example / steps / wording / tone / summary), and is 0.91 / 0.87 / 0.68 / 0.85 / 0.79 now.

## Version history

- v0: initial release.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fbenv.env import FeedbackEnv
from fbenv.errors import check_choice, check_int, check_number
from fbenv.feedback import Feedback, Source
from fbenv.fidelity import Probe
from fbenv.llm.base import Message
from fbenv.parsing import parse_preference
from fbenv.roles import Preference, Prompt, Questions, Reply, belief
from fbenv.truth import StepResult, Truth

PROMPTINGS = ("focused", "holistic")
N_TRAITS = 5
EXAMPLE, STEPS, TECHNICAL, WARM, SUMMARY = range(N_TRAITS)  # the traits, in TRAITS' order
MAX_PROMPTS = 2**N_TRAITS  # every candidate is a distinct trait combination
MEMORY = 3  # duels kept in the transcript window
_INT = re.compile(r"\d+")

# trait: (what the prompt asks, what the user likes in words, belief aspect, holds, fails)
TRAITS: tuple[tuple[str, str, str, str, str], ...] = (
    ("Give an example.", "give an example", "examples",
     "The reply gives an example.", "The reply gives no example."),
    ("Answer in numbered steps.", "use numbered steps", "layout",
     "The reply has Step 1, Step 2 and Step 3.", "The reply has no Step 1."),
    ("Use precise technical terms.", "use technical terms", "wording",
     "The reply uses technical terms.", "The reply uses only everyday words."),
    ("Be warm and friendly.", "are warm and friendly", "tone",
     "The reply is warm and friendly.", "The reply is plain and neutral."),
    ("End with a one-line summary.", "end with a summary", "ending",
     "The reply ends with a summary.", "The reply ends without a summary."),
)


@dataclass(frozen=True)
class Topic:
    question: str
    plain: tuple[str, str, str]
    technical: tuple[str, str, str]
    example: str
    summary: str


TOPICS: tuple[Topic, ...] = (
    Topic("Why is the sky blue?",
          ("Sunlight is made of many colours.", "Air scatters blue light more than red light.",
           "So blue light reaches your eyes from every direction."),
          ("Sunlight spans the visible spectrum.",
           "Rayleigh scattering by nitrogen and oxygen molecules grows with the inverse fourth power of wavelength.",
           "Short wavelengths are therefore scattered across the whole sky."),
          "For example, sunsets look red because their light crosses more air and loses its blue.",
          "In summary, air scatters blue light the most."),
    Topic("How does a vaccine work?",
          ("A vaccine shows your body a harmless piece of a germ.", "Your body learns to recognise it.",
           "If the real germ comes later, your body fights it off fast."),
          ("A vaccine presents an antigen without causing disease.",
           "B cells produce antibodies and memory lymphocytes persist.",
           "On reinfection the adaptive immune response is faster and stronger."),
          "For example, the measles vaccine protects most people for life.",
          "In summary, a vaccine trains your immune system in advance."),
    Topic("Why do we have seasons?",
          ("The Earth is tilted.", "For part of the year your half of the Earth leans toward the Sun.",
           "Then days are longer and sunlight is stronger, so it is summer."),
          ("Earth's rotational axis is inclined about 23.4 degrees to its orbital plane.",
           "This axial tilt changes the solar elevation angle over the year.",
           "Higher insolation in one hemisphere produces its summer."),
          "For example, June is summer in Canada but winter in Australia.",
          "In summary, seasons come from the tilt of the Earth."),
    Topic("How does a refrigerator keep food cold?",
          ("A liquid in the pipes turns into gas and soaks up heat from inside.",
           "A pump squeezes the gas so it gets hot.", "That heat leaves through the coils at the back."),
          ("The refrigerant evaporates in the evaporator and absorbs latent heat.",
           "The compressor raises its pressure and temperature.",
           "The condenser rejects that heat to the room, closing the vapour-compression cycle."),
          "For example, the coils at the back of a fridge feel warm.",
          "In summary, a fridge moves heat from inside to outside."),
    Topic("Why does bread rise?",
          ("Yeast in the dough eats sugar.", "It gives off gas as it eats.",
           "The gas gets trapped in the dough and puffs it up."),
          ("Saccharomyces cerevisiae ferments glucose.", "Fermentation releases carbon dioxide and ethanol.",
           "The gluten network traps the carbon dioxide, so the dough expands."),
          "For example, dough left in a warm kitchen doubles in about an hour.",
          "In summary, gas from yeast makes bread rise."),
    Topic("How do plants make their food?",
          ("Leaves take in sunlight.", "They use it to turn water and air into sugar.",
           "They let out oxygen as they do it."),
          ("Chlorophyll in the chloroplasts absorbs photons.",
           "Photosynthesis converts carbon dioxide and water into glucose.",
           "Oxygen is released as a by-product of the light reactions."),
          "For example, a sunflower turns its leaves toward the light.",
          "In summary, plants turn light into sugar."),
)


def prompt_text(traits: Sequence[int]) -> str:
    """The candidate prompt with these trait bits."""
    asks = [TRAITS[f][0] for f in range(N_TRAITS) if traits[f]]
    return " ".join(["Answer the question."] + asks)


def response_text(topic: Topic, traits: Sequence[int]) -> str:
    """The response the assistant gives to the question under a prompt with these traits."""
    example, steps, technical, warm, summary = (bool(t) for t in traits)
    core = topic.technical if technical else topic.plain
    body = " ".join(f"Step {n}: {s}" for n, s in enumerate(core, 1)) if steps else " ".join(core)
    parts = (["Great question! I'm happy to help."] if warm else []) + [body]
    if example:
        parts.append(topic.example)
    if summary:
        parts.append(topic.summary)
    if warm:
        parts.append("Hope this helps!")
    return " ".join(parts)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass(frozen=True)
class Scenario:
    """The hidden task of an episode, drawn from ``reset(seed=...)`` alone."""

    topic: int
    traits: tuple[tuple[int, ...], ...]  # per prompt: its five trait bits (known to the agent)
    weights: tuple[float, ...]  # the user's taste per trait (hidden)
    utilities: tuple[float, ...]  # per prompt, scaled to [0, 1]: worst 0, best 1
    coin_seed: int  # the user's preference noise

    @property
    def best(self) -> int:
        return int(np.argmax(self.utilities))

    @property
    def worst(self) -> int:
        return int(np.argmin(self.utilities))

    @property
    def scale(self) -> float:
        """The utility of one unit of ``w . x``: utilities differ by ``scale * w . (x_i - x_j)``."""
        scores = np.asarray(self.traits, dtype=float) @ np.asarray(self.weights)
        return 1.0 / max(float(scores.max() - scores.min()), 1e-12)


def make_scenario(rng: np.random.Generator, n_prompts: int) -> Scenario:
    topic = int(rng.integers(len(TOPICS)))
    combos = rng.choice(MAX_PROMPTS, size=n_prompts, replace=False)
    traits = np.array([[(int(c) >> f) & 1 for f in range(N_TRAITS)] for c in combos])
    weights = rng.standard_normal(N_TRAITS)
    scores = traits @ weights
    utilities = (scores - scores.min()) / max(float(scores.max() - scores.min()), 1e-12)
    return Scenario(
        topic=topic,
        traits=tuple(tuple(int(b) for b in row) for row in traits),
        weights=tuple(float(w) for w in weights),
        utilities=tuple(float(u) for u in utilities),
        coin_seed=int(rng.integers(0, 2**31 - 1)),
    )


def parse_pair(text: str, n_prompts: int) -> tuple[int, int] | None:
    """The first two integers of ``text`` as a pair of prompt ids in ``[0, n_prompts)``, else None."""
    found = _INT.findall(text)
    if len(found) < 2:
        return None
    i, j = int(found[0]), int(found[1])
    return (i, j) if i < n_prompts and j < n_prompts else None


# ---------------------------------------------------------------------- the user


@dataclass(frozen=True)
class DuelCtx:
    env: "DuelingPromptsEnv"
    first: int
    second: int
    coin: float  # uniform in [0, 1): the first prompt wins when coin < P(first preferred)


@dataclass(frozen=True)
class Judgement:
    """The user's probability of preferring the first response, and who won."""

    p_first: float
    winner: int  # 0: the first prompt of the pair, 1: the second


def _judge(p_first: float, coin: float) -> Judgement:
    return Judgement(p_first, 0 if coin < p_first else 1)


class DuelUser(Preference):
    """Reads the responses of two prompts and says which it prefers (see the module docs)."""

    key, name, source = "user", "DuelingPrompts user", Source.USER

    def rule(self, ctx: DuelCtx) -> Judgement:
        u = ctx.env.task.utilities
        return _judge(sigmoid(ctx.env.beta * (u[ctx.first] - u[ctx.second])), ctx.coin)

    def prompt(self, ctx: DuelCtx) -> "Questions | None":
        env, i, j = ctx.env, ctx.first, ctx.second
        if i == j:
            return None  # one response twice: nothing to read
        if env.llm_prompting == "holistic":
            return Questions((self.holistic(ctx),),
                             combine=lambda replies: _judge(1.0 - float(replies[0].expected), ctx.coin))
        s = env.task
        differ = [f for f in range(N_TRAITS) if s.traits[i][f] != s.traits[j][f]]
        prompts = [env.trait_question(k, f) for f in differ for k in (i, j)]
        weights = [s.weights[f] * s.scale for f in differ]

        def combine(replies: Sequence[Reply]) -> Judgement:
            seen = sum(w * (float(replies[2 * n].expected) - float(replies[2 * n + 1].expected))
                       for n, w in enumerate(weights))
            return _judge(sigmoid(env.beta * seen), ctx.coin)

        return Questions(tuple(prompts), combine)

    def messages(self, ctx: DuelCtx) -> list[Message]:
        env = ctx.env
        return env.holistic_messages(env.responses[ctx.first], env.responses[ctx.second])

    def holistic(self, ctx: DuelCtx) -> Prompt:
        env = ctx.env
        choices = {f"Preference: {label}": n for n, label in enumerate(self.labels)}
        return Prompt(tuple(self.messages(ctx)), choices=choices,
                      parse=lambda t: parse_preference(t, self.labels), max_tokens=self.max_tokens,
                      stop=("\n",), calibration=tuple(env.holistic_messages("N/A", "N/A")))

    def scored(self, value, probs, greedy):
        return value, None

    def agreement(self, value: Judgement) -> float:
        """`fbenv fidelity` rank-correlates the probability of preferring the first response."""
        return float(value.p_first)

    def record(self, value: Judgement, ctx: DuelCtx) -> Feedback:
        won = ctx.first if value.winner == 0 else ctx.second
        return Feedback(self.source, preference=value.winner, distribution=(value.p_first, 1.0 - value.p_first),
                        text=f"Preference: {self.labels[value.winner]} (prompt {won})")


USER = DuelUser()


# ---------------------------------------------------------------------- the env


class DuelingPromptsEnv(FeedbackEnv):
    """Choose a pair of prompts; a simulated user prefers one. See module docs."""

    roles = (USER,)
    names = {"user": "User", "assistant": "Assistant"}
    keep_rounds = MEMORY  # the prompt list and the last duels: a step costs the same all episode
    def __init__(
        self,
        *,
        n_prompts: int = 8,
        horizon: int = 200,
        beta: float = 10.0,
        llm_prompting: str = "focused",
        **options: Any,
    ):
        self.n_prompts = k = check_int("n_prompts", n_prompts, 2, MAX_PROMPTS)
        self.horizon = check_int("horizon", horizon, 1)
        self.beta = check_number("beta", beta, 0.0, low_open=True)
        self.llm_prompting = check_choice("llm_prompting", llm_prompting, PROMPTINGS)
        self.n_actions = k * k
        self.n_features = (N_TRAITS + 2) * k + 1
        super().__init__(**options)
        self._replies = [f"{a // k} vs {a % k}" for a in range(k * k)]
        self._pair_of = {text: (a // k, a % k) for a, text in enumerate(self._replies)}

    @property
    def scenario(self) -> Scenario | None:
        return self.task

    # ----------------------------------------------------------------- episode hooks

    def new_task(self, rng: np.random.Generator) -> Scenario:
        return make_scenario(rng, self.n_prompts)

    def opening(self) -> None:
        s, k = self.task, self.n_prompts
        topic = TOPICS[s.topic]
        self.responses = [response_text(topic, t) for t in s.traits]
        self.coins = np.random.default_rng(s.coin_seed)  # one draw per step, valid or not
        self.wins = [0] * k
        self.duels = [0] * k
        self.cumulative_regret = self.cumulative_strong_regret = 0.0
        self.invalid_actions = 0
        self._obs = np.zeros(self.n_features, dtype=np.float32)
        self._obs[: N_TRAITS * k] = np.asarray(s.traits, dtype=np.float32).reshape(-1)
        self._obs[N_TRAITS * k : (N_TRAITS + 1) * k] = 0.5
        lines = [f'You are choosing a prompt for the question "{topic.question}". A user reads the responses '
                 "of two candidate prompts at a time and says which response is better. Find the prompt whose "
                 'responses the user likes best. Name two prompt ids each turn, like "2 vs 5".',
                 "Candidate prompts:"]
        lines += [f"{n}: {prompt_text(t)}" for n, t in enumerate(s.traits)]
        self.transcript.say("system", "\n".join(lines))

    def respond(self, text: str) -> StepResult:
        s, t = self.task, self.turn
        coin = self.coins.random()
        pair = self._pair_of.get(text) or parse_pair(text, self.n_prompts)
        info: dict[str, Any]
        if pair is None:
            self.invalid_actions += 1
            self.cumulative_regret += 1.0
            self.cumulative_strong_regret += 1.0
            self.transcript.say("user", f'Please name two prompt ids from 0 to {self.n_prompts - 1}, like "0 vs 1".')
            reward, truth, info = 0.0, Truth(0.0, 1.0), {"invalid_action": True}
        else:
            i, j = pair
            judgement = self.sim.ask(USER, DuelCtx(self, i, j, coin)).value
            winner = judgement.winner
            ui, uj = s.utilities[i], s.utilities[j]
            self.cumulative_regret += 1.0 - max(ui, uj)
            self.cumulative_strong_regret += 1.0 - 0.5 * (ui + uj)
            if i != j:
                self._count(i, j, i if winner == 0 else j)
            self.transcript.say("user", f"Prompt {i} vs prompt {j}: I prefer the response of prompt "
                                        f"{i if winner == 0 else j}.")
            reward, truth = float(winner == 0), Truth(max(ui, uj), 1.0)
            info = {"invalid_action": False, "pair": pair, "preference": winner}
        self._obs[-1] = t / self.horizon
        info["cumulative_regret"] = self.cumulative_regret
        info["cumulative_strong_regret"] = self.cumulative_strong_regret
        info["invalid_actions"] = self.invalid_actions
        return StepResult(reward, truncated=t >= self.horizon, truth=truth, info=info)

    def _count(self, i: int, j: int, won: int) -> None:
        k, obs = self.n_prompts, self._obs
        self.duels[i] += 1
        self.duels[j] += 1
        self.wins[won] += 1
        base = N_TRAITS * k
        for a in (i, j):
            obs[base + a] = self.wins[a] / self.duels[a]
            obs[base + k + a] = self.duels[a] / self.horizon

    def candidate_replies(self) -> list[str]:
        return self._replies

    def features(self) -> np.ndarray:
        return self._obs.copy()

    def text_observation(self) -> str:
        played = ", ".join(f"{k}: {w}/{n}" for k, (w, n) in enumerate(zip(self.wins, self.duels)))
        recent = [f"{self.names.get(t.speaker, t.speaker)}: {t.text}" for t in self.transcript.turns[1:]]
        head = self.transcript.turns[0].text
        return "\n".join([head, f"Turn {self.turn} of {self.horizon}. Wins/duels so far: {played}."] + recent)

    # ----------------------------------------------------------------- the LLM user's questions

    def trait_question(self, prompt_id: int, trait: int) -> Prompt:
        """Which of two statements about one trait the response of ``prompt_id`` bears out.

        The statements echo what the trait looks like in a reply ("Step 1", the topic's own
        example and summary line): a 135M model tells them apart by what it can copy from the
        text, and cannot from a description of the trait (per-trait rank correlation with the
        truth, SmolLM2: example 0.55 -> 0.91, steps 0.07 -> 0.87, summary -0.10 -> 0.79)."""
        _, _, aspect, holds, fails = TRAITS[trait]
        topic = TOPICS[self.task.topic]
        if trait == EXAMPLE:
            holds = f"The reply says: {topic.example.rstrip('.')}."
        elif trait == SUMMARY:
            holds = f"The reply ends: {topic.summary.rstrip('.')}."
        return belief(f"Reply: {self.responses[prompt_id]}", f"What did you notice about the reply's {aspect}?",
                      holds=holds, fails=fails)

    def holistic_messages(self, first: str, second: str) -> list[Message]:
        s = self.task
        order = sorted(range(N_TRAITS), key=lambda f: -abs(s.weights[f]))
        likes = [TRAITS[f][1] for f in order if s.weights[f] > 0]
        dislikes = [TRAITS[f][1] for f in order if s.weights[f] < 0]
        taste = (f" You like replies that {', '.join(likes)}." if likes else "") + (
            f" You dislike replies that {', '.join(dislikes)}." if dislikes else "")
        return [
            Message("system", f'You asked an assistant: "{TOPICS[s.topic].question}".{taste}'),
            Message("user", f"Reply A: {first}\n\nReply B: {second}\n\nWhich reply do you prefer?"),
        ]


# ---------------------------------------------------------------------- scripted pairs
# (a function of the hidden scenario and the turn; the tests, the bench and `fbenv fidelity`
# play them)


def pair_action(first: int, second: int, n_prompts: int) -> int:
    """The discrete action of the pair (first, second)."""
    return first * n_prompts + second


def best_first(s: Scenario, turn: int) -> tuple[int, int]:
    """The best prompt against each other prompt in turn (knows the hidden utility)."""
    others = [k for k in range(len(s.utilities)) if k != s.best]
    return s.best, others[turn % len(others)]


def worst_first(s: Scenario, turn: int) -> tuple[int, int]:
    """The worst prompt against each other prompt in turn."""
    others = [k for k in range(len(s.utilities)) if k != s.worst]
    return s.worst, others[turn % len(others)]


SCRIPTED: dict[str, Callable[[Scenario, int], tuple[int, int]]] = {"best_first": best_first, "worst_first": worst_first}


def play(pairs: Callable[[Scenario, int], tuple[int, int]]):
    """A scripted pair rule as a discrete policy factory: ``(env) -> (obs, info) -> action``."""
    def factory(env):
        base = env.unwrapped
        return lambda obs, info: pair_action(*pairs(base.hidden_task(), info["turn"]), base.n_prompts)
    return factory


def uniform_random(env):
    """Uniform random pairs from a generator seeded by the hidden scenario (repeatable)."""
    base, state = env.unwrapped, {}

    def act(obs, info):
        task = base.hidden_task()
        if state.get("task") is not task:
            state["task"], state["rng"] = task, np.random.default_rng(zlib.crc32(repr(task).encode()))
        return int(state["rng"].integers(base.n_prompts ** 2))

    return act


def preference_gap(variant: str, results: Mapping[str, Sequence[Any]]) -> float:
    """The best prompt's win rate as first of its pairs minus the worst prompt's (> 0)."""
    def rate(rs):
        return float(np.mean([r.reward / max(r.turns, 1) for r in rs]))
    return rate(results["best_first"]) - rate(results["worst_first"])


def fidelity_probe() -> Probe:
    return Probe(
        policies={"best_first": play(best_first), "worst_first": play(worst_first), "random": uniform_random},
        variants={p: {"llm_prompting": p, "horizon": 20} for p in PROMPTINGS},
        direction=preference_gap,
        direction_doc="share of duels the best prompt wins minus the share the worst prompt wins (APOHF: > 0)",
        expected_sign={p: 1 for p in PROMPTINGS},
    )
