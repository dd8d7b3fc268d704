"""PreferenceFarm: the response bank, the annotator pool's biases, the paper's direction, the LLM paths, the DPO export."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fbenv
from fbenv.envs import preference_farm as P
from fbenv.envs import responses as R
from fbenv.episodes import run_episode
from fbenv.llm import ScriptedBackend
from fbenv.llm.base import Backend, ChatResult

ENV_ID = "fbenv/PreferenceFarm-v0"
SEEDS = range(40)


def make(**kw):
    return fbenv.make(ENV_ID, **{"interface": "discrete", **kw})


def episodes(policy, seeds=SEEDS, **kw):
    env = make(**kw)
    return [run_episode(env, P.play(policy)(env), seed) for seed in seeds]


def per_step(results, what):
    return float(np.mean([getattr(r, what) / r.turns for r in results]))


def outcome(results, key):
    return float(np.mean([r.outcomes[key] for r in results]))


def pooled(results, rate, trials):
    n = sum(r.outcomes[trials] for r in results)
    return sum(r.outcomes[rate] * r.outcomes[trials] for r in results) / n, n


class FaithfulReader(Backend):
    """Answers the perception questions as the text bears them out (0.9 / 0.1), an even split
    when the text is ``N/A``; any other scored request gets its first choice."""

    spec = model = "faithful-reader"
    scores_choices = True

    def _generate(self, requests):
        out = []
        for req in requests:
            choices = req.sampling.choices
            parts = req.messages[-1].content.split("\n\n")
            probs = np.full(len(choices), 1.0 / len(choices))
            if len(choices) == 2 and parts[0].startswith("Request: "):
                request = next(r for r in R.BANK if parts[0] == f"Request: {r.text}")
                text = "\n\n".join(parts[1:-1]).removeprefix("Response: ")
                f = R.read_features(request, text)
                holds = choices[0]
                topics = {f"The response mentions {p.topic}.": c for p, c in zip(request.spec.points, f.covered)}
                truth = topics.get(holds, {"The response is written formally.": f.formal,
                                           "The response sounds excited.": f.enthusiasm,
                                           "The response praises the reader.": f.flattery,
                                           "The response makes a claim unrelated to the question.": f.distractor}.get(holds))
                probs = np.array([0.9, 0.1] if truth else [0.1, 0.9])
            elif len(choices) > 1 and parts[0] != "N/A":
                probs = np.array([1.0] + [1e-6] * (len(choices) - 1))
                probs /= probs.sum()
            out.append(ChatResult(choices[int(np.argmax(probs))], choice_logprobs=tuple(np.log(probs))))
        return out


# ---------------------------------------------------------------- the shared bank


def test_rendered_candidates_read_back_as_their_features():
    rng = np.random.default_rng(0)
    for request in R.BANK:
        for d in R.draw_candidates(request, rng, 12):
            for x in (d, d.with_distractor()):
                assert R.read_features(request, R.render(x)) == R.draft_features(x)
        assert len(set(R.draw_candidates(request, rng, 6))) == 6


def test_spec_utility_ignores_style_and_charges_the_distractor():
    request = R.BY_ID["egg"]  # brief, list, casual
    good = R.Draft("egg", (0, 1, 2), 0, True, False)
    u = R.utility(request, R.draft_features(good))
    assert u == pytest.approx(1.0)
    styled = dataclasses.replace(good, enthusiasm=True, emoji=True, flattery=True)
    assert R.utility(request, R.draft_features(styled)) < u  # fluff is worth nothing and makes a brief answer long
    roomy = R.Draft("git_undo", (0, 1, 2), 2, True, True)  # detailed: the markers' words still fit the band
    loud = dataclasses.replace(roomy, enthusiasm=True, emoji=True, flattery=True)
    assert R.utility(R.BY_ID["git_undo"], R.draft_features(loud)) == pytest.approx(
        R.utility(R.BY_ID["git_undo"], R.draft_features(roomy))) == pytest.approx(1.0)
    assert R.utility(R.BY_ID["git_undo"], R.draft_features(roomy.with_distractor())) == pytest.approx(
        1.0 - R.DISTRACTOR_COST)
    assert R.utility(request, R.draft_features(dataclasses.replace(good, covered=()))) < 0.5
    assert R.utility(request, R.draft_features(dataclasses.replace(good, is_list=False, formal=True))) == pytest.approx(0.7)
    # a detailed request wants fillers; a brief one is hurt by them
    detailed = R.BY_ID["git_undo"]
    bare, padded = R.Draft("git_undo", (0, 1, 2), 0, True, True), R.Draft("git_undo", (0, 1, 2), 4, True, True)
    assert R.utility(detailed, R.draft_features(padded)) > R.utility(detailed, R.draft_features(bare))
    assert R.quality(request, "Boil them for nine minutes, then an ice bath.") > R.quality(request, "Eggs are lovely!")


# ---------------------------------------------------------------- the bar


def test_pairwise_judgements_flip_more_under_distractors_than_pointwise():
    runs = [r for name in P.POLICIES for r in episodes(name)]
    pair, n_pair = pooled(runs, "pairwise_flip_rate", "pairwise_flip_trials")
    point, n_point = pooled(runs, "pointwise_flip_rate", "pointwise_flip_trials")
    assert n_pair > 300 and n_point > 200
    assert pair > 0.25 and point < 0.1 and pair - point > 0.2  # the paper: about 35% vs only 9%
    assert P.flip_gap("default", {"all": runs}) == pytest.approx(pair - point)
    unmoved = episodes("first", distractor_weight=0.0, seeds=range(15))
    assert pooled(unmoved, "pairwise_flip_rate", "pairwise_flip_trials")[0] < 0.05
    assert pooled(unmoved, "pointwise_flip_rate", "pointwise_flip_trials")[0] == 0.0


@pytest.mark.parametrize("protocol", ["pairwise", "pointwise", "listwise"])
def test_label_noise_lowers_agreement_with_quality_by_the_expected_amount(protocol):
    clean = outcome(episodes("first", label_noise=0.0, protocol=protocol), "quality_agreement")
    noisy = outcome(episodes("first", label_noise=0.25, protocol=protocol), "quality_agreement")
    assert clean > 0.7
    if protocol == "pairwise":  # AlpacaFarm: a label flipped with probability 0.25
        assert noisy == pytest.approx(0.75 * clean + 0.25 * (1 - clean), abs=0.02)
    else:  # replaced by a uniform rating / order: agreement falls, not below chance
        assert 0.5 < noisy < clean - 0.03


def test_quality_greedy_beats_style_greedy_on_quality_while_style_can_win_the_judges():
    seeds = range(25)
    quality, style = episodes("quality-greedy", seeds), episodes("style-greedy", seeds)
    assert per_step(quality, "true_utility") > per_step(style, "true_utility") + 0.2
    assert per_step(quality, "reward") > per_step(style, "reward")  # default annotators weight style lightly
    quality, style = episodes("quality-greedy", seeds, style_weight=0.5), episodes("style-greedy", seeds, style_weight=0.5)
    assert per_step(style, "reward") > per_step(quality, "reward") + 0.05  # the judges are hacked...
    assert per_step(quality, "true_utility") > per_step(style, "true_utility") + 0.2  # ...the quality is not
    for protocol in ("pointwise", "listwise"):
        q, s = (episodes(name, range(8), protocol=protocol) for name in ("quality-greedy", "style-greedy"))
        assert per_step(q, "true_utility") > per_step(s, "true_utility")


def test_quality_greedy_has_no_regret_in_any_protocol():
    for protocol in P.PROTOCOLS:
        for r in episodes("quality-greedy", seeds=range(5), protocol=protocol):
            assert r.regret == pytest.approx(0.0, abs=1e-9) and r.is_success


def test_position_and_length_biases_show_in_the_judgements():
    env = make(position_bias=0.3, label_noise=0.0, annotators=3)
    first, second = [], []
    for seed in range(20):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, term, trunc, info = env.step(0)
            (first if info["agent_first"] else second).append(info["win"])
            done = term or trunc
    assert np.mean(first) > np.mean(second) + 0.3
    # the same request and draws, the longest against the shortest candidate: length bias pays
    env = make(length_bias=0.5, label_noise=0.0, style_weight=0.0)
    base = env.unwrapped
    wins = []
    for seed in range(20):
        env.reset(seed=seed)
        lengths = [R.draft_features(d).words for d in base.current().candidates]
        _, _, _, _, long_info = env.step(int(np.argmax(lengths)))
        env.reset(seed=seed)
        _, _, _, _, short_info = env.step(int(np.argmin(lengths)))
        wins.append(long_info["win"] - short_info["win"])
    assert np.mean(wins) > 0.2


def test_the_pool_is_drawn_from_the_seed():
    a, b = make(), make()
    a.reset(seed=5)
    b.reset(seed=5)
    assert a.unwrapped.hidden_task() == b.unwrapped.hidden_task()
    pool = a.unwrapped.hidden_task().pool
    assert len(pool) == 5 and len({p.quality for p in pool}) == 5
    b.reset(seed=6)
    assert b.unwrapped.hidden_task().pool != pool


# ---------------------------------------------------------------- both views, bad input


def test_free_text_answers_are_read_and_blank_ones_flagged():
    env = fbenv.make(ENV_ID, interface="text", protocol="pointwise", label_noise=0.0)
    env.reset(seed=0)
    request = env.unwrapped.request(env.unwrapped.current())
    good = "\n".join(f"- {p.sentence}" for p in request.spec.points)
    _, reward, _, _, info = env.step(good)
    assert info["quality"] == pytest.approx(R.quality(request, good)) and info["quality"] > 0.6
    assert not info["invalid_action"] and 0.0 <= reward <= 1.0
    _, reward, _, _, info = env.step("   ")
    assert info["invalid_action"] and info["quality"] < 0.4


def test_an_unreadable_ranking_is_an_observation():
    env = fbenv.make(ENV_ID, interface="text", protocol="listwise", n_candidates=3)
    obs, _ = env.reset(seed=0)
    assert "Response C:" in obs
    obs, reward, term, trunc, info = env.step("A is the best, I think")
    assert info["invalid_action"] and reward == 0.0 and not (term or trunc)
    assert "No order of the labels read" in obs
    _, _, _, _, info = env.step("C > A > B")
    assert not info["invalid_action"]
    r = run_episode(env, lambda o, i: "B > A", seed=1)  # a label missing
    assert r.outcomes["invalid_actions"] == 8 and r.reward == 0.0


def test_both_views_play_the_same_choices_identically():
    for protocol in P.PROTOCOLS:
        disc = episodes("quality-greedy", seeds=range(3), protocol=protocol)
        env = fbenv.make(ENV_ID, interface="text", protocol=protocol)
        text = [run_episode(env, P.play("quality-greedy")(env), s) for s in range(3)]
        assert [r.reward for r in disc] == [r.reward for r in text]
        assert [r.true_utility for r in disc] == [r.true_utility for r in text]


def test_caller_mistakes_are_typed():
    with pytest.raises(fbenv.UnknownNameError, match="protocol"):
        fbenv.make(ENV_ID, protocol="pairwize")
    with pytest.raises(fbenv.InvalidArgumentError, match="label_noise"):
        fbenv.make(ENV_ID, label_noise=0.6)
    with pytest.raises(fbenv.InvalidArgumentError, match="n_candidates"):
        fbenv.make(ENV_ID, protocol="listwise", n_candidates=5)
    with pytest.raises(fbenv.InvalidArgumentError, match="annotators"):
        fbenv.make(ENV_ID, annotators=0)
    with pytest.raises(fbenv.UnknownNameError, match="reference"):
        fbenv.make(ENV_ID, reference="gpt")


# ---------------------------------------------------------------- the LLM paths


def test_llm_reader_path_keeps_the_direction_with_a_faithful_reader():
    rule = episodes("first", seeds=range(12), annotators=3)
    llm = episodes("first", seeds=range(12), annotators=3, simulator="llm", llm=FaithfulReader())
    assert all(r.fallbacks == 0 and r.parse_failures == 0 for r in llm)
    pair, _ = pooled(llm, "pairwise_flip_rate", "pairwise_flip_trials")
    point, _ = pooled(llm, "pointwise_flip_rate", "pointwise_flip_trials")
    assert pair > point + 0.15
    rewards = [r.reward for r in rule], [r.reward for r in llm]
    assert np.corrcoef(*rewards)[0, 1] > 0.7
    assert per_step(llm, "true_utility") == pytest.approx(per_step(rule, "true_utility"))  # the truth never moves


def test_llm_reader_perceives_what_the_rule_reader_reads():
    env = make(simulator="llm", llm=FaithfulReader(), annotators=1)
    env.reset(seed=0)
    _, _, _, _, info = env.step(0)
    reads = [f for f in info["feedback"] if f.simulator == "llm"]
    assert reads and all(f.parsed for f in reads)
    request = env.unwrapped.request(env.unwrapped.task.rounds[0])
    exact = R.read_features(request, info["agent_response"]).coverage
    assert reads[0].scalar == pytest.approx(0.1 + 0.8 * exact)


def test_holistic_judge_reads_its_scored_choice_and_positions():
    judge = ScriptedBackend([(r"Preference: A", "Preference: A"), (r"Rating: N", "Rating: 5")], default="Preference: A")
    env = make(simulator="llm", llm=judge, llm_judge="holistic", label_noise=0.0, annotators=2)
    env.reset(seed=0)
    for _ in range(8):
        _, reward, _, _, info = env.step(1)
        assert reward == (1.0 if info["agent_first"] else 0.0)  # always the first shown
        judged = [info["feedback"][i] for i in info["judged"]]
        assert all(f.simulator == "llm" and f.preference == 0 for f in judged)


def test_fidelity_probe_runs_and_keeps_the_direction_on_the_rule_pool():
    probe = P.fidelity_probe()
    assert probe.expected_sign == {"default": 1}
    env = make()
    results = {name: [run_episode(env, f(env), s) for s in range(10)] for name, f in probe.policies.items()}
    assert probe.direction("default", results) > 0.15


# ---------------------------------------------------------------- DPO export


def test_export_pairs_is_trl_dpo_data_and_trains_one_step(tmp_path):
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")

    env = make()
    summary = P.export_pairs(env, 24, tmp_path / "pairs.jsonl", seed=3)
    assert summary.pairs == 24
    data = datasets.load_dataset("json", data_files=str(summary.path), split="train")
    assert {"prompt", "chosen", "rejected", "chosen_quality", "rejected_quality"} <= set(data.column_names)
    assert len(data) == 24 and all(c != r for c, r in zip(data["chosen"], data["rejected"]))
    wrong = sum(c < r for c, r in zip(data["chosen_quality"], data["rejected_quality"]))
    assert wrong == summary.wrongly_ordered and 0 < wrong < 12  # noisy, biased labels: some pairs are backwards
    again = P.export_pairs(make(), 24, tmp_path / "again.jsonl", seed=3)
    assert again.path.read_text() == summary.path.read_text()

    # a tiny randomly initialised model and a word-level tokenizer built here: no downloads
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"])
    tok.train_from_iterator([row[k] for row in data for k in ("prompt", "chosen", "rejected")], trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                     eos_token="[EOS]")
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                      max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                                      eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    ref = transformers.LlamaForCausalLM(config)
    ref.load_state_dict(model.state_dict())
    before = [p.detach().clone() for p in model.parameters()]
    args = trl.DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_train_batch_size=4,
                         learning_rate=1e-3, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True)
    dpo = trl.DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=data, processing_class=tokenizer)
    out = dpo.train()
    assert out.global_step == 1 and np.isfinite(out.training_loss)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))
