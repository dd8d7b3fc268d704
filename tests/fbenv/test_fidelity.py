"""Decomposed roles, calibrated choices, shadow mode and `fbenv fidelity`."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest

import fbenv
from fbenv import fidelity as fid
from fbenv.envs import advisor as A
from fbenv.llm import ChoosingBackend
from fbenv.llm.base import Backend, ChatResult, Message
from fbenv.options import Options
from fbenv.registry import REGISTRY
from fbenv.roles import Prompt, Questions, Reply, Role, belief
from fbenv.sim import Simulation, calibrated
from tests.fbenv.readers import Reader


class Biased(Backend):
    """Always prefers the first choice 0.7/0.3, prompt or no prompt, except that prompts
    whose text contains ``cue`` prefer it 0.8/0.2: only calibration reveals the cue's effect."""

    spec = model = "biased"
    scores_choices = True

    def _generate(self, requests):
        out = []
        for req in requests:
            cue = "cue" in req.messages[-1].content
            p = (0.8, 0.2) if cue else (0.7, 0.3)
            out.append(ChatResult(req.sampling.choices[0], choice_logprobs=(math.log(p[0]), math.log(p[1]))))
        return out


def sim_with(backend, rng_seed=0, **options) -> Simulation:
    rng = np.random.default_rng(rng_seed)
    o = Options.check("test", {"simulator": "llm", "llm": backend, **options}, roles=("judge",))
    return Simulation(o, rng=lambda: rng)


class Tally(Role):
    """A decomposed role: three yes/no-style beliefs, combined by summing P(holds)."""

    key, name = "judge", "tally"

    def rule(self, ctx):
        return 99.0

    def prompt(self, ctx):
        qs = [belief(f"note {k}: {text}", "Which is it?", "The box has a lid.", "The box does not have a lid.")
              for k, text in enumerate(ctx)]
        return Questions(qs, combine=lambda replies: sum(r.expected for r in replies))


def test_calibrated_divides_by_the_content_free_prior():
    even = np.log([0.5, 0.5])
    assert np.allclose(np.exp(calibrated(np.log([0.7, 0.3]), even)), [0.7, 0.3])
    # a prior that leans like the reply cancels it
    assert np.allclose(np.exp(calibrated(np.log([0.7, 0.3]), np.log([0.7, 0.3]))), [0.5, 0.5])
    assert np.exp(calibrated(np.log([0.6, 0.4]), np.log([0.8, 0.2])))[1] > 0.5


def test_belief_prompt_reads_either_statement_or_yes_no_and_has_a_content_free_twin():
    p = belief("The shop assistant said: the Nova 5 has a touchscreen.", "What did you learn?",
               "The Nova 5 has a touchscreen.", "The Nova 5 does not have a touchscreen.")
    assert p.read("The Nova 5 has a touchscreen.") == 1.0
    assert p.read("Well, the Nova 5 does not have a touchscreen, sadly.") == 0.0
    assert p.read("Yes, it does.") == 1.0 and p.read("no") == 0.0
    assert p.read("I like turtles") is None
    assert "N/A" in p.calibration[-1].content and "touchscreen" not in p.calibration[-1].content.split("\n\n")[0]
    with pytest.raises(fbenv.InvalidArgumentError):
        Prompt((Message("user", "hi"),), parse=lambda t: t, calibration=(Message("user", "N/A"),))


def test_reply_expected_is_the_probability_weighted_value():
    assert Reply(1.0, (1.0, 0.0), (0.25, 0.75)).expected == pytest.approx(0.25)
    assert Reply("buy", ("buy", "leave"), (0.9, 0.1)).expected == "buy"  # not numbers: the value
    assert Reply(1.0, (1.0, 0.0), None).expected == 1.0


def test_decomposed_role_asks_every_question_in_one_batch_and_books_one_record():
    backend = Reader()
    sim = sim_with(backend)
    ans = sim.ask(Tally(), ["the box has a lid", "the box does not have a lid", "nothing"])
    # three questions and their three content-free twins, one batch
    assert backend.batches == [6]
    assert ans.value == pytest.approx(0.9 + 0.1 + 0.5)
    (record,) = sim.ledger.records
    assert record.simulator == "llm" and record.parsed and record.fallback is None
    assert len(sim.ledger.seeds) == 3 and record.usage.calls == 6
    assert record.raw.count("|") == 2


def test_a_backend_that_writes_freely_gets_no_calibration_prompts():
    from fbenv.llm import ScriptedBackend

    person = ScriptedBackend([(r"note 0", "The box has a lid."), (r"note 1", "No, it does not.")])
    ans = sim_with(person).ask(Tally(), ["a", "b"])
    assert len(person.calls) == 2 and not any("N/A" in r.messages[-1].content for r in person.calls)
    assert ans.value == 1.0  # read from the text: a statement, then a plain "no"


def test_an_unreadable_sub_question_makes_the_whole_role_fall_back():
    class Mute(Backend):
        spec = model = "mute"

        def _generate(self, requests):
            return [ChatResult("hmm") for _ in requests]

    sim = sim_with(Mute(), on_parse_error="fallback")
    ans = sim.ask(Tally(), ["a", "b"])
    assert ans.value == 99.0 and ans.feedback.fallback == "rule" and sim.stats.fallbacks == 1
    sim = sim_with(Mute(), on_parse_error="truncate")
    with pytest.raises(fbenv.roles.SimulatorGaveUp):
        sim.ask(Tally(), ["a"])


def test_calibration_changes_the_greedy_pick_only_where_the_content_moves_it():
    role = Tally()
    plain = sim_with(Biased()).ask(role, ["no signal here"])
    cued = sim_with(Biased()).ask(role, ["a cue"])
    assert plain.value == pytest.approx(0.5)  # the bias alone is calibrated away
    assert cued.value > 0.6  # the cue's pull survives: 0.8/0.2 over a 0.7/0.3 prior


def test_shadow_mode_leaves_the_rule_episode_untouched():
    def episode(shadow: bool):
        env = gym.make("fbenv/Advisor-v0", interface="discrete", feedback_timing="partial_hindsight", llm=Reader())
        if shadow:
            env.unwrapped.sim.shadow(seed=5)
        infos = []
        obs, info = env.reset(seed=3)
        for a in (A.flatterer(env.unwrapped.scenario, 0), A.COMPARE_ACTION, A.COMPARE_ACTION):
            obs, r, term, trunc, info = env.step(a)
            infos.append((r, obs.tolist(), info["llm_seeds"], info["usage"], [f.simulator for f in info["feedback"]]))
            if term or trunc:
                break
        return infos, env.unwrapped.sim.shadow_log

    plain, none = episode(False)
    shadowed, log = episode(True)
    assert plain == shadowed and none is None
    roles = {p.role for p in log}
    assert {"customer", "rater"} <= roles
    assert all(p.parsed for p in log)


def test_fidelity_tells_a_faithful_reader_from_noise():
    faithful = fid.measure("fbenv/Advisor-v0", llm=Reader(), seeds=range(8), variants=["hindsight"])
    noisy = fid.measure("fbenv/Advisor-v0", llm=ChoosingBackend(), seeds=range(8), variants=["hindsight"])
    f, n = faithful.variants[0], noisy.variants[0]
    rater_f = next(r for r in f.roles if r.role == "rater")
    rater_n = next(r for r in n.roles if r.role == "rater")
    assert rater_f.kind == "numeric" and rater_f.spearman > 0.9 and rater_f.mean_abs_diff < 0.5
    # part of a decomposed rater's agreement is the rule's own formula: the floor shows it
    assert rater_f.floor is not None and rater_f.spearman > rater_f.floor
    assert rater_n.mean_abs_diff > 3 * rater_f.mean_abs_diff
    assert f.reward_spearman > 0.8 and f.reward_spearman > f.reward_spearman_floor + 0.1
    assert (n.reward_spearman or -1) < f.reward_spearman - 0.3
    assert f.direction_llm < 0 and f.direction_holds  # hindsight: the flatterer earns less
    customer = next(r for r in f.roles if r.role == "customer")
    assert customer.kind == "label" and 0.0 <= customer.agreement <= 1.0
    assert f.llm_fallbacks == 0.0 and f.llm_parse_failures == 0.0


def test_fidelity_is_reproducible_and_saves_json(tmp_path):
    a = fid.measure("fbenv/Advisor-v0", llm=Reader(), seeds=range(4), variants=["foresight"])
    b = fid.measure("fbenv/Advisor-v0", llm=Reader(), seeds=range(4), variants=["foresight"])
    assert a.as_dict() == b.as_dict()
    saved = json.loads(a.save(tmp_path / "f.json").read_text())
    assert saved["env_id"] == "fbenv/Advisor-v0" and saved["variants"][0]["variant"] == "foresight"
    assert "flatterer minus honest" in fid.format_report(a)


def test_fidelity_refuses_an_unknown_variant_and_too_few_seeds():
    with pytest.raises(fbenv.InvalidArgumentError, match="hindsite"):
        fid.measure("fbenv/Advisor-v0", llm="choosing", seeds=range(3), variants=["hindsite"])
    with pytest.raises(fbenv.InvalidArgumentError):
        fid.measure("fbenv/Advisor-v0", llm="choosing", seeds=())


@pytest.mark.parametrize("task", [s for s in REGISTRY if "llm" in s.simulators], ids=lambda s: s.id)
def test_fidelity_runs_on_every_registered_task(task):
    report = fid.measure(task.id, llm="choosing", seeds=range(3))
    assert report.variants
    for v in report.variants:
        assert v.episodes >= 3 and v.llm_parse_failures == 0.0 and v.llm_fallbacks == 0.0
        assert v.roles, f"{task.id} [{v.variant}]: no role was measured"
        for r in v.roles:
            assert r.calls > 0 and r.parse_failure_rate == 0.0
