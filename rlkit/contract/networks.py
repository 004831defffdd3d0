"""Small shared building blocks: MLP, the Nature DQN CNN, observation encoders (Box and Dict
spaces), Polyak averaging.

Agents import these instead of re-declaring them, so every agent file stays about its algorithm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlkit.errors import ConfigError


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


class ObservationStandardizer(nn.Module):
    """``(obs - mean) / std`` per dimension for vector (non-image Box) observations, with the statistics of an
    offline dataset (:meth:`fit`) kept as buffers, so checkpoints and exports carry them; the identity for
    images, Dict spaces, or when disabled (then it holds no buffers: state dicts are unchanged).
    The Decision Transformer's reference code and CORL's BC standardise states this way (std + 1e-6)."""

    def __init__(self, observation_space: gym.Space, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = bool(enabled and isinstance(observation_space, gym.spaces.Box)
                            and len(observation_space.shape) >= 1
                            and not is_image_space(tuple(observation_space.shape), observation_space.dtype))
        if self.enabled:
            self.register_buffer("mean", torch.zeros(observation_space.shape))
            self.register_buffer("std", torch.ones(observation_space.shape))

    def forward(self, obs: Any) -> Any:
        return (obs.float() - self.mean) / self.std if self.enabled else obs

    @torch.no_grad()
    def fit(self, episodes: Any) -> None:
        """The mean and std of the episodes' observations (``observations[:T]``: the states acted from)."""
        if not self.enabled:
            return
        total, sum_, sumsq = 0, 0.0, 0.0
        for episode in episodes:
            obs = np.asarray(episode.observations[: len(episode.actions)], dtype=np.float64).reshape(
                len(episode.actions), -1)
            total += len(obs)
            sum_, sumsq = sum_ + obs.sum(axis=0), sumsq + np.square(obs).sum(axis=0)
        mean = sum_ / max(total, 1)
        std = np.sqrt(np.maximum(sumsq / max(total, 1) - np.square(mean), 0.0)) + 1e-6
        self.mean.copy_(torch.as_tensor(mean.reshape(self.mean.shape), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std.reshape(self.std.shape), dtype=torch.float32))


def is_image_space(shape: Sequence[int], dtype) -> bool:
    """Images: uint8 with 3 dims (C, H, W) — the convention of the Atari envs and SB3."""
    return len(shape) == 3 and np.dtype(dtype) == np.uint8


class DictEncoder(nn.Module):
    """Dict observations (goal-conditioned envs: ``observation``, ``achieved_goal``, ``desired_goal``; board
    games: ``observation``, ``action_mask``): vector keys are flattened and concatenated in sorted key order,
    each spatial key (a uint8 C×H×W image; with ``kind: board`` also an H×W×C board) goes through its own
    network of the encoder ``kind`` (:func:`spatial_encoder`); the features are concatenated to ``[B, out_dim]``."""

    def __init__(self, space: gym.spaces.Dict, kind: "str | EncoderConfig" = "auto") -> None:
        super().__init__()
        self.vector_keys: list[str] = []
        self.cnns = nn.ModuleDict()
        dim = 0
        for key in sorted(space.spaces):
            sub = space.spaces[key]
            if not isinstance(sub, gym.spaces.Box):
                raise ValueError(f"Dict observation key '{key}' is {sub}; rlkit's encoders take Box entries only")
            spatial = spatial_encoder(sub, kind)
            if spatial is not None:
                self.cnns[key] = spatial
                dim += self.cnns[key].out_dim
            else:
                self.vector_keys.append(key)
                dim += int(np.prod(sub.shape)) if sub.shape else 1
        self.out_dim = dim

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        first = next(iter(obs.values()))
        parts = [obs[key].reshape(first.shape[0], -1).float() for key in self.vector_keys]
        parts += [cnn(obs[key]) for key, cnn in self.cnns.items()]
        return torch.cat(parts, dim=1)


class MLPEncoder(nn.Module):
    """A base encoder followed by a learned MLP (``hidden`` widths, ReLU after each): ``[B, hidden[-1]]``."""

    def __init__(self, base: nn.Module, hidden: Sequence[int]) -> None:
        super().__init__()
        self.base = base
        self.mlp = mlp(base.out_dim, hidden, None)
        self.out_dim = int(hidden[-1])

    def forward(self, obs: Any) -> torch.Tensor:
        return self.mlp(self.base(obs))


class BoardCNN(nn.Module):
    """A small CNN for board-game planes: ``[B, H, W, C]`` channels-last (PettingZoo classic's layout: connect
    four's 6×7×2, tic-tac-toe's 3×3×2, one plane per player) -> ``[B, filters * H * W]``.

    3×3 convolutions with padding 1 and no stride keep every square, so a line of four is seen by neighbouring
    filters wherever it lies (the translation sharing an MLP on the flat board lacks; AlphaZero's board towers
    are deeper versions of this). Values are taken as they are (0/1 planes)."""

    def __init__(self, height: int, width: int, channels: int, filters: int = 64, layers: int = 3) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        c = channels
        for _ in range(layers):
            convs += [nn.Conv2d(c, filters, kernel_size=3, padding=1), nn.ReLU()]  # [B, filters, H, W]
            c = filters
        self.conv = nn.Sequential(*convs, nn.Flatten())                           # [B, filters * H * W]
        self.out_dim = filters * height * width

    def forward(self, board: torch.Tensor) -> torch.Tensor:
        return self.conv(board.float().permute(0, 3, 1, 2))


ENCODER_KINDS = ("auto", "nature", "flat", "board", "impala", "vit")
"""Observation encoders by name (``agent.encoder.kind``): ``auto`` is the Nature CNN for uint8 images and
flattening for vectors; ``nature`` insists on images; ``flat`` flattens everything (images too, as floats);
``board`` puts 3-D channels-last boards (and Dict keys holding them) through :class:`BoardCNN`; ``impala``
(the IMPALA ResNet) and ``vit`` (a small Vision Transformer) take uint8 C×H×W images
(:mod:`rlkit.contract.encoders`)."""

IMAGE_KINDS = ("nature", "impala", "vit")


@dataclass
class EncoderConfig:
    """``agent.encoder``: which network encodes observations, and where its weights start.

    ``init`` loads encoder weights written by ``rlkit pretrain`` (``encoder.safetensors``) into the agent's
    declared encoder and every copy of it (:func:`rlkit.training.build.load_encoder_init`) when a run starts
    (not on resume: the checkpoint holds the weights); ``freeze`` keeps them fixed (``Agent.freeze``)."""

    kind: str = "auto"
    """One of :data:`ENCODER_KINDS`."""
    features: int = 256
    """``impala``: width of the final linear layer (the encoder's output; 256 in the paper)."""
    channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    """``impala``: channels of the stages (one stage each; 16, 32, 32 in the paper)."""
    patch: int = 0
    """``vit``: patch size in pixels; 0 picks the largest size <= 8 that divides the image."""
    width: int = 128
    """``vit``: token width (the encoder's output)."""
    depth: int = 4
    """``vit``: transformer blocks."""
    heads: int = 4
    """``vit``: attention heads (must divide ``width``)."""
    init: str | None = None
    """A safetensors file of encoder weights (``rlkit pretrain``'s ``encoder.safetensors``) loaded when the run
    starts; its kind, settings and observation shape must match this run's. None: random initialisation."""
    freeze: bool = False
    """Keep the encoder's weights fixed (every trainable copy of it: SAC's actor and critic encoders)."""

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ConfigError(f"agent.encoder.kind must be one of {', '.join(ENCODER_KINDS)}, got {self.kind!r}")
        for name in ("features", "width", "depth", "heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"agent.encoder.{name} must be >= 1, got {getattr(self, name)}")
        if self.patch < 0:
            raise ConfigError(f"agent.encoder.patch must be >= 1 (or 0: chosen to divide the image), got {self.patch}")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ConfigError(f"agent.encoder.channels must be a non-empty list of widths >= 1, got {self.channels}")
        if self.width % self.heads:
            raise ConfigError(f"agent.encoder.width ({self.width}) must be a multiple of agent.encoder.heads "
                              f"({self.heads})")
        if self.init is not None and not self.init:
            raise ConfigError("agent.encoder.init must be a path to an encoder.safetensors file (or null)")

    def settings(self) -> dict[str, Any]:
        """The fields that shape the network of ``kind`` (stored with pretrained weights and checked on load)."""
        return {"impala": {"features": self.features, "channels": list(self.channels)},
                "vit": {"patch": self.patch, "width": self.width, "depth": self.depth, "heads": self.heads},
                }.get(self.kind, {})


def _options(kind: str | EncoderConfig) -> EncoderConfig:
    if isinstance(kind, EncoderConfig):
        return kind
    if kind not in ENCODER_KINDS:
        raise ConfigError(f"agent.encoder.kind must be one of {', '.join(ENCODER_KINDS)}, got {kind!r}")
    return EncoderConfig(kind=kind)


def resolved_kind(space: gym.Space, kind: str) -> str:
    """The network ``kind`` builds for ``space``: ``auto`` is ``nature`` for uint8 images, else ``flat``."""
    if kind != "auto":
        return kind
    if isinstance(space, gym.spaces.Box) and is_image_space(tuple(space.shape), space.dtype):
        return "nature"
    return "flat" if not isinstance(space, gym.spaces.Dict) else "auto"


def spatial_encoder(space: gym.spaces.Box, kind: str | EncoderConfig) -> nn.Module | None:
    """The network of encoder ``kind`` (a name or an :class:`EncoderConfig` with its settings) for a spatial
    Box (an image or a board), or None where ``space`` is flattened instead (vectors; everything under ``flat``)."""
    options = _options(kind)
    kind = options.kind
    shape = tuple(space.shape)
    if kind == "flat" or len(shape) != 3:
        return None
    if kind == "board":
        return BoardCNN(shape[0], shape[1], shape[2])
    if not is_image_space(shape, space.dtype):
        return None
    if kind == "impala":
        from rlkit.contract.encoders import ImpalaCNN

        return ImpalaCNN(shape[0], shape[1], shape[2], options.channels, options.features)
    if kind == "vit":
        from rlkit.contract.encoders import VisionTransformer

        return VisionTransformer(shape[0], shape[1], shape[2], options.patch, options.width, options.depth,
                                 options.heads)
    return NatureCNN(shape[0], shape[1], shape[2])  # auto, nature


def make_encoder(observation_space: gym.Space, hidden: Sequence[int] = (),
                 kind: str | EncoderConfig = "auto") -> nn.Module:
    """The encoder for an observation space (``out_dim`` features): by default the Nature CNN for images,
    flattening for vectors, :class:`DictEncoder` for Dict spaces; ``kind`` (``agent.encoder.kind``, one of
    :data:`ENCODER_KINDS`, or the whole :class:`EncoderConfig` with its settings) picks another network for
    spatial observations; with ``hidden`` widths, a learned MLP after it (``agent.encoder_hidden``: a trainable
    encoder for vector observations, e.g. for auxiliary losses)."""
    options = _options(kind)
    kind = options.kind
    if isinstance(observation_space, gym.spaces.Dict):
        base = DictEncoder(observation_space, options)
    else:
        spatial = spatial_encoder(observation_space, options)
        if kind in ("board", *IMAGE_KINDS) and spatial is None:
            raise ConfigError(f"agent.encoder.kind {kind!r} needs "
                              f"{'H x W x C boards' if kind == 'board' else 'uint8 C x H x W images'}, the env "
                              f"observes {observation_space}; use kind: auto")
        base = spatial if spatial is not None else FlatEncoder(tuple(observation_space.shape))
    return MLPEncoder(base, hidden) if hidden else base


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers evaluated as one batched matmul: ``[E, B, in]`` -> ``[E, B, out]``.

    Each member is initialised like ``nn.Linear`` (uniform in +-1/sqrt(in) for weights and biases).
    Twin critics (SAC, RIS) use it so both Q-functions share every kernel launch.
    """

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def obs_to_tensor(obs: Any, device: torch.device) -> torch.Tensor | dict[str, torch.Tensor]:
    """A batch of observations (array, or dict of arrays for Dict spaces) as tensors on ``device``. Tensors
    already there pass through uncopied (a device-resident env, e.g. the warp backend's ``tensor_obs``)."""
    if isinstance(obs, Mapping):
        return {key: _to_device(value, device) for key, value in obs.items()}
    return _to_device(obs, device)


def _to_device(value: Any, device: torch.device) -> torch.Tensor:
    if torch.is_tensor(value):
        return value.to(device)
    return torch.as_tensor(np.asarray(value), device=device)


def index_obs(obs: Any, index: Any) -> Any:
    """``obs[index]`` for an array or a dict of arrays."""
    if isinstance(obs, Mapping):
        return {key: value[index] for key, value in obs.items()}
    return obs[index]


def obs_batch_size(obs: Any) -> int:
    """Number of observations in a batch (array or dict of arrays)."""
    if isinstance(obs, Mapping):
        return len(next(iter(obs.values())))
    return len(obs)


@torch.no_grad()
def polyak_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """``target <- tau * source + (1 - tau) * target``; ``tau=1`` is a hard copy."""
    if tau >= 1.0:
        target.load_state_dict(source.state_dict())
        return
    for p_target, p in zip(target.parameters(), source.parameters()):
        p_target.lerp_(p, tau)
