"""The tasks. Each entry is a lazy ``module:Class`` string; this is the only list of envs."""

from fbenv.registry import TaskSpec, register

register(
    TaskSpec(
        id="fbenv/Advisor-v0",
        entry_point="fbenv.envs.advisor:AdvisorEnv",
        summary="Advise a shopper who cannot see product specs; rated in foresight or hindsight (RLHS).",
        variants=(
            {"feedback_timing": "foresight"},
            {"feedback_timing": "partial_hindsight"},
            {"feedback_timing": "hindsight"},
        ),
        outcomes=("deceived", "misstatements", "omissions"),
        perf_variant={"feedback_timing": "hindsight"},
    )
)

register(
    TaskSpec(
        id="fbenv/SuggestionTiming-v0",
        entry_point="fbenv.envs.suggestion_timing:SuggestionTimingEnv",
        summary="Show or hide each code suggestion to a programmer in a hidden, shifting state; acceptance is not value.",
        variants=({}, {"verify_cost": 0.0, "horizon": 5}),
        outcomes=("acceptance_rate", "shown_rate", "accepted_per_shown", "total_true_utility", "bad_accepts"),
    )
)

register(
    TaskSpec(
        id="fbenv/DynamicalBandit-v0",
        entry_point="fbenv.envs.dynamical_bandit:DynamicalBanditEnv",
        summary="Pull arms whose effects linger in a hidden state: the myopic arm is a trap (Dynamical Linear Bandits).",
        simulators=("rule",),
        variants=(
            {},
            {"n_arms": 5, "state_dim": 4, "rho": 0.95, "horizon": 20},
            {"n_arms": 2, "state_dim": 1, "rho": 0.0, "noise": 0.0, "horizon": 5},
        ),
        outcomes=("cumulative_regret", "best_arm_share", "myopic_arm_share", "idle_rounds"),
    )
)

register(
    TaskSpec(
        id="fbenv/DuelingPrompts-v0",
        entry_point="fbenv.envs.dueling_prompts:DuelingPromptsEnv",
        summary="Pick a pair of candidate prompts; a user prefers one response (APOHF dueling bandit).",
        variants=({}, {"llm_prompting": "holistic", "n_prompts": 4, "horizon": 20}),
        outcomes=("cumulative_regret", "cumulative_strong_regret", "invalid_actions"),
    )
)
