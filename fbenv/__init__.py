"""fbenv: Gymnasium and PettingZoo environments whose feedback comes from simulated people.

``import fbenv`` registers every env with Gymnasium (``gym.make("fbenv/Advisor-v0")``)
and PettingZoo; :func:`make` and :func:`make_vec` are the shortest way in.
"""

from fbenv.errors import (
    BackendError,
    FbenvError,
    InvalidArgumentError,
    MissingExtraError,
    ReplayMissError,
    UnknownNameError,
)
from fbenv.feedback import Feedback, Source, Usage
from fbenv.episodes import EpisodeResult, lockstep_episodes, run_episode
from fbenv.registry import REGISTRY, TaskSpec, make, make_vec, register, spec
from fbenv.vector import BatchedVectorEnv

__version__ = "0.1.0"

__all__ = [
    "REGISTRY",
    "BackendError",
    "BatchedVectorEnv",
    "EpisodeResult",
    "FbenvError",
    "Feedback",
    "InvalidArgumentError",
    "MissingExtraError",
    "ReplayMissError",
    "Source",
    "TaskSpec",
    "UnknownNameError",
    "Usage",
    "lockstep_episodes",
    "make",
    "make_vec",
    "register",
    "run_episode",
    "spec",
]

# The task package holds the list of TaskSpecs (strings only: no task module is imported).
import fbenv.envs  # noqa: E402,F401
