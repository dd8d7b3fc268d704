"""Negotiation: a buyer and a seller with private limits, a coach between games."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fbenv
from fbenv.envs import negotiation as N
from fbenv.episodes import run_parallel_episode
from fbenv.llm import ChoosingBackend, ScriptedBackend
from fbenv.llm.base import Backend, ChatResult
from fbenv.testing import check_fbenv_parallel_env, check_spec_card

ENV_ID = "fbenv/Negotiation-v0"


def make(**kw):
    return N.NegotiationEnv(**{"interface": "text", **kw})


def outcomes(seeds=range(60), buyer="rule", seller="rule", adviser="rule", **kw):
    env = make(**kw)
    policy = N.play(buyer, seller, adviser)(env)
    return [run_parallel_episode(env, policy, s).outcomes for s in seeds]


def mean(results, key):
    return float(np.mean([float(r[key]) for r in results]))


def by_game(results, key):
    return np.array([r[key] for r in results], dtype=float)


class Faithful(Backend):
    """Plays the rule from what the prompt says: a player accepts an offer at least as good
    as its own next one (any final offer it may accept), walks away from a final one it may
    not, and otherwise sends its next offer (final at its limit); a coach asks to concede
    faster after a break and otherwise alternates anchor / slower."""

    spec = model = "faithful"
    scores_choices = True

    def _generate(self, requests):
        out = []
        for req in requests:
            choices, msgs = list(req.sampling.choices), req.messages
            text = msgs[-1].content
            if any("Anchor" in c for c in choices):
                pick = 2 if "no deal" in text or "deal broke" in text else (1 if "before it: Anchor" in text else 0)
            else:
                buyer = "at most" in msgs[0].content
                limit = int(re.search(r"\$(\d+)", msgs[0].content.split(". ", 1)[1]).group(1))
                plain = next(c for c in choices if c.startswith("I offer"))
                nxt = int(re.search(r"\d+", plain).group())
                lines = text.split("\n\n")[0].splitlines()
                last = lines[-1] if lines and not lines[-1].startswith("(") else ""
                m = re.search(r"\$(\d+)", last)
                plan = int(re.search(r"no further than \$(\d+)", msgs[0].content).group(1))
                mine = ("Buyer:" if buyer else "Seller:")
                standing = int(m.group(1)) if m and not last.startswith(mine) else None
                final = "final" in last
                take = plan if final else nxt
                good = standing is not None and (standing <= take if buyer else standing >= take)
                if N.ACCEPT_TEXT in choices and good:
                    pick = choices.index(N.ACCEPT_TEXT)
                elif final:
                    pick = choices.index(N.WALK_TEXT)
                else:
                    pick = choices.index(N.offer_text(nxt, nxt == limit))
            probs = np.full(len(choices), 0.01 / max(len(choices) - 1, 1))
            probs[pick] = 0.99
            out.append(ChatResult(choices[pick], choice_logprobs=tuple(np.log(probs))))
        return out


# ---------------------------------------------------------------- the known answers


@pytest.mark.parametrize("kw", [{}, {"learnable": ("buyer_0", "seller_0")}, {"simulator": "llm", "llm": Faithful()},
                                {"games": 2, "coach": "buyer_0", "learnable": "coach_0", "adviser": "silent"},
                                {"interface": "discrete", "games": 2, "coach": "seller_0", "learnable": "coach_0",
                                 "adviser": "silent"}])
def test_overlapping_limits_reach_a_deal_and_non_overlapping_ones_never_do(kw):
    deal = outcomes(zopa="overlap", **kw)
    none = outcomes(zopa="none", **kw)
    assert mean(deal, "deal_rate") == 1.0 and mean(deal, "broken") == 0.0
    assert mean(none, "deal_rate") == 0.0 and mean(none, "buyer_surplus") == 0.0
    # every deal lands inside the zone of agreement: both sides gain, and the split is a share of it
    assert all(0.0 <= r["buyer_share"] <= 1.0 for r in deal)
    assert all(b >= 0 and s >= 0 for r in deal for b, s in zip(r["buyer_surplus_by_game"], r["seller_surplus_by_game"]))


def test_the_rule_coach_bargains_harder_and_breaks_more_deals():
    kw = {"games": 5, "coach": "buyer_0", "zopa": "overlap", "learnable": "coach_0"}
    coached = outcomes(range(150), adviser="rule", **kw)
    silent = outcomes(range(150), adviser="silent", **kw)
    plain = outcomes(range(150), games=5, zopa="overlap")  # no coach seat at all: the same games as the silent coach
    assert [r["deal_by_game"] for r in plain] == [r["deal_by_game"] for r in silent]
    deals, surplus = by_game(coached, "deal_by_game"), by_game(coached, "buyer_surplus_by_game")
    deals0, surplus0 = by_game(silent, "deal_by_game"), by_game(silent, "buyer_surplus_by_game")
    assert deals0.mean() == 1.0 and deals[:, 0].mean() == 1.0  # the first game is not coached yet
    per_deal = (surplus * deals)[:, 1:].sum() / deals[:, 1:].sum()
    per_deal0 = (surplus0 * deals0)[:, 1:].sum() / deals0[:, 1:].sum()
    assert per_deal > per_deal0 + 0.03, (per_deal, per_deal0)  # stronger bargaining...
    assert deals[:, 1:].mean() < deals0[:, 1:].mean() - 0.1  # ...and a higher risk of breaking the deal
    assert deals[:, -1].mean() < deals[:, 1].mean()  # the risk grows with the coaching
    # the seller (uncoached) pays for the coached buyer's gains
    assert by_game(coached, "seller_surplus_by_game")[:, -1].mean() < by_game(silent, "seller_surplus_by_game")[:, -1].mean()


def test_the_coachs_reward_is_its_players_improvement():
    env = make(interface="discrete", games=4, coach="seller_0", learnable="coach_0", zopa="overlap")
    for seed in range(10):
        obs, infos = env.reset(seed=seed)
        assert env.to_act() == ("coach_0",) and len(env.results) == 1  # game 1 was played at reset
        rewards, truths = [], []
        while env.agents:
            _, r, terms, _, infos = env.step({"coach_0": N.rule_coach(env)})
            rewards.append(r["coach_0"])
            truths.append(infos["coach_0"]["true_utility"])
        s = infos["coach_0"]["episode_result"]["outcomes"]["seller_surplus_by_game"]
        assert np.isclose(sum(rewards), s[-1] - s[0]) and np.isclose(sum(truths), sum(s[1:]))
        assert terms["coach_0"] and len(rewards) == 3


def test_hardball_gets_more_per_deal_and_fewer_deals():
    hard = outcomes(range(100), buyer="hardball")
    soft = outcomes(range(100), buyer="yielding")
    assert mean(hard, "deal_rate") < mean(soft, "deal_rate") - 0.1
    hard = outcomes(range(100), buyer="hardball", zopa="overlap")
    soft = outcomes(range(100), buyer="yielding", zopa="overlap")
    assert mean(hard, "buyer_surplus_per_deal") > mean(soft, "buyer_surplus_per_deal") + 0.02
    assert mean(hard, "buyer_share") > mean(soft, "buyer_share")
    assert mean(hard, "deal_rate") < mean(soft, "deal_rate")


# ---------------------------------------------------------------- the game's mechanics


def test_reading_messages_and_bad_input():
    assert N.parse_move("I offer $45.") == N.Move("offer", "I offer $45.", 45, False)
    assert N.parse_move("OK, 40 dollars is my final offer").price == 40 and N.parse_move("$40 final").final
    assert N.parse_move("I accept your offer of $40.").kind == "accept"
    assert N.parse_move("I won't accept that.").kind == "talk" and N.parse_move("I can't accept less than $50").price == 50
    assert N.parse_move("Would you take $1,200?").price == 1200
    assert N.parse_move("No deal, I'm walking away.").kind == "walk"
    assert N.parse_move("Hello! Nice weather.").kind == "talk"
    env = make(zopa="overlap")
    _, infos = env.reset(seed=1)
    assert env.to_act() == ("buyer_0",) and len(env.moves) == 1  # the simulated seller opened
    seller_offer = env.moves[-1][1].price
    _, rewards, terms, _, infos = env.step({"buyer_0": "Hello! Nice weather."})
    info = infos["buyer_0"]
    assert info["invalid_move"] and not terms["buyer_0"] and rewards["buyer_0"] == 0.0
    assert env.moves[1][1].kind == "talk" and env.to_act() == ("buyer_0",)  # the seller answered, the game goes on
    _, _, terms, _, infos = env.step({"buyer_0": "I accept your offer."})
    assert terms["buyer_0"] and infos["buyer_0"]["deal_price"] <= seller_offer
    out = infos["buyer_0"]["episode_result"]["outcomes"]
    assert out["deals"] == 1 and out["invalid_moves"] == 1
    assert np.isclose(infos["buyer_0"]["true_utility"], (env.task.buyer_limit - env.results[0].price) / env.task.list_price)
    # an acceptance with no offer standing is flagged: the seller's seat opens
    env = make(learnable="seller_0")
    env.reset(seed=0)
    _, _, _, _, infos = env.step({"seller_0": "I accept your offer."})
    assert infos["seller_0"]["invalid_move"] and env.moves[0][1].kind == "talk"
    with pytest.raises(fbenv.UnknownNameError):
        make(zopa="sometimes")
    with pytest.raises(fbenv.UnknownNameError):
        make(coach="referee_0")
    with pytest.raises(fbenv.InvalidArgumentError):
        make(games=0)
    with pytest.raises(fbenv.UnknownNameError):
        make(learnable="coach_0")  # no coach seat without coach=


def test_the_discrete_view_is_the_text_view():
    env = make(interface="discrete", learnable=("buyer_0", "seller_0", "coach_0"), games=2, coach="buyer_0", zopa="overlap")
    obs, infos = env.reset(seed=4)
    assert env.action_space("buyer_0").n == 22 and env.action_space("coach_0").n == 4
    replies = env.candidate_replies("buyer_0")
    for i, text in enumerate(replies):
        m = N.parse_move(text)
        assert m.kind == ("accept" if i == N.ACCEPT else "walk" if i == N.WALK else "offer"), text
        if i >= 2:
            assert m.final == bool((i - 2) % 2) and m.price == round(N.GRID[(i - 2) // 2] * env.task.list_price)
    assert obs["seller_0"][9] == 1.0 and obs["buyer_0"][9] == 0.0 and all(o.min() >= 0 and o.max() <= 1 for o in obs.values())
    _, _, _, _, infos = env.step({"buyer_0": 5, "seller_0": 15, "coach_0": 2})
    assert infos["buyer_0"]["ignored_action"] and infos["coach_0"]["ignored_action"]
    assert not infos["seller_0"]["ignored_action"] and env.moves[-1][1].text == replies[15]
    obs, _, _, _, infos = env.step({"buyer_0": N.ACCEPT, "seller_0": 0, "coach_0": 0})
    assert env.to_act() == ("coach_0",) and obs["buyer_0"][4] == 0.0 and obs["coach_0"][0] == 1.0
    _, _, _, _, infos = env.step({"buyer_0": 0, "seller_0": 0, "coach_0": N.SLOWER})
    assert env.advice == [N.SLOWER] and env.strategies["buyer_0"].rate < env.task.buyer_strategy.rate
    assert any("Concede slower" in m["content"] for m in infos["buyer_0"]["messages"])
    assert not any("Concede slower" in m["content"] for m in infos["seller_0"]["messages"])  # said to the buyer only
    text = make(games=2, coach="buyer_0", learnable="coach_0")
    text.reset(seed=0)
    _, _, _, _, infos = text.step({"coach_0": "You should really think about it."})
    assert infos["coach_0"]["invalid_advice"] and text.advice == [N.KEEP]


def test_private_values_stay_private():
    env = make(games=2, coach="buyer_0", learnable="coach_0", simulator="llm", llm=(backend := ChoosingBackend()))
    for seed in range(6):
        env.reset(seed=seed)
        t = env.task
        if abs(t.buyer_limit - t.seller_limit) < 3:
            continue
        for req in backend.calls:
            prompt = " ".join(m.content for m in req.messages)
            if "You are the buyer" in prompt:
                assert f"${t.buyer_limit}" in prompt and f"no less than ${t.seller_limit}" not in prompt
            elif "You are the seller" in prompt:
                assert f"${t.seller_limit}" in prompt and f"at most ${t.buyer_limit}" not in prompt
        backend.calls.clear()
    env = make(learnable=("buyer_0", "seller_0"))
    obs, _ = env.reset(seed=3)
    assert f"at most ${env.task.buyer_limit}" in obs["buyer_0"]["text"]
    assert f"at most ${env.task.buyer_limit}" not in obs["seller_0"]["text"]


@pytest.mark.parametrize("kw", [{"interface": "discrete"}, {"simulator": "llm", "llm": "choosing"},
                                {"games": 3, "coach": "seller_0", "learnable": "seller_0", "simulator": "llm",
                                 "llm": "choosing"}])
def test_lockstep_determinism(kw):
    def trace(env):
        return [(r["reward"], r["true_utility"], r["outcomes"]) for r in
                (run_parallel_episode(env, N.play("yielding", "hardball")(env), s).as_info() for s in range(8))]

    assert trace(make(**kw)) == trace(make(**kw))  # one hidden task for both views: test_registry_envs


# ---------------------------------------------------------------- the LLM path


@pytest.mark.parametrize("zopa", ["any", "overlap"])
def test_a_faithful_llm_plays_and_coaches_like_the_rules(zopa):
    kw = {"games": 4, "coach": "buyer_0", "zopa": zopa, "learnable": "seller_0", "max_turns": 10}
    rule = outcomes(range(25), **kw)
    llm = outcomes(range(25), simulator="llm", llm=Faithful(), **kw)
    assert rule == llm


def test_free_text_servers_parse_and_unreadable_ones_follow_the_policy():
    generous = ScriptedBackend([], default="I'd happily pay $99999 for it!")
    env = make(simulator="llm", llm=generous, learnable="seller_0")
    env.reset(seed=0)
    _, _, _, _, infos = env.step({"seller_0": "I offer $500."})
    (record,) = infos["seller_0"]["feedback"]
    assert record.parsed and record.simulator == "llm" and env.moves[1][1].price == env.task.buyer_limit  # held at its limit
    mute = ScriptedBackend([], default="I like turtles.")
    env = make(simulator="llm", llm=mute, on_parse_error="truncate", learnable="seller_0")
    env.reset(seed=0)
    _, rewards, terms, truncs, infos = env.step({"seller_0": "I offer $50."})
    assert truncs["seller_0"] and not terms["seller_0"] and "feedback_error" in infos["seller_0"]


def test_registry_checks_with_every_seat_learnable_and_the_spec_card():
    for kw in ({}, {"interface": "discrete", "simulator": "llm", "llm": ChoosingBackend()}):
        check_fbenv_parallel_env(lambda kw=kw: make(games=2, coach="buyer_0", learnable=("buyer_0", "seller_0", "coach_0"),
                                                    **kw))
    check_spec_card(fbenv.spec(ENV_ID))


def test_fidelity_probe_direction_holds_for_rule_and_a_faithful_llm():
    from fbenv import fidelity as fid

    report = fid.measure(ENV_ID, llm=Faithful(), seeds=range(40))
    for v in report.variants:
        assert v.direction_rule is not None and v.direction_llm is not None
        assert v.direction_holds, (v.variant, v.direction_rule, v.direction_llm)


def test_the_bench_suite_runs(tmp_path):
    from fbenv.baselines import negotiation as B

    lines: list[str] = []
    B.bench(6, "choosing", False, str(tmp_path / "r.json"), lines.append, ppo_steps=0)
    text = "\n".join(lines)
    assert "hardball" in text and "silent" in text and "llm " in text and (tmp_path / "r.json").exists()
    rows = {(r.zopa, r.buyer): r for r in B.player_rows(list(range(40)))}
    assert rows["overlap", "rule"].deal_rate == 1.0 and rows["none", "rule"].deal_rate == 0.0
    coach = {r.coach: r for r in B.coach_rows(list(range(40)))}
    assert coach["rule"].deal_by_game[-1] < coach["silent"].deal_by_game[-1]
    assert coach["rule"].surplus_per_deal_by_game[-1] > coach["silent"].surplus_per_deal_by_game[-1]
    ppo = B.ppo_rows(256, seeds=range(3))  # the learning baseline's path (a real run: fbenv bench negotiation)
    assert ppo[0].buyer.startswith("ppo") and ppo[0].episodes == 3
