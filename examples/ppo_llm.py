"""PPO fine-tuning of a small chat model as Advisor's shop assistant, with a learning curve.

The policy is the embedded SmolLM2-135M-Instruct (or any local causal LM via
``--model``) with LoRA adapters on its top layers; it talks to Advisor's rule customer
through the text interface. ``--timing`` picks when the customer rates: ``foresight``
(right after deciding, from what it was told) or ``hindsight`` (after the consequences
of its choice are simulated). The plot shows the feedback reward next to the true
utility the env reports: under foresight the two can part ways (RLHS).

Defaults are sized for a 2-core CPU (several minutes): 8 updates of 8 episodes, the
customer may ask one follow-up (``--max-turns 2``: answering "does it have X?" is where
a claim, true or false, moves the rating), 16-token replies, LoRA on the top 4 layers.
A 135M model rarely says anything that changes the rule customer's decision at first,
so expect a noisy, slowly rising curve; raise ``--updates`` and ``--episodes`` on a
bigger machine (``--device cuda`` works unchanged).

    python examples/ppo_llm.py --timing hindsight --updates 8 --out ppo_advisor.png
"""

from __future__ import annotations

import argparse
import json
import math

from fbenv.agents.ppo import LoraSettings, PPOAgent, PPOConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timing", choices=("foresight", "partial_hindsight", "hindsight"), default="foresight")
    ap.add_argument("--updates", type=int, default=8)
    ap.add_argument("--episodes", type=int, default=8, help="episodes per PPO update")
    ap.add_argument("--minibatch", type=int, default=8, help="replies per optimizer step")
    ap.add_argument("--max-turns", type=int, default=2, help="Advisor's max_turns (customer follow-ups)")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ppo-epochs", type=int, default=2)
    ap.add_argument("--kl-coef", type=float, default=0.02)
    ap.add_argument("--lora-layers", type=int, default=4, help="LoRA on the top N decoder layers (0: all layers)")
    ap.add_argument("--model", default=None, help="local causal LM path (default: the embedded SmolLM2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="ppo_advisor.png", help="learning-curve PNG (a .json of the stats beside it)")
    args = ap.parse_args()

    if args.model is None:
        from fbenv.llm.hf import embedded_model_dir

        args.model = str(embedded_model_dir())
    from transformers import AutoConfig

    n_layers = AutoConfig.from_pretrained(args.model).get_text_config().num_hidden_layers
    top = min(args.lora_layers, n_layers)
    lora = LoraSettings(r=16, alpha=32, layers_to_transform=tuple(range(n_layers - top, n_layers)) if top else None)
    config = PPOConfig(
        learning_rate=args.lr, episodes_per_update=args.episodes, minibatch_size=args.minibatch,
        ppo_epochs=args.ppo_epochs, kl_coef=args.kl_coef, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, lora=lora, device=args.device, seed=args.seed,
    )
    agent = PPOAgent(args.model, config=config)
    env_kwargs = {"feedback_timing": args.timing, "max_turns": args.max_turns, "simulator": "rule"}

    print(f"{'update':>6} {'reward':>7} {'utility':>7} {'success':>7} {'kl':>6} {'tokens':>6} {'sec':>5}")

    def show(s) -> None:
        print(f"{s.update:>6} {s.mean_reward:>7.3f} {s.mean_true_utility:>7.3f} {s.success_rate:>7.2f} "
              f"{s.kl:>6.2f} {s.mean_reply_tokens:>6.1f} {s.seconds:>5.0f}", flush=True)

    history = agent.train("fbenv/Advisor-v0", args.updates, env_kwargs=env_kwargs, progress=False, callback=show)

    with open(args.out.rsplit(".", 1)[0] + ".json", "w") as f:
        json.dump({"args": vars(args), "history": [s.as_dict() for s in history]}, f, indent=1)
    plot(history, args.out, f"PPO on Advisor-v0 ({args.timing}, seed {args.seed})")
    half = max(1, len(history) // 2)
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
