"""Token-level PPO for LLM policies on fbenv's text interface, in one readable file.

TRL 1.16 ships no PPO trainer (only GRPO and RLOO, which need no value function), and
multi-turn episodes with a simulated person need credit assignment across turns, so this
module spells PPO out in the spirit of CleanRL's ``ppo.py``: one file, read top to bottom
(the config, GAE, then :meth:`PPOAgent.train`, the rollout, the learning step, the PPO
step, and the model and LoRA set-up last).

One update, for any env whose ``interface="text"`` gives ``str`` observations and
actions and the chat transcript in ``info["messages"]``: a Gymnasium env, or one seat of
a PettingZoo ``ParallelEnv`` (``train(..., seat="critic_0")``) whose other seats are
played by their simulated roles. Both go through the same loop (a seat is wrapped as a
one-agent env by :class:`fbenv.wrappers.SingleSeat`).

1. **Rollout.** ``episodes_per_update`` episodes play in lockstep. Each turn, every live
   episode's transcript goes through ``tokenizer.apply_chat_template`` and one
   left-padded decoding loop samples all replies from softmax(logits / ``temperature``)
   with a seeded ``torch.Generator``. The loop is ours, not ``generate``'s: a model's
   generation config (repetition penalty, ``no_repeat_ngram_size``, ``min_new_tokens``...)
   would otherwise bend the sampling distribution away from the one PPO scores. The envs
   then step concurrently, so LLM simulators batch.
2. **Scoring.** Forward passes give each reply token its log-probability under the
   policy and under the frozen reference model, and the value head's estimate.
3. **Rewards.** Every reply token pays ``-kl_coef * (logp - ref_logp)``; the last token
   of a reply also gets the env reward of that step. With ``adaptive_kl`` the
   coefficient follows Ziegler et al. (2019)'s proportional controller toward that
   per-token KL.
4. **GAE over turns.** Advantages run backwards through the episode's reply tokens, one
   turn after another. ``gamma`` and ``lam`` discount per env step (agent turn), not per
   token: a reply's tokens share one time step, so a long reply is not discounted more
   than a short one, and the value of turn ``k + 1``'s first token bootstraps turn ``k``.
5. **PPO.** ``ppo_epochs`` passes over shuffled minibatches of replies with the clipped
   policy loss and the clipped value loss; with ``target_kl`` the update stops early once
   a minibatch's approximate KL to the rollout policy exceeds it (CleanRL, SB3).

KL units: every KL here is in nats. :class:`UpdateStats` reports the KL to the reference
per reply token (``kl_per_token``) and summed over an episode (``kl_per_episode``), and
the PPO step's KL to the rollout policy per token (``approx_kl``).

The value head is a linear layer on the policy's last hidden state. With LoRA
(``PPOConfig(lora=LoraSettings())``) only the adapters and the value head train, and the
reference is the same network with its adapters disabled, so no second copy of the
model is held. Policy and reference run without dropout, so the first ratios are exactly
1 and the KL before the first update is exactly 0. All randomness comes from
``PPOConfig.seed`` (or :meth:`PPOAgent.reset`): env seeds, sampling, minibatch order and
LoRA initialisation.

Example::

    from fbenv.agents.ppo import PPOAgent, PPOConfig
    agent = PPOAgent("path/to/causal-lm", config=PPOConfig(episodes_per_update=8))
    history = agent.train("fbenv/Advisor-v0", n_updates=20, env_kwargs={"feedback_timing": "hindsight"})
    print([s.mean_reward for s in history])
    critic = PPOAgent("path/to/causal-lm").train("fbenv/ActorCritic-v0", 10, seat="critic_0")  # the actor is simulated
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from fbenv.agents.base import Agent, Transition
from fbenv.errors import InvalidArgumentError, MissingExtraError, check_choice, check_int, check_number, check_type
from fbenv.wrappers import SingleSeat

if TYPE_CHECKING:
    import torch

__all__ = ["LoraSettings", "PPOConfig", "UpdateStats", "PPOAgent", "gae_over_turns"]

DTYPES = ("float32", "bfloat16", "float16")


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters (``peft``) instead of full fine-tuning.

    ``target_modules="all-linear"`` adapts every linear layer except the output head, for
    any architecture. There is no LoRA dropout: the agent runs without dropout so that
    PPO's first ratios are exactly 1. ``layers_to_transform`` limits the adapters to some decoder layers
    (e.g. the last few): backpropagation then stops above the frozen layers, which makes
    updates much cheaper on a CPU.
    """

    r: int = 8
    alpha: int = 16
    target_modules: str | tuple[str, ...] = "all-linear"
    layers_to_transform: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check_int("LoraSettings.r", self.r, 1)
        check_int("LoraSettings.alpha", self.alpha, 1)
        if isinstance(self.target_modules, str):
            if not self.target_modules:
                raise InvalidArgumentError("LoraSettings.target_modules: expects a module name, actual ''")
        elif not (
            isinstance(self.target_modules, tuple)
            and self.target_modules
            and all(isinstance(m, str) and m for m in self.target_modules)
        ):
            raise InvalidArgumentError(
                "LoraSettings.target_modules: expects a str or a non-empty tuple of str, "
                f"actual {self.target_modules!r}"
            )
        if self.layers_to_transform is not None and not (
            isinstance(self.layers_to_transform, tuple)
            and self.layers_to_transform
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in self.layers_to_transform)
        ):
            raise InvalidArgumentError(
                "LoraSettings.layers_to_transform: expects None or a non-empty tuple of layer indices >= 0, "
                f"actual {self.layers_to_transform!r}"
            )


@dataclass(frozen=True)
class PPOConfig:
    """Hyperparameters of :class:`PPOAgent`; checked on construction.

    Attributes:
        learning_rate: Adam step size of the trainable weights and the value head.
        episodes_per_update: episodes in one rollout (also how many envs run in lockstep).
        ppo_epochs: passes over the rollout per update.
        minibatch_size: agent replies per optimizer step (and per scoring forward pass).
        clip_range: PPO's policy ratio clip epsilon.
        clip_range_value: how far a new value estimate may move from the rollout's.
        vf_coef: weight of the value loss.
        kl_coef: per-token KL penalty to the frozen reference, paid in the reward (the
            starting value when adaptive_kl is set).
        adaptive_kl: per-token KL to the reference (nats) that the penalty steers toward:
            after each update kl_coef *= 1 + adaptive_kl_rate * clip(kl / adaptive_kl - 1,
            -0.2, 0.2) (Ziegler et al. 2019); None keeps kl_coef fixed.
        adaptive_kl_rate: that controller's gain (Ziegler et al.'s K_beta).
        target_kl: stop an update's remaining optimizer steps once a minibatch's approx_kl
            (per token, nats, to the rollout policy) exceeds it (CleanRL, SB3); None never stops.
        gamma: discount per agent turn.
        lam: GAE lambda per agent turn.
        max_new_tokens: longest reply, in tokens.
        temperature: sampling temperature (> 0: PPO needs a stochastic policy); log-probs
            are taken from the same tempered distribution.
        max_turns: in train, agent turns after which an episode is cut (a truncation: its
            value is bootstrapped) if the env has not ended it.
        max_grad_norm: gradient clipping norm.
        whiten_advantages: normalize advantages over each rollout.
        lora: LoRA settings, or None for full fine-tuning.
        device: torch device (cpu, cuda, cuda:1...).
        dtype: model dtype (float32, bfloat16, float16).
        seed: the seed of every random choice of the agent.
    """

    learning_rate: float = 1e-5
    episodes_per_update: int = 8
    ppo_epochs: int = 4
    minibatch_size: int = 8
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    vf_coef: float = 0.1
    kl_coef: float = 0.05
    adaptive_kl: float | None = None
    adaptive_kl_rate: float = 0.1
    target_kl: float | None = None
    gamma: float = 1.0
    lam: float = 0.95
    max_new_tokens: int = 48
    temperature: float = 1.0
    max_turns: int = 16
    max_grad_norm: float = 1.0
    whiten_advantages: bool = True
    lora: LoraSettings | None = None
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("PPOConfig.learning_rate", self.learning_rate, 0.0, low_open=True)
        for name in ("episodes_per_update", "ppo_epochs", "minibatch_size", "max_new_tokens", "max_turns"):
            check_int(f"PPOConfig.{name}", getattr(self, name), 1)
        check_number("PPOConfig.clip_range", self.clip_range, 0.0, low_open=True)
        check_number("PPOConfig.clip_range_value", self.clip_range_value, 0.0, low_open=True)
        check_number("PPOConfig.vf_coef", self.vf_coef, 0.0)
        check_number("PPOConfig.kl_coef", self.kl_coef, 0.0)
        for name in ("adaptive_kl", "target_kl"):
            if getattr(self, name) is not None:
                check_number(f"PPOConfig.{name}", getattr(self, name), 0.0, low_open=True)
        check_number("PPOConfig.adaptive_kl_rate", self.adaptive_kl_rate, 0.0)
        if self.adaptive_kl is not None and self.kl_coef == 0.0:
            raise InvalidArgumentError(
                "PPOConfig.kl_coef: expects > 0 with adaptive_kl (a multiplicative controller), actual 0.0"
            )
        check_number("PPOConfig.gamma", self.gamma, 0.0, 1.0)
        check_number("PPOConfig.lam", self.lam, 0.0, 1.0)
        check_number("PPOConfig.temperature", self.temperature, 0.0, low_open=True)
        check_number("PPOConfig.max_grad_norm", self.max_grad_norm, 0.0, low_open=True)
        check_type("PPOConfig.whiten_advantages", self.whiten_advantages, bool)
        if self.lora is not None:
            check_type("PPOConfig.lora", self.lora, LoraSettings)
        check_type("PPOConfig.device", self.device, str)
        check_choice("PPOConfig.dtype", self.dtype, DTYPES)
        check_type("PPOConfig.seed", self.seed, int)


@dataclass(frozen=True)
class UpdateStats:
    """What one PPO update saw and did; :attr:`PPOAgent.history` keeps one per update.

    Rollout numbers are means over the update's episodes: ``mean_reward`` is the
    episode return (sum of env rewards), ``mean_true_utility`` the sum of
    ``info["true_utility"]`` and ``success_rate`` the final ``info["is_success"]``
    (``nan`` when the env does not report them). The KL to the reference is
    ``log pi - log pi_ref`` of the sampled reply tokens at rollout time, before this
    update's steps (the penalty's estimator: unbiased, so a small negative value is
    sampling noise), in nats: ``kl_per_token`` averaged over reply tokens,
    ``kl_per_episode`` summed over an episode's tokens and averaged over episodes.
    ``kl_coef`` is the penalty coefficient this rollout was scored with.
    ``policy_loss`` to ``approx_kl`` are means over the update's optimizer steps;
    ``approx_kl`` is the per-token KL (nats) of the policy being updated to the rollout
    policy (CleanRL's estimator). ``optimizer_steps`` counts the steps taken and
    ``stopped_early`` says whether ``target_kl`` cut the update short.
    """

    update: int
    episodes: int
    mean_reward: float
    mean_true_utility: float
    success_rate: float
    mean_turns: float
    mean_reply_tokens: float
    kl_per_token: float
    kl_per_episode: float
    kl_coef: float
    policy_loss: float
    value_loss: float
    entropy: float
    clip_fraction: float
    approx_kl: float
    optimizer_steps: int
    stopped_early: bool
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# --------------------------------------------------------------------------- GAE


def gae_over_turns(
    rewards: Sequence["torch.Tensor"],
    values: Sequence["torch.Tensor"],
    last_value: float,
    gamma: float,
    lam: float,
) -> tuple[list["torch.Tensor"], list["torch.Tensor"]]:
    """Advantages and returns of one episode's reply tokens, discounted per turn.

    ``rewards[k]`` and ``values[k]`` hold one entry per token of the agent's ``k``-th
    reply. Inside a reply the next state is the next token (no discount); after a
    reply's last token it is the first token of the next reply, discounted by ``gamma``
    and ``lam``; after the final reply it is ``last_value`` (0 when the episode
    terminated, the value of the final observation when it was cut short).
    """
    import torch

    lengths = [len(r) for r in rewards]
    r = torch.cat(list(rewards)).double()
    v = torch.cat(list(values)).double()
    turn_end = torch.zeros_like(r, dtype=torch.bool)
    turn_end[torch.tensor(lengths).cumsum(0) - 1] = True
    adv = torch.zeros_like(r)
    next_value, next_adv = float(last_value), 0.0
    for t in range(len(r) - 1, -1, -1):
        g, lmb = (gamma, lam) if turn_end[t] else (1.0, 1.0)
        delta = r[t] + g * next_value - v[t]
        next_adv = delta + g * lmb * next_adv
        adv[t] = next_adv
        next_value = v[t]
    ret = adv + v
    dtype = rewards[0].dtype
    return list(adv.to(dtype).split(lengths)), list(ret.to(dtype).split(lengths))


# --------------------------------------------------------------------------- the agent


class PPOAgent(Agent):
    """A causal LM with a value head, trained by token-level PPO. See the module docs.

    Args:
        model: a ``transformers`` causal LM, or a local path / hub id to load one from.
            A model object is trained in place (LoRA wraps it with ``peft``).
        tokenizer: its tokenizer, with a chat template; loaded from ``model`` when that
            is a path. Its ``pad_token`` is set to ``eos_token`` when missing.
        config: hyperparameters, seed and device.

    :meth:`train` runs whole updates against an env; :meth:`act` / :meth:`update` make
    the same agent usable by any loop that drives fbenv's ``Agent`` interface (an update
    runs after every ``episodes_per_update`` finished episodes).
    """

    name = "ppo_llm"

    def __init__(self, model: Any, tokenizer: Any = None, config: PPOConfig | None = None):
        super().__init__()
        torch = _import("torch")
        self.config = PPOConfig() if config is None else config
        check_type("config", self.config, PPOConfig)
        try:
            self.device = torch.device(self.config.device)
        except RuntimeError as exc:
            raise InvalidArgumentError(
                f"PPOConfig.device: expects a torch device, actual {self.config.device!r}"
            ) from exc
        _set_up_model(self, model, tokenizer)
        self.generator = torch.Generator(device=self.device)
        self.reset(self.config.seed)

    def reset(self, seed: int | None = None) -> None:
        """Reseed, and restore the initial weights, value head, KL coefficient and optimizer: forget all learning."""
        import torch

        super().reset(seed)
        self.generator.manual_seed(int(self.np_random.integers(2**63 - 1)))
        with torch.no_grad():
            if self.ref_model is not None:
                self.model.load_state_dict(self.ref_model.state_dict())
            else:
                for name, p in self.model.named_parameters():
                    if name in self._initial:
                        p.copy_(self._initial[name])
            self.value_head.weight.zero_()  # a zero value head: no random init, no early bias
            self.value_head.bias.zero_()
        params = [p for p in self.model.parameters() if p.requires_grad] + list(self.value_head.parameters())
        self.optimizer = torch.optim.Adam(params, lr=self.config.learning_rate)
        self.kl_coef = self.config.kl_coef
        self.history: list[UpdateStats] = []
        self._pending: _Turn | None = None
        self._episode = _Episode()
        self._buffer: list[_Episode] = []
        self._update_start = time.perf_counter()

    # ------------------------------------------------------------------ training loop

    def train(
        self,
        env: str | Callable[..., Any],
        n_updates: int,
        *,
        env_kwargs: dict[str, Any] | None = None,
        seat: str | None = None,
        others: Mapping[str, Callable[[Any, dict], Any]] | None = None,
        progress: bool = True,
        callback: Callable[[UpdateStats], None] | None = None,
    ) -> list[UpdateStats]:
        """Run ``n_updates`` PPO updates against ``env``; return their stats (also in :attr:`history`).

        Args:
            env: an env id (fbenv ids get ``interface="text"``; other Gymnasium ids go
                to ``gymnasium.make``) or a factory called as ``env(**env_kwargs)``,
                returning a Gymnasium env or a PettingZoo ``ParallelEnv``.
                ``episodes_per_update`` envs are made; the agent's actions must be text.
            n_updates: how many rollout + PPO rounds.
            env_kwargs: keyword arguments of every env.
            seat: for a multi-agent env, the seat the agent plays. An fbenv id gets
                ``learnable=seat``, so its other seats are played by their simulated roles.
            others: for a ParallelEnv with other live agents, a policy per agent,
                ``policy(observation, info) -> action``.
            progress: show a tqdm progress bar.
            callback: called with each update's stats (e.g. to log or checkpoint).
        """
        from tqdm.auto import tqdm

        check_int("PPOAgent.train(n_updates)", n_updates, 1)
        env_kwargs = {} if env_kwargs is None else env_kwargs
        check_type("PPOAgent.train(env_kwargs)", env_kwargs, dict)
        envs = self._make_envs(env, env_kwargs, seat, others)
        new: list[UpdateStats] = []
        try:
            bar = tqdm(range(n_updates), desc="PPO", disable=not progress)
            for _ in bar:
                self._update_start = time.perf_counter()
                stats = self._learn(self._rollout(envs))
                self.history.append(stats)
                new.append(stats)
                bar.set_postfix(reward=f"{stats.mean_reward:.3f}", kl_tok=f"{stats.kl_per_token:.4f}")
                if callback is not None:
                    callback(stats)
        finally:
            for e in envs:
                e.close()
        return new

    def act(self, observation: Any, info: dict) -> str:
        """Sample a reply to the transcript (``info["messages"]``, else the observation)."""
        prompt = self._prompt(observation, info)
        reply = self._generate([prompt])[0]
        self._pending = _Turn(prompt, reply)
        return self._decode(reply)

    def update(self, transition: Transition) -> None:
        """Record the reward of the last :meth:`act`; learn once enough episodes have ended."""
        if self._pending is None:
            raise InvalidArgumentError("PPOAgent.update: expects a preceding act() whose reply was stepped")
        if not self._buffer and not self._episode.turns:
            self._update_start = time.perf_counter()
        self._episode.add_step(self._pending, transition.reward, transition.info)
        self._pending = None
        if not (transition.terminated or transition.truncated):
            return
        ep, self._episode = self._episode, _Episode()
        ep.terminated = bool(transition.terminated)
        if not ep.terminated:
            ep.final_prompt = self._prompt(transition.next_observation, transition.info)
        self._buffer.append(ep)
        if len(self._buffer) >= self.config.episodes_per_update:
            episodes, self._buffer = self._buffer, []
            self.history.append(self._learn(episodes))

    # ------------------------------------------------------------------ rollout

    def _make_envs(self, env, env_kwargs: dict[str, Any], seat: str | None, others) -> list[Any]:
        n = self.config.episodes_per_update
        if isinstance(env, str):
            import fbenv  # noqa: F401  (registers the fbenv ids)
            from fbenv.registry import REGISTRY, require_interface

            spec = next((s for s in REGISTRY if env in (s.id, s.name)), None)
            if spec is not None and spec.multi_agent:
                if seat is None:
                    raise InvalidArgumentError(
                        f"PPOAgent.train(seat): expects the seat to play in multi-agent {spec.id!r}"
                    )
                if "interface" in env_kwargs or "learnable" in env_kwargs:
                    raise InvalidArgumentError(
                        "PPOAgent.train(env_kwargs): the agent sets interface='text' and learnable=seat; "
                        "do not pass them"
                    )
                envs = [spec.load()(interface="text", learnable=seat, **env_kwargs) for _ in range(n)]
            elif spec is not None:
                env_id = require_interface(env, "text", "PPOAgent", env_kwargs).id
                envs = [gym.make(env_id, interface="text", **env_kwargs) for _ in range(n)]
            else:  # any other Gymnasium id with a text interface
                envs = [gym.make(env, **env_kwargs) for _ in range(n)]
        elif callable(env):
            envs = [env(**env_kwargs) for _ in range(n)]
        else:
            raise InvalidArgumentError(
                f"PPOAgent.train(env): expects an env id or an env factory, actual {type(env).__name__}"
            )
        if _is_parallel(envs[0]):
            envs = [SingleSeat(e, seat, others) for e in envs]
        elif seat is not None or others:
            raise InvalidArgumentError(
                "PPOAgent.train(seat): expects a multi-agent (PettingZoo) env, actual a Gymnasium env"
            )
        if not isinstance(envs[0].action_space, gym.spaces.Text):
            for e in envs:
                e.close()
            raise InvalidArgumentError(
                "PPOAgent.train: expects a text-interface env (a Text action space), "
                f"actual action space {envs[0].action_space}"
            )
        return envs

    def _rollout(self, envs: list[Any]) -> list[_Episode]:
        """Play one episode per env in lockstep; envs step concurrently (LLM calls batch)."""
        from fbenv.llm.batching import BatchGroup

        group = BatchGroup(max_workers=len(envs))
        seeds = [int(s) for s in self.np_random.integers(2**31 - 1, size=len(envs))]
        resets = group.run([lambda e=e, s=s: e.reset(seed=s) for e, s in zip(envs, seeds)])
        prompts = [self._prompt(obs, info) for obs, info in resets]
        episodes = [_Episode() for _ in envs]
        live = list(range(len(envs)))
        while live:
            replies = self._generate([prompts[i] for i in live])
            texts = [self._decode(r) for r in replies]
            steps = group.run([lambda i=i, a=a: envs[i].step(a) for i, a in zip(live, texts)])
            still = []
            for i, reply, (obs, reward, terminated, truncated, info) in zip(live, replies, steps):
                ep = episodes[i]
                ep.add_step(_Turn(prompts[i], reply), reward, info)
                prompts[i] = self._prompt(obs, info) if not terminated else prompts[i]
                if terminated:
                    ep.terminated = True
                elif truncated or len(ep.turns) >= self.config.max_turns:
                    ep.final_prompt = prompts[i]
                else:
                    still.append(i)
            live = still
        return episodes

    def _prompt(self, observation: Any, info: dict) -> "torch.Tensor":
        """The chat transcript as token ids, through the tokenizer's own chat template."""
        import torch

        messages = info.get("messages") if isinstance(info, dict) else None
        if not messages:  # none yet (e.g. a seat that has heard nobody): the observation itself
            if isinstance(observation, Mapping) and isinstance(observation.get("text"), str):
                observation = observation["text"]  # a PettingZoo seat's Dict({"text": ...}) view
            if not isinstance(observation, str):
                raise InvalidArgumentError(
                    "PPOAgent: expects a text-interface env (str observations or info['messages']), "
                    f"actual observation of type {type(observation).__name__}"
                )
            messages = [{"role": "user", "content": observation}]
        text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return torch.tensor(ids, dtype=torch.long)

    def _generate(self, prompts: Sequence["torch.Tensor"]) -> list["torch.Tensor"]:
        """Sample one reply per prompt, all in one left-padded batch with a KV cache.

        Each token is drawn from softmax(logits / temperature), the very distribution
        :meth:`_forward` scores: no logits processor of ``generate`` or of the model's
        generation config takes part. Rows that sampled a stop token keep drawing (so the
        generator's stream does not depend on when others stop) but are cut there.
        """
        import torch

        ids, mask = self._left_pad(prompts)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: each row counts from its first token
        keep = {"logits_to_keep": 1} if self._keeps_logits else {}
        stop = torch.tensor(self.stop_ids, device=self.device)
        done = torch.zeros(len(prompts), dtype=torch.bool, device=self.device)
        tokens, cache, step_ids = [], None, ids
        with torch.no_grad():
            for _ in range(self.config.max_new_tokens):
                out = self.model(input_ids=step_ids, attention_mask=mask, position_ids=positions,
                                 use_cache=True, **{self._cache_arg: cache}, **keep)
                cache = getattr(out, self._cache_arg)
                probs = torch.softmax(out.logits[:, -1].float() / self.config.temperature, dim=-1)
                token = torch.multinomial(probs, 1, generator=self.generator)
                tokens.append(token)
                done |= torch.isin(token.squeeze(1), stop)
                if bool(done.all()):
                    break
                step_ids, positions = token, positions[:, -1:] + 1
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        replies = []
        for row in torch.cat(tokens, dim=1).cpu():
            stops = [i for i, t in enumerate(row.tolist()) if t in self.stop_ids]
            replies.append(row[: stops[0] + 1] if stops else row)
        return replies

    def _decode(self, response: "torch.Tensor") -> str:
        return self.tokenizer.decode(response, skip_special_tokens=True)

    # ------------------------------------------------------------------ learning

    def _learn(self, episodes: list[_Episode]) -> UpdateStats:
        """Score the rollout, compute advantages, run the PPO epochs; return the stats."""
        import torch

        cfg = self.config
        turns = [t for ep in episodes for t in ep.turns]
        mb = cfg.minibatch_size
        # 2. scoring (replies of similar prompt length together: less padding)
        by_length = sorted(turns, key=lambda t: len(t.prompt))
        with torch.no_grad():
            for start in range(0, len(by_length), mb):
                chunk = by_length[start: start + mb]
                logp, values, _, mask = self._forward(chunk)
                ref_logp, _, _, _ = self._forward(chunk, reference=True, with_values=False)
                for k, t in enumerate(chunk):
                    n = len(t.response)
                    t.logprobs, t.values = logp[k, :n].cpu(), values[k, :n].cpu()
                    t.ref_logprobs = ref_logp[k, :n].cpu()
        cut = [ep for ep in episodes if not ep.terminated and ep.final_prompt is not None]
        if cut:
            for ep, v in zip(cut, self._prompt_values([ep.final_prompt for ep in cut])):
                ep.last_value = v
        # 3.-4. rewards (env reward + KL penalty) and GAE over turns
        kl_coef = self.kl_coef
        for ep in episodes:
            rewards = []
            for t in ep.turns:
                r = -kl_coef * (t.logprobs - t.ref_logprobs)
                r[-1] += t.reward
                rewards.append(r)
            advs, rets = gae_over_turns(rewards, [t.values for t in ep.turns], ep.last_value, cfg.gamma, cfg.lam)
            for t, a, r in zip(ep.turns, advs, rets):
                t.advantages, t.returns = a, r
        token_kl = torch.cat([t.logprobs - t.ref_logprobs for t in turns])
        kl_per_token = float(token_kl.mean())
        kl_per_episode = _mean([sum(float((t.logprobs - t.ref_logprobs).sum()) for t in ep.turns) for ep in episodes])
        if cfg.adaptive_kl is not None:  # Ziegler et al.'s proportional controller, for the next rollout
            error = min(max(kl_per_token / cfg.adaptive_kl - 1.0, -0.2), 0.2)
            self.kl_coef = kl_coef * (1.0 + cfg.adaptive_kl_rate * error)
        if cfg.whiten_advantages:
            flat = torch.cat([t.advantages for t in turns])
            mean = flat.mean()
            std = flat.std() if len(flat) > 1 else torch.tensor(1.0)
            for t in turns:
                t.advantages = (t.advantages - mean) / (std + 1e-8)
        # 5. PPO epochs, stopped early when the policy drifts past target_kl
        sums = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "clip_fraction": 0.0, "approx_kl": 0.0}
        n_steps, stopped = 0, False
        for _ in range(cfg.ppo_epochs):
            order = self.np_random.permutation(len(turns))
            for start in range(0, len(turns), mb):
                chunk = [turns[int(j)] for j in order[start: start + mb]]
                stats = self._ppo_step(chunk)
                if stats is None:
                    stopped = True
                    break
                for k in sums:
                    sums[k] += stats[k]
                n_steps += 1
            if stopped:
                break
        ups = {k: v / max(n_steps, 1) for k, v in sums.items()}
        return UpdateStats(
            update=len(self.history) + 1,
            episodes=len(episodes),
            mean_reward=_mean([ep.reward for ep in episodes]),
            mean_true_utility=_mean([ep.true_utility for ep in episodes]),
            success_rate=_mean([ep.success for ep in episodes]),
            mean_turns=_mean([len(ep.turns) for ep in episodes]),
            mean_reply_tokens=_mean([len(t.response) for t in turns]),
            kl_per_token=kl_per_token,
            kl_per_episode=kl_per_episode,
            kl_coef=kl_coef,
            optimizer_steps=n_steps,
            stopped_early=stopped,
            seconds=time.perf_counter() - self._update_start,
            **ups,
        )

    def _ppo_step(self, chunk: list[_Turn]) -> dict[str, float] | None:
        """One optimizer step on a minibatch of replies: clipped policy and value losses.

        Returns ``None`` without stepping when the minibatch's approx_kl already exceeds
        ``target_kl`` (checked before the step, as SB3 does, so no step lands past it).
        """
        import torch

        cfg = self.config

        def padded(name: str) -> torch.Tensor:
            rows = [getattr(t, name) for t in chunk]
            return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True).to(self.device)

        old_logp, old_values = padded("logprobs"), padded("values")
        advantages, returns = padded("advantages"), padded("returns")
        logp, values, entropy, mask = self._forward(chunk)
        n = mask.sum()

        log_ratio = logp - old_logp
        ratio = torch.exp(log_ratio)
        with torch.no_grad():
            approx_kl = float((((ratio - 1) - log_ratio) * mask).sum() / n)  # CleanRL's k3 estimator, per token
        if cfg.target_kl is not None and approx_kl > cfg.target_kl:
            return None
        pg_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range))
        pg_loss = (pg_loss * mask).sum() / n
        v_clipped = old_values + (values - old_values).clamp(-cfg.clip_range_value, cfg.clip_range_value)
        v_loss = 0.5 * torch.max((values - returns) ** 2, (v_clipped - returns) ** 2)
        v_loss = (v_loss * mask).sum() / n
        loss = pg_loss + cfg.vf_coef * v_loss

        self.optimizer.zero_grad()
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        self.optimizer.step()
        with torch.no_grad():
            return {
                "policy_loss": float(pg_loss),
                "value_loss": float(v_loss),
                "entropy": float((entropy * mask).sum() / n),
                "clip_fraction": float((((ratio - 1).abs() > cfg.clip_range).float() * mask).sum() / n),
                "approx_kl": approx_kl,
            }

    # ------------------------------------------------------------------ forward passes

    def _forward(self, turns: Sequence[_Turn], *, reference: bool = False, with_values: bool = True):
        """Per-token log-probs (tempered), values and entropy of the replies of ``turns``.

        Prompts are left-padded and replies right-padded into one ``[B, P + R]`` batch,
        so the logits of the last ``R + 1`` positions cover every reply token. Returns
        ``(logprobs, values, entropy, mask)``, each ``[B, R]``.
        """
        import torch

        prompts = [t.prompt for t in turns]
        responses = [t.response for t in turns]
        p_ids, p_mask = self._left_pad(prompts)
        width = max(len(r) for r in responses)
        r_ids = torch.full((len(turns), width), self.tokenizer.pad_token_id, dtype=torch.long)
        r_mask = torch.zeros((len(turns), width), dtype=torch.long)
        for i, r in enumerate(responses):
            r_ids[i, : len(r)] = r
            r_mask[i, : len(r)] = 1
        r_ids, r_mask = r_ids.to(self.device), r_mask.to(self.device)
        ids = torch.cat([p_ids, r_ids], dim=1)
        mask = torch.cat([p_mask, r_mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as _generate numbers left-padded rows
        model, ctx = self.model, contextlib.nullcontext()
        if reference and self.ref_model is not None:
            model = self.ref_model
        elif reference:
            ctx = self.model.disable_adapter()  # LoRA: the reference is the base model
        keep = {"logits_to_keep": width + 1} if self._keeps_logits else {}
        with ctx:
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                        output_hidden_states=with_values, use_cache=False, **keep)
        logits = out.logits[:, -(width + 1):-1].float() / self.config.temperature
        logp_all = torch.log_softmax(logits, dim=-1)
        logprobs = logp_all.gather(-1, r_ids.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        values = None
        if with_values:
            start = p_ids.shape[1] - 1  # the state before reply token j is position P - 1 + j
            hidden = out.hidden_states[-1][:, start: start + width].float()
            values = self.value_head(hidden).squeeze(-1)
        return logprobs, values, entropy, r_mask.float()

    def _prompt_values(self, prompts: Sequence["torch.Tensor"]) -> list[float]:
        """Value of each prompt's state (used to bootstrap episodes cut short)."""
        import torch

        ids, mask = self._left_pad(prompts)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        keep = {"logits_to_keep": 1} if self._keeps_logits else {}
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             output_hidden_states=True, use_cache=False, **keep)
            return self.value_head(out.hidden_states[-1][:, -1].float()).squeeze(-1).tolist()

    def _left_pad(self, seqs: Sequence["torch.Tensor"]) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = s
            mask[i, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)


# --------------------------------------------------------------------------- rollout records


@dataclass
class _Turn:
    """One agent reply: its tokens, the env reward it earned, and what scoring adds."""

    prompt: "torch.Tensor"
    response: "torch.Tensor"  # generated ids, the stop token included when one was sampled
    reward: float = 0.0
    logprobs: "torch.Tensor | None" = None
    ref_logprobs: "torch.Tensor | None" = None
    values: "torch.Tensor | None" = None
    advantages: "torch.Tensor | None" = None
    returns: "torch.Tensor | None" = None


@dataclass
class _Episode:
    turns: list[_Turn] = field(default_factory=list)
    true_utility: float = math.nan
    success: float = math.nan
    terminated: bool = False
    final_prompt: "torch.Tensor | None" = None  # set when cut short: bootstraps the value
    last_value: float = 0.0

    def add_step(self, turn: _Turn, reward: float, info: dict) -> None:
        turn.reward = float(reward)
        self.turns.append(turn)
        if "episode_result" in info:  # an fbenv episode's end: the core's own figures
            self.true_utility = float(info["episode_result"]["true_utility"])
            self.success = float(bool(info["episode_result"]["is_success"]))
        elif "true_utility" in info:  # any other env: add up what it reports
            u = float(info["true_utility"])
            self.true_utility = u if math.isnan(self.true_utility) else self.true_utility + u
            if "is_success" in info:
                self.success = float(bool(info["is_success"]))

    @property
    def reward(self) -> float:
        return sum(t.reward for t in self.turns)


# --------------------------------------------------------------------------- one seat of a PettingZoo env


def _is_parallel(env: Any) -> bool:
    return hasattr(env, "possible_agents") and callable(getattr(env, "action_space", None))


# --------------------------------------------------------------------------- model and LoRA set-up


def _set_up_model(agent: PPOAgent, model: Any, tokenizer: Any) -> None:
    """Load or take the model and tokenizer, add LoRA or a frozen reference copy, and a value head."""
    torch = _import("torch")
    transformers = _import("transformers")
    cfg = agent.config
    dtype = getattr(torch, cfg.dtype)
    if isinstance(model, str):
        tokenizer = tokenizer if tokenizer is not None else transformers.AutoTokenizer.from_pretrained(model)
        model = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
    elif not isinstance(model, transformers.PreTrainedModel):
        raise InvalidArgumentError(
            f"PPOAgent(model): expects a transformers causal LM or a path, actual {type(model).__name__}"
        )
    elif tokenizer is None:
        raise InvalidArgumentError("PPOAgent(tokenizer): expects a tokenizer when model is a model object")
    if getattr(tokenizer, "chat_template", None) is None:
        raise InvalidArgumentError("PPOAgent(tokenizer): expects a tokenizer with a chat template")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    agent.tokenizer = tokenizer
    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    agent.stop_ids = sorted({*eos, tokenizer.eos_token_id} - {None})

    # No dropout anywhere (eval mode, before any copy): the first PPO ratios are then
    # exactly 1 and the KL to the reference exactly 0 until the first step.
    model = model.to(device=agent.device, dtype=dtype).eval()
    # Models without `logits_to_keep` compute logits at every position; we slice them.
    params = inspect.signature(model.forward).parameters
    agent._keeps_logits = "logits_to_keep" in params
    agent._cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x
    if cfg.lora is None:
        model.requires_grad_(True)
        agent.ref_model = copy.deepcopy(model).requires_grad_(False).eval()
    else:
        model = _add_lora(model, cfg.lora, cfg.seed, agent.device).eval()
        agent.ref_model = None  # the reference is `model` with its adapters disabled
    agent.model = model
    hidden = model.config.get_text_config().hidden_size
    # skip_init: the head is zeroed in reset(), so drawing from torch's global RNG is pointless
    agent.value_head = torch.nn.utils.skip_init(torch.nn.Linear, hidden, 1, device=agent.device)
    # What reset() restores: the adapters (with full fine-tuning, the frozen reference holds the weights).
    agent._initial = {} if cfg.lora is None else {
        n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
    }


def _add_lora(model: Any, lora: LoraSettings, seed: int, device: "torch.device") -> Any:
    """Wrap ``model`` with ``peft`` LoRA adapters initialised from ``seed``."""
    import torch

    peft = _import("peft")
    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    if targets == "all-linear" and lora.layers_to_transform is not None:
        # peft takes layers_to_transform with module names only: spell "all-linear" out
        head = model.get_output_embeddings()
        targets = sorted({
            n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head
        })
    peft_config = peft.LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=0.0, task_type="CAUSAL_LM", target_modules=targets,
        layers_to_transform=None if lora.layers_to_transform is None else list(lora.layers_to_transform),
    )
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # LoRA init draws from torch's global RNG
        torch.manual_seed(seed)
        return peft.get_peft_model(model, peft_config)


def _import(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingExtraError(exc.name or name, "train", "PPO for LLM policies") from exc


def _mean(xs: Sequence[float]) -> float:
    vals = [x for x in xs if not math.isnan(x)]
    return sum(vals) / len(vals) if vals else math.nan
