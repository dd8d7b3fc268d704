"""PPO fine-tuning of a small chat model as Advisor's shop assistant, with a learning curve.

The policy is the embedded SmolLM2-135M-Instruct (or any local causal LM via
``--model``) with LoRA adapters on its top layers; it talks to Advisor's rule customer
through the text interface. ``--timing`` picks when the customer rates: ``foresight``
(right after deciding, from what it was told) or ``hindsight`` (after the consequences
of its choice are simulated). The plot shows the feedback reward next to the true
utility the env reports: under foresight the two can part ways (RLHS).

Every :class:`~fbenv.agents.ppo.PPOConfig` field is a flag (``--learning-rate``,
``--target-kl``...; ``none`` turns an optional one off); the defaults below differ from
the config's where a 2-core CPU needs it: 8-token replies, one customer turn, LoRA on
the top 4 layers, lr 5e-4 (per-token approx_kl about 0.005 on the first rollout, where
2e-3 gave 0.067 and a KL to the reference that grew ~2 nats per episode each update),
``--target-kl 0.02`` to stop an update that drifts anyway, and an adaptive KL penalty
steering toward 0.02 nats per token. The table prints the KL to the reference per token
and per episode (nats). ``--device cuda`` works unchanged; raise ``--updates`` and
``--episodes-per-update`` on a bigger machine.

    python examples/ppo_llm.py --timing hindsight --updates 8 --out ppo_advisor.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import typing

from fbenv.agents.ppo import LoraSettings, PPOAgent, PPOConfig

# Where this example departs from PPOConfig's defaults (sized for a 2-core CPU, see above).
EXAMPLE_DEFAULTS = {
    "learning_rate": 5e-4, "episodes_per_update": 8, "minibatch_size": 8, "ppo_epochs": 2,
    "kl_coef": 0.05, "adaptive_kl": 0.02, "target_kl": 0.02, "max_new_tokens": 8, "temperature": 1.0,
}


def config_arguments(ap: argparse.ArgumentParser) -> None:
    """One flag per PPOConfig field (LoRA has its own flags), help from the class docstring."""
    hints = typing.get_type_hints(PPOConfig)
    docs = dict(re.findall(r"^\s{8}(\w+): (.+?)(?=^\s{8}\w+:|\Z)", PPOConfig.__doc__, re.S | re.M))
    group = ap.add_argument_group("PPOConfig")
    for f in dataclasses.fields(PPOConfig):
        if f.name == "lora":
            continue
        kind = hints[f.name]
        optional = type(None) in typing.get_args(kind)
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        default = EXAMPLE_DEFAULTS.get(f.name, f.default)
        help_text = " ".join(docs.get(f.name, "").split()) + f" (default: {default})"
        flag = "--" + f.name.replace("_", "-")
        if base is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            parse = (lambda s, t=base: None if s.lower() == "none" else t(s)) if optional else base
            group.add_argument(flag, type=parse, default=default, help=help_text, metavar=base.__name__.upper())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timing", choices=("foresight", "partial_hindsight", "hindsight"), default="foresight")
    ap.add_argument("--updates", type=int, default=8)
    ap.add_argument("--advisor-max-turns", type=int, default=1, help="Advisor's max_turns (2: one customer follow-up)")
    ap.add_argument("--lora-layers", type=int, default=4, help="LoRA on the top N decoder layers (0: all layers)")
    ap.add_argument("--lora-r", type=int, default=16, help="LoRA rank (alpha is twice it)")
    ap.add_argument("--model", default=None, help="local causal LM path (default: the embedded SmolLM2)")
    ap.add_argument("--out", default="ppo_advisor.png", help="learning-curve PNG (a .json of the stats beside it)")
    config_arguments(ap)
    args = ap.parse_args()

    if args.model is None:
        from fbenv.llm.hf import embedded_model_dir

        args.model = str(embedded_model_dir())
    from transformers import AutoConfig

    n_layers = AutoConfig.from_pretrained(args.model).get_text_config().num_hidden_layers
    top = min(args.lora_layers, n_layers)
    lora = LoraSettings(r=args.lora_r, alpha=2 * args.lora_r,
                        layers_to_transform=tuple(range(n_layers - top, n_layers)) if top else None)
    fields = {f.name for f in dataclasses.fields(PPOConfig)} - {"lora"}
    config = PPOConfig(lora=lora, **{k: getattr(args, k) for k in fields})
    agent = PPOAgent(args.model, config=config)
    env_kwargs = {"feedback_timing": args.timing, "max_turns": args.advisor_max_turns, "simulator": "rule"}

    print(f"{'update':>6} {'reward':>7} {'utility':>7} {'success':>7} {'kl/tok':>7} {'kl/ep':>6} "
          f"{'approx':>7} {'steps':>5} {'beta':>6} {'tokens':>6} {'sec':>5}")

    def show(s) -> None:
        print(f"{s.update:>6} {s.mean_reward:>7.3f} {s.mean_true_utility:>7.3f} {s.success_rate:>7.2f} "
              f"{s.kl_per_token:>7.4f} {s.kl_per_episode:>6.2f} {s.approx_kl:>7.4f} {s.optimizer_steps:>5} "
              f"{s.kl_coef:>6.3f} {s.mean_reply_tokens:>6.1f} {s.seconds:>5.0f}", flush=True)

    history = agent.train("fbenv/Advisor-v0", args.updates, env_kwargs=env_kwargs, progress=False, callback=show)

    with open(args.out.rsplit(".", 1)[0] + ".json", "w") as f:
        json.dump({"args": vars(args), "history": [s.as_dict() for s in history]}, f, indent=1)
    plot(history, args.out, f"PPO on Advisor-v0 ({args.timing}, seed {args.seed})")
    half = min(2, max(1, len(history) // 2))
    first = sum(s.mean_reward for s in history[:half]) / half
    last = sum(s.mean_reward for s in history[-half:]) / half
    print(f"mean reward: first {half} updates {first:.3f}, last {half} updates {last:.3f}; curve: {args.out}")


def plot(history, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s.update for s in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, [s.mean_reward for s in history], marker="o", label="feedback reward")
    utility = [s.mean_true_utility for s in history]
    if not all(math.isnan(u) for u in utility):
        ax.plot(x, utility, marker="s", label="true utility")
    ax.set(xlabel="PPO update", ylabel="mean per episode", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
