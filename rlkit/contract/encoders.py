"""Image encoders beyond the Nature CNN, chosen by ``agent.encoder.kind`` (:mod:`rlkit.contract.networks`):

- ``impala``: the IMPALA ResNet of Espeholt et al. (2018), "IMPALA: Scalable Distributed Deep-RL with
  Importance Weighted Actor-Learner Architectures", Fig. 3 (right): three stages, each a 3×3 convolution, a
  3×3 max-pool with stride 2 and two residual blocks (ReLU, conv 3×3, ReLU, conv 3×3, plus the input), with
  16, 32, 32 channels; then ReLU, flatten and a linear layer to 256 features with a ReLU.
- ``vit``: a small Vision Transformer after Dosovitskiy et al. (2021), "An Image is Worth 16x16 Words",
  eqs. (1)–(4): non-overlapping P×P patches linearly embedded, a learned class token prepended, learned
  position embeddings added, L pre-norm blocks ``z = z + MSA(LN(z)); z = z + MLP(LN(z))`` (MLP: width ->
  4·width -> width with GELU), and the class token through a final LayerNorm as the image's features.
  Attention is ``F.scaled_dot_product_attention`` (fused kernels where torch has them).

Both take uint8 frames ``[B, C, H, W]`` of any H×W and scale them by 1/255 themselves (as :class:`NatureCNN`
does), so replay buffers keep bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rlkit.errors import ConfigError


# --------------------------------------------------------------------------------------
# IMPALA ResNet
# --------------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3×3 same-padding convolutions (channels kept)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(F.relu(self.conv0(F.relu(x))))


class ImpalaStage(nn.Module):
    """conv 3×3 -> max-pool 3×3 stride 2 (padding 1: H -> ceil(H / 2)) -> two residual blocks."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.res0 = ResidualBlock(channels)
        self.res1 = ResidualBlock(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res1(self.res0(self.pool(self.conv(x))))


class ImpalaCNN(nn.Module):
    """The IMPALA ResNet: ``[B, C, H, W]`` uint8 -> ``[B, features]`` (``[B, 256]`` by default).

    84×84 frames: stages give 42×42×16, 21×21×32, 11×11×32 (3,872 values) before the linear layer."""

    def __init__(self, in_channels: int, height: int, width: int, channels: Sequence[int] = (16, 32, 32),
                 features: int = 256) -> None:
        super().__init__()
        stages, c = [], in_channels
        for out in channels:
            stages.append(ImpalaStage(c, out))
            c = out
        self.stages = nn.Sequential(*stages)                                     # [B, c, ~H/8, ~W/8]
        with torch.no_grad():
            flat = self.stages(torch.zeros(1, in_channels, height, width)).numel()
        self.fc = nn.Linear(flat, features)                                      # [B, features]
        self.out_dim = int(features)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.stages(frames.float() / 255.0)
        return F.relu(self.fc(F.relu(x).flatten(1)))


# --------------------------------------------------------------------------------------
# Vision Transformer
# --------------------------------------------------------------------------------------


def vit_patch(height: int, width: int, patch: int = 0, where: str = "agent.encoder.patch") -> int:
    """The patch size for an ``height`` × ``width`` image: ``patch`` if it divides both (else a one-line
    ConfigError listing the sizes that do), or with ``patch = 0`` the largest size <= 8 dividing both."""
    fits = [p for p in range(1, min(height, width) + 1) if height % p == 0 and width % p == 0]
    if patch:
        if patch not in fits:
            raise ConfigError(f"{where}={patch} does not divide the {height} x {width} image into whole patches; "
                              f"use one of {', '.join(map(str, fits[1:] or fits))}")
        return patch
    small = [p for p in fits if 2 <= p <= 8]
    if not small:
        raise ConfigError(f"{where}: no patch size from 2 to 8 divides the {height} x {width} image; set "
                          f"{where} to one of {', '.join(map(str, fits[1:] or fits))}")
    return small[-1]


class Attention(nn.Module):
    """Multi-head self-attention: ``[B, N, D]`` -> ``[B, N, D]`` with ``heads`` heads of ``D / heads``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3×[B, h, N, d/h]
        y = F.scaled_dot_product_attention(q, k, v)                                                 # [B, h, N, d/h]
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """One pre-norm transformer block (Dosovitskiy et al. eqs. 2–3)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """A small ViT: ``[B, C, H, W]`` uint8 -> ``[B, width]`` (the class token after the final LayerNorm)."""

    def __init__(self, in_channels: int, height: int, width: int, patch: int = 0, dim: int = 128, depth: int = 4,
                 heads: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"agent.encoder.width ({dim}) must be a multiple of agent.encoder.heads ({heads})")
        self.patch = vit_patch(height, width, patch)
        n_patches = (height // self.patch) * (width // self.patch)
        self.embed = nn.Conv2d(in_channels, dim, kernel_size=self.patch, stride=self.patch)  # [B, D, H/P, W/P]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n_patches + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.out_dim = int(dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.embed(frames.float() / 255.0).flatten(2).transpose(1, 2)       # [B, N, D]
        cls = self.cls_token.expand(x.shape[0], -1, -1)                          # [B, 1, D]
        x = torch.cat([cls, x], dim=1) + self.pos_embed                          # [B, N + 1, D]
        return self.norm(self.blocks(x))[:, 0]                                   # [B, D]
