"""Atari wrappers and environment factories (numpy, gymnasium, ale-py, opencv; never torch).

Public API: ``make_atari``, ``make_env``, ``make_vector_env``, ``is_atari``, ``array_shape``,
``AtariOptions`` (the Atari options, their defaults and ranges), the wrappers of
``envs.wrappers`` and MinAtar's (``envs.minatar``: ``make_minatar``, ``is_minatar``,
``ChannelsFirst``, ``MissingExtraError``). The README documents the contract.
"""

from envs.factory import make_atari, make_env
from envs.guard import EnvGuard, array_shape, check_actions
from envs.minatar import ChannelsFirst, MissingExtraError, is_minatar, make_minatar
from envs.options import ATARI_OPTION_NAMES, AtariOptions
from envs.registry import is_atari
from envs.vector import make_vector_env
from envs.wrappers import (
    ClipReward,
    EpisodicLife,
    FireReset,
    FrameLimit,
    FrameSkip,
    FrameStack,
    GrayscaleResize,
    NoopReset,
)

__all__ = [
    "ATARI_OPTION_NAMES",
    "AtariOptions",
    "ChannelsFirst",
    "ClipReward",
    "EnvGuard",
    "EpisodicLife",
    "FireReset",
    "FrameLimit",
    "FrameSkip",
    "FrameStack",
    "GrayscaleResize",
    "MissingExtraError",
    "NoopReset",
    "array_shape",
    "check_actions",
    "is_atari",
    "is_minatar",
    "make_atari",
    "make_env",
    "make_minatar",
    "make_vector_env",
]
