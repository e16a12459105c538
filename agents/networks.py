"""Observation encoders shared by every learner: Nature CNN, NIPS CNN, and an MLP.

Pixel encoders take ``uint8`` frames and scale them to ``[0, 1]`` on whatever device they run on,
so rollouts and replay batches travel host->device as bytes (4x less traffic than float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

ENCODERS = ("auto", "nature", "nips", "mlp")


class PixelEncoder(nn.Module):
    """Conv stack + fully connected layer from the DQN papers.

    ``nature`` (Mnih et al. 2015): conv 32 8x8/4, 64 4x4/2, 64 3x3/1, fc 512.
    ``nips`` (Mnih et al. 2013, PAAC's default): conv 16 8x8/4, 32 4x4/2, fc 256.
    """

    def __init__(self, obs_shape: Sequence[int], arch: str = "nature") -> None:
        super().__init__()
        channels, height, width = obs_shape
        if arch == "nature":
            convs = [nn.Conv2d(channels, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                     nn.Conv2d(64, 64, 3, 1), nn.ReLU()]
            hidden = 512
        elif arch == "nips":
            convs = [nn.Conv2d(channels, 16, 8, 4), nn.ReLU(), nn.Conv2d(16, 32, 4, 2), nn.ReLU()]
            hidden = 256
        else:
            raise ValueError(f"unknown pixel encoder {arch!r}; use 'nature' or 'nips'")
        self.convs = nn.Sequential(*convs, nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, channels, height, width)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU())
        self.out_features = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # Cast to the weights' dtype (not float32) so float64 gradient checks run end to end.
        # fc[0] is the nn.Linear built in __init__ (indexing a Sequential is typed Module).
        x = obs.to(cast(nn.Linear, self.fc[0]).weight.dtype)
        if obs.dtype == torch.uint8:
            x = x / 255.0
        return self.fc(self.convs(x))


class MLPEncoder(nn.Module):
    """ReLU MLP for low-dimensional vector observations (CartPole and friends)."""

    def __init__(self, obs_shape: Sequence[int], hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        in_features = int(torch.Size(obs_shape).numel())
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        self.body = nn.Sequential(*layers)
        self.out_features = in_features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        weight = next(self.parameters(), None)
        return self.body(obs.to(weight.dtype if weight is not None else torch.float32))


def build_encoder(
    obs_shape: Sequence[int], kind: str = "auto", mlp_hidden: Sequence[int] = (64, 64)
) -> PixelEncoder | MLPEncoder:
    """Pick an encoder for ``obs_shape``: ``auto`` is Nature CNN for images, MLP for vectors."""
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoder {kind!r}; use one of {', '.join(ENCODERS)}")
    is_image = len(obs_shape) == 3
    if kind == "auto":
        kind = "nature" if is_image else "mlp"
    if kind == "mlp":
        return MLPEncoder(obs_shape, mlp_hidden)
    if not is_image:
        raise ValueError(
            f"encoder {kind!r} needs (C, H, W) observations, got shape {tuple(obs_shape)}"
        )
    return PixelEncoder(obs_shape, kind)
