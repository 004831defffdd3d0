"""Small shared building blocks: MLP, the Nature DQN CNN, Polyak averaging, linear schedules.

Agents import these instead of re-declaring them, so every agent file stays about its algorithm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int | None, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``in_dim -> hidden[0] -> ... -> out_dim`` with ``activation`` between layers (none after the last).

    ``out_dim=None`` ends on the last hidden layer (with its activation), for use as an encoder.
    """
    layers: list[nn.Module] = []
    dim = in_dim
    for width in hidden:
        layers += [nn.Linear(dim, width), activation()]
        dim = width
    if out_dim is not None:
        layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class NatureCNN(nn.Module):
    """The encoder of Mnih et al. (2015), "Human-level control through deep RL", Methods.

    uint8 frames ``[B, C, 84, 84]`` are scaled to [0, 1] here, so replay stores bytes.
    Output: ``[B, 512]`` features.
    """

    def __init__(self, in_channels: int, height: int = 84, width: int = 84, features: int = 512) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=8, stride=4), nn.ReLU(),  # [B, 32, 20, 20]
            nn.Conv2d(32, 64, kernel_size=4, stride=2), nn.ReLU(),           # [B, 64, 9, 9]
            nn.Conv2d(64, 64, kernel_size=3, stride=1), nn.ReLU(),           # [B, 64, 7, 7]
            nn.Flatten(),                                                    # [B, 3136]
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, in_channels, height, width)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.out_dim = features

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(frames.float() / 255.0))


class FlatEncoder(nn.Module):
    """Flattens vector observations (any trailing shape) to ``[B, D]`` float features."""

    def __init__(self, obs_shape: Sequence[int]) -> None:
        super().__init__()
        self.out_dim = int(torch.tensor(obs_shape).prod().item()) if len(obs_shape) else 1

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.reshape(obs.shape[0], -1).float()


def is_image_space(shape: Sequence[int], dtype) -> bool:
    """Images: uint8 with 3 dims (C, H, W) — the convention of the Atari envs and SB3."""
    import numpy as np

    return len(shape) == 3 and np.dtype(dtype) == np.uint8


@torch.no_grad()
def polyak_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """``target <- tau * source + (1 - tau) * target``; ``tau=1`` is a hard copy."""
    if tau >= 1.0:
        target.load_state_dict(source.state_dict())
        return
    for p_target, p in zip(target.parameters(), source.parameters()):
        p_target.lerp_(p, tau)


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """Linear interpolation from ``start`` to ``end`` over ``duration`` steps, then ``end``."""
    if duration <= 0:
        return end
    fraction = min(max(step / duration, 0.0), 1.0)
    return start + fraction * (end - start)
