"""Networks shared by the learners: the observation encoders (Nature CNN, NIPS CNN, MinAtar's
net, an MLP) and the actor-critic of the policy-gradient learners (PAAC, PPO).

Pixel encoders take ``uint8`` frames and scale them to ``[0, 1]`` on whatever device they run on,
so rollouts and replay batches travel host->device as bytes (4x less traffic than float32).
MinAtar's observations are ``uint8`` 0/1 channels already, and its network takes them unscaled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, cast, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.algo_configs import EncoderName
from rlkit.init import apply_init, orthogonal_

ENCODERS: tuple[str, ...] = get_args(EncoderName)
"""Every encoder name a config takes (``agents.algo_configs.EncoderName``, the one list)."""

MIN_SIDE = {"nature": 36, "nips": 20, "minatar": 3, "minatar_ac": 3}
"""Smallest image side each conv stack takes (the last conv must still have one output pixel);
``auto`` gives images too small for the learner's Atari network, MinAtar's 10x10, MinAtar's."""


class DSiLU(nn.Module):
    """The derivative of SiLU, ``sigmoid(x) * (1 + x * (1 - sigmoid(x)))``, used as an activation
    (Elfwing, Uchibe and Doya 2018): smooth, bounded in about [-0.1, 1.1], never flat at zero."""

    def forward(self, x: Tensor) -> Tensor:
        sig = torch.sigmoid(x)
        return sig * (1.0 + x * (1.0 - sig))


class PixelEncoder(nn.Module):
    """Conv stack + fully connected layer from the DQN papers.

    ``nature`` (Mnih et al. 2015): conv 32 8x8/4, 64 4x4/2, 64 3x3/1, fc 512.
    ``nips`` (Mnih et al. 2013, PAAC's default): conv 16 8x8/4, 32 4x4/2, fc 256.
    ``minatar`` (Young & Tian 2019, the network of all their agents): conv 16 3x3/1 (no padding),
    fc 128, with ReLUs as in the paper's DQN. ``minatar_ac``: the same layers with the paper's
    actor-critic activations, SiLU after the conv and dSiLU after the fc (Elfwing et al. 2018;
    MinAtar's ``AC_lambda.py``). MinAtar's inputs are 0/1 object channels, used as they are:
    ``uint8`` input is divided by 255 for the pixel stacks only.

    Its input is made channels-last, the memory format the networks put their convolutions in
    (``channels_last``).
    """

    def __init__(self, obs_shape: Sequence[int], arch: str = "nature") -> None:
        super().__init__()
        channels, height, width = obs_shape
        smooth = arch == "minatar_ac"   # the paper's actor-critic activations, SiLU and dSiLU
        if arch == "nature":
            convs = [nn.Conv2d(channels, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                     nn.Conv2d(64, 64, 3, 1), nn.ReLU()]
            hidden = 512
        elif arch == "nips":
            convs = [nn.Conv2d(channels, 16, 8, 4), nn.ReLU(), nn.Conv2d(16, 32, 4, 2), nn.ReLU()]
            hidden = 256
        elif arch in ("minatar", "minatar_ac"):
            convs = [nn.Conv2d(channels, 16, 3, 1), nn.SiLU() if smooth else nn.ReLU()]
            hidden = 128
        else:
            raise ValueError(f"unknown pixel encoder {arch!r}; use 'nature', 'nips', 'minatar' "
                             "or 'minatar_ac'")
        side = MIN_SIDE[arch]
        if min(height, width) < side:
            raise ValueError(
                f"encoder {arch!r} needs images of at least {side}x{side}, got {height}x{width}; "
                "use encoder 'minatar' (or 'auto') for small images"
            )
        self.scale_uint8 = not arch.startswith("minatar")
        self.convs = nn.Sequential(*convs, nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, channels, height, width)).shape[1]
        activation = DSiLU() if smooth else nn.ReLU()
        self.fc = nn.Sequential(nn.Linear(flat, hidden), activation)
        self.out_features = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # Cast to the weights' dtype (not float32) so float64 gradient checks run end to end.
        # fc[0] is the nn.Linear built in __init__ (indexing a Sequential is typed Module).
        obs = obs.contiguous(memory_format=torch.channels_last)  # uint8: the cheapest copy
        x = obs.to(cast(nn.Linear, self.fc[0]).weight.dtype)
        if obs.dtype == torch.uint8 and self.scale_uint8:
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


def channels_last(module: nn.Module) -> None:
    """Put ``module``'s convolutions in channels-last memory format (a no-op without any).

    oneDNN's CPU convolutions are about 1.2x faster forward+backward that way (Nature CNN, batch
    32; PAAC's NIPS net at 32 envs gave 1.3-1.8x more updates/s on one thread; both measured
    here), and cuDNN prefers it. Call it after initialising the weights: an initialiser fills
    memory in storage order, so the same seed gives other weights in the other format.
    """
    # Module.to(memory_format=...) is documented, but torch's overloads omit it.
    module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def auto_encoder(obs_shape: Sequence[int], image_default: str = "nature") -> str:
    """What ``auto`` picks for ``obs_shape``: the MLP for vectors; for images ``image_default``,
    the learner's Atari network (Nature CNN for DQN, NIPS CNN for PAAC), unless they are too
    small for it (``MIN_SIDE``), as MinAtar's 10x10 are: then MinAtar's network."""
    if len(obs_shape) != 3:
        return "mlp"
    return "minatar" if min(obs_shape[1:]) < MIN_SIDE[image_default] else image_default


def build_encoder(
    obs_shape: Sequence[int], kind: str = "auto", mlp_hidden: Sequence[int] = (64, 64),
    *, image_default: str = "nature",
) -> PixelEncoder | MLPEncoder:
    """Pick an encoder for ``obs_shape``; ``auto`` resolves through ``auto_encoder``."""
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoder {kind!r}; use one of {', '.join(ENCODERS)}")
    is_image = len(obs_shape) == 3
    if kind == "auto":
        kind = auto_encoder(obs_shape, image_default)
    if kind == "mlp":
        return MLPEncoder(obs_shape, mlp_hidden)
    if not is_image:
        raise ValueError(
            f"encoder {kind!r} needs (C, H, W) observations, got shape {tuple(obs_shape)}"
        )
    return PixelEncoder(obs_shape, kind)


class ActorCritic(nn.Module):
    """Shared encoder, softmax policy head and scalar value head (PAAC paper, Section 4; PPO's
    Atari network, Schulman et al. 2017, is the same with the Nature CNN).

    ``encoder="auto"`` picks ``image_default`` for Atari images (PAAC's original: ``"nips"``,
    conv 16 8x8/4, conv 32 4x4/2, fc 256; PPO's: ``"nature"``, 32-64-64, fc 512), MinAtar's net
    for 10x10 images and ``"mlp"`` for vectors. ``init``:

    - ``torch_uniform``: every weight and bias ~ U(+-1/sqrt(fan_in)), the Torch7 default PAAC's
      original code used;
    - ``orthogonal``: orthogonal weights with gain sqrt(2) in the encoder, 0.01 in the policy
      head (a near-uniform initial policy) and 1 in the value head, zero biases, as in OpenAI
      Baselines' PPO and CleanRL's ``ppo_atari.py``.
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        encoder: str = "auto",
        mlp_hidden: Sequence[int] = (64, 64),
        *,
        image_default: str = "nips",
        init: Literal["torch_uniform", "orthogonal"] = "torch_uniform",
    ) -> None:
        super().__init__()
        self.encoder = build_encoder(obs_shape, encoder, mlp_hidden, image_default=image_default)
        self.policy = nn.Linear(self.encoder.out_features, num_actions)
        self.value = nn.Linear(self.encoder.out_features, 1)
        if init == "orthogonal":
            apply_init(self, "orthogonal", gain=math.sqrt(2.0))
            orthogonal_(self.policy.weight, gain=0.01)
            orthogonal_(self.value.weight, gain=1.0)
        else:
            apply_init(self, init)
        channels_last(self)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits (B, A), values (B,))`` for a batch of observations (uint8 pixels or floats)."""
        features = self.encoder(obs)
        return self.policy(features), self.value(features).squeeze(-1)


def sample_actions(logits: Tensor, generator: torch.Generator | None, *,
                   total_rows: int | None = None, first_row: int = 0) -> Tensor:
    """One action per row, drawn from ``softmax(logits)`` by inverse CDF, one uniform per row.

    Data-parallel ranks pass the global batch size ``total_rows`` and their first row: every rank
    draws the uniforms of the whole batch from an identically seeded generator and keeps its
    slice, so N ranks sample exactly the actions one process with all the envs would.
    """
    rows = logits.shape[0]
    probs = F.softmax(logits, dim=-1)
    uniforms = torch.rand(rows if total_rows is None else total_rows, generator=generator,
                          device=logits.device, dtype=probs.dtype)[first_row:first_row + rows]
    cdf = probs.cumsum(-1)
    actions = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1), right=True)
    return actions.squeeze(-1).clamp_(max=probs.shape[-1] - 1)
