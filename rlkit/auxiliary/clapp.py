"""CLAPP: CPC made layer-local — every block of the encoder learns from its own hinge loss, nothing crosses blocks.

Illing, Ventura, Bellec, Gerstner (NeurIPS 2021), "Local plasticity rules can learn deep representations using
self-supervised contrastive predictions", eq. (1)-(2): for block l with activity z^l_t and its own prediction
matrix W^l,

    u^l   = z^l_{t+k}^T W^l c^l_t                 c^l_t = z^l_t (the block's own activity at t is the context)
    L^l   = max(0, 1 - y u^l)                      y = +1 for the true future, y = -1 for a negative (the future of
                                                   another row of the batch); both are scored for every row
    z^l   = block_l(sg(z^{l-1}))                  the block's input is detached: no gradient crosses a boundary
    L     = 1/n_blocks sum_l mean_rows (L^l(pos) + L^l(neg))

so the gradient reaching block l comes only from L^l (a test checks it). A convolutional block is scored at each
spatial position (``pooled: false``, the default): u^l(p) = z^l_{t+k}(p)^T W^l c^l_t(p), W^l a 1x1 convolution
shared by the positions, the negative at p the other row's future at the same p — the paper's loss, applied to
each patch's encoding (its reference code, ``sample_negs_locally_same_everywhere``). ``pooled: true`` scores the
activity averaged over space instead, one vector per image: a convolution then has no reason to keep *where*
things are, and on the linear probes of docs/benchmarks.md (Nature CNN, 2,000 steps, 3 seeds) it lost the pole's
angle block after block: R² of the true state 0.21, below the random encoder's 0.49; per position 0.54 (CPC 0.67).

Blocks are read off the attached encoder:
the Nature CNN's convolutions (each with its ReLU) and its linear layer, the IMPALA ResNet's three stages (conv,
pool, two residual blocks each) and its linear layer, an MLP's Linear + ReLU pairs (``agent.encoder_hidden``);
an encoder of another shape (the ViT) counts as one block. A Dict observation's encoder (a vision-guided task:
image and vector keys) gives the blocks of each image key's network, run on that key, then its MLP's
(:func:`encoder_streams`). The future observation
is what CPC's is (:mod:`rlkit.auxiliary.cpc`): ``next_obs`` on transitions (offset = train.replay.n_step), the
step ``offset`` ahead in sequence windows. The encoder's end-to-end gradient from the agent's own loss is unchanged:
CLAPP adds local losses, it does not replace the RL loss.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import torch
from torch import nn

from rlkit.auxiliary.batches import future_anchors
from rlkit.auxiliary.cpc import check_offsets
from rlkit.contract.auxiliary import AuxConfig, AuxModule
from rlkit.contract.encoders import ImpalaCNN
from rlkit.contract.networks import DictEncoder, MLPEncoder, NatureCNN, index_obs
from rlkit.errors import ConfigError
from rlkit.experience.sequences import Sequences


class _Scale255(nn.Module):
    """The Nature CNN's input scaling (uint8 -> [0, 1]) as a stage of its first block."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.float() / 255.0


class _ReluFlatten(nn.Flatten):
    """The IMPALA ResNet's ReLU and flattening before its linear layer (a Flatten: it opens that layer's block)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.relu(x))


def _stages(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, MLPEncoder):
        return _stages(module.base) + _stages(module.mlp)
    if isinstance(module, NatureCNN):
        return [_Scale255(), *_stages(module.conv), *_stages(module.fc)]
    if isinstance(module, ImpalaCNN):
        return [_Scale255(), *module.stages, _ReluFlatten(), module.fc, nn.ReLU()]
    if isinstance(module, nn.Sequential):
        return [stage for child in module for stage in _stages(child)]
    return [module]


def _has_params(stage: nn.Module) -> bool:
    return any(True for _ in stage.parameters())


def encoder_blocks(encoder: nn.Module) -> list[nn.Sequential]:
    """The encoder as a list of blocks run one after the other (same modules, same parameters): a new block
    starts at each layer with parameters (and at a Flatten, so a convolution's output is pooled before it)."""
    blocks: list[list[nn.Module]] = [[]]
    for stage in _stages(encoder):
        starts = _has_params(stage) or isinstance(stage, nn.Flatten)
        if starts and any(_has_params(s) for s in blocks[-1]):
            blocks.append([])
        blocks[-1].append(stage)
    return [nn.Sequential(*block) for block in blocks if any(_has_params(s) for s in block)] or \
        [nn.Sequential(*blocks[0])]


def encoder_streams(encoder: nn.Module) -> list[tuple[Callable[[Any], torch.Tensor], list[nn.Sequential]]]:
    """The encoder as streams of blocks, each ``(inputs, blocks)``: ``inputs`` picks the stream's input from an
    observation batch. A Box observation's encoder is one stream (:func:`encoder_blocks`). A Dict observation's
    (:class:`DictEncoder`: a vision-guided task's ``pixels``, ``proprio``, ``task``) has one stream per image key,
    its image network's blocks on that key, and, with ``agent.encoder_hidden``, one more for the MLP on the
    concatenated features (their input detached like every block's); its vector keys have no weights to learn."""
    base = encoder.base if isinstance(encoder, MLPEncoder) else encoder
    if not isinstance(base, DictEncoder):
        return [(_identity, encoder_blocks(encoder))]
    streams = [(operator.itemgetter(key), encoder_blocks(network)) for key, network in base.cnns.items()]
    if isinstance(encoder, MLPEncoder):
        streams.append((base, encoder_blocks(encoder.mlp)))
    return streams or [(_identity, encoder_blocks(encoder))]


def _identity(obs: Any) -> Any:
    return obs


def pool(activity: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, C]`` (mean over space); ``[B, D]`` unchanged; other shapes flattened."""
    if activity.ndim == 4:
        return activity.mean(dim=(2, 3))
    return activity.reshape(activity.shape[0], -1)


def negative_rows(batch: int, negatives: int, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """``[negatives, batch]`` row indices (``[1, batch]`` for one negative or a batch of one): which other row's future is each row's negative. One negative is the
    previous row's (``i - 1 mod B``: deterministic, the loss before ``negatives`` existed); more are drawn uniformly
    from the *other* rows, independently per row and per draw (the reference code's ``negative_samples``, with
    the same draw at every spatial position: ``sample_negs_locally_same_everywhere``)."""
    if negatives == 1 or batch < 2:  # ``[1, batch]``: a single negative (averaging copies would change nothing)
        return ((torch.arange(batch, device=device) - 1) % max(batch, 1))[None]
    # drawn on the CPU generator (the one a checkpoint saves, as the augmentations do), then moved
    shift = torch.randint(1, batch, (negatives, batch), generator=generator).to(device)
    return (torch.arange(batch, device=device)[None] + shift) % batch


def hinge_scores(future: torch.Tensor, context: torch.Tensor, W: torch.Tensor,
                 negative_index: torch.Tensor | None = None) -> torch.Tensor:
    """CLAPP's loss for one block: max(0, 1 - u_pos) + mean_n max(0, 1 + u_neg,n), mean over rows (and over
    positions); row i's negatives are the futures of rows ``negative_index[:, i]`` (default: row i - 1 mod B, one
    negative). ``[B, D]`` activity is scored as one vector per row; ``[B, C, H, W]`` activity once per position,
    u(p) = z_{t+k}(p)^T W c_t(p) (W a 1x1 convolution), a negative at p being the other row's future at the same p.
    With several negatives the positive term is counted once per row, as the reference code's hinge averages
    over (positive, negative) pairs."""
    if future.ndim == 4:
        projected = torch.einsum("oc,bchw->bohw", W, context)       # [B, C, H, W]: W c_t(p)
        channels = 1
    else:
        projected = context @ W.T                                   # [B, D]: W c_t
        channels = -1
    if negative_index is None:
        negative_index = negative_rows(future.shape[0], 1, device=future.device)
    positive = (future * projected).sum(channels)                   # [B(, H, W)]  u for y = +1
    negative = torch.stack([(future[rows] * projected).sum(channels) for rows in negative_index])  # [n, B(, H, W)]
    return (torch.relu(1 - positive) + torch.relu(1 + negative).mean(0)).mean()  # one negative: the old sum, bit for bit


@dataclass
class CLAPPConfig(AuxConfig):
    name: str = "clapp"
    offset: int = 1
    """Steps ahead of the true future (transitions: train.replay.n_step)."""
    negatives: int = 1
    """Negatives per row: 1 is the previous row's future (deterministic); more are drawn from the other rows at
    random, per row and per update, and their hinge terms averaged (the reference code's ``negative_samples``).
    With one easy negative the hinge saturates once the slowest features tell two episodes apart; more negatives
    keep some pair inside the margin (docs/benchmarks.md, "Linear probes")."""
    pooled: bool = False
    """Score a convolutional block's activity averaged over space (one vector per image) if true; else at each
    spatial position with the other row's future at the same position as negative (the paper's per-patch loss)."""

    module: ClassVar[type[AuxModule]]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.offset < 1:
            raise ConfigError(f"offset must be >= 1, got {self.offset}")
        if isinstance(self.negatives, bool) or not isinstance(self.negatives, int) or self.negatives < 1:
            raise ConfigError(f"negatives must be >= 1 (other rows' futures per row), got {self.negatives}")

    def check_run(self, run: Any, experience: str, where: str) -> None:
        check_offsets([self.offset], run, experience, where)


class CLAPP(AuxModule):
    """One W^l ``[D_l, D_l]`` per encoder block, built in :meth:`bind` from the attached encoder."""

    def __init__(self, cfg: CLAPPConfig, feature_dim: int, observation_space: gym.Space, action_space: gym.Space) -> None:
        super().__init__(cfg, feature_dim, observation_space, action_space)
        self.observation_space = observation_space
        self.W = nn.ParameterList()
        self._blocks: list[nn.Sequential] = []  # the encoder's own modules: kept out of this module's parameters
        self._streams: list[tuple[Callable[[Any], torch.Tensor], list[nn.Sequential]]] = []

    def bind(self, source: nn.Module, example: Any = None) -> None:
        self._streams = encoder_streams(source)
        if example is None:
            raise ValueError("CLAPP.bind needs an example batch as the part receives it (Agent._attach_aux passes one)")
        device = next(source.parameters()).device
        with torch.no_grad():
            for inputs, blocks in self._streams:
                x = inputs(example)
                for block in blocks:
                    x = block(x)
                    dim = pool(x).shape[-1]  # channels of a convolutional block: pooled or per position
                    self.W.append(nn.Parameter(torch.randn(dim, dim, device=device) / dim))
        self._blocks = [block for _, blocks in self._streams for block in blocks]

    def layer_losses(self, obs: Any, future_obs: Any, agent: Any) -> list[torch.Tensor]:
        """L^l of every block (module docstring), inputs detached at each block boundary."""
        if self.part == agent.parts.encoder and agent.parts.encoder_inputs is not None:
            obs, future_obs = agent.parts.encoder_inputs(obs), agent.parts.encoder_inputs(future_obs)
        losses: list[torch.Tensor] = []
        W = iter(self.W)
        negatives = None  # one draw of negative rows per update, shared by every block (as one batch is)
        for inputs, blocks in self._streams:
            x, y = inputs(obs), inputs(future_obs)
            for block in blocks:
                x, y = block(_detached(x)), block(_detached(y))
                if negatives is None:
                    negatives = negative_rows(x.shape[0], self.cfg.negatives, device=x.device)
                w = next(W)
                losses.append(hinge_scores(pool(y), pool(x), w, negatives) if self.cfg.pooled or x.ndim != 4
                              else hinge_scores(y, x, w, negatives))
        return losses

    def loss(self, batch: Any, agent: Any) -> torch.Tensor:
        if isinstance(batch, Sequences):
            rows, t = future_anchors(batch.mask, self.cfg.offset)
            obs, future_obs = index_obs(batch.obs, (rows, t)), index_obs(batch.obs, (rows, t + self.cfg.offset))
        else:
            obs, future_obs = batch.obs, batch.next_obs
        return torch.stack(self.layer_losses(obs, future_obs, agent)).mean()


def _detached(x: Any) -> Any:
    """The input of a block cut from the graph (a dict of observations: each entry; integer images as they are)."""
    if isinstance(x, dict):
        return {key: _detached(value) for key, value in x.items()}
    return x.detach() if x.is_floating_point() else x


CLAPPConfig.module = CLAPP
