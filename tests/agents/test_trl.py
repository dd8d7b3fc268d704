"""The TRL adapter: generated environment classes, their reset/reply/get_reward contract,
pickling, and one real ``GRPOTrainer`` step on Advisor (text interface, rule customer).

The GRPO step uses a tiny random Llama with the embedded model's tokenizer. Such a model
never writes a well-formed tool call by chance, so a generation-time ``sequence_bias``
steers its sampling into ``reply`` calls that recommend one of the four products (which
one is left to the sampler). The step then runs TRL's whole tool loop for real: parse
the call, call ``reply``, step the env, score with ``get_reward``, update the weights.
"""

from __future__ import annotations

import inspect
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import fbenv
from fbenv.agents.trl import (
    ENDED_NOTE,
    SYSTEM_PROMPT,
    FeedbackEnvironment,
    episode_metrics,
    make_dataset,
    make_environment_class,
    reply_call_bias,
)
from fbenv.envs.advisor import COMPARE_ACTION, template_reply
from fbenv.errors import InvalidArgumentError, UnknownNameError

ADVISOR = "fbenv/Advisor-v0"


def tools_of(cls: type) -> list[str]:
    """The methods TRL turns into tools (its own rule: public functions but reset/get_reward)."""
    return [n for n, _ in inspect.getmembers(cls, predicate=inspect.isfunction)
            if not n.startswith("_") and n not in ("reset", "get_reward")]


# ---------------------------------------------------------------------- the class factory


def test_classes_are_memoized_named_and_expose_one_tool():
    Fore = make_environment_class(ADVISOR, feedback_timing="foresight")
    Hind = make_environment_class(ADVISOR, feedback_timing="hindsight")
    assert make_environment_class("Advisor-v0", feedback_timing="foresight") is Fore
    assert Fore is not Hind and Fore.__name__ != Hind.__name__
    assert Fore.__name__.startswith("Advisor_v0_") and make_environment_class(ADVISOR).__name__ == "Advisor_v0"
    assert make_environment_class(ADVISOR, name="Shop").__name__ == "Shop"
    assert issubclass(Hind, FeedbackEnvironment) and Hind.env_kwargs == (("feedback_timing", "hindsight"),)
    assert tools_of(Hind) == ["reply"]
    assert inspect.signature(Hind).parameters == {}  # TRL calls factory() with no arguments


def test_reply_has_a_tool_schema():
    transformers_utils = pytest.importorskip("transformers.utils")
    schema = transformers_utils.get_json_schema(make_environment_class(ADVISOR)().reply)
    assert schema["function"]["name"] == "reply"
    assert schema["function"]["parameters"]["properties"]["message"]["type"] == "string"
    assert schema["function"]["parameters"]["required"] == ["message"]


def test_factory_errors_are_typed():
    with pytest.raises(UnknownNameError, match="Advisor-v0"):
        make_environment_class("fbenv/Advisr-v0")
    with pytest.raises(InvalidArgumentError, match="interface"):
        make_environment_class(ADVISOR, interface="discrete")
    with pytest.raises(InvalidArgumentError, match="spec string"):
        make_environment_class(ADVISOR, llm=object())
    with pytest.raises(InvalidArgumentError, match="identifier"):
        make_environment_class(ADVISOR, name="not a name")
    with pytest.raises(InvalidArgumentError, match="make_environment_class"):
        FeedbackEnvironment()
    with pytest.raises(InvalidArgumentError, match="reset"):
        make_environment_class(ADVISOR)().reply("hello")
    with pytest.raises(UnknownNameError, match="feedback_timing"):  # the env's own check, at first reset
        make_environment_class(ADVISOR, feedback_timing="later")().reset(seed=0)


# ---------------------------------------------------------------------- the episode contract


@pytest.mark.parametrize("timing", ["foresight", "hindsight"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_round_trip_matches_stepping_the_env(seed, timing):
    """reset/reply/get_reward give exactly what stepping the text env with the same seed gives."""
    direct = fbenv.make(ADVISOR, interface="text", feedback_timing=timing)
    obs, info = direct.reset(seed=seed)
    scenario = direct.unwrapped.scenario
    # a false claim about the cheapest product, then the truth about everything
    cheapest = min(range(4), key=lambda i: scenario.products[i].price)
    script = [template_reply(cheapest, scenario)] + [template_reply(COMPARE_ACTION, scenario)] * 3

    env = make_environment_class(ADVISOR, feedback_timing=timing)()
    assert env.reset(seed=seed, prompt=[{"role": "user", "content": ""}], split="train") == obs
    assert env.seed == seed and env.row == {"split": "train"}
    total, done = 0.0, False
    for message in script:
        if done:
            break
        answer = env.reply(message)
        _, reward, terminated, truncated, info = direct.step(message)
        total += reward
        done = terminated or truncated
        customer = info["messages"][-1]
        assert customer["role"] == "user" and answer.startswith(customer["content"])
        assert answer.endswith(ENDED_NOTE) == done == env.done
        assert env.info["messages"] == info["messages"] and env.info["feedback"] == info["feedback"]
    assert done and env.get_reward() == pytest.approx(total)
    assert env.true_utility == pytest.approx(info["true_utility"])
    assert env.info["deceived"] == info["deceived"]
    assert [f for i in env.infos for f in i["feedback"]] == list(env.feedback)
    assert env.reply("Anything else?").startswith(ENDED_NOTE) and env.calls_after_end == 1
    assert env.get_reward() == pytest.approx(total)  # talking after the end changes nothing


def test_unfinished_episode_and_reuse():
    Env = make_environment_class(ADVISOR, unfinished_reward=-0.5)
    env = Env()
    env.reset(seed=11)
    env.reply("Hello there.")  # names no product: the customer asks again
    assert not env.done and env.get_reward() == -0.5 and env.true_utility == 0.0
    first = env.messages
    env.reset(seed=11)  # TRL reuses instances across batches
    assert env.replies == () and env.rewards == () and len(env.infos) == 1
    env.reply("Hello there.")
    assert env.messages == first


def test_reset_without_seed_draws_and_records_one():
    env = make_environment_class(ADVISOR)()
    env.reset()
    seed = env.seed
    assert isinstance(seed, int)
    other = make_environment_class(ADVISOR)()
    other.reset(seed=seed)
    assert other.messages == env.messages


# ---------------------------------------------------------------------- pickling


def test_classes_and_instances_pickle_and_replay():
    Env = make_environment_class(ADVISOR, feedback_timing="hindsight")
    assert pickle.loads(pickle.dumps(Env)) is Env
    assert pickle.loads(pickle.dumps(FeedbackEnvironment)) is FeedbackEnvironment
    env = Env()
    assert type(pickle.loads(pickle.dumps(env))) is Env  # before any reset
    env.reset(seed=4)
    env.reply("I recommend B. B has everything you need.")
    clone = pickle.loads(pickle.dumps(env))
    assert type(clone) is Env and clone.seed == 4 and clone.replies == env.replies
    assert clone.messages == env.messages and clone.rewards == env.rewards and clone.done == env.done


def test_pickles_load_in_a_fresh_process(tmp_path):
    """A class made at run time pickles by (env id, options), so another process rebuilds it."""
    Env = make_environment_class(ADVISOR, feedback_timing="partial_hindsight", name="Partial")
    env = Env()
    env.reset(seed=9)
    env.reply("I recommend A. A has everything you need.")
    env.reply("Yes, it really does.")
    path = tmp_path / "env.pkl"
    path.write_bytes(pickle.dumps((Env, env)))
    code = (
        "import pickle, sys; cls, env = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "print(cls.__name__, cls.env_kwargs, env.seed, env.done, repr(env.get_reward()), len(env.messages))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "FBENV_LLM_CACHE": "off"}, timeout=120)
    assert out.returncode == 0, out.stderr
    expected = f"Partial (('feedback_timing', 'partial_hindsight'),) 9 {env.done} {env.get_reward()!r} {len(env.messages)}"
    assert out.stdout.strip() == expected


# ---------------------------------------------------------------------- data and metrics


def test_make_dataset_rows_carry_seeds():
    pytest.importorskip("datasets")
    ds = make_dataset(3, seed=40)
    assert ds["seed"] == [40, 41, 42]
    assert ds[0]["prompt"] == [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": ""}]
    with pytest.raises(InvalidArgumentError, match="n_episodes"):
        make_dataset(0)


def test_episode_metrics_logs_and_adds_no_reward():
    Env = make_environment_class(ADVISOR, feedback_timing="hindsight")
    envs = []
    for seed, message in [(0, "I recommend A."), (0, "I recommend B."), (1, "Hello.")]:
        env = Env()
        env.reset(seed=seed)
        env.reply(message)
        if not env.done:
            env.reply("Hello again.")
        envs.append(env)
    logged: dict[str, float] = {}
    extra: dict[str, list] = {}
    out = episode_metrics(prompts=[[]] * 3, completions=[[]] * 3, seed=[0, 0, 1], environments=envs,
                          log_metric=logged.__setitem__, log_extra=extra.__setitem__)
    assert out == [None, None, None]
    assert logged["env/true_utility"] == pytest.approx(np.mean([e.true_utility for e in envs]))
    assert logged["env/finished"] == pytest.approx(np.mean([e.done for e in envs]))
    finished = [e for e in envs if e.done]
    assert logged["env/deceived"] == pytest.approx(np.mean([e.info["deceived"] for e in finished]))
    assert "env/turn" not in logged and "env/invalid_action" not in logged and "env/regret" not in logged
    assert {k for k in logged if k.startswith("env/")} == {
        "env/true_utility", "env/finished", "env/replies", "env/is_success", "env/deceived", "env/misstatements", "env/omissions"}
    for e in finished:  # the core's episode figures
        again = fbenv.run_episode(fbenv.make(ADVISOR, feedback_timing="hindsight"),
                                  (lambda replies: lambda obs, info: replies.pop(0))(list(e.replies)), seed=e.seed)
        assert e.true_utility == again.true_utility and e.episode_result == again
    assert extra == {"true_utility": [e.true_utility for e in envs], "seed": [0, 0, 1]}
    with pytest.raises(InvalidArgumentError, match="environments"):
        episode_metrics(prompts=[], completions=[])


# ---------------------------------------------------------------------- GRPO with TRL


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("trl")
    from transformers import AutoTokenizer

    from fbenv.agents.trl import ensure_tool_chat_template
    from fbenv.llm.hf import embedded_model_dir

    tok = AutoTokenizer.from_pretrained(str(embedded_model_dir()))
    tok.padding_side = "left"
    return ensure_tool_chat_template(tok)


def test_ensure_tool_chat_template(tokenizer):
    from trl.chat_template_utils import supports_tool_calling

    from fbenv.agents.trl import ensure_tool_chat_template

    assert supports_tool_calling(tokenizer)
    assert ensure_tool_chat_template(tokenizer) is tokenizer
    plain = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    plain.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(InvalidArgumentError, match="tool"):
        ensure_tool_chat_template(plain)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers' gradient_checkpointing renames, inside TRL
def test_grpo_trainer_step_on_advisor(tokenizer, tmp_path, monkeypatch):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = LlamaForCausalLM(config)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        # one turn: the customer decides right after the recommendation, so every rollout ends
        Env = make_environment_class(ADVISOR, feedback_timing="hindsight", max_turns=1)
        args = GRPOConfig(
            output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2, max_completion_length=72,
            max_tool_calling_iterations=1, max_steps=1, learning_rate=1e-2, temperature=1.0, seed=0,
            logging_steps=1, report_to="none", save_strategy="no", use_cpu=True,
            generation_kwargs={"sequence_bias": reply_call_bias(tokenizer, tuple(f"I recommend {x}." for x in "ABCD"))},
        )
        trainer = GRPOTrainer(
            model=model, processing_class=tokenizer, reward_funcs=[episode_metrics],
            train_dataset=make_dataset(1, seed=0), environment_factory=Env, args=args,
        )
        trainer.train()
    finally:
        torch.set_num_threads(threads)

    log = trainer.state.log_history[0]
    envs = trainer.environments
    assert trainer.state.global_step == 1 and len(envs) == 2
    assert log["tools/call_frequency"] > 0 and log["tools/failure_frequency"] == 0
    # every rollout spoke through the tool, on the row's task
    assert all(type(e) is Env and e.seed == 0 and e.replies and e.replies[0].startswith("I recommend") for e in envs)
    # TRL's reward is get_reward(); replaying the replies on a fresh env gives it again
    for e in envs:
        direct = fbenv.make(ADVISOR, interface="text", feedback_timing="hindsight", max_turns=1)
        direct.reset(seed=0)
        total = sum(direct.step(message)[1] for message in e.replies)
        assert e.get_reward() == pytest.approx(total)
    rewards = [e.get_reward() for e in envs]
    assert log[f"rewards/{Env.__name__}/mean"] == pytest.approx(np.mean(rewards), abs=1e-6)
    assert log["env/true_utility"] == pytest.approx(np.mean([e.true_utility for e in envs]), abs=1e-6)
    assert log["env/finished"] == 1.0 and all(e.done for e in envs)
    # rewards differ within the group, so the step moved the weights
    assert np.std(rewards) > 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
