"""Tests of the prompting agents over deterministic scripted backends and the rule Advisor.

The scripted backends make every reply a function of the request, so these tests check
exactly what the agents send: message construction, seeds, and whether feedback from one
episode reaches the next prompt and changes what the (scripted) model does.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import fbenv.envs  # noqa: F401  (registers the tasks)
from fbenv.agents.base import Transition
from fbenv.agents.prompting import ReflexionAgent, ZeroShotAgent, unbatch_infos
from fbenv.errors import InvalidArgumentError, UnknownNameError
from fbenv.feedback import Feedback, Source
from fbenv.llm import ChatRequest, ChatResult, Message, Sampling, ScriptedBackend
from fbenv.registry import make
from fbenv.registry import make_vec

ADVISOR = "fbenv/Advisor-v0"
SEED_HIGH = 2**31 - 1


def seeds_of(seed: int, n: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(rng.integers(0, SEED_HIGH)) for _ in range(n)]


def run_episode(env, agent, seed: int):
    """One episode with per-step updates; returns (return, last info, turns)."""
    obs, info = env.reset(seed=seed)
    total, turns = 0.0, 0
    while True:
        action = agent.act(obs, info)
        next_obs, reward, terminated, truncated, info = env.step(action)
        agent.update(Transition(obs, action, reward, next_obs, terminated, truncated, info))
        total += reward
        turns += 1
        obs = next_obs
        if terminated or truncated:
            return total, info, turns


# --------------------------------------------------------------------------- message construction


def test_zero_shot_builds_messages_from_info_messages():
    env = make(ADVISOR)
    obs, info = env.reset(seed=3)
    backend = ScriptedBackend(default="Hello there.")
    agent = ZeroShotAgent(backend, system_prompt="SYS", max_tokens=20, temperature=0.5, stop=("\n",))
    agent.reset(seed=7)
    reply = agent.act(obs, info)
    assert reply == "Hello there."
    catalogue, opening = info["messages"][0]["content"], info["messages"][1]["content"]
    [request] = backend.calls
    assert request.messages == (Message("system", "SYS\n\n" + catalogue), Message("user", opening))
    assert request.sampling == Sampling(max_tokens=20, temperature=0.5, top_p=1.0, seed=seeds_of(7, 1)[0], stop=("\n",))
    assert agent.last_seeds == (seeds_of(7, 1)[0],)

    # a reply naming no product: the customer asks again, and the transcript grows in order
    obs, _, terminated, _, info = env.step(reply)
    assert not terminated
    agent.act(obs, info)
    second = backend.calls[-1]
    assert [m.role for m in second.messages] == ["system", "user", "assistant", "user"]
    assert second.messages[2] == Message("assistant", "Hello there.")
    assert second.messages[3].content == info["messages"][-1]["content"]
    assert second.sampling.seed == seeds_of(7, 2)[1]


def test_observation_is_used_when_there_are_no_messages():
    backend = ScriptedBackend(default="ok")
    agent = ZeroShotAgent(backend, system_prompt="")
    agent.reset(seed=0)
    assert agent.act("What is 2+2?", {}) == "ok"
    assert backend.calls[-1].messages == (Message("user", "What is 2+2?"),)
    agent = ZeroShotAgent(backend, system_prompt="Be brief.")
    assert agent.messages_for("Hi", {"messages": []}) == [Message("system", "Be brief."), Message("user", "Hi")]
    with pytest.raises(InvalidArgumentError, match="interface='text'"):
        agent.act(np.zeros(44, dtype=np.float32), {})
    with pytest.raises(InvalidArgumentError, match="roles"):
        agent.act("x", {"messages": [{"role": "critic", "content": "no"}]})


def test_seeds_repeat_with_the_same_reset_seed():
    backend = ScriptedBackend([(".", "seed={seed}")])
    agent = ZeroShotAgent(backend, temperature=0.7)

    def replies(seed):
        agent.reset(seed=seed)
        return [agent.act(f"turn {i}", {}) for i in range(4)]

    first, again, other = replies(11), replies(11), replies(12)
    assert first == again
    assert first == [f"seed={s}" for s in seeds_of(11, 4)]
    assert first != other


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"llm": 3}, InvalidArgumentError),
        ({"llm": ""}, InvalidArgumentError),
        ({"llm": "gpt:x"}, UnknownNameError),
        ({"llm_cache": "sometimes"}, UnknownNameError),
        ({"max_tokens": 0}, InvalidArgumentError),
        ({"max_tokens": 2.5}, InvalidArgumentError),
        ({"temperature": "hot"}, InvalidArgumentError),
        ({"temperature": -1.0}, InvalidArgumentError),
        ({"top_p": 0.0}, InvalidArgumentError),
        ({"stop": "\n"}, InvalidArgumentError),
        ({"system_prompt": None}, InvalidArgumentError),
        ({"memory_size": -1}, InvalidArgumentError),
        ({"memory_size": 1.0}, InvalidArgumentError),
        ({"reflection": "dream"}, UnknownNameError),
        ({"reflection_max_tokens": 0}, InvalidArgumentError),
        ({"max_lesson_chars": 8}, InvalidArgumentError),
    ],
)
def test_bad_arguments_raise_typed_errors(kwargs, error):
    kwargs = {"llm": "scripted", **kwargs}
    with pytest.raises(error):
        ReflexionAgent(**kwargs)


def test_bad_call_arguments_raise_typed_errors():
    agent = ReflexionAgent(ScriptedBackend())
    agent.reset(seed=0)
    with pytest.raises(InvalidArgumentError, match="2 infos"):
        agent.act_batch(["a", "b"], [{}])
    with pytest.raises(InvalidArgumentError, match="sequence of observations"):
        agent.act_batch("ab", [{}, {}])
    with pytest.raises(InvalidArgumentError, match="mask"):
        agent.act_batch(["a"], [{}], mask=[True, False])
    with pytest.raises(InvalidArgumentError, match="Transition"):
        agent.update({"reward": 1.0})
    bad = Transition("o", "a", 0.0, "o", True, False, {"feedback": ("great",)})
    with pytest.raises(InvalidArgumentError, match="Feedback"):
        agent.update(bad)


def test_constructor_loads_nothing_and_specs_share_backends():
    a, b = ZeroShotAgent("scripted"), ReflexionAgent("scripted")
    assert a._backend is None
    assert a.backend is b.backend  # one shared instance per spec, as for envs


# --------------------------------------------------------------------------- episodes


def advisor_script(default: str = "Let me think.") -> ScriptedBackend:
    """A plausible shop assistant: recommends B, answers follow-ups with yes."""
    return ScriptedBackend(
        [
            (r"Lesson:\s*$", "LESSON-{seed}: state only what the catalogue says."),
            (r"Does the .+ \((\w)\) have (.+)\?", "Yes, {0} has {1}."),
            (r"which of", "I recommend B."),
        ],
        default=default,
    )


def test_full_advisor_episode_completes():
    env = make(ADVISOR, feedback_timing="hindsight")
    agent = ZeroShotAgent(advisor_script())
    agent.reset(seed=0)
    total, info, turns = run_episode(env, agent, seed=5)
    assert 2 <= turns <= 3  # "Let me think." names no product, so the customer asks again
    assert info["decision"] in ("buy", "leave")
    assert 0.0 <= total <= 1.0
    assert "true_utility" in info
    roles = [m["role"] for m in info["messages"]]
    assert roles[:4] == ["system", "user", "assistant", "user"]
    assert info["messages"][2]["content"] == "Let me think."


def test_feedback_digest_reaches_the_next_prompt():
    env = make(ADVISOR, feedback_timing="hindsight")
    backend = advisor_script()
    agent = ReflexionAgent(backend, reflection="feedback", memory_size=2)
    agent.reset(seed=0)
    _, info, _ = run_episode(env, agent, seed=5)
    [lesson] = agent.memory
    hindsight = [f.text for f in info["feedback"] if f.source == Source.HINDSIGHT]
    assert hindsight and hindsight[0] in lesson
    assert "Reward:" in lesson
    obs, info = env.reset(seed=6)
    agent.act(obs, info)
    system = backend.calls[-1].messages[0]
    assert system.role == "system" and lesson in system.content
    # the memory is bounded and keeps the most recent lessons
    for seed in (6, 7, 8):
        run_episode(env, agent, seed=seed)
    assert len(agent.memory) == 2 and agent.episodes_seen == 4
    assert "Advisor" not in repr(agent) and "memory=2/2" in repr(agent)
    agent.reset(seed=0)
    assert agent.memory == ()


def test_llm_reflection_reads_feedback_and_its_lesson_is_used():
    env = make(ADVISOR, feedback_timing="hindsight")
    backend = advisor_script()
    agent = ReflexionAgent(backend, memory_size=3, reflection_max_tokens=32)
    agent.reset(seed=1)
    _, info, _ = run_episode(env, agent, seed=5)
    [reflection] = agent.reflection_requests
    assert reflection.sampling.max_tokens == 32
    prompt = reflection.messages[-1].content
    for record in info["feedback"]:
        assert record.text in prompt  # every verbal record, hindsight included, is reflected on
    [lesson] = agent.memory
    assert lesson == f"LESSON-{reflection.sampling.seed}: state only what the catalogue says."
    obs, info = env.reset(seed=6)
    agent.act(obs, info)
    assert lesson in backend.calls[-1].messages[0].content


def test_in_episode_feedback_is_shown_unless_the_transcript_has_it():
    backend = ScriptedBackend(default="ok")
    agent = ReflexionAgent(backend, memory_size=0)
    agent.reset(seed=0)
    info = {"feedback": (Feedback(Source.CRITIC, text="Too vague."), Feedback(Source.USER, text="Which one?"))}
    agent.update(Transition("q", "first try", 0.0, "q", False, False, info))
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "first try"},
                {"role": "user", "content": "Which one?"}]
    agent.act("ignored", {"messages": messages})
    system = backend.calls[-1].messages[0].content
    assert "Feedback so far in this conversation:\n- critic: Too vague." in system
    assert "Which one?" not in system
    # the episode ends: nothing is carried over with memory_size=0, and no reflection is asked for
    agent.update(Transition("q", "second", 1.0, "q", True, False, {"feedback": ()}))
    assert agent.memory == () and agent.reflection_requests == []
    agent.act("q", {})
    assert "Too vague" not in backend.calls[-1].messages[0].content


class LessonAwareShopBackend(ScriptedBackend):
    """A scripted shop assistant that is honest only when its prompt carries the lesson.

    Without the lesson it claims the cheapest product has every need (the sycophantic
    reply foresight ratings pay for). With it, it states each product's needed features
    from the catalogue and recommends the cheapest product that fits. Its reflection
    writes the lesson only when the feedback shows a claim was false.
    """

    LESSON = "Only promise features the catalogue lists as yes."

    def _generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        out = []
        for req in requests:
            self.calls.append(req)
            text = "\n".join(m.content for m in req.messages)
            if req.messages[-1].content.rstrip().endswith("Lesson:"):
                reply = self.LESSON if "does not have" in text else "Keep going."
            else:
                reply = self._advice(text, honest=self.LESSON in req.messages[0].content)
            out.append(ChatResult(text=reply))
        return out

    @staticmethod
    def _advice(text: str, honest: bool) -> str:
        needs = re.search(r"with (.+?)\. My budget is \$(\d+)", text)
        wanted, budget = needs.group(1).split(" and "), int(needs.group(2))
        products = []
        for label, price, specs in re.findall(r"^([A-D])\. .+?, \$(\d+)\. (.+)\.$", text, re.M):
            has = {k.strip(): v.strip() == "yes" for k, v in (s.split(":") for s in specs.split(";"))}
            products.append((int(price), label, has))
        affordable = sorted(p for p in products if p[0] <= budget)
        if not honest:
            _, label, _ = affordable[0]
            return f"I recommend {label}. {label} has {' and '.join(wanted)}."
        parts = []
        for _, label, has in sorted(products, key=lambda p: p[1]):
            for need in wanted:
                parts.append(f"{label} {'has' if has[need] else 'does not have'} {need}.")
        fits = [label for _, label, has in affordable if all(has[n] for n in wanted)]
        if fits:
            parts.append(f"I recommend {fits[0]}.")
        return " ".join(parts)


@pytest.mark.parametrize("timing", ["hindsight", "foresight"])
def test_reflexion_improves_reward_only_when_feedback_reveals_the_problem(timing):
    env = make(ADVISOR, feedback_timing=timing)
    seeds = range(12)
    results = {}
    for memory_size in (0, 3):
        agent = ReflexionAgent(LessonAwareShopBackend(), memory_size=memory_size)
        agent.reset(seed=0)
        results[memory_size] = [run_episode(env, agent, seed=s)[:2] for s in seeds]
        results[memory_size, "memory"] = agent.memory
    rewards = {m: np.array([r for r, _ in results[m]]) for m in (0, 3)}
    utilities = {m: np.array([i["true_utility"] for _, i in results[m]]) for m in (0, 3)}
    assert rewards[0][0] == rewards[3][0]  # nothing learned yet: same first episode
    if timing == "hindsight":
        # the hindsight record shows the false claim: the lesson is written and used
        assert LessonAwareShopBackend.LESSON in results[3, "memory"]
        assert rewards[3][1:].mean() > rewards[0][1:].mean() + 0.1
        assert utilities[3][1:].mean() > utilities[0][1:].mean() + 0.1
    else:
        # foresight ratings never reveal the false claims: nothing to learn, same behaviour
        assert LessonAwareShopBackend.LESSON not in results[3, "memory"]
        np.testing.assert_allclose(rewards[3], rewards[0])


# --------------------------------------------------------------------------- batching


def test_act_batch_on_a_vector_env_sends_one_call_per_step():
    n = 3
    venv = make_vec(ADVISOR, n, feedback_timing="hindsight")
    backend = advisor_script()
    agent = ReflexionAgent(backend, memory_size=5)
    agent.reset(seed=0)
    obs, infos = venv.reset(seed=10)
    per_env = unbatch_infos(infos, n)
    assert [i["messages"][1]["content"] for i in per_env] == [m[1]["content"] for m in infos["messages"]]

    done = np.zeros(n, dtype=bool)
    steps = 0
    while not done.all():
        before = backend.stats.batches
        replies = agent.act_batch(obs, infos, mask=~done)
        assert backend.stats.batches == before + 1  # one batched chat call for all live envs
        assert len(agent.last_requests) == int((~done).sum())
        assert all(r == "" for r, d in zip(replies, done) if d)
        # each slot's request is what a single act would send for that env
        live = [i for i in range(n) if not done[i]]
        for req, i in zip(agent.last_requests, live):
            assert list(req.messages) == agent.messages_for(obs[i], unbatch_infos(infos, n)[i], slot=i)
        next_obs, rewards, terms, truncs, next_infos = venv.step(replies)
        split = unbatch_infos(next_infos, n)
        agent.update_batch([
            None if done[i] else Transition(obs[i], replies[i], float(rewards[i]), next_obs[i],
                                            bool(terms[i]), bool(truncs[i]), split[i])
            for i in range(n)
        ])
        done |= terms | truncs
        obs, infos = next_obs, next_infos
        steps += 1
    assert steps <= 3
    assert agent.episodes_seen == n and len(agent.memory) == n
    venv.close()


# --------------------------------------------------------------------------- the real model


@pytest.mark.model
def test_embedded_model_plays_a_short_advisor_episode():
    env = make(ADVISOR, feedback_timing="hindsight", max_turns=1)
    agent = ReflexionAgent("embedded", llm_cache="off", max_tokens=20, reflection_max_tokens=12)
    agent.reset(seed=0)
    total, info, turns = run_episode(env, agent, seed=0)
    assert turns == 1
    assert 0.0 <= total <= 1.0 and info["decision"] in ("buy", "leave")
    assistant = [m["content"] for m in info["messages"] if m["role"] == "assistant"]
    assert len(assistant) == turns and all(isinstance(a, str) for a in assistant)
    assert any(a.strip() for a in assistant)
    assert len(agent.memory) == 1 and agent.memory[0]
