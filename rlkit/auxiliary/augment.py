"""Observation augmentations for the self-supervised modules (CURL, Mean Teacher) and DrQ's Q targets.

- ``shift`` (DrQ, Kostrikov, Yarats, Fergus 2020, sec. 3.1): pad each side by ``pad`` pixels (edge values
  repeated), then take a random ``H x W`` crop: a random translation of up to +-pad pixels; shapes unchanged.
- ``crop`` (CURL, Srinivas et al. 2020, sec. 4.3: 100 -> 84 random crops): a random ``(H - 2 pad) x (W - 2 pad)``
  crop, resized back to ``H x W`` (bilinear) so the agent's encoder keeps its input shape.
- ``noise``: for vector observations, x + sigma * eps with eps ~ N(0, I) (images have no crop analogue there).
- ``none``: the identity (Mean Teacher's identical-augmentation check).

A Dict observation (image and vector keys) is augmented key by key: see :func:`check_augmentation`.

Images are ``[B, C, H, W]`` (uint8 stays uint8: replay stores bytes and the encoder scales). Randomness comes from
torch's global generator, drawn on the CPU, which the run state saves and restores: a resumed run augments
exactly as the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import torch
import torch.nn.functional as F

from rlkit.errors import ConfigError

__all__ = ["AUGMENTATIONS", "augment", "check_augmentation", "check_momentum_view_fields", "drq_views", "has_image", "random_shift",
           "random_crop", "is_image"]

AUGMENTATIONS = ("auto", "shift", "crop", "noise", "none")


def is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == "uint8"


def check_augmentation(kind: str, space: gym.Space, where: str) -> str | dict[str, str]:
    """The augmentation ``kind`` resolved for observations of ``space`` (``auto``: shift for uint8 images, noise
    for vectors); a ConfigError naming ``where`` when it does not fit them.

    A Dict observation (a vision-guided task: ``proprio``, ``task``, ``pixels``) resolves to one kind per key:
    ``auto``, ``shift`` and ``crop`` move its image keys and leave its vector keys as they are (the image is what
    the view changes; the body's own state is not seen through a camera), ``noise`` perturbs its vector keys and
    leaves its images; a Dict without images takes ``auto`` as ``noise``. A kind that touches no key is refused."""
    if kind not in AUGMENTATIONS:
        raise ConfigError(f"{where}.augment must be one of {', '.join(AUGMENTATIONS)}, got {kind!r}")
    if isinstance(space, gym.spaces.Dict):
        images = {key for key, sub in space.spaces.items() if is_image(sub)}
        if kind == "auto":
            kind = "shift" if images else "noise"
        if kind in ("shift", "crop") and not images:
            raise ConfigError(f"{where}.augment: {kind} needs a uint8 (C, H, W) image among the Dict observation's "
                              f"keys, the env observes {space}; use augment: noise")
        if kind == "noise" and len(images) == len(space.spaces):
            raise ConfigError(f"{where}.augment: noise perturbs vectors, every key of {space} is an image; "
                              "use augment: shift or crop")
        moved = images if kind in ("shift", "crop") else set(space.spaces) - images
        return {key: (kind if key in moved or kind == "none" else "none") for key in sorted(space.spaces)}
    image = is_image(space)
    if kind == "auto":
        return "shift" if image else "noise"
    if kind in ("shift", "crop") and not image:
        raise ConfigError(f"{where}.augment: {kind} needs uint8 (C, H, W) images, the env observes {space}; "
                          "use augment: noise")
    return kind


def has_image(space: gym.Space) -> bool:
    """An image observation, or a Dict observation with an image among its keys (what DrQ's shifts need)."""
    if isinstance(space, gym.spaces.Dict):
        return any(is_image(sub) for sub in space.spaces.values())
    return is_image(space)


def check_momentum_view_fields(augment: str, tau: float, pad: int, sigma: float) -> None:
    """The shared fields of the modules that compare two augmented views through an EMA copy (CURL, Mean Teacher):
    a known augmentation, an EMA rate in (0, 1], a margin and a noise scale >= 0."""
    if augment not in AUGMENTATIONS:
        raise ConfigError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
    if not 0.0 < tau <= 1.0:
        raise ConfigError(f"tau must lie in (0, 1], got {tau}")
    if pad < 0 or not sigma >= 0:
        raise ConfigError(f"pad and sigma must be >= 0, got {pad} and {sigma}")


def _offsets(n: int, high: int, device: torch.device) -> torch.Tensor:
    return torch.randint(0, high + 1, (n,)).to(device)  # the global CPU generator (checkpointed by the run state)


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> the same shape and dtype, each image translated by up to +-``pad`` pixels (edge padding)."""
    B, C, H, W = images.shape
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="replicate")          # [B, C, H + 2p, W + 2p]
    rows = _offsets(B, 2 * pad, images.device)[:, None] + torch.arange(H, device=images.device)  # [B, H]
    cols = _offsets(B, 2 * pad, images.device)[:, None] + torch.arange(W, device=images.device)  # [B, W]
    b = torch.arange(B, device=images.device)[:, None, None, None]
    c = torch.arange(C, device=images.device)[None, :, None, None]
    out = padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]             # [B, C, H, W]
    return out.to(images.dtype)


def random_crop(images: torch.Tensor, pad: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> the same shape and dtype: a random ``(H - 2 pad) x (W - 2 pad)`` crop per image, resized back."""
    B, C, H, W = images.shape
    h, w = H - 2 * pad, W - 2 * pad
    if h < 1 or w < 1:
        raise ValueError(f"crop pad {pad} leaves nothing of {H} x {W} images")
    rows = _offsets(B, 2 * pad, images.device)[:, None] + torch.arange(h, device=images.device)
    cols = _offsets(B, 2 * pad, images.device)[:, None] + torch.arange(w, device=images.device)
    b = torch.arange(B, device=images.device)[:, None, None, None]
    c = torch.arange(C, device=images.device)[None, :, None, None]
    crops = images.float()[b, c, rows[:, None, :, None], cols[:, None, None, :]]    # [B, C, h, w]
    out = F.interpolate(crops, size=(H, W), mode="bilinear", align_corners=False)
    return out.round().clamp(0, 255).to(images.dtype) if images.dtype == torch.uint8 else out.to(images.dtype)


def augment(obs: Any, kind: str | Mapping[str, str], pad: int = 4, sigma: float = 0.1) -> Any:
    """``obs`` augmented by ``kind`` (resolved, see :func:`check_augmentation`); ``[B, ...]`` in, same out.
    A dict of observations takes a dict of kinds, one per key."""
    if isinstance(kind, Mapping):
        return {key: augment(value, kind[key], pad, sigma) for key, value in obs.items()}
    if kind == "none":
        return obs
    if kind == "shift":
        return random_shift(obs, pad)
    if kind == "crop":
        return random_crop(obs, pad)
    if kind == "noise":
        noise = torch.randn(obs.shape, dtype=torch.float32).to(obs.device)
        return obs.float() + sigma * noise
    raise ValueError(f"unknown augmentation {kind!r}")


def drq_views(obs: Any, n: int, pad: int) -> Any:
    """DrQ's ``n`` random shifts of a batch ``[B, ...]`` stacked as ``[n * B, ...]`` (view j = rows j*B..(j+1)*B);
    ``n = 0``: the batch itself, unaugmented (DrQ off). A dict of observations: every key repeated alike, the
    image keys (uint8 ``[B, C, H, W]``) shifted, the vector keys copied (the same state seen through n views)."""
    if n == 0:
        return obs
    if isinstance(obs, Mapping):
        return {key: (drq_views(value, n, pad) if _is_image_batch(value)
                      else value.repeat(n, *([1] * (value.ndim - 1)))) for key, value in obs.items()}
    return random_shift(obs.repeat(n, *([1] * (obs.ndim - 1))), pad)


def _is_image_batch(value: torch.Tensor) -> bool:
    return value.ndim == 4 and value.dtype == torch.uint8
