"""Pretrained encoder weights: ``encoder.safetensors``, written by ``rlkit pretrain`` and loaded by
``agent.encoder.init``.

The file holds the encoder's tensors (its ``state_dict``, as ``make_encoder`` built it) and, in safetensors'
string metadata, what they were made for: the format tag, the encoder ``kind`` (``auto`` resolved), its
settings (IMPALA's channels, the ViT's depth, ...), ``encoder_hidden``, the observation shape and dtype, and
informational entries (the losses, the dataset, the steps). Safetensors only: loading never unpickles.
:func:`read_encoder_file` checks the file against what a run builds and says in one line what differs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from rlkit.errors import ConfigError

ENCODER_FORMAT = "rlkit-encoder/1"


def observation_signature(space: gym.Space) -> str:
    """The observation shape and dtype as JSON: ``{"shape": [...], "dtype": "uint8"}``, or for Dict spaces
    ``{key: {...}}`` in sorted key order."""
    def sig(s: gym.Space) -> Any:
        if isinstance(s, gym.spaces.Dict):
            return {k: sig(s.spaces[k]) for k in sorted(s.spaces)}
        return {"shape": list(s.shape or ()), "dtype": str(s.dtype)}

    return json.dumps(sig(space), sort_keys=True)


def encoder_metadata(kind: str, settings: Mapping[str, Any], encoder_hidden: list[int], observation_space: gym.Space,
                     **info: Any) -> dict[str, str]:
    """The metadata block of an encoder file (every value a string, as safetensors wants)."""
    meta = {"format": ENCODER_FORMAT, "kind": kind, "settings": json.dumps(dict(settings), sort_keys=True),
            "encoder_hidden": json.dumps([int(w) for w in encoder_hidden]),
            "observation": observation_signature(observation_space)}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in info.items()})
    return meta


def save_encoder_file(path: Path, encoder: torch.nn.Module, metadata: Mapping[str, str]) -> Path:
    """Write ``encoder``'s state dict and ``metadata`` atomically (temporary file, then ``os.replace``)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    try:
        save_file(tensors, str(tmp), metadata=dict(metadata))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_encoder_file(path: str | Path, where: str = "agent.encoder.init") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of an encoder file; a missing file, one that is not safetensors, or one that
    ``rlkit pretrain`` did not write is a one-line :class:`ConfigError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{where}: no file '{path}'; give the encoder.safetensors that `rlkit pretrain` wrote into "
                          "its run directory")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{where}: '{path}' is not a safetensors file ({' '.join(str(exc).split())[:120]})"
                          ) from None
    if metadata.get("format") != ENCODER_FORMAT:
        raise ConfigError(f"{where}: '{path}' is not an encoder file written by `rlkit pretrain` (its metadata has "
                          f"format {metadata.get('format')!r}, expected {ENCODER_FORMAT!r})")
    return tensors, metadata


def check_encoder_metadata(metadata: Mapping[str, str], path: str | Path, kind: str, settings: Mapping[str, Any],
                           encoder_hidden: list[int], observation_space: gym.Space,
                           where: str = "agent.encoder.init") -> None:
    """The file was written for this encoder and these observations: kind, observation shape, settings and
    ``encoder_hidden`` are equal, else a one-line :class:`ConfigError` naming the first that differs."""
    if metadata.get("kind") != kind:
        raise ConfigError(f"{where}: '{path}' holds a {metadata.get('kind')!r} encoder, this run builds {kind!r}; set "
                          f"agent.encoder.kind: {metadata.get('kind')} (or pretrain a {kind} encoder)")
    ours = observation_signature(observation_space)
    if metadata.get("observation") != ours:
        raise ConfigError(f"{where}: '{path}' was pretrained on observations {metadata.get('observation')}, this run "
                          f"observes {ours}")
    theirs_settings = json.loads(metadata.get("settings", "{}"))
    if theirs_settings != json.loads(json.dumps(dict(settings))):
        diff = [k for k in sorted(set(theirs_settings) | set(settings))
                if theirs_settings.get(k) != json.loads(json.dumps(settings.get(k)))]
        shown = ", ".join(f"{k}: file {theirs_settings.get(k)!r} vs run {settings.get(k)!r}" for k in diff)
        raise ConfigError(f"{where}: '{path}' was pretrained with other encoder settings ({shown}); set "
                          "agent.encoder's fields as the file has them")
    theirs_hidden = json.loads(metadata.get("encoder_hidden", "[]"))
    if theirs_hidden != list(encoder_hidden):
        raise ConfigError(f"{where}: '{path}' has encoder_hidden {theirs_hidden}, this run's agent.encoder_hidden is "
                          f"{list(encoder_hidden)}; set them equal")


def check_tensors(tensors: Mapping[str, torch.Tensor], module: torch.nn.Module, path: str | Path,
                  where: str = "agent.encoder.init") -> None:
    """Every tensor of ``module`` is in the file with its shape, and nothing else: else one line naming the
    first tensor that differs (expected vs found)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in tensors]
    if missing:
        raise ConfigError(f"{where}: '{path}' has no tensor '{missing[0]}' (expected {list(expected[missing[0]].shape)}"
                          f"; {len(missing)} missing); it was written for another encoder")
    extra = [k for k in tensors if k not in expected]
    if extra:
        raise ConfigError(f"{where}: '{path}' has tensor '{extra[0]}', which this run's encoder does not "
                          f"({len(extra)} unexpected); it was written for another encoder")
    for key, value in expected.items():
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise ConfigError(f"{where}: tensor '{key}' of '{path}' has shape {list(tensors[key].shape)}, this run's "
                              f"encoder expects {list(value.shape)}; the file was written for other encoder settings "
                              "or observations")
        if tensors[key].dtype != value.dtype:
            raise ConfigError(f"{where}: tensor '{key}' of '{path}' is {tensors[key].dtype}, expected {value.dtype}")
