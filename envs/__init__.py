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
