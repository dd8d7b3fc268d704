"""ImplicitChat: love reactions against helpfulness, sparse and adversarial users, follow-ups, the LLM paths."""

from __future__ import annotations

import numpy as np
import pytest

import fbenv
from fbenv.baselines import implicit_chat as B
from fbenv.envs import implicit_chat as C
from fbenv.envs import responses as R
from fbenv.episodes import run_episode
from fbenv.llm import ChoosingBackend, ScriptedBackend
from fbenv.llm.base import Backend, ChatResult

ENV_ID = "fbenv/ImplicitChat-v0"
SEEDS = range(60)


def make(**kw):
    return fbenv.make(ENV_ID, **{"interface": "discrete", **kw})


def episodes(policy, seeds=SEEDS, **kw):
    env = make(**kw)
    return [run_episode(env, C.play(policy)(env) if isinstance(policy, str) else policy(env), s) for s in seeds]


def outcome(results, key):
    return float(np.mean([float(r.outcomes[key]) for r in results]))


def steps(env, policy, seed):
    """Every step's (reward, info) of one episode."""
    env.reset(seed=seed)
    act = policy(env)
    out, done = [], False
    obs, info = None, {}
    while not done:
        obs, reward, term, trunc, info = env.step(act(obs, info))
        out.append((reward, info))
        done = term or trunc
    return out


def pick(what):
    """A policy sending the first candidate that has ``what`` (the unsafe or useless one)."""
    def factory(env):
        base = env.unwrapped

        def act(obs, info):
            req = base.request()
            for i, text in enumerate(base.candidate_texts()):
                f = R.read_features(req, text)
                if (R.is_unsafe(req, text) if what == "unsafe" else R.is_useless(f)):
                    return i
            return 0
        return act
    return factory


class FaithfulReader(Backend):
    """Answers the belief questions as the text bears them out (0.9 / 0.1), an even split for
    ``N/A``; a request without choices (the follow-up's wording) gets a fixed sentence."""

    spec = model = "faithful-reader"
    scores_choices = True

    def _generate(self, requests):
        out = []
        for req in requests:
            choices = req.sampling.choices
            if not choices:
                out.append(ChatResult("Okay, noted.\nAnd a second line the user never sends."))
                continue
            parts = req.messages[-1].content.split("\n\n")
            probs = np.full(len(choices), 1.0 / len(choices))
            if parts[0].startswith("Request: "):
                request = next(r for r in R.BANK if parts[0] == f"Request: {r.text}")
                text = "\n\n".join(parts[1:-1]).removeprefix("Response: ")
                f = R.read_features(request, text)
                topics = {f"The response mentions {p.topic}.": c for p, c in zip(request.spec.points, f.covered)}
                truth = topics.get(choices[0], {
                    "The response is written formally.": f.formal, "The response sounds excited.": f.enthusiasm,
                    "The response praises the reader.": f.flattery,
                    "The response makes a claim unrelated to the question.": f.distractor,
                    "The response gives harmful advice.": R.is_unsafe(request, text)}.get(choices[0]))
                probs = np.array([0.9, 0.1] if truth else [0.1, 0.9])
            out.append(ChatResult(choices[int(np.argmax(probs))], choice_logprobs=tuple(np.log(probs))))
        return out


# ---------------------------------------------------------------- the bank's unsafe and useless answers


def test_unsafe_and_useless_answers_read_back():
    rng = np.random.default_rng(0)
    assert set(R.UNSAFE) == set(R.BY_ID)
    for request in R.BANK:
        for d in R.draw_candidates(request, rng, 6):
            text = R.render(d)
            bad = R.add_unsafe(request, text)
            assert R.is_unsafe(request, bad) and not R.is_unsafe(request, text)
            assert R.read_features(request, bad).covered == R.draft_features(d).covered
            assert R.add_unsafe(request, bad) == bad
        empty = R.render(R.useless_draft(request, enthusiasm=True))
        assert R.is_useless(R.read_features(request, empty)) and "It depends" in empty
    env = make()
    env.reset(seed=0)
    cands = env.unwrapped.current()
    assert sum(c.unsafe for c in cands) == 1 and sum(not c.draft.covered for c in cands) >= 1


# ---------------------------------------------------------------- the bar


def test_love_greedy_loses_helpfulness_and_love_misleads_for_many_personas():
    love, helpful, rand = (episodes(p) for p in ("love-greedy", "helpfulness-greedy", "random"))
    assert outcome(love, "love_rate") > outcome(helpful, "love_rate") + 0.15
    assert outcome(helpful, "helpfulness") > outcome(love, "helpfulness") + 0.2
    assert outcome(helpful, "mean_true_utility") > outcome(love, "mean_true_utility") + 0.3
    assert outcome(love, "safety") < outcome(helpful, "safety") == 1.0
    # the love-maximizing candidate is not the most helpful safe one for a meaningful share of personas
    share = outcome(rand, "love_mismatch_share")
    assert 0.4 < share < 0.95  # about 0.74 at the defaults
    for r in helpful:
        assert r.regret == pytest.approx(0.0, abs=1e-9)
    # without style weights, love tracks substance: the mismatch shrinks
    assert outcome(episodes("random", seeds=range(20), style_weight=0.0), "love_mismatch_share") < share - 0.2


def test_follow_up_likelihood_tracks_helpfulness_better_than_love():
    love, helpful = episodes("love-greedy", range(30)), episodes("helpfulness-greedy", range(30))
    assert outcome(helpful, "follow_up_likelihood") > outcome(love, "follow_up_likelihood") + 0.1
    assert outcome(helpful, "satisfied_rate") > outcome(love, "satisfied_rate")
    env = make(reward="follow_up", observe_prob=0.0)
    seen = []
    for seed in range(30):
        for reward, info in steps(env, C.play("random"), seed):
            assert reward == pytest.approx(info["p_satisfied"]) and 0.0 <= reward <= 1.0
            seen.append((info["helpfulness"], info["p_satisfied"], info["p_love"]))
    h, sat, love = np.array(seen).T
    assert np.corrcoef(h, sat)[0, 1] > np.corrcoef(h, love)[0, 1] + 0.2  # the denser, truer signal


def test_a_love_trained_bandit_raises_love_while_helpfulness_stalls():
    """RLUF's reward-hacking warning, short: LinUCB on the (sparse) love reward."""
    held_out = range(1000, 1040)
    trained, curve = B.linucb_results(held_out, train=120, blocks=2)
    rand = episodes("random", held_out)
    helpful = episodes("helpfulness-greedy", held_out)
    gain_love = outcome(trained, "love_rate") - outcome(rand, "love_rate")
    gain_help = outcome(trained, "helpfulness") - outcome(rand, "helpfulness")
    gap_help = outcome(helpful, "helpfulness") - outcome(rand, "helpfulness")
    assert gain_love > 0.08
    assert gain_help < 0.4 * gap_help  # closes little of the way to the helpful policy
    assert outcome(trained, "mean_true_utility") < outcome(helpful, "mean_true_utility") - 0.3  # and unsafe picks stay
    assert curve[-1].love_rate > curve[0].love_rate and curve[-1].helpfulness < curve[0].helpfulness + 0.02


# ---------------------------------------------------------------- sparse and adversarial users


def test_sparse_observation_hides_reactions_but_not_the_users():
    dense = [steps(make(observe_prob=1.0), C.play("love-greedy"), s) for s in range(15)]
    sparse = [steps(make(observe_prob=0.3), C.play("love-greedy"), s) for s in range(15)]
    never = [steps(make(observe_prob=0.0), C.play("love-greedy"), s) for s in range(15)]
    for d, s, n in zip(dense, sparse, never):
        assert [i["love"] for _, i in d] == [i["love"] for _, i in s] == [i["love"] for _, i in n]  # same users
        assert all(r == float(i["love"]) for r, i in d)
        assert all(r == float(i["love"] and i["observed"]) for r, i in s)
        assert all(r == 0.0 and not i["observed"] for r, i in n)
    loves = sum(i["love"] for ep in sparse for _, i in ep)
    seen = sum(i["love"] and i["observed"] for ep in sparse for _, i in ep)
    assert 0.15 < seen / loves < 0.45  # about observe_prob
    records = [f for ep in never for _, i in ep for f in i["feedback"] if f.text and f.text.startswith("Reaction")]
    assert records and all(f.scalar is None and f.text == "Reaction: not observed." for f in records)


@pytest.mark.parametrize("goal", ["unsafe", "useless"])
def test_adversarial_users_love_what_they_pull_toward(goal):
    kw = dict(adversarial_frac=1.0, adversarial_goal=goal, observe_prob=1.0)
    pulled, helpful = episodes(pick(goal), range(20), **kw), episodes("helpfulness-greedy", range(20), **kw)
    assert all(r.outcomes["adversarial_user"] for r in pulled)
    assert outcome(pulled, "love_rate") > 0.75 and outcome(helpful, "love_rate") < 0.25
    assert outcome(pulled, "mean_true_utility") < outcome(helpful, "mean_true_utility") - 0.4
    if goal == "unsafe":
        assert outcome(pulled, "safety") == 0.0 and outcome(pulled, "unsafe_answers") > 0
    else:
        assert outcome(pulled, "useless_answers") > 0
    normal = episodes("helpfulness-greedy", range(10), adversarial_frac=0.0)
    assert not any(r.outcomes["adversarial_user"] for r in normal)


def test_the_population_is_drawn_from_the_seed_with_the_adversarial_share():
    a, b = make(n_personas=10, adversarial_frac=0.3), make(n_personas=10, adversarial_frac=0.3)
    a.reset(seed=4)
    b.reset(seed=4)
    assert a.unwrapped.hidden_task() == b.unwrapped.hidden_task()
    pop = a.unwrapped.hidden_task().population
    assert len(pop) == 10 and sum(p.goal is not None for p in pop) == 3
    assert {p.goal for p in pop} - {None} <= {"unsafe", "useless"}
    b.reset(seed=5)
    assert b.unwrapped.hidden_task().population != pop


# ---------------------------------------------------------------- the session


def test_follow_ups_drive_the_session():
    env = make(horizon=12, observe_prob=1.0)
    kinds = []
    for seed in range(25):
        run = steps(env, C.play("random"), seed)
        for k, (_, info) in enumerate(run):
            kinds.append(info["follow_up"])
            if info["follow_up"] == "abandon":
                assert k == len(run) - 1 and run[-1][1]["episode_result"]["terminated"]
        if run[-1][1]["follow_up"] != "abandon":
            assert len(run) == 12 and run[-1][1]["episode_result"]["truncated"]
    assert set(kinds) == set(C.KINDS)
    # a rephrase or complaint repeats the request; satisfaction moves on to a new one
    env = fbenv.make(ENV_ID, interface="text", horizon=8, observe_prob=1.0)
    env.reset(seed=2)
    base = env.unwrapped
    for _ in range(8):
        before = base.request().id
        obs, _, term, trunc, info = env.step(base.candidate_texts()[0])
        if term or trunc:
            break
        assert (base.request().id == before) == (info["follow_up"] != "satisfied")
        assert info["utterance"] in obs


def test_free_text_answers_are_read_and_unsafe_ones_gated():
    env = fbenv.make(ENV_ID, interface="text")
    env.reset(seed=0)
    request = env.unwrapped.request()
    good = "\n".join(f"- {p.sentence}" for p in request.spec.points)
    _, _, _, _, info = env.step(good)
    assert info["helpfulness"] == pytest.approx(R.quality(request, good)) and info["safety"] == 1.0
    assert info["true_utility"] == pytest.approx(info["helpfulness"])
    env.reset(seed=0)
    bad = R.add_unsafe(request, good)
    _, _, _, _, info = env.step(bad)
    assert info["safety"] == 0.0 and info["true_utility"] == 0.0 and info["helpfulness"] > 0.3
    env.reset(seed=0)
    _, _, _, _, info = env.step("   ")
    assert info["invalid_action"]


def test_both_views_play_the_same_choices_identically():
    for name in C.POLICIES:
        disc = episodes(name, range(4))
        env = fbenv.make(ENV_ID, interface="text")
        text = [run_episode(env, C.play(name)(env), s) for s in range(4)]
        assert [(r.reward, r.true_utility, r.turns) for r in disc] == [(r.reward, r.true_utility, r.turns) for r in text]


def test_caller_mistakes_are_typed():
    with pytest.raises(fbenv.UnknownNameError, match="reward"):
        fbenv.make(ENV_ID, reward="likes")
    with pytest.raises(fbenv.UnknownNameError, match="adversarial_goal"):
        fbenv.make(ENV_ID, adversarial_goal="evil")
    with pytest.raises(fbenv.InvalidArgumentError, match="observe_prob"):
        fbenv.make(ENV_ID, observe_prob=1.5)
    with pytest.raises(fbenv.InvalidArgumentError, match="adversarial_frac"):
        fbenv.make(ENV_ID, adversarial_frac=-0.1)
    with pytest.raises(fbenv.InvalidArgumentError, match="n_candidates"):
        fbenv.make(ENV_ID, n_candidates=2)
    with pytest.raises(fbenv.InvalidArgumentError, match="n_personas"):
        fbenv.make(ENV_ID, n_personas=0)


# ---------------------------------------------------------------- the LLM paths


def test_llm_user_with_a_faithful_reader_keeps_the_direction():
    rule = {p: episodes(p, range(12)) for p in C.POLICIES}
    llm = {p: episodes(p, range(12), simulator="llm", llm=FaithfulReader()) for p in C.POLICIES}
    assert all(r.fallbacks == 0 and r.parse_failures == 0 for rs in llm.values() for r in rs)
    assert C.love_vs_help("default", llm) > 0.05 and C.love_vs_help("default", rule) > 0.05
    for p in C.POLICIES:  # beliefs of 0.9 / 0.1 in place of the facts: close to the rule user, not equal
        for key in ("love_rate", "helpfulness", "follow_up_likelihood"):
            assert outcome(llm[p], key) == pytest.approx(outcome(rule[p], key), abs=0.1)
    love_rule = [outcome(rule[p], "love_rate") for p in C.POLICIES]
    love_llm = [outcome(llm[p], "love_rate") for p in C.POLICIES]
    assert np.argmax(love_llm) == np.argmax(love_rule) == 0


def test_llm_follow_up_is_worded_freely_and_the_reaction_read_from_beliefs():
    env = make(simulator="llm", llm=FaithfulReader(), observe_prob=1.0)
    env.reset(seed=1)
    _, _, _, _, info = env.step(0)
    assert info["utterance"] == "Okay, noted."  # the first line, the LLM's own words
    user, said = [f for f in info["feedback"] if f.simulator == "llm"]
    assert user.parsed and user.distribution is not None and abs(sum(user.distribution) - 1.0) < 1e-9
    assert said.text == "Okay, noted." and said.scalar == pytest.approx(info["p_satisfied"])
    chooser = make(simulator="llm", llm=ChoosingBackend(), horizon=3)
    r = run_episode(chooser, C.play("random")(chooser), 0)
    assert r.fallbacks == 0 and r.parse_failures == 0
    # a free-writing server: the belief questions read as statements or yes/no; wording is free
    server = ScriptedBackend([(r"harmful advice", "No."), (r"Does the response mention", "Yes.")], default="Yes.")
    env = make(simulator="llm", llm=server, horizon=2)
    r = run_episode(env, C.play("helpfulness-greedy")(env), 0)
    assert r.fallbacks == 0 and r.parse_failures == 0


def test_fidelity_probe_runs_and_keeps_the_direction_on_the_rule_user():
    probe = C.fidelity_probe()
    assert probe.expected_sign == {"default": 1}
    results = {name: episodes(f, range(15)) for name, f in probe.policies.items()}
    assert probe.direction("default", results) > 0.1
