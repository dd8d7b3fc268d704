"""A few TRL GRPO steps on Advisor's text interface, on a CPU.

``make_environment_class`` turns ``fbenv/Advisor-v0`` into a TRL ``environment_factory``:
the policy speaks to the simulated customer through a ``reply`` tool, the customer's
rating is the reward (``get_reward``), and ``episode_metrics`` logs the customer's true
utility beside it without adding it to the reward.

Two ways to run it:

* ``--model tiny`` (default): a tiny random Llama with the embedded SmolLM2 tokenizer,
  its sampling *steered* (a generation-time sequence bias) into calls of
  ``reply("I recommend X.")`` with the product X left to chance. It cannot read, so it
  trains on one customer (``--task-seed``) repeated, and GRPO learns which product that
  customer is best served by. A minute or two; shows the whole loop working.
* ``--model PATH``: any local chat model whose template supports tool calls (a ChatML
  one, like the embedded SmolLM2's, is given the Qwen2.5 tool template). Trains on a new
  customer per row. ``--model embedded`` uses SmolLM2-135M-Instruct, which is slow on a
  CPU and rarely calls tools: a real run wants a tool-calling model and a GPU.

    python examples/trl_grpo.py
    python examples/trl_grpo.py --model /path/to/Qwen2.5-0.5B-Instruct --steps 20
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # environment_factory is marked experimental

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, TrainerCallback
from transformers.trainer_callback import PrinterCallback
from trl import GRPOConfig, GRPOTrainer

from fbenv.agents.trl import (
    SYSTEM_PROMPT,
    ensure_tool_chat_template,
    episode_metrics,
    make_dataset,
    make_environment_class,
    reply_call_bias,
)
from fbenv.llm.hf import embedded_model_dir

ENV_ID = "fbenv/Advisor-v0"


class PrintSteps(TrainerCallback):
    """One line per GRPO step: feedback reward, true utility, how often episodes finished."""

    def __init__(self, reward_key: str):
        self.reward_key = reward_key
        self.rewards: list[float] = []
        self.start = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and self.reward_key in logs:
            self.rewards.append(logs[self.reward_key])
            print(
                f"step {state.global_step:>3}  reward {logs[self.reward_key]:.3f}  "
                f"true utility {logs.get('env/true_utility', float('nan')):.3f}  "
                f"finished {logs.get('env/finished', float('nan')):.2f}  "
                f"tool calls/rollout {logs.get('tools/call_frequency', float('nan')):.2f}  "
                f"({time.perf_counter() - self.start:.0f}s)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny', 'embedded' or a local chat model path")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--generations", type=int, default=4, help="completions per customer (GRPO group)")
    parser.add_argument("--timing", default="hindsight", choices=["foresight", "partial_hindsight", "hindsight"])
    parser.add_argument("--task-seed", type=int, default=11, help="the customer the tiny model trains on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tiny = args.model == "tiny"
    path = str(embedded_model_dir()) if args.model in ("tiny", "embedded") else args.model
    tokenizer = ensure_tool_chat_template(AutoTokenizer.from_pretrained(path))
    tokenizer.padding_side = "left"
    torch.manual_seed(args.seed)
    if tiny:
        torch.set_num_threads(1)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=False,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = LlamaForCausalLM(config)
        # Only the output layer learns: the context's hidden state stays put, so the
        # product choice is a clean 4-armed bandit instead of being swamped by the
        # gradients of the steered (forced) tokens.
        for name, param in model.named_parameters():
            param.requires_grad = name.startswith("lm_head")
        # one customer, repeated; one turn, so the customer decides right after the recommendation
        Advisor = make_environment_class(ENV_ID, feedback_timing=args.timing, max_turns=1)
        prompt = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": ""}]
        dataset = Dataset.from_dict({"prompt": [prompt] * args.steps, "seed": [args.task_seed] * args.steps})
        arms = []
        for letter in "ABCD":  # what each recommendation earns with this customer
            env = Advisor()
            env.reset(seed=args.task_seed)
            env.reply(f"I recommend {letter}.")
            arms.append(env.get_reward())
        print(f"customer {args.task_seed}: recommending A, B, C, D earns "
              + ", ".join(f"{r:.3f}" for r in arms) + f"; a uniform pick earns {sum(arms) / 4:.3f} on average")
        extra = dict(generation_kwargs={"sequence_bias": reply_call_bias(tokenizer, tuple(f"I recommend {x}." for x in "ABCD"))},
                     max_tool_calling_iterations=1, max_completion_length=72, learning_rate=5e-2)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        Advisor = make_environment_class(ENV_ID, feedback_timing=args.timing)
        dataset = make_dataset(args.steps, seed=args.seed)
        extra = dict(max_tool_calling_iterations=3, max_completion_length=256, learning_rate=1e-5)

    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out, per_device_train_batch_size=args.generations, num_generations=args.generations,
            max_steps=args.steps, temperature=1.0, seed=args.seed, logging_steps=1, report_to="none",
            save_strategy="no", use_cpu=True, disable_tqdm=True, **extra,
        )
        trainer = GRPOTrainer(
            model=model, processing_class=tokenizer, reward_funcs=[episode_metrics], train_dataset=dataset,
            environment_factory=Advisor, args=config, callbacks=[steps := PrintSteps(f"rewards/{Advisor.__name__}/mean")],
        )
        trainer.remove_callback(PrinterCallback)  # our one line per step replaces the raw log dicts
        print(f"GRPO on {ENV_ID} ({args.timing} ratings), model {args.model}, {args.generations} rollouts per step")
        trainer.train()
    half = len(steps.rewards) // 2
    if half:
        print(f"mean reward, first {half} steps {sum(steps.rewards[:half]) / half:.3f}; "
              f"last {half} steps {sum(steps.rewards[-half:]) / half:.3f}")
    last = trainer.environments
    print("last step's rollouts:")
    for env in last:
        print(f"  seed {env.seed}: replies {list(env.replies)} -> reward {env.get_reward():.3f}, "
              f"true utility {env.true_utility:.3f}, chosen {env.info.get('chosen')}")


if __name__ == "__main__":
    main()
