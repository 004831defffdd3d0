"""Exported policies: the weights an agent needs to act, in safetensors, beside the resolved config.

    rlkit export RUN_DIR OUT_DIR [--checkpoint best|latest]
    rlkit eval OUT_DIR --episodes 100

An exported directory holds ``config.yaml`` (the run's resolved config) and ``model.safetensors``
(the tensors of the agent's acting parts, e.g. MPO's policy or DQN's Q-network: no critic, no
optimizer, no replay), a few MB at most. It is what a pretrained model shipped with the repo or
downloaded from elsewhere looks like. safetensors holds only named tensors and a string-to-string
header, so loading one never runs code; its header records the agent and env it was made for, and a
file that does not match the config's agent is a one-line :class:`~rlkit.runfiles.checkpoint.CheckpointError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from rlkit.runfiles.checkpoint import CheckpointError, nonfinite

WEIGHTS_FILE = "model.safetensors"
FORMAT = "rlkit-acting-weights-1"


def is_exported(path: str | Path) -> bool:
    """A directory written by :func:`export_agent` (weights, no training checkpoints)."""
    return (Path(path) / WEIGHTS_FILE).is_file()


def acting_tensors(agent) -> dict[str, torch.Tensor]:
    """``{"<part>.<param>": tensor}`` for every part the agent declares as acting (``acting(...)``)."""
    return agent.acting_tensors()


def export_agent(agent, config_text: str, out_dir: str | Path, metadata: dict[str, str]) -> Path:
    """Write ``out_dir/model.safetensors`` (atomically) and ``out_dir/config.yaml``; returns ``out_dir``."""
    from safetensors.torch import save_file

    tensors = acting_tensors(agent)
    broken = nonfinite(tensors)
    if broken is not None:  # an export of NaN weights "evaluates" to nan: refuse it before writing anything
        raise CheckpointError(f"the agent's weights are not finite ('{broken}' has NaN or inf); nothing was exported: "
                              "export a checkpoint from before the run diverged")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{WEIGHTS_FILE}.tmp-{os.getpid()}"
    header = {"format": FORMAT, **{k: str(v) for k, v in metadata.items()}}
    try:
        save_file(tensors, str(tmp), metadata=header)
        os.chmod(tmp, 0o644)  # safetensors creates the file owner-only; a shared model is world-readable
        os.replace(tmp, out_dir / WEIGHTS_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    (out_dir / "config.yaml").write_text(config_text)
    return out_dir


def load_exported(agent, path: str | Path, agent_name: str, device: torch.device) -> dict[str, str]:
    """Load ``path/model.safetensors`` into ``agent``'s acting modules; returns the file's header."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    file = Path(path) / WEIGHTS_FILE
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"'{file}' is not a readable safetensors file ({' '.join(str(exc).split())[:160]})") \
            from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"'{file}' is not an rlkit export (header format {header.get('format')!r}, "
                              f"expected {FORMAT!r}); write one with `rlkit export RUN_DIR OUT_DIR`")
    broken = nonfinite(tensors)
    if broken is not None:
        raise CheckpointError(f"'{file}' holds non-finite weights ('{broken}' has NaN or inf): it cannot be "
                              "evaluated or loaded; export a checkpoint from before the run diverged")
    if header.get("agent") not in (None, agent_name):
        raise CheckpointError(f"'{file}' holds a '{header['agent']}' agent but config.yaml asks for '{agent_name}'")
    try:
        agent.load_acting_tensors(tensors)
    except RuntimeError as exc:
        text = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"'{file}' does not fit the agent of config.yaml ({text})") from None
    return header
