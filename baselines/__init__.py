"""The benchmark suites, by name, as lazy ``"module:function"`` strings (the core imports none).

Each function takes ``(episodes, llm, skip_llm, out, echo)``, prints its tables through
``echo`` and saves its rows; ``fbenv bench [SUITE]`` dispatches here.
"""

SUITES: dict[str, str] = {
    "rlhs": "fbenv.baselines.rlhs:bench",  # Advisor: feedback reward vs true utility per feedback timing
    "fidelity": "fbenv.baselines.fidelity:bench",  # every task: rule vs LLM simulator on the same episodes
}
