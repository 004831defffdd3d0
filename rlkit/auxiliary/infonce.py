"""InfoNCE with in-batch negatives: the loss the contrastive modules (CURL, CPC) share.

van den Oord, Li, Vinyals (2018), "Representation Learning with Contrastive Predictive Coding", eq. (4): for
queries q_i and keys k_j (k_i the positive of q_i, every other k_j a negative drawn from the batch),

    s_ij = q_i^T W k_j / T            (bilinear, CURL eq. 3: W learned; W = I gives the dot product of MoCo)
    L    = -1/B sum_i log( exp(s_ii) / sum_j exp(s_ij) )  = cross-entropy of the rows of S on the diagonal

a lower bound on the mutual information: I(q; k) >= log B - L. ``T`` is the temperature (MoCo: 0.07 on
normalised features; CURL: 1 with its bilinear W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["info_nce", "similarities"]


def similarities(queries: torch.Tensor, keys: torch.Tensor, temperature: float = 1.0,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """``S = q W k^T / T``: queries ``[B, D]``, keys ``[B, D]`` (or ``[B, E]`` with ``weight`` ``[D, E]``) ->
    ``[B, B]`` logits, row i = query i against every key."""
    if queries.ndim != 2 or keys.ndim != 2 or len(queries) != len(keys):
        raise ValueError(f"queries and keys must be [B, D] with the same B, got {tuple(queries.shape)} and "
                         f"{tuple(keys.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    projected = queries if weight is None else queries @ weight  # [B, E]
    return projected @ keys.T / temperature                      # [B, B]


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float = 1.0,
             weight: torch.Tensor | None = None) -> torch.Tensor:
    """The InfoNCE loss (module docstring): the cross-entropy of ``similarities`` on the diagonal (key i is
    query i's positive, the other keys of the batch its negatives). A 0-dim tensor."""
    logits = similarities(queries, keys, temperature, weight)
    labels = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, labels)  # log-sum-exp inside: stable without CURL's max subtraction
