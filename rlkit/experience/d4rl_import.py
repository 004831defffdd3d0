"""D4RL-style HDF5 files (flat arrays, one row per step) as Minari datasets: ``rlkit dataset import-hdf5``.

The file holds what D4RL's ``env.get_dataset()`` returns: ``observations`` ``[N, ...]``, ``actions``
``[N, ...]``, ``rewards`` ``[N]``, ``terminals`` ``[N]``, ``timeouts`` ``[N]``, optionally
``next_observations`` ``[N, ...]`` and an ``infos`` group of ``[N, ...]`` arrays (numeric ones are kept as
per-step infos; other keys, such as D4RL's ``metadata/*``, are ignored).

    import_hdf5("hopper_medium-v2.hdf5", "Hopper-v5", "imported/hopper-medium-v0")

Episodes end at each step with ``terminals`` or ``timeouts`` set (a terminal wins when both are). Minari
episodes hold their final observation; D4RL files do not (``observations[i + 1]`` after an episode's last
step is the next episode's reset). rlkit follows d3rlpy's reading of such files:

- with ``next_observations``: every step is kept, the final observation is ``next_observations`` of the
  last step;
- without, an episode ending in a **terminal** keeps every step and repeats its last observation as the
  final one (nothing bootstraps from the state after a terminal: d3rlpy puts zeros there, a repeat stays
  inside the observation space);
- without, an episode ending in a **timeout** drops its last step (bootstrapping from it needs the next
  observation, which the file does not hold; D4RL's own ``qlearning_dataset`` drops it too) and ends
  truncated one step earlier, its final observation ``observations`` of the dropped step; a one-step
  timeout episode is dropped whole. The counts go into the dataset's metadata.

Steps after the last terminal or timeout are an unfinished episode: refused (saying how many), or left out
with ``drop_trailing``. Everything is checked before anything is written — keys, lengths, shapes against the
env's spaces (``gymnasium.make(env_id)``), finite values, booleans — each problem a one-line
:class:`~rlkit.errors.DatasetError`; the episodes then go through :func:`~rlkit.experience.datasets.write_dataset`
(its own checks, atomic, compressed).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.errors import DatasetError
from rlkit.experience.datasets import (Episode, _check_box_range, _check_storage, _one_line, _space_text,
                                       check_dataset_id, dataset_path, episode_stats, write_dataset)

__all__ = ["import_hdf5", "default_dataset_id", "REQUIRED_KEYS"]

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def default_dataset_id(file: str | Path) -> str:
    """``imported/<file stem>-v0`` (the stem's own ``-vN`` kept), characters outside ``[-_A-Za-z0-9]`` as ``_``."""
    stem = re.sub(r"[^-_A-Za-z0-9]", "_", Path(file).stem).strip("-_") or "dataset"
    return f"imported/{stem}" if re.search(r"-v\d+$", stem) else f"imported/{stem}-v0"


def import_hdf5(file: str | Path, env_id: str, dataset_id: str | None = None, *, overwrite: bool = False,
                drop_trailing: bool = False) -> tuple[Path, dict[str, Any]]:
    """Import the D4RL-style HDF5 ``file`` as the Minari dataset ``dataset_id`` (default
    :func:`default_dataset_id`) recorded in ``env_id``. Returns (dataset directory, counts: ``dataset_id``,
    ``rows`` in the file, ``total_episodes``, ``total_steps``, ``dropped_timeout_steps``, ``dropped_episodes``,
    ``dropped_trailing``, return statistics)."""
    path = Path(file).expanduser()
    dataset_id = check_dataset_id(dataset_id or default_dataset_id(path))
    if dataset_path(dataset_id).exists() and not overwrite:
        raise DatasetError(f"dataset '{dataset_id}' already exists ({dataset_path(dataset_id)}); pick another --out "
                           "(e.g. bump -vN) or pass --overwrite")
    observation_space, action_space = _env_spaces(env_id)
    arrays, infos = _read_file(path, observation_space, action_space)
    episodes, counts = _split_episodes(arrays, infos, path, drop_trailing)
    if not episodes:
        raise DatasetError(f"{path}: no whole episode to import ({counts['dropped_episodes']} one-step timeout "
                           f"episodes without a final observation, {counts['dropped_trailing']} unfinished rows "
                           "dropped)")
    final = ("next_observations" if "next_observations" in arrays
             else "terminal: last repeated; timeout: last step dropped")
    meta = {"source": "import-hdf5", "file": path.name, "file_sha256": _sha256(path), "final_observation": final,
            **{k: counts[k] for k in ("rows", "dropped_timeout_steps", "dropped_episodes", "dropped_trailing")}}
    written = write_dataset(dataset_id, episodes, observation_space, action_space, env_id=env_id,
                            algorithm_name="imported from a D4RL-style HDF5 file", metadata=meta, overwrite=overwrite,
                            description=f"{path.name} ({counts['rows']} rows) imported by `rlkit dataset import-hdf5` "
                                        f"for {env_id}")
    return written, {"dataset_id": dataset_id, **counts, **episode_stats(episodes)}


# --------------------------------------------------------------------------------------
# The env's spaces
# --------------------------------------------------------------------------------------


def _env_spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    import rlkit.envs  # noqa: F401  (registers rlkit/... ids)

    try:
        env = gym.make(env_id)
    except Exception as exc:  # unknown id, missing dependency, bad entry point
        raise DatasetError(f"--env {env_id}: cannot make this env ({type(exc).__name__}: {_one_line(exc, 120)}); "
                           "pass the Gymnasium id the data was recorded in, e.g. Hopper-v5") from None
    try:
        spaces = env.observation_space, env.action_space
    finally:
        env.close()
    for what, space in zip(("observation", "action"), spaces):
        if not isinstance(space, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiBinary,
                                  gym.spaces.MultiDiscrete)):
            raise DatasetError(f"--env {env_id}: its {what} space is {_space_text(space)}; a D4RL-style file holds "
                               "flat arrays, which fit Box, Discrete, MultiBinary and MultiDiscrete spaces only")
    return spaces


# --------------------------------------------------------------------------------------
# Reading and checking the file (before anything is written)
# --------------------------------------------------------------------------------------


def _read_file(path: Path, observation_space: gym.Space, action_space: gym.Space
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The file's arrays (required ones, ``next_observations`` if there) and numeric infos, every one checked."""
    import h5py

    if not path.is_file():
        raise DatasetError(f"{path}: no such file; pass the D4RL-style .hdf5 file to import")
    if not h5py.is_hdf5(path):
        raise DatasetError(f"{path} is not an HDF5 file; import-hdf5 reads D4RL-style .hdf5 files (observations, "
                           "actions, rewards, terminals, timeouts)")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in REQUIRED_KEYS if k not in f]
            if missing:
                raise DatasetError(f"{path} has no {', '.join(repr(k) for k in missing)}; a D4RL-style file holds "
                                   f"{', '.join(REQUIRED_KEYS)} (optional next_observations, infos/*)")
            keys = [*REQUIRED_KEYS, *(["next_observations"] if "next_observations" in f else [])]
            nodes = {k: _dataset(f, k, path) for k in keys}
            rows = _check_lengths(nodes, path)
            _check_shapes(nodes, observation_space, action_space, path)
            info_nodes = _info_nodes(f, path, rows)
            for key, node in {**nodes, **info_nodes}.items():
                _check_storage(node, key, str(path))
            arrays = {k: node[()] for k, node in nodes.items()}
            infos = {k.split("/", 1)[1]: node[()] for k, node in info_nodes.items()}
    except DatasetError:
        raise
    except Exception as exc:  # h5py: a truncated or corrupt file (OSError), odd objects (KeyError, TypeError)
        raise DatasetError(f"{path} is not readable HDF5 (truncated or corrupt: {type(exc).__name__}: "
                           f"{_one_line(exc, 100)})") from None
    for key in ("observations", "next_observations", "actions", "rewards"):
        if key in arrays:
            _check_finite(key, arrays[key], path)
    for key, space in (("observations", observation_space), ("next_observations", observation_space),
                       ("actions", action_space)):
        if key in arrays and isinstance(space, gym.spaces.Box):  # "at step" = the row in the file
            _check_box_range(key, arrays[key], space, str(path))
    for key in ("terminals", "timeouts"):
        values = arrays[key]
        if not np.isin(values, (0, 1)).all():
            row = int(np.flatnonzero(~np.isin(values, (0, 1)))[0])
            raise DatasetError(f"{path}: {key} row {row} is {values[row].item()!r}, not a boolean (0/1, True/False)")
        arrays[key] = values.astype(bool)
    return arrays, infos


def _dataset(f: Any, key: str, path: Path) -> Any:
    """The HDF5 dataset ``key``: numeric, inside the file (links and external data refused)."""
    import h5py

    link = f.get(key, getlink=True)
    node = f[key] if isinstance(link, h5py.HardLink) else None
    if not isinstance(node, h5py.Dataset) or node.is_virtual or node.external:
        raise DatasetError(f"{path}: {key} is not an array stored in the file (a group, a link or external data); "
                           "a D4RL-style file holds one array per key")
    if node.dtype.kind not in "biuf" or node.ndim == 0:
        raise DatasetError(f"{path}: {key} has dtype {node.dtype} and shape {node.shape}; expected an array of "
                           "numbers with one row per step")
    return node


def _check_lengths(nodes: dict[str, Any], path: Path) -> int:
    rows = {k: int(node.shape[0]) for k, node in nodes.items()}
    if len(set(rows.values())) > 1:
        listed = ", ".join(f"{k} {n}" for k, n in rows.items())
        raise DatasetError(f"{path}: the arrays have mismatched lengths ({listed} rows); every key holds one row per "
                           "step — the file is truncated or its arrays come from different datasets")
    if rows["rewards"] == 0:
        raise DatasetError(f"{path}: the arrays are empty (0 rows)")
    return rows["rewards"]


def _check_shapes(nodes: dict[str, Any], observation_space: gym.Space, action_space: gym.Space, path: Path) -> None:
    expected = {"observations": observation_space.shape, "next_observations": observation_space.shape,
                "actions": action_space.shape, "rewards": (), "terminals": (), "timeouts": ()}
    for key, node in nodes.items():
        if tuple(node.shape[1:]) != tuple(expected[key]):
            space = {"actions": action_space}.get(key, observation_space if "observations" in key else None)
            against = f"the env's {'action' if key == 'actions' else 'observation'} space {_space_text(space)}" \
                if space is not None else "one number per step"
            raise DatasetError(f"{path}: {key} has shape {tuple(node.shape[1:])} per row but {against} needs "
                               f"{tuple(expected[key])}; is --env the env the data was recorded in?")
    for key, space in (("observations", observation_space), ("actions", action_space)):
        if nodes[key].dtype.kind == "f" and np.dtype(space.dtype).kind in "iub":
            raise DatasetError(f"{path}: {key} are floats ({nodes[key].dtype}) but the env's space is "
                               f"{_space_text(space)} (integers)")


def _info_nodes(f: Any, path: Path, rows: int) -> dict[str, Any]:
    """``{"infos/<key>": dataset}`` of the numeric per-step infos (other kinds skipped)."""
    import h5py

    if "infos" not in f or not isinstance(f.get("infos", getlink=True), h5py.HardLink) \
            or not isinstance(f["infos"], h5py.Group):
        return {}
    out = {}
    for key in f["infos"]:
        link = f["infos"].get(key, getlink=True)
        node = f["infos"][key] if isinstance(link, h5py.HardLink) else None
        if not isinstance(node, h5py.Dataset) or node.dtype.kind not in "biuf" or node.ndim == 0 \
                or node.is_virtual or node.external:
            continue  # nested groups, strings, links: not per-step numbers rlkit stores
        if node.shape[0] != rows:
            raise DatasetError(f"{path}: infos/{key} has {node.shape[0]} rows but the arrays have {rows}; "
                               "the file's arrays have mismatched lengths")
        out[f"infos/{key}"] = node
    return out


def _check_finite(key: str, values: np.ndarray, path: Path) -> None:
    if values.dtype.kind != "f":
        return
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{path}: {key} hold NaN or inf in {int(bad.sum())} rows (first row {row}); clean the "
                           "file before importing it")


# --------------------------------------------------------------------------------------
# Rows -> episodes
# --------------------------------------------------------------------------------------


def _split_episodes(arrays: dict[str, np.ndarray], infos: dict[str, np.ndarray], path: Path, drop_trailing: bool
                    ) -> tuple[list[Episode], dict[str, int]]:
    """Whole episodes from the rows (see the module docstring for the final observation)."""
    terminals, timeouts = arrays["terminals"], arrays["timeouts"]
    rows = len(terminals)
    ends = np.flatnonzero(terminals | timeouts)
    trailing = rows - (int(ends[-1]) + 1 if len(ends) else 0)
    if trailing and not drop_trailing:
        raise DatasetError(f"{path}: the last {trailing} of {rows} rows end without a terminal or timeout (an "
                           "unfinished episode: its final observation is unknown); pass --drop-trailing to leave them "
                           "out, or set timeouts on the last row if the episode was cut there")
    obs, nxt = arrays["observations"], arrays.get("next_observations")
    counts = {"rows": rows, "dropped_timeout_steps": 0, "dropped_episodes": 0, "dropped_trailing": trailing}
    episodes, start = [], 0
    for end in ends.tolist():
        first, start = start, end + 1
        if nxt is not None:
            stop, final = end + 1, nxt[end]
        elif terminals[end]:
            stop, final = end + 1, obs[end]                   # nothing bootstraps from it: the last one repeated
        else:
            stop, final = end, obs[end]                       # the timeout step dropped: its next obs is unknown
            counts["dropped_timeout_steps"] += 1
            if stop == first:
                counts["dropped_episodes"] += 1
                continue
        T = stop - first
        term, trunc = np.zeros(T, bool), np.zeros(T, bool)
        term[-1] = bool(terminals[end]) and stop == end + 1
        trunc[-1] = not term[-1]
        episodes.append(Episode(np.concatenate([obs[first:stop], np.asarray(final)[None]]),
                                arrays["actions"][first:stop], arrays["rewards"][first:stop], term, trunc,
                                infos={k: v[first:stop] for k, v in infos.items()}))
    counts["total_episodes"], counts["total_steps"] = len(episodes), int(sum(len(ep) for ep in episodes))
    return episodes, counts


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
