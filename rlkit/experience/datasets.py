"""Offline datasets in Minari's format (the standard that replaced D4RL), local only.

A dataset is a Minari dataset directory (``$MINARI_DATASETS_PATH/<namespace>/<name>-v<N>/data/``,
default root ``~/.minari/datasets``) holding ``metadata.json`` (spaces serialised as JSON, counts,
author, rlkit's own metadata under ``"rlkit"``) and ``main_data.hdf5`` (one group per episode:
``observations`` with ``T + 1`` entries, the final one included; ``actions``, ``rewards``,
``terminations``, ``truncations`` with ``T``; optional ``infos`` with ``T + 1``: the reset's, then one per
step, as Minari's DataCollector writes them). rlkit writes that layout itself, every array chunked by whole
steps and gzip-compressed (:data:`COMPRESSION`; an 84x84 Pong frame stack of 28 KB takes about 0.4 KB, see
docs/datasets.md), and reads it with h5py; metadata goes through the ``minari`` package, so
``minari.load_dataset(id)`` reads what rlkit writes (HDF5 filters are transparent to readers) and vice versa.

    write_dataset("rlkit/cartpole-random-v0", episodes, obs_space, act_space, env_id="CartPole-v1")
    data = load_dataset("rlkit/cartpole-random-v0")      # or a path to a dataset directory
    for ep in data.episodes: ep.observations, ep.actions, ep.rewards, ...
    stream = replay_stream(data)                          # rows in ReplayBuffer.add's layout

Safety: loading never runs code from a file. Spaces are rebuilt from JSON by Minari's deserialiser;
rlkit refuses a dataset whose metadata lacks its spaces (Minari would then ``gym.make`` the env named
in the file, importing its entry point) and reads only the ``hdf5`` format (h5py never unpickles).
Every problem — unknown id, corrupt or truncated HDF5, missing keys, arrays of the wrong length, arrays
that do not fit the spaces, NaN, values far outside a Box or rewards beyond ``MAX_ABS_REWARD`` — is a
one-line :class:`~rlkit.errors.DatasetError`.

Integrity: rlkit stores a checksum of every array and one content fingerprint (every array, the spaces,
the env spec, the env id and kwargs) under ``"rlkit"`` in the metadata; loading verifies each checksum and
names the array that fails (older rlkit datasets and foreign Minari ones have none and still load; their
fingerprint is computed from the content). Declared shapes and stored bytes are checked against the
spaces and the metadata before an array is read; soft and external links and data outside the file are
refused. Minari's JPEG-encoded images are decoded (PIL), each frame's size checked from its header.

Writing is atomic: the dataset is built in a hidden directory beside its final place (by a forked child
process on POSIX, so HDF5 failing mid-write cannot take the caller down) and renamed into it, so a failure
never leaves a half dataset under the final id; free space is checked first, and the hidden directories of
writers that were killed are removed by the next write.

This module is storage only (reading, writing, checking datasets, and rebuilding episodes from a replay
buffer's saved state); it never imports training. Recording datasets — a policy's episodes, a run's
replay buffer, motion clips — is :mod:`rlkit.training.recording`.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import gymnasium as gym
import numpy as np

from rlkit.errors import DatasetError

__all__ = ["Episode", "LoadedDataset", "EpisodeTransitions", "ReplayStream", "write_dataset", "load_dataset", "dataset_spaces",
           "list_datasets", "dataset_info", "check_dataset_fits", "check_dataset_env", "check_dataset_id", "dataset_path",
           "datasets_root", "iter_transitions", "replay_stream", "episode_stats", "episodes_from_replay"]

DATA_DIR = "data"
METADATA_FILE = "metadata.json"
HDF5_FILE = "main_data.hdf5"
MAX_METADATA_BYTES = 64 * 2**20
MAX_ABS_REWARD = 1e9
"""A reward beyond this magnitude is a unit or scaling mistake in the data, refused at load and write."""
COMPRESSION: dict[str, Any] = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
"""The HDF5 filters of every array rlkit writes, chosen by measurement (docs/datasets.md, "Storage"): gzip
level 1 stores a random-play Pong step (4 stacked 84x84 frames, 28 KB raw) in about 0.4 KB, lzf in 0.6 KB;
level 4 saves another third at twice the time. Shuffle (bytes regrouped by significance) makes float
arrays a few percent smaller and does nothing to uint8 frames. Every HDF5 reader decodes gzip."""
CHUNK_BYTES = 1 << 20
"""Target size of one HDF5 chunk (whole rows: see :func:`_write_arrays`)."""
_ID_RE = re.compile(r"^(?:[-_\w][-_\w/]*[-_\w]/)?[-_\w]+?-v\d+$")

Obs = Any  # np.ndarray, or a dict of arrays for Dict observation spaces


@dataclass(frozen=True)
class Episode:
    """One whole episode as numpy arrays.

    ``observations``: ``[T + 1, ...]`` (the final observation included), or a dict of such arrays for a
    Dict observation space; ``actions`` ``[T, ...]``; ``rewards`` ``[T]`` float; ``terminations`` /
    ``truncations`` ``[T]`` bool (at most the last step sets one); ``infos``: optional per-step extras
    (dict of ``[T, ...]`` arrays: entry ``t`` is step ``t``'s info); ``reset_infos``: the info of the reset
    that started the episode (dict of single entries). On disk they are Minari's ``infos``, ``T + 1`` entries
    (the reset's first); an episode without a reset info stores NaN (floats) or 0 there. Infos given with
    ``T + 1`` entries are read as Minari's layout; datasets rlkit wrote before with ``T`` entries load as they are.
    """

    observations: Obs
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    infos: Mapping[str, Any] = field(default_factory=dict)
    reset_infos: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def total_return(self) -> float:
        return float(np.sum(self.rewards, dtype=np.float64))


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset read into memory: its spaces, episodes (numpy) and metadata.

    ``metadata`` holds Minari's metadata (spaces as JSON strings) plus ``env_id``, ``total_steps``,
    ``total_episodes`` and ``return_mean`` / ``return_std`` / ``return_min`` / ``return_max``.
    """

    dataset_id: str
    path: Path
    observation_space: gym.Space
    action_space: gym.Space
    episodes: list[Episode]
    metadata: dict[str, Any]

    @property
    def env_id(self) -> str | None:
        return self.metadata.get("env_id")

    @property
    def reference_scores(self) -> tuple[float, float] | None:
        """(random, expert) reference returns, Minari's ``ref_min_score`` / ``ref_max_score`` (D4RL's), if the
        dataset has both as finite, different numbers: what D4RL's normalised score is measured against."""
        low, high = self.metadata.get("ref_min_score"), self.metadata.get("ref_max_score")
        try:
            low, high = float(low), float(high)
        except (TypeError, ValueError):
            return None
        return (low, high) if math.isfinite(low) and math.isfinite(high) and low != high else None

    @property
    def total_steps(self) -> int:
        return sum(len(ep) for ep in self.episodes)

    def __len__(self) -> int:
        return len(self.episodes)


@dataclass(frozen=True)
class EpisodeTransitions:
    """One episode as aligned one-step transitions (numpy): ``obs[t]``, ``actions[t]``, ``rewards[t]``,
    ``next_obs[t]`` (= ``obs[t + 1]``; the true final observation at the end), ``terminated[t]``,
    ``truncated[t]``. Dict observations are dicts of arrays."""

    obs: Obs
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: Obs
    terminated: np.ndarray
    truncated: np.ndarray


@dataclass(frozen=True)
class ReplayStream:
    """All episodes as ONE time-ordered stream in ``rlkit.experience.replay.ReplayBuffer.add``'s layout (one sub-env):
    row ``i`` holds ``obs[i]`` and the action, reward and flags of the step taken from it; after each
    episode's last step comes an *autoreset* row (``autoreset[i]`` True) holding its final observation,
    whose action (zeros) and reward (0) are never used. Feed it with
    ``buffer.add(obs[i:i+1], actions[i:i+1], rewards[i:i+1], terminated[i:i+1], truncated[i:i+1],
    autoreset[i:i+1])`` per row (``num_envs=1``), or write the arrays into storage directly. The number
    of real transitions is ``(~autoreset).sum()`` = the dataset's total steps."""

    obs: Obs
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    autoreset: np.ndarray


# --------------------------------------------------------------------------------------
# Small helpers over "array or dict of arrays"
# --------------------------------------------------------------------------------------


def _map(fn, obs: Obs) -> Obs:
    return {k: fn(v) for k, v in obs.items()} if isinstance(obs, Mapping) else fn(obs)


def _concat(parts: list[Obs]) -> Obs:
    if parts and isinstance(parts[0], Mapping):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


def _one_line(text: Any, limit: int = 200) -> str:
    return " ".join(str(text).split())[:limit]


# --------------------------------------------------------------------------------------
# Ids and paths
# --------------------------------------------------------------------------------------


def datasets_root() -> Path:
    """``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets`` (Minari's rule)."""
    root = os.environ.get("MINARI_DATASETS_PATH")
    return Path(root) if root else Path.home() / ".minari" / "datasets"


def check_dataset_id(dataset_id: str) -> str:
    """A valid Minari id ``namespace/name-vN`` (namespace optional), else a one-line DatasetError."""
    if not isinstance(dataset_id, str) or not _ID_RE.match(dataset_id) or "//" in dataset_id \
            or any(part.startswith(".") for part in dataset_id.split("/")):
        raise DatasetError(f"'{dataset_id}' is not a dataset id: ids look like namespace/name-v0 (letters, digits, "
                           f"'-', '_'), e.g. 'rlkit/cartpole-random-v0'")
    return dataset_id


def dataset_path(dataset_id: str) -> Path:
    """Where the dataset ``dataset_id`` lives (it may not exist)."""
    return datasets_root() / check_dataset_id(dataset_id)


def _data_dir(path: Path) -> Path | None:
    """The Minari ``data`` directory of a dataset directory (``X/data`` or ``X`` itself), or None."""
    for candidate in (path / DATA_DIR, path):
        if (candidate / METADATA_FILE).is_file():
            return candidate
    return None


def _resolve(dataset: str | os.PathLike) -> tuple[str, Path]:
    """(id or path text, data dir) of a dataset id under the root or a filesystem path."""
    text = os.fspath(dataset)
    root = datasets_root()
    if _ID_RE.match(text) and ".." not in text.split("/"):
        data = _data_dir(root / text) if (root / text).is_dir() else None
        if data is not None:
            return text, data
    path = Path(text).expanduser()
    if path.exists():
        data = _data_dir(path) if path.is_dir() else None
        if data is None:
            raise DatasetError(f"'{path}' is not a Minari dataset: no {DATA_DIR}/{METADATA_FILE} in it. Pass a dataset "
                               f"id (`rlkit dataset list`) or the directory `rlkit collect` wrote")
        return text, data
    known = list(_scan_ids(root))
    close = difflib.get_close_matches(text, known, n=3, cutoff=0.5)
    hint = (f" Did you mean {', '.join(repr(c) for c in close)}?" if close else
            f" {len(known)} datasets there; `rlkit dataset list` shows them." if known else
            " There are none yet: `rlkit collect` or `rlkit dataset from-run` write one.")
    raise DatasetError(f"unknown dataset '{text}': no such id under {root} (MINARI_DATASETS_PATH) and no such "
                       f"path.{hint}")


def _scan_ids(root: Path) -> Iterator[str]:
    """Dataset ids under ``root``: directories holding ``data/`` (hidden ones skipped), as Minari lists them."""
    if not root.is_dir():
        return
    stack, seen = [root], set()  # seen: (device, inode) of every directory entered, so symlink loops end
    while stack:
        current = stack.pop()
        try:
            stat = current.stat()
            if (stat.st_dev, stat.st_ino) in seen:
                continue
            seen.add((stat.st_dev, stat.st_ino))
            children = sorted(p for p in current.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:  # unreadable, or a symlink loop the OS itself refuses (ELOOP)
            continue
        for child in children:
            if (child / DATA_DIR).is_dir():
                yield child.relative_to(root).as_posix()
            else:
                stack.append(child)


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _space_text(space: gym.Space) -> str:
    return _one_line(space, 160)


def _check_leaf(name: str, array: Any, space: gym.Space, length: int, where: str) -> np.ndarray:
    """``array`` as numpy ``[length, *space.shape]`` fitting ``space`` (shape, dtype kind, Discrete range,
    finite floats), else a one-line DatasetError."""
    try:
        array = np.asarray(array)
    except Exception as exc:  # ragged lists, objects
        raise DatasetError(f"{where}: {name} is not an array ({_one_line(exc, 80)})") from None
    if array.ndim == 0 or len(array) != length:
        got = "a scalar" if array.ndim == 0 else f"{len(array)} entries"
        raise DatasetError(f"{where}: {name} has {got} but the episode needs {length} (observations have one more "
                           "entry than actions: the final observation); the file is truncated or mismatched")
    if isinstance(space, gym.spaces.Discrete):
        if array.shape[1:] != () or array.dtype.kind not in "iu":
            raise DatasetError(f"{where}: {name} has shape {array.shape[1:]} and dtype {array.dtype} but the space is "
                               f"{_space_text(space)} (integer scalars)")
        if length and (array.min() < space.start or array.max() >= space.start + space.n):
            raise DatasetError(f"{where}: {name} lie in [{array.min()}, {array.max()}], outside {_space_text(space)}")
        return array.astype(np.int64, copy=False)
    if isinstance(space, (gym.spaces.Box, gym.spaces.MultiBinary, gym.spaces.MultiDiscrete)):
        if array.shape[1:] != tuple(space.shape):
            raise DatasetError(f"{where}: {name} have shape {array.shape[1:]} per step but the space is "
                               f"{_space_text(space)}; the dataset does not match its own spaces")
        if array.dtype.kind not in "biuf":
            raise DatasetError(f"{where}: {name} have dtype {array.dtype}, not numbers ({_space_text(space)})")
        if array.dtype.kind == "f" and np.dtype(space.dtype).kind in "iub":
            raise DatasetError(f"{where}: {name} are floats but the space is {_space_text(space)}")
        with np.errstate(over="ignore", invalid="ignore"):
            cast = array.astype(space.dtype, copy=False)  # 1e39 as float32 is inf: checked after the cast
        if cast.dtype.kind == "f" and not np.isfinite(cast).all():
            bad = np.argwhere(~np.isfinite(cast.reshape(len(cast), -1)))[0][0]
            raise DatasetError(f"{where}: {name} hold NaN or inf (first at step {bad}; values beyond {np.dtype(space.dtype)}'s "
                               "range count as inf); clean the data or drop that episode")
        if isinstance(space, gym.spaces.Box) and length:
            _check_box_range(name, cast, space, where)
        return cast
    raise DatasetError(f"{where}: {name}: space {_space_text(space)} is not supported (Box, Discrete, MultiBinary, "
                       "MultiDiscrete, or a Dict of them)")


def _check_box_range(name: str, array: np.ndarray, space: gym.Box, where: str) -> None:
    """Values farther outside a Box's finite bounds than the bounds' own width are not data of this space
    (an action of 1e30 for a [-1, 1] box): a one-line DatasetError. Slightly out-of-bounds values (unclipped
    exploration noise) pass."""
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    slack = np.where(np.isfinite(high - low), np.maximum(high - low, 1e-6), np.inf)
    with np.errstate(invalid="ignore"):  # first per element over the steps, in the array's own dtype (fast)
        if not ((array.min(axis=0).astype(np.float64) < low - slack)
                | (array.max(axis=0).astype(np.float64) > high + slack)).any():
            return
    values = array.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):  # inf - inf where a bound is infinite: never out of range
        outside = (values < low - slack) | (values > high + slack)
    if outside.any():
        step = int(np.argwhere(outside.reshape(len(values), -1))[0][0])
        value = values.reshape(len(values), -1)[step][outside.reshape(len(values), -1)[step]][0]
        raise DatasetError(f"{where}: {name} at step {step} is {value:.6g}, far outside the space "
                           f"{_space_text(space)}; the data does not belong to this space (rescale or clip it, or "
                           "record the dataset with the space it was collected in)")


def _check_values(name: str, values: Any, space: gym.Space, length: int, where: str) -> Obs:
    if isinstance(space, gym.spaces.Dict):
        if not isinstance(values, Mapping):
            raise DatasetError(f"{where}: {name} are not a dict of arrays but the space is {_space_text(space)}")
        if set(values) != set(space.spaces):
            raise DatasetError(f"{where}: {name} have keys {sorted(values)} but the space has {sorted(space.spaces)}")
        return {k: _check_leaf(f"{name}['{k}']", values[k], sub, length, where) for k, sub in space.spaces.items()}
    if isinstance(values, Mapping):
        raise DatasetError(f"{where}: {name} are a dict ({sorted(values)}) but the space is {_space_text(space)}")
    return _check_leaf(name, values, space, length, where)


def _check_flags(name: str, values: Any, length: int, where: str, kind: str = "b") -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (length,):
        raise DatasetError(f"{where}: {name} have shape {array.shape}, expected ({length},) like the actions; the "
                           "file is truncated or mismatched")
    if kind == "b":
        if array.dtype.kind not in "biu" or not np.isin(array, (0, 1)).all():
            raise DatasetError(f"{where}: {name} are not booleans")
        return array.astype(bool)
    if array.dtype.kind not in "biuf":
        raise DatasetError(f"{where}: {name} have dtype {array.dtype}, not numbers")
    with np.errstate(over="ignore"):
        cast = array.astype(np.float32)  # what the experience sources store: 1e308 becomes inf
    if not np.isfinite(cast).all():
        raise DatasetError(f"{where}: {name} hold NaN or inf (first at step {int(np.argmax(~np.isfinite(cast)))}; "
                           "values beyond float32's range count as inf); clean the data or drop that episode")
    big = np.flatnonzero(np.abs(cast) > MAX_ABS_REWARD)
    if len(big):
        raise DatasetError(f"{where}: {name} at step {int(big[0])} is {float(array[big[0]]):.6g}, beyond "
                           f"±{MAX_ABS_REWARD:.0e}, far larger than any reward an agent can learn from; rescale "
                           "the rewards (or clean that episode)")
    return array.astype(np.float64 if array.dtype == np.float64 else np.float32)


def _check_episode(ep: Episode, observation_space: gym.Space, action_space: gym.Space, where: str) -> Episode:
    length = len(np.asarray(ep.rewards).reshape(-1))
    if np.asarray(ep.rewards).ndim != 1:
        raise DatasetError(f"{where}: rewards must be one number per step, got shape {np.asarray(ep.rewards).shape}")
    if length < 1:
        raise DatasetError(f"{where}: the episode has no steps")
    obs = _check_values("observations", ep.observations, observation_space, length + 1, where)
    actions = _check_values("actions", ep.actions, action_space, length, where)
    rewards = _check_flags("rewards", ep.rewards, length, where, kind="f")
    terms = _check_flags("terminations", ep.terminations, length, where)
    truncs = _check_flags("truncations", ep.truncations, length, where)
    early = np.flatnonzero((terms | truncs)[:-1])
    if len(early):  # an episode ends at its last step: a flag before it would silently split it in two
        raise DatasetError(f"{where}: step {int(early[0])} of {length} is marked terminated or truncated, but only an "
                           "episode's last step may be; split such data into separate episodes")
    infos = dict(ep.infos or {})
    reset_infos = dict(ep.reset_infos or {})
    for key, value in infos.items():
        if isinstance(value, Mapping):
            raise DatasetError(f"{where}: infos['{key}'] is nested; rlkit stores flat infos (a dict of arrays)")
        array = np.asarray(value)
        if array.dtype.kind not in "biuf" or array.ndim == 0:
            raise DatasetError(f"{where}: infos['{key}'] is not an array of numbers")
        if len(array) not in (length, length + 1):
            raise DatasetError(f"{where}: infos['{key}'] has {len(array)} entries for an episode of {length} steps "
                               f"(Minari stores {length + 1}: the reset's info, then one per step)")
        if len(array) == length + 1:  # Minari's layout: the reset's info first
            reset_infos.setdefault(key, array[0])
            array = array[1:]
        infos[key] = array
    for key, value in reset_infos.items():
        value = np.asarray(value)
        if key not in infos or value.dtype.kind not in "biuf" or value.shape != infos[key].shape[1:]:
            raise DatasetError(f"{where}: reset_infos['{key}'] does not match infos['{key}'] (one entry of the "
                               "same shape, numbers)")
        reset_infos[key] = value
    return Episode(obs, actions, rewards, terms, truncs, infos, reset_infos)


def _minari_infos(ep: Episode) -> dict[str, np.ndarray]:
    """An episode's infos in Minari's layout: ``T + 1`` entries, the reset's info first (NaN or 0 where the
    episode has none)."""
    out = {}
    for key, steps in ep.infos.items():
        first = ep.reset_infos.get(key)
        if first is None:
            first = np.full(steps.shape[1:], np.nan if steps.dtype.kind == "f" else 0, steps.dtype)
        out[key] = np.concatenate([np.asarray(first, steps.dtype)[None], steps])
    return out


def _spaces_equal(a: gym.Space, b: gym.Space) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, gym.spaces.Dict):
        return set(a.spaces) == set(b.spaces) and all(_spaces_equal(a[k], b[k]) for k in a.spaces)
    if isinstance(a, gym.spaces.Box):
        return (a.shape == b.shape and np.dtype(a.dtype) == np.dtype(b.dtype)
                and np.array_equal(a.low, b.low) and np.array_equal(a.high, b.high))
    return a == b


def check_dataset_fits(dataset: LoadedDataset, observation_space: gym.Space, action_space: gym.Space,
                       where: str | None = None) -> None:
    """A DatasetError naming both spaces when the dataset's spaces are not the env's (an agent built for
    the env could not learn from it). ``where`` prefixes the message (e.g. the config keys involved)."""
    for what, mine, theirs in (("observation", dataset.observation_space, observation_space),
                               ("action", dataset.action_space, action_space)):
        if not _spaces_equal(mine, theirs):
            env = f" (made with {dataset.env_id})" if dataset.env_id else ""
            prefix = f"{where}: " if where else ""
            raise DatasetError(f"{prefix}dataset '{dataset.dataset_id}'{env} does not fit this env: its {what} "
                               f"space is {_space_text(mine)} but the env's is {_space_text(theirs)}; use a dataset "
                               "recorded on this env (and env.kwargs)")


def check_dataset_env(dataset: LoadedDataset, env_id: str, env_kwargs: Mapping[str, Any] | None = None,
                      where: str | None = None) -> None:
    """A one-line DatasetError naming both when the dataset was recorded in another env than ``env_id``
    (or, for rlkit's datasets, with other ``env.kwargs``): same spaces do not make the same task. A dataset
    that names no env passes; a run with ``offline.allow_env_mismatch: true`` does not call this."""
    if dataset.env_id is None:
        return
    rlkit_meta = dataset.metadata.get("rlkit") if isinstance(dataset.metadata.get("rlkit"), dict) else {}
    mine: Any = None
    if rlkit_meta.get("env_id") == dataset.env_id and isinstance(rlkit_meta.get("env_kwargs"), dict):
        mine = rlkit_meta["env_kwargs"]
    try:
        theirs = json.loads(json.dumps(dict(env_kwargs or {}), sort_keys=True, default=str))
    except (TypeError, ValueError):
        theirs = dict(env_kwargs or {})
    if dataset.env_id == env_id and (mine is None or mine == theirs):
        return
    prefix = f"{where}: " if where else ""
    recorded = dataset.env_id + (f" with kwargs {mine}" if mine else "")
    running = env_id + (f" with kwargs {theirs}" if theirs else "")
    raise DatasetError(f"{prefix}dataset '{dataset.dataset_id}' was recorded in {recorded} but this run's env is "
                       f"{running}: the dataset does not fit this env. Use a dataset of this env, set env.id (and "
                       "env.kwargs) to the dataset's, or set offline.allow_env_mismatch: true if you mean to mix them")


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def episode_stats(episodes: Sequence[Episode]) -> dict[str, float | int]:
    returns = np.array([ep.total_return for ep in episodes], dtype=np.float64)
    stats: dict[str, float | int] = {"total_episodes": len(episodes), "total_steps": int(sum(len(e) for e in episodes))}
    if len(returns):
        stats.update(return_mean=float(returns.mean()), return_std=float(returns.std()),
                     return_min=float(returns.min()), return_max=float(returns.max()))
    return stats


def write_dataset(dataset_id: str, episodes: Sequence[Episode], observation_space: gym.Space,
                  action_space: gym.Space, *, env_id: str | None = None, env_kwargs: Mapping[str, Any] | None = None,
                  algorithm_name: str | None = None, author: str = "rlkit", description: str | None = None,
                  metadata: Mapping[str, Any] | None = None, overwrite: bool = False,
                  ref_scores: tuple[float, float] | None = None) -> Path:
    """Write ``episodes`` as the Minari dataset ``dataset_id`` under :func:`datasets_root`; returns its
    directory. Refuses an existing id unless ``overwrite``. ``metadata`` (JSON-serialisable) is stored
    with ``env_id`` and ``env_kwargs`` under the ``"rlkit"`` key of Minari's metadata. Observations and
    actions are stored losslessly (no JPEG encoding of images). ``ref_scores`` = (random, expert) mean returns,
    stored as Minari's ``ref_min_score`` / ``ref_max_score`` (``minari.get_normalized_score`` reads them; offline
    runs log a normalised score with them)."""
    from minari.dataset.minari_storage import MinariStorage

    final = dataset_path(dataset_id)
    if final.exists() and not overwrite:
        raise DatasetError(f"dataset '{dataset_id}' already exists ({final}); pick another id (e.g. bump -vN) or pass "
                           "--overwrite")
    if not episodes:
        raise DatasetError(f"dataset '{dataset_id}': no episodes to write")
    checked = [_check_episode(ep, observation_space, action_space, f"episode {i}") for i, ep in enumerate(episodes)]
    extra = {"env_id": env_id, "env_kwargs": dict(env_kwargs or {}), **dict(metadata or {})}
    try:
        extra = json.loads(json.dumps(extra))
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"dataset '{dataset_id}': metadata is not JSON-serialisable ({_one_line(exc, 100)})"
                           ) from None
    scores: dict[str, float] = {}
    if ref_scores is not None:
        low, high = (float(x) for x in ref_scores)
        if not (math.isfinite(low) and math.isfinite(high) and high != low):
            raise DatasetError(f"dataset '{dataset_id}': reference scores must be two different finite returns "
                               f"(random, expert), got {ref_scores}")
        scores = {"ref_min_score": low, "ref_max_score": high, "num_episodes_average_score": 100}
    env_spec = None
    if env_id is not None:
        try:
            spec = gym.spec(env_id)
            env_spec = gym.envs.registration.EnvSpec(**{**{k: getattr(spec, k) for k in (
                "id", "entry_point", "reward_threshold", "nondeterministic", "max_episode_steps",
                "order_enforce", "disable_env_checker")}, "kwargs": {**spec.kwargs, **dict(env_kwargs or {})}})
            env_spec.to_json()
        except Exception:  # unregistered id or kwargs JSON cannot hold: the env id stays in rlkit's metadata
            env_spec = None

    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(final.parent)
    _check_free_space(dataset_id, final.parent, checked)
    tmp = final.parent / f".tmp-{final.name}-{_writer_tag()}-{uuid.uuid4().hex[:8]}"

    def build() -> None:  # the HDF5 writing, in a child process where the OS allows (see _in_child)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = MinariStorage.new(tmp / DATA_DIR, observation_space=observation_space, action_space=action_space,
                                        env_spec=env_spec, data_format="hdf5", jpeg_encoding=False)
            import minari

            storage.update_metadata({
                "dataset_id": dataset_id, "minari_version": minari.__version__, "author": {author},
                "algorithm_name": algorithm_name or "unknown", "description": description or "",
                "rlkit": extra, **scores,
            })
            _write_episodes(tmp / DATA_DIR / HDF5_FILE, checked)
            storage.update_metadata({"total_episodes": len(checked), "total_steps": int(sum(len(ep) for ep in checked)),
                                     "dataset_size": storage.get_size()})
            # integrity: a checksum per array (verified at load, naming the array) and one fingerprint of it all
            digests = _file_digests(tmp / DATA_DIR / HDF5_FILE, len(checked))
            written = json.loads((tmp / DATA_DIR / METADATA_FILE).read_text(encoding="utf-8"))
            storage.update_metadata({"rlkit": {**extra, "checksums": digests,
                                               "fingerprint": _fingerprint(written, digests)}})

    try:
        tmp.mkdir()
        _in_child(build, tmp)
        _ensure_namespace(dataset_id)
        if final.exists():  # overwrite: swap, then drop the old one
            old = final.parent / f".old-{final.name}-{_writer_tag()}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except (OSError, RuntimeError) as exc:  # h5py reports a failed write as OSError or RuntimeError
        full = "No space left" in str(exc) or "Disk quota" in str(exc) or getattr(exc, "errno", None) in (28, 122)
        if full:
            raise DatasetError(f"dataset '{dataset_id}': the disk under {final.parent} filled up while writing it; "
                               "nothing was written there: free some space and record again") from None
        if isinstance(exc, RuntimeError):
            raise
        raise DatasetError(f"dataset '{dataset_id}' cannot be written under {final.parent}: "
                           f"{exc.strerror or _one_line(exc, 120)}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_episodes(h5: Path, episodes: Sequence[Episode]) -> None:
    """The episodes into Minari's HDF5 layout (what ``HDF5Storage.update_episodes`` writes: a group
    ``episode_<i>`` with attributes ``id`` and ``total_steps``, arrays ``observations`` (a group per Dict key),
    ``actions``, ``rewards``, ``terminations``, ``truncations`` and ``infos/<key>``, each resizable along its
    first axis), every array chunked by whole rows and compressed with :data:`COMPRESSION`. HDF5 filters are
    transparent to readers: ``minari.load_dataset`` and h5py read the arrays unchanged. The file format is
    HDF5 1.10's (readable by HDF5 >= 1.10, 2017; every h5py 3 wheel): its chunk indexes take ~4 KB per episode
    where 1.8's B-trees took ~14 KB, which a dataset of short episodes (Hopper's random play: 20 steps) feels."""
    import h5py

    with h5py.File(h5, "a", track_order=True, libver=("v110", "v110")) as f:
        for i, ep in enumerate(episodes):
            group = f.create_group(f"episode_{i}")
            group.attrs["id"] = i
            group.attrs["total_steps"] = len(ep)
            for key, value in (("observations", ep.observations), ("actions", ep.actions), ("rewards", ep.rewards),
                               ("terminations", ep.terminations), ("truncations", ep.truncations)):
                _write_arrays(group, key, value)
            infos = _minari_infos(ep)
            if infos:
                _write_arrays(group, "infos", infos)


def _write_arrays(group: Any, key: str, value: Any) -> None:
    """One array (or a group of them for a dict), chunked by whole rows of about :data:`CHUNK_BYTES`: a chunk
    never splits a step, so gzip's 32 KB window sees a frame stack's repeated frames side by side."""
    if isinstance(value, Mapping):
        sub = group.create_group(key)
        for name, inner in value.items():
            _write_arrays(sub, name, inner)
        return
    array = np.ascontiguousarray(value)
    rows = max(1, min(len(array), CHUNK_BYTES // max(1, array[0].nbytes)))
    group.create_dataset(key, data=array, chunks=(rows, *array.shape[1:]), maxshape=(None, *array.shape[1:]),
                         **COMPRESSION)


def _in_child(fn: Any, where: Path) -> None:
    """Run ``fn()`` in a forked child process (POSIX; elsewhere in this one) and re-raise its error here.
    HDF5 failing mid-write (a disk filling up) floods stderr from h5py's destructors and can crash the
    process (exit 139): in a child, that crash stays there and becomes one line here."""
    import errno
    import signal

    if not hasattr(os, "fork"):
        fn()
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write, report, exit without running the parent's cleanup
        code = 0
        try:
            os.close(read_end)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)  # h5py's destructor tracebacks
            import faulthandler

            faulthandler.disable()  # a crash here is reported by the parent, in one line
            try:
                fn()
                report = b""
            except BaseException as exc:  # noqa: BLE001 (everything goes back to the parent)
                report = json.dumps([type(exc).__name__, getattr(exc, "errno", None), str(exc)]).encode()
                code = 1
            os.write(write_end, report)
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        free = shutil.disk_usage(where).free if where.exists() else -1
        if 0 <= free < 2**20:
            raise OSError(errno.ENOSPC, "No space left on device")
        raise DatasetError(f"writing the dataset into {where.parent} crashed (signal {signal.Signals(os.WTERMSIG(status)).name} in HDF5); nothing was written; "
                           "check the disk and record again")
    if chunks:
        name, number, text = json.loads(b"".join(chunks).decode())
        if name == "DatasetError":
            raise DatasetError(text)
        if number is not None:
            raise OSError(number, text)
        raise RuntimeError(f"{name}: {text}")


def _host_tag() -> str:
    import socket
    import zlib

    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def _writer_tag() -> str:
    """``<host hash>-<pid>``: who writes a temporary directory (a shared disk may have writers on other hosts)."""
    return f"{_host_tag()}-{os.getpid()}"


def _remove_stale_temporaries(parent: Path) -> None:
    """Remove what an earlier write killed mid-way (SIGKILL, power loss) left beside its dataset: the hidden
    ``.tmp-<name>-<host>-<pid>-<hex>`` / ``.old-...`` directories written on this host by a process that is
    gone (another host's are left alone: its processes cannot be seen from here)."""
    for path in parent.glob(".[to][ml][pd]-*-*-*"):
        match = re.fullmatch(r"\.(?:tmp|old)-.+-([0-9a-f]{8})-(\d+)-[0-9a-f]{8}", path.name)
        if match is None or match.group(1) != _host_tag() or not path.is_dir() or path.is_symlink():
            continue
        pid = int(match.group(2))
        try:
            if pid != os.getpid():
                os.kill(pid, 0)
            continue  # its writer is alive (or is this process): not stale
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (PermissionError, OverflowError):  # another user's live process, or a forged name
            continue


def _check_free_space(dataset_id: str, parent: Path, episodes: Sequence[Episode]) -> None:
    """A one-line DatasetError before anything is written when the episodes (plus HDF5's per-array overhead
    and a margin) cannot fit on the disk: HDF5 failing mid-write floods stderr and can crash the process."""
    def nbytes(value: Any) -> int:
        return sum(nbytes(v) for v in value.values()) if isinstance(value, Mapping) else np.asarray(value).nbytes

    arrays = sum(5 + len(ep.infos) + (len(ep.observations) if isinstance(ep.observations, Mapping) else 0)
                 for ep in episodes)
    ratio = _sampled_compression(episodes[0].observations)  # the observations dominate: frames shrink ~70x
    need = sum(ratio * nbytes(ep.observations) + nbytes(ep.actions) + nbytes(ep.rewards) * 2
               + nbytes(ep.terminations) + nbytes(ep.truncations) + 2 * nbytes(dict(ep.infos)) for ep in episodes)
    need = int(1.1 * (need + 3072 * arrays + 1024 * len(episodes))) + 2**16
    try:
        free = shutil.disk_usage(parent).free
    except OSError:
        return
    if free < need:
        raise DatasetError(f"dataset '{dataset_id}' needs about {need / 1e6:.1f} MB but {parent} has "
                           f"{free / 1e6:.1f} MB free; free some space (or set MINARI_DATASETS_PATH to a larger "
                           "disk) and record again")


def _sampled_compression(observations: Obs) -> float:
    """Twice the gzip ratio (level 1) of up to one chunk of the first episode's observations, at most 1: what
    the free-space check counts per observation byte (a later episode compressing worse than that margin ends
    in the disk-full error, nothing written)."""
    import zlib

    values = list(observations.values()) if isinstance(observations, Mapping) else [observations]
    sample = b"".join(np.ascontiguousarray(v).reshape(-1).view(np.uint8)[:CHUNK_BYTES].tobytes() for v in values)
    if len(sample) < 4096:
        return 1.0
    return min(1.0, 2.0 * len(zlib.compress(sample, 1)) / len(sample))


def _ensure_namespace(dataset_id: str) -> None:
    """Minari's namespace metadata for ``ns/...`` ids, so ``minari list local`` shows the namespace."""
    if "/" not in dataset_id:
        return
    namespace = dataset_id.rsplit("/", 1)[0]
    try:
        from minari.namespace import NAMESPACE_METADATA_FILENAME, create_namespace

        if not (datasets_root() / namespace / NAMESPACE_METADATA_FILENAME).exists():
            create_namespace(namespace)
    except Exception:  # cosmetic: the dataset itself is complete without it
        pass


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def _read_metadata(data_dir: Path, name: str) -> dict[str, Any]:
    meta_file = data_dir / METADATA_FILE
    try:
        if meta_file.stat().st_size > MAX_METADATA_BYTES:
            raise DatasetError(f"dataset '{name}': {meta_file} is larger than {MAX_METADATA_BYTES >> 20} MiB; not a "
                               "Minari metadata file")
        metadata = json.loads(meta_file.read_text(encoding="utf-8"))
    except DatasetError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"dataset '{name}': {meta_file} is corrupt ({_one_line(exc, 100)}); re-create the "
                           "dataset") from None
    if not isinstance(metadata, dict):
        raise DatasetError(f"dataset '{name}': {meta_file} is not a JSON object; re-create the dataset")
    for key in ("observation_space", "action_space"):
        if not isinstance(metadata.get(key), str):
            raise DatasetError(f"dataset '{name}': {meta_file} has no {key}; rlkit does not build the env named in a "
                               "file to guess it (that would run its code). Re-create the dataset with its spaces")
    if metadata.get("data_format", "hdf5") != "hdf5":
        raise DatasetError(f"dataset '{name}' is stored as '{metadata.get('data_format')}'; rlkit reads the hdf5 "
                           "format (Minari's default)")
    for key in ("total_episodes", "total_steps"):
        if not isinstance(metadata.get(key), int) or isinstance(metadata.get(key), bool) or metadata[key] < 0:
            raise DatasetError(f"dataset '{name}': {meta_file} has no valid {key} (got {metadata.get(key)!r})")
    if not (data_dir / HDF5_FILE).is_file():
        raise DatasetError(f"dataset '{name}': {data_dir / HDF5_FILE} is missing; the dataset is incomplete")
    return metadata


def _deserialize(metadata: dict[str, Any], key: str, name: str) -> gym.Space:
    from minari.serialization import deserialize_space

    try:
        return deserialize_space(metadata[key])
    except Exception as exc:  # JSON only: bad JSON, unknown type, bad bounds
        raise DatasetError(f"dataset '{name}': its {key} cannot be read ({type(exc).__name__}: {_one_line(exc, 100)})"
                           ) from None


def dataset_spaces(dataset: str | Path) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of a dataset from its metadata alone (no episode is read)."""
    name, data_dir = _resolve(dataset)
    metadata = _read_metadata(data_dir, name)
    return _deserialize(metadata, "observation_space", name), _deserialize(metadata, "action_space", name)


def action_free_mask(dataset: LoadedDataset) -> np.ndarray:
    """``[episodes]`` bool: True where the episode has no real actions: its placeholder actions are not data.
    Its metadata says which (``"rlkit": {"action_free": true}`` for all, ``{"action_free_episodes": [i, ...]}``);
    ``rlkit dataset pseudo-label`` (rlkit.training.pseudo_label) writes and labels such datasets."""
    meta = dataset.metadata.get("rlkit") if isinstance(dataset.metadata.get("rlkit"), dict) else {}
    mask = np.zeros(len(dataset), bool)
    if meta.get("action_free") is True:
        mask[:] = True
    listed = meta.get("action_free_episodes") or []
    if not isinstance(listed, list) or not all(isinstance(i, int) and 0 <= i < len(dataset) for i in listed):
        raise DatasetError(f"dataset '{dataset.dataset_id}': metadata rlkit.action_free_episodes must list episode "
                           f"indices in [0, {len(dataset)}), got {str(listed)[:80]}")
    mask[listed] = True
    return mask


def load_dataset(dataset: str | os.PathLike) -> LoadedDataset:
    """Read a dataset (an id under :func:`datasets_root`, or a path to a dataset directory) into memory,
    checking every episode against the spaces. Any problem is a one-line :class:`DatasetError`."""
    import h5py

    name, data_dir = _resolve(dataset)
    metadata = _read_metadata(data_dir, name)
    obs_space = _deserialize(metadata, "observation_space", name)
    act_space = _deserialize(metadata, "action_space", name)
    expected = metadata["total_episodes"]
    rlkit_meta = metadata.get("rlkit") if isinstance(metadata.get("rlkit"), dict) else {}
    stored = rlkit_meta.get("checksums") if isinstance(rlkit_meta.get("checksums"), dict) else None
    h5 = data_dir / HDF5_FILE
    episodes: list[Episode] = []
    digests: dict[str, str] = {}
    try:
        with h5py.File(h5, "r") as f:
            groups = [k for k in f.keys() if k.startswith("episode_")]
            if len(groups) < expected:
                raise DatasetError(f"dataset '{name}': {h5} holds {len(groups)} episodes but its metadata says "
                                   f"{expected}; the file is truncated — re-create the dataset")
            steps_left = metadata["total_steps"]
            for i in range(expected):
                where = f"dataset '{name}', episode {i}"
                if f"episode_{i}" not in f:
                    raise DatasetError(f"{where}: missing from {h5}; the file is truncated or mismatched")
                group = f.get(f"episode_{i}", getlink=True)
                if not isinstance(group, h5py.HardLink) or not isinstance(f[f"episode_{i}"], h5py.Group):
                    raise DatasetError(f"{where}: not an HDF5 group in {h5} (links are refused)")
                group = f[f"episode_{i}"]
                missing = [k for k in ("observations", "actions", "rewards", "terminations", "truncations")
                           if k not in group]
                if missing:
                    raise DatasetError(f"{where}: no {', '.join(missing)} in {h5}; not a complete Minari episode")
                nodes = _episode_nodes(group, f"episode_{i}", where)
                steps_left -= _check_declared_shapes(nodes, f"episode_{i}", obs_space, act_space, steps_left, where)
                jpeg = _jpeg_nodes(nodes, f"episode_{i}", obs_space, act_space, metadata)
                arrays = {path: (_read_jpeg(node, jpeg[path], path, where, digests) if path in jpeg
                                 else _read_array(node, path, where, digests)) for path, node in nodes.items()}
                raw = {k: _gather(arrays, f"episode_{i}/{k}") for k in
                       ("observations", "actions", "rewards", "terminations", "truncations")}
                infos = {path.rsplit("/", 1)[1]: value for path, value in arrays.items()
                         if path.startswith(f"episode_{i}/infos/") and path.count("/") == 2
                         and value.dtype.kind in "biuf"}
                episodes.append(_check_episode(Episode(raw["observations"], raw["actions"], raw["rewards"],
                                                       raw["terminations"], raw["truncations"], infos),
                                               obs_space, act_space, where))
    except DatasetError:
        raise
    except Exception as exc:  # h5py: truncated/corrupt file (OSError), bad datasets (KeyError, TypeError ...)
        reason = "truncated or corrupt" if h5.stat().st_size else "empty"
        raise DatasetError(f"dataset '{name}': {h5} is not readable HDF5 ({reason}: {type(exc).__name__}: "
                           f"{_one_line(exc, 100)}); re-create the dataset") from None
    if not episodes:
        raise DatasetError(f"dataset '{name}' holds no episodes; record some with `rlkit collect`")
    steps = sum(len(ep) for ep in episodes)
    if steps != metadata["total_steps"]:
        raise DatasetError(f"dataset '{name}': its episodes hold {steps} steps but its metadata says "
                           f"{metadata['total_steps']}; the dataset is inconsistent — re-create it")
    fingerprint = _fingerprint(metadata, digests)
    if stored is not None:
        _verify_checksums(stored, digests, rlkit_meta.get("fingerprint"), fingerprint, name, h5)
    env_id = rlkit_meta.get("env_id") or _env_id_from_spec(metadata.get("env_spec"))
    info = {**metadata, **episode_stats(episodes), "env_id": env_id, "fingerprint": fingerprint}
    dataset_id = metadata.get("dataset_id") if isinstance(metadata.get("dataset_id"), str) else name
    return LoadedDataset(dataset_id, data_dir.parent if data_dir.name == DATA_DIR else data_dir, obs_space, act_space,
                         episodes, info)


# --------------------------------------------------------------------------------------
# Integrity: links, declared shapes, checksums, the content fingerprint
# --------------------------------------------------------------------------------------


def _episode_nodes(group: Any, prefix: str, where: str) -> dict[str, Any]:
    """Every HDF5 dataset under an episode group by its path (``episode_3/observations/goal``). Soft and
    external links, external raw storage and virtual datasets are refused: a dataset reads only its own file."""
    import h5py

    nodes: dict[str, Any] = {}
    for key in group.keys():
        path = f"{prefix}/{key}"
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
            raise DatasetError(f"{where}: {path} is {kind}; rlkit reads only data inside the dataset's own file "
                               "(re-create the dataset without links)")
        node = group[key]
        if isinstance(node, h5py.Group):
            nodes.update(_episode_nodes(node, path, where))
        elif isinstance(node, h5py.Dataset):
            if node.is_virtual or node.external:
                raise DatasetError(f"{where}: {path} keeps its data outside the dataset's file (a virtual or "
                                   "external HDF5 dataset); re-create the dataset with the data inside it")
            nodes[path] = node
    return nodes


def _leaf_space(space: gym.Space, parts: list[str]) -> gym.Space | None:
    for part in parts:
        if not isinstance(space, gym.spaces.Dict) or part not in space.spaces:
            return None
        space = space[part]
    return None if isinstance(space, gym.spaces.Dict) else space


def _check_declared_shapes(nodes: dict[str, Any], prefix: str, observation_space: gym.Space,
                           action_space: gym.Space, steps_left: int, where: str) -> int:
    """Before anything is read: every array's declared shape fits the episode's length (from its rewards),
    the spaces and the metadata's step count, and the file holds the bytes the shapes declare (a 10 KB file
    declaring a 3 GB array is refused, not allocated). Returns the episode's length."""
    rewards = nodes.get(f"{prefix}/rewards")
    if rewards is None or rewards.ndim != 1:
        raise DatasetError(f"{where}: rewards must be one number per step, got shape "
                           f"{None if rewards is None else rewards.shape}")
    T = int(rewards.shape[0])
    if T > steps_left:
        raise DatasetError(f"{where}: its rewards declare {T} steps, more than the {steps_left} its metadata leaves "
                           "(total_steps); the file does not match its metadata — re-create the dataset")
    for path, node in nodes.items():
        top, *rest = path[len(prefix) + 1:].split("/")
        if top == "observations":
            space, rows = _leaf_space(observation_space, rest), T + 1
        elif top == "actions":
            space, rows = (action_space if not rest else None), T
        elif top in ("rewards", "terminations", "truncations"):
            space, rows = None, T
        else:  # infos and other extras: at most one entry per observation
            space, rows = None, None
        if top in ("observations", "actions", "rewards", "terminations", "truncations"):
            if node.ndim == 0 or node.shape[0] != rows:
                got = "a scalar" if node.ndim == 0 else f"{node.shape[0]} entries"
                raise DatasetError(f"{where}: {path} declares {got} but the episode needs {rows} (its rewards have "
                                   f"{T}; observations have one more); the file is truncated or mismatched")
            if space is not None and space.shape is not None and tuple(node.shape[1:]) != tuple(space.shape) \
                    and not _is_jpeg(node, space):
                raise DatasetError(f"{where}: {path} declares shape {tuple(node.shape[1:])} per step but the space "
                                   f"is {_space_text(space)}; the dataset does not match its own spaces")
        elif node.ndim and node.shape[0] > T + 1:
            raise DatasetError(f"{where}: {path} declares {node.shape[0]} entries for an episode of {T} steps "
                               f"(at most {T + 1}: one per observation); the file is corrupt or mismatched")
        _check_storage(node, path, where)
    return T


def _check_storage(node: Any, path: str, where: str) -> None:
    """The bytes an array declares are stored (compressed at most ~1000:1, gzip's ceiling), not conjured
    from a fill value."""
    if node.dtype.kind not in "biuf":
        return
    declared = int(np.prod(node.shape, dtype=np.float64)) * node.dtype.itemsize
    stored = int(node.id.get_storage_size())
    ratio = 1100 if node.compression else 1
    if declared > max(stored, 1) * ratio and declared > 4096:
        raise DatasetError(f"{where}: {path} declares {declared / 1e6:.1f} MB of data but its file stores "
                           f"{stored / 1e6:.3f} MB for it; the file is corrupt or forged — re-create the dataset")


def _is_jpeg(node: Any, space: gym.Space | None) -> bool:
    """Whether an observation/action array holds JPEG-encoded frames (Minari's default for image spaces:
    uint8 Box ``[H, W(, C)]`` in [0, 255], H and W >= 32): one byte string per step, stored as a ``[rows, L]``
    uint8 array or a variable-length one."""
    from minari.dataset.minari_storage import is_image_space

    if space is None or not is_image_space(space):
        return False
    vlen = node.dtype.kind == "O"
    return vlen or (node.dtype == np.uint8 and node.ndim == 2 and tuple(node.shape[1:]) != tuple(space.shape))


def _jpeg_nodes(nodes: dict[str, Any], prefix: str, observation_space: gym.Space, action_space: gym.Space,
                metadata: Mapping[str, Any]) -> dict[str, gym.Space]:
    """``{path: image space}`` of an episode's arrays stored as JPEG frames (metadata ``jpeg_encoding``)."""
    if metadata.get("jpeg_encoding", True) is False:
        return {}
    out = {}
    for path, node in nodes.items():
        top, *rest = path[len(prefix) + 1:].split("/")
        space = (_leaf_space(observation_space, rest) if top == "observations" else
                 _leaf_space(action_space, rest) if top == "actions" else None)
        if _is_jpeg(node, space):
            out[path] = space
    return out


def _read_jpeg(node: Any, space: gym.Space, path: str, where: str, digests: dict[str, str]) -> np.ndarray:
    """Decode one JPEG frame per row into ``[rows, *space.shape]`` uint8 (each frame's size checked from its
    header before it is decoded); the checksum covers the encoded bytes."""
    import hashlib
    import io

    from PIL import Image

    frames = node[()]
    h = hashlib.blake2b(digest_size=16)
    h.update(f"jpeg{len(frames)}".encode())
    out = np.empty((len(frames), *space.shape), np.uint8)
    for t, encoded in enumerate(frames):
        data = np.asarray(encoded, np.uint8).tobytes()
        h.update(len(data).to_bytes(8, "little") + data)
        try:
            with Image.open(io.BytesIO(data)) as image:
                expected = (space.shape[1], space.shape[0])
                if image.format != "JPEG" or image.size != expected:
                    raise ValueError(f"a {image.format} image of {image.size[0]}x{image.size[1]}, not "
                                     f"{expected[0]}x{expected[1]} JPEG")
                frame = np.asarray(image, dtype=np.uint8)
        except Exception as exc:  # PIL: not an image, truncated, a decompression bomb
            raise DatasetError(f"{where}: {path} step {t} is not a JPEG frame of {_space_text(space)} "
                               f"({_one_line(exc, 100)}); the file is corrupt") from None
        if frame.shape != tuple(space.shape):
            raise DatasetError(f"{where}: {path} step {t} decodes to shape {frame.shape}, not {_space_text(space)}")
        out[t] = frame
    digests[path] = h.hexdigest()
    return out


def _digest(array: np.ndarray) -> str:
    """A content hash of one array: its dtype, shape and bytes."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))  # the bytes of tobytes(), without a copy
    return h.hexdigest()


def _read_array(node: Any, path: str, where: str, digests: dict[str, str]) -> np.ndarray:
    if node.dtype.kind not in "biuf":
        if path.split("/")[1] != "infos":
            raise DatasetError(f"{where}: {path} has dtype {node.dtype}, not numbers (rlkit reads numeric arrays "
                               "only)")
        return np.zeros(0, np.uint8)  # a foreign dataset's text infos: skipped, not hashed
    try:
        value = np.asarray(node[()])
    except OSError as exc:  # a corrupt compressed chunk: the filter fails before any checksum can be computed
        raise DatasetError(f"{where}: {path} in {node.file.filename} does not decode ({_one_line(exc, 80)}): its "
                           "compressed data is corrupt, so it cannot match its checksum; the file is corrupt (bit "
                           "flips, a bad copy) or was edited — re-create the dataset or copy it again") from None
    digests[path] = _digest(value)
    return value


def _gather(arrays: dict[str, np.ndarray], path: str) -> Any:
    """The array at ``path``, or a dict of arrays for a group (Dict space)."""
    if path in arrays:
        return arrays[path]
    inner = {p[len(path) + 1:]: v for p, v in arrays.items() if p.startswith(path + "/")}
    out: dict[str, Any] = {}
    for key in {k.split("/", 1)[0] for k in inner}:
        out[key] = _gather(arrays, f"{path}/{key}")
    return out


def _fingerprint(metadata: Mapping[str, Any], digests: Mapping[str, str]) -> str:
    """One hash of everything a dataset holds: every array's content, the spaces, the env spec and rlkit's
    env id and kwargs. Two datasets with the same fingerprint train the same run."""
    import hashlib

    rlkit_meta = metadata.get("rlkit") if isinstance(metadata.get("rlkit"), dict) else {}
    head = {"observation_space": metadata.get("observation_space"), "action_space": metadata.get("action_space"),
            "env_spec": metadata.get("env_spec"), "env_id": rlkit_meta.get("env_id"),
            "env_kwargs": rlkit_meta.get("env_kwargs"), "arrays": sorted(digests.items())}
    return hashlib.sha256(json.dumps(head, sort_keys=True, default=str).encode()).hexdigest()


def _verify_checksums(stored: Mapping[str, Any], digests: Mapping[str, str], stored_fingerprint: Any,
                      fingerprint: str, name: str, h5: Path) -> None:
    for path, digest in digests.items():
        if stored.get(path) != digest:
            what = "has no checksum in the metadata" if path not in stored else "does not match its checksum"
            raise DatasetError(f"dataset '{name}': {path} in {h5} {what}; the file is corrupt (bit flips, a bad "
                               "copy) or was edited — re-create the dataset or copy it again")
    lost = sorted(set(stored) - set(digests))
    if lost:
        raise DatasetError(f"dataset '{name}': {lost[0]} is missing from {h5} ({len(lost)} arrays with checksums "
                           "are); the file is truncated or was edited — re-create the dataset")
    if stored_fingerprint is not None and stored_fingerprint != fingerprint:
        raise DatasetError(f"dataset '{name}': its metadata (spaces, env) no longer matches the fingerprint written "
                           "with it; metadata.json was edited — re-create the dataset")


def _file_digests(h5: Path, episodes: int) -> dict[str, str]:
    """Checksums of a freshly written file, read back exactly as :func:`load_dataset` reads it."""
    import h5py

    digests: dict[str, str] = {}
    with h5py.File(h5, "r") as f:
        for i in range(episodes):
            for path, node in _episode_nodes(f[f"episode_{i}"], f"episode_{i}", f"episode {i}").items():
                _read_array(node, path, f"episode {i}", digests)
    return digests


def _read_node(node: Any, where: str) -> Any:
    """An HDF5 dataset as numpy, or a group (Dict space) as a dict of numpy arrays."""
    import h5py

    if isinstance(node, h5py.Group):
        return {k: _read_node(v, f"{where}['{k}']") for k, v in node.items()}
    if isinstance(node, h5py.Dataset):
        if node.dtype.kind not in "biuf":
            raise DatasetError(f"{where} has dtype {node.dtype}, not numbers (rlkit reads numeric arrays only)")
        return node[()]
    raise DatasetError(f"{where} is not an HDF5 dataset")


def _env_id_from_spec(spec: Any) -> str | None:
    if isinstance(spec, str):
        try:
            value = json.loads(spec).get("id")
            return value if isinstance(value, str) else None
        except (ValueError, AttributeError):
            return None
    return None


def list_datasets() -> list[dict[str, Any]]:
    """One row per dataset under :func:`datasets_root` (metadata only, no episodes read): ``id``, ``episodes``,
    ``steps``, ``env``, ``size_mb``, ``path``; an unreadable one has ``error`` instead of the counts."""
    root = datasets_root()
    rows = []
    for dataset_id in _scan_ids(root):
        data_dir = root / dataset_id / DATA_DIR
        size = sum(p.stat().st_size for p in (data_dir / METADATA_FILE, data_dir / HDF5_FILE) if p.is_file()) / 1e6
        row: dict[str, Any] = {"id": dataset_id, "path": str(root / dataset_id), "size_mb": size}
        try:
            meta = _read_metadata(data_dir, dataset_id)
            rlkit_meta = meta.get("rlkit") if isinstance(meta.get("rlkit"), dict) else {}
            row.update(episodes=meta["total_episodes"], steps=meta["total_steps"],
                       env=rlkit_meta.get("env_id") or _env_id_from_spec(meta.get("env_spec")))
        except DatasetError as exc:
            row["error"] = str(exc)
        rows.append(row)
    return rows


def dataset_info(dataset: str | os.PathLike) -> dict[str, Any]:
    """Everything ``rlkit dataset info`` shows: id, path, env id, spaces, counts, return statistics,
    episode lengths, Minari's and rlkit's metadata. Reads (and so checks) the whole dataset."""
    data = load_dataset(dataset)
    meta = data.metadata
    rlkit_meta = meta.get("rlkit") if isinstance(meta.get("rlkit"), dict) else {}  # foreign data may hold anything
    lengths = np.array([len(ep) for ep in data.episodes])
    skip = {"observation_space", "action_space", "env_spec", "eval_env_spec", "rlkit", "env_id", "total_episodes",
            "total_steps", "return_mean", "return_std", "return_min", "return_max", "fingerprint"}
    return {
        "id": data.dataset_id, "path": str(data.path), "env_id": data.env_id,
        "observation_space": _space_text(data.observation_space), "action_space": _space_text(data.action_space),
        "episodes": len(data), "steps": data.total_steps,
        "return": {k: meta[f"return_{k}"] for k in ("mean", "std", "min", "max")},
        "length": {"mean": float(lengths.mean()), "min": int(lengths.min()), "max": int(lengths.max())},
        "terminated": int(sum(bool(ep.terminations[-1]) for ep in data.episodes)),
        "truncated": int(sum(bool(ep.truncations[-1]) for ep in data.episodes)),
        "minari": {k: (sorted(v) if isinstance(v, (set, list)) else v) for k, v in meta.items() if k not in skip},
        "fingerprint": meta["fingerprint"],
        "checksums": isinstance(rlkit_meta.get("checksums"), dict),
        "rlkit": {k: v for k, v in rlkit_meta.items() if k not in ("checksums", "fingerprint")},
    }


# --------------------------------------------------------------------------------------
# Accessors for the offline loop
# --------------------------------------------------------------------------------------


def iter_transitions(dataset: LoadedDataset) -> Iterator[EpisodeTransitions]:
    """Per episode, aligned one-step transitions (``obs[t] -> next_obs[t]``); see :class:`EpisodeTransitions`."""
    for ep in dataset.episodes:
        yield EpisodeTransitions(obs=_map(lambda a: a[:-1], ep.observations), actions=ep.actions, rewards=ep.rewards,
                                 next_obs=_map(lambda a: a[1:], ep.observations), terminated=ep.terminations,
                                 truncated=ep.truncations)


def replay_stream(dataset: LoadedDataset | list[Episode]) -> ReplayStream:
    """All episodes (of a dataset, or a list) as one stream in ``ReplayBuffer.add``'s layout (see
    :class:`ReplayStream`): what the offline loop's transition source is filled with."""
    obs, actions, rewards, terms, truncs, autoreset = [], [], [], [], [], []
    for ep in (dataset.episodes if isinstance(dataset, LoadedDataset) else dataset):
        T = len(ep.actions)
        obs.append(ep.observations)
        actions.append(np.concatenate([ep.actions, np.zeros_like(ep.actions[:1])]))
        rewards.append(np.concatenate([np.asarray(ep.rewards, dtype=np.float32), np.zeros(1, np.float32)]))
        last_done = np.zeros(1, bool)
        # the last step ends the episode for the buffer: a cut without either flag becomes a truncation
        trunc = np.array(ep.truncations, dtype=bool)
        if not (ep.terminations[-1] or trunc[-1]):
            trunc[-1] = True
        terms.append(np.concatenate([ep.terminations, last_done]))
        truncs.append(np.concatenate([trunc, last_done]))
        flags = np.zeros(T + 1, bool)
        flags[-1] = True
        autoreset.append(flags)
    return ReplayStream(_concat(obs), np.concatenate(actions), np.concatenate(rewards), np.concatenate(terms),
                        np.concatenate(truncs), np.concatenate(autoreset))


# --------------------------------------------------------------------------------------
# A run's replay buffer -> episodes (``rlkit dataset from-run``, see rlkit.training.recording)
# --------------------------------------------------------------------------------------


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _replay_obs(state: Mapping[str, Any], observation_space: gym.Space) -> Obs:
    """The stored observations: ``obs`` (Box / Discrete) or ``obs.<key>`` per Dict key."""
    if isinstance(observation_space, gym.spaces.Dict):
        missing = [k for k in observation_space.spaces if f"obs.{k}" not in state]
        if missing:
            raise DatasetError(f"the replay buffer holds no observations for Dict key(s) {missing}; it was not written "
                               "for this env's observation space")
        return {k: _np(state[f"obs.{k}"]) for k in observation_space.spaces}
    if "obs" not in state:
        raise DatasetError("the replay buffer holds no 'obs'; it was not written for this env's observation space")
    return _np(state["obs"])


def episodes_from_replay(state: Mapping[str, Any], observation_space: gym.Space, last_obs: Any = None
                         ) -> tuple[list[Episode], dict[str, int]]:
    """Whole episodes from a ``ReplayBuffer.state_dict()`` (``rlkit.experience.replay``'s layout: one time-ordered
    stream per sub-env, ``valid`` False on NEXT_STEP autoreset rows, which hold the final observation of
    the episode before them; frame stacks stored as their newest frame).

    Partial episodes: one whose start was overwritten by the ring (the rows of a stream before its first
    reset row) is **dropped** — its start state and return are lost. The episode in progress at the end
    of each stream is **kept as truncated** when ``last_obs`` (the loop's current observations, saved in
    the checkpoint: the observation after the newest row) gives its final observation — every one of its
    transitions is real, and truncation (cut, not terminal) is exactly what happened — else dropped. Rows
    flagged ``terminated`` inside an episode (Atari's life losses) are not episode ends; only the last
    step of an episode carries a flag. Frame stacks are rebuilt from the episode's own frames, padded at
    its start with its first frame (the Atari wrappers' reset), as ``ReplayBuffer`` samples them.

    Returns (episodes in stream order, counts: ``transitions`` real rows in the buffer, ``kept``,
    ``dropped_leading``, ``dropped_trailing``).
    """
    N, S = int(state["num_envs"]), int(state.get("frame_stack", 1))
    order = _ring_order(int(state["rows_per_env"]), int(state["pos"]), bool(state["full"]))
    is_dict = isinstance(observation_space, gym.spaces.Dict)
    spaces = dict(observation_space.spaces) if is_dict else {"": observation_space}
    stored = _replay_obs(state, observation_space)
    stored = stored if is_dict else {"": stored}                      # key "" for a Box observation
    stacked = {k: _stored_one_frame(v, spaces[k], S) for k, v in stored.items()}
    obs = {k: v[order] for k, v in stored.items()}                     # [count, N, ...], oldest row first
    actions, rewards = _np(state["actions"])[order], _np(state["rewards"])[order]
    terminated, truncated = _np(state["terminated"])[order].astype(bool), _np(state["truncated"])[order].astype(bool)
    valid, first = _np(state["valid"])[order].astype(bool), _np(state["first"])[order].astype(bool)
    tail = None  # the observation after each stream's newest row, newest frame only: [N, ...] per key
    if last_obs is not None:
        last = last_obs if is_dict else {"": last_obs}
        tail = {k: _np(last[k])[:, -1] if stacked[k] else _np(last[k]) for k in spaces}
    counts = {"transitions": int(valid.sum()), "kept": 0, "dropped_leading": 0, "dropped_trailing": 0}
    episodes: list[Episode] = []
    for e in range(N):
        for start, stop, cut in _episode_spans(valid[:, e], first[:, e], tail is not None, counts):
            # rows [start, stop) are the steps; the final observation is row `stop` (autoreset) or the tail
            final = {k: tail[k][e] for k in spaces} if cut else {k: obs[k][stop, e] for k in spaces}
            episode_obs = {k: _frame_stacks(np.concatenate([obs[k][start:stop, e], np.asarray(final[k])[None]]),
                                            S if stacked[k] else 1) for k in spaces}
            term, trunc = np.zeros(stop - start, bool), np.zeros(stop - start, bool)
            term[-1], trunc[-1] = terminated[stop - 1, e], truncated[stop - 1, e]
            if cut and not term[-1]:
                trunc[-1] = True
            episodes.append(Episode(episode_obs if is_dict else episode_obs[""], actions[start:stop, e],
                                    rewards[start:stop, e], term, trunc))
    return episodes, counts


def _ring_order(rows_per_env: int, pos: int, full: bool) -> np.ndarray:
    """The stored rows of a replay ring, oldest first (``pos`` is the next row to write)."""
    return np.r_[np.arange(pos, rows_per_env), np.arange(0, pos)] if full else np.arange(pos)


def _stored_one_frame(array: np.ndarray, space: gym.Space, frame_stack: int) -> bool:
    """Whether a key's observations (``[rows, N, ...]``) are frame stacks stored as their newest frame."""
    shape = tuple(space.shape)
    return frame_stack > 1 and len(shape) >= 2 and shape[0] == frame_stack and tuple(array.shape[2:]) == shape[1:]


def _frame_stacks(frames: np.ndarray, frame_stack: int) -> np.ndarray:
    """``[T+1, S, ...]`` stacks of an episode's ``[T+1, ...]`` frames, padded with its first frame."""
    if frame_stack == 1:
        return frames
    idx = np.maximum(np.arange(len(frames))[:, None] - np.arange(frame_stack - 1, -1, -1)[None, :], 0)
    return frames[idx]


def _episode_spans(valid: np.ndarray, first: np.ndarray, has_tail: bool, counts: dict[str, int]
                   ) -> Iterator[tuple[int, int, bool]]:
    """The whole episodes of one stream (rows oldest first) as ``(start, stop, cut)``: rows ``[start, stop)``
    are its steps; its final observation is the autoreset row ``stop`` or, ``cut`` True, the tail (the
    episode running at the end, kept only ``has_tail``). Counts kept and dropped rows into ``counts``."""
    count, start = len(valid), None
    for t in range(count + 1):
        at_end = t == count
        if at_end or not valid[t] or (first[t] and start is not None):
            if start is not None and t > start:
                if not at_end and not valid[t]:
                    yield start, t, False
                elif at_end and has_tail:
                    yield start, t, True
                else:
                    counts["dropped_trailing"] += t - start
                    start = None
                    continue
                counts["kept"] += t - start
            start = None
        if at_end:
            break
        if valid[t]:
            if start is None:
                if first[t]:
                    start = t
                else:
                    counts["dropped_leading"] += 1  # the ring overwrote this episode's start
