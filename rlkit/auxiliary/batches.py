"""What the self-supervised modules read from a batch, on transitions and on sequence windows alike.

A transition batch (:class:`rlkit.experience.replay.Transitions`) holds single observations and ``next_obs``
``n_step`` steps ahead; a sequence batch (:class:`rlkit.experience.sequences.Sequences`) holds windows
``[B, L, ...]`` left-padded, with ``mask`` False on padding. CURL and Mean Teacher need observations; CPC and
CLAPP need (o_t, o_{t+k}) pairs.
"""

from __future__ import annotations

from typing import Any

import torch

from rlkit.experience.sequences import Sequences

__all__ = ["batch_observations", "encode_windows", "future_anchors"]


def batch_observations(batch: Any) -> Any:
    """The observations of a batch as ``[N, *obs_shape]``: a transition batch's ``obs``; the unpadded steps of a
    sequence batch (``obs[mask]``)."""
    if isinstance(batch, Sequences):
        if isinstance(batch.obs, dict):
            return {key: value[batch.mask] for key, value in batch.obs.items()}
        return batch.obs[batch.mask]
    return batch.obs


def encode_windows(agent: Any, part: str, obs: Any) -> torch.Tensor:
    """``[B, L, *obs_shape]`` (or a dict of them) -> ``[B, L, F]`` through the attached part."""
    first = next(iter(obs.values())) if isinstance(obs, dict) else obs
    B, L = first.shape[:2]
    if isinstance(obs, dict):
        flat = {key: value.reshape(B * L, *value.shape[2:]) for key, value in obs.items()}
    else:
        flat = obs.reshape(B * L, *obs.shape[2:])
    return agent.encode(flat, part).reshape(B, L, -1)


def future_anchors(mask: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, t)``: for each window with a valid pair, one anchor t drawn uniformly among the steps with t and
    t + offset both unpadded (the global CPU generator, which the run state checkpoints)."""
    valid = mask[:, : mask.shape[1] - offset] & mask[:, offset:]         # [B, L - k]
    rows = torch.nonzero(valid.any(dim=1)).reshape(-1)
    if len(rows) == 0:
        return rows, rows
    t = torch.multinomial(valid[rows].float().cpu(), 1).reshape(-1).to(mask.device)
    return rows, t
