"""Atomic checkpoints that load without unpickling code.

Write: ``torch.save`` to a temporary file in the same directory, fsync, then ``os.replace`` —
a crash (even SIGKILL) mid-write leaves the previous checkpoint intact.
Read: ``torch.load(weights_only=True)``, which only rebuilds tensors and plain Python data, so a
checkpoint from elsewhere cannot run code on load. Everything we store is therefore tensors,
numbers, strings, lists and dicts (RNG states are JSON strings).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or not an rlkit checkpoint."""


FORMAT_VERSION = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle with code, wrong format
        raise CheckpointError(f"checkpoint '{path}' cannot be loaded safely: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"'{path}' is not an rlkit checkpoint (format {FORMAT_VERSION})")
    return state
