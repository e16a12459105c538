"""Vector environments: ``make_vector_env`` and its ``sync`` / ``async`` / ``ale`` backends."""

from envs.vector.ale import AleVectorEnv
from envs.vector.factory import choose_backend, make_vector_env
from envs.vector.shared_memory import SharedMemoryVectorEnv, WorkerError
from envs.vector.sync import InProcessVectorEnv

__all__ = [
    "AleVectorEnv",
    "InProcessVectorEnv",
    "SharedMemoryVectorEnv",
    "WorkerError",
    "choose_backend",
    "make_vector_env",
]
