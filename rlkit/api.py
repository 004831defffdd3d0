"""The Python API: train a run and load a policy from Python, as ``rlkit train`` / ``rlkit eval`` do.

    import rlkit

    run = rlkit.train("dqn_cartpole", train__total_steps=5000, log__progress=False)
    run.run_dir, run.summary["final_eval"], run.metrics()        # the same files as `rlkit train`
    policy = rlkit.load(run.run_dir)                               # or an `rlkit export` directory
    action = policy.predict(obs)                                   # one observation -> one action
    actions = policy.predict(obs_batch)                            # [N, *obs_shape] -> [N, *action_shape]
    policy.evaluate(episodes=10)                                   # {"return_mean": ..., ...}

A config is a YAML path, the name of a shipped config (``dqn_cartpole`` is
``rlkit.config.configs_dir() / "dqn_cartpole.yaml"``), a dict of the same structure as the YAML, or a
:class:`~rlkit.config.RunConfig`. Overrides are the CLI's dotted keys: as keyword arguments with
``__`` for the dot (``train__total_steps=2000``), or as ``overrides={"train.total_steps": 2000}`` (Python
values, kept as they are) or ``overrides=["train.total_steps=2000"]`` (text parsed as YAML, as on the
command line). Mistakes raise the typed errors of :mod:`rlkit.errors` (``ConfigError``, ``RunDirError``,
``CheckpointError``) with the CLI's one-line messages.

Runs are named and laid out exactly as the CLI's (``runs/<config>-<agent>-s<seed>-<timestamp>/``), so
``rlkit eval``, ``rlkit plot`` and ``rlkit train --resume`` work on them and vice versa. Loading reads
checkpoints with ``torch.load(weights_only=True)`` and exports with safetensors: it never unpickles.

This module imports nothing heavy at import time (torch, gymnasium and the agents load on first use).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rlkit.config import (RunConfig, build_run_config, configs_dir, default_config_path, is_sb3_agent, read_yaml,
                          to_dict)
from rlkit.errors import ConfigError
from rlkit.runfiles.runs import CONFIG_FILE, RunLock, check_new_run_dir, check_run_dir, new_run_dir, open_run

ConfigLike = str | Path | Mapping | RunConfig | None


# --------------------------------------------------------------------------------------
# Configs and run directories (shared with `rlkit train`)
# --------------------------------------------------------------------------------------


def _override_value(value: Any) -> str:
    """A Python value as override text that parses back (as YAML) to the same value."""
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")  # "must be finite"
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        value = value.tolist()
    if isinstance(value, Path):
        value = str(value)
    try:
        return json.dumps(value)  # JSON is YAML: strings stay strings ("true" is not True), lists stay lists
    except (TypeError, ValueError):
        raise ConfigError(f"override value {value!r} ({type(value).__name__}) is not plain data (numbers, strings, "
                          "booleans, None, lists and dicts of them)") from None


def override_list(overrides: Mapping[str, Any] | list[str] | tuple[str, ...] | None = None,
                  **kwargs: Any) -> list[str]:
    """CLI-style ``key.sub=value`` strings from ``overrides`` (a dict of dotted keys to Python values, or
    a list of ``key=value`` strings) and keyword arguments whose ``__`` stands for the dot."""
    out: list[str] = []
    if overrides is None:
        pass
    elif isinstance(overrides, Mapping):
        out += [f"{key}={_override_value(value)}" for key, value in overrides.items()]
    elif isinstance(overrides, (list, tuple)):
        for text in overrides:
            if not isinstance(text, str) or "=" not in text:
                raise ConfigError(f"override {text!r} must be a string key.sub=value (e.g. 'train.total_steps=2000'); "
                                  "or pass overrides as a dict {'train.total_steps': 2000}")
            out.append(text)
    else:
        raise ConfigError(f"overrides must be a dict {{'train.total_steps': 2000}} or a list of 'key.sub=value' "
                          f"strings, got {type(overrides).__name__}")
    out += [f"{key.replace('__', '.')}={_override_value(value)}" for key, value in kwargs.items()]
    return out


def resolve_config_path(name: str | Path) -> Path:
    """A config file: ``name`` itself when it is a file (or looks like one: ``*.yaml``, a directory in
    it), else the shipped config of that name (``dqn_cartpole`` -> ``configs_dir()/dqn_cartpole.yaml``)."""
    path = Path(name)
    if path.is_file() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return path  # read_yaml says what is wrong with it, suggesting the closest shipped config
    shipped = configs_dir() / f"{path.name}.yaml"
    if shipped.is_file():
        return shipped
    options = sorted(p.stem for p in configs_dir().glob("*.yaml"))
    import difflib

    match = difflib.get_close_matches(str(name), options, n=1, cutoff=0.5)
    hint = f" Did you mean '{match[0]}'?" if match else ""
    raise ConfigError(f"config '{name}' is neither a file nor a shipped config.{hint} Shipped configs "
                      f"({configs_dir()}): {', '.join(options)}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "run"


def make_config(config: ConfigLike = None, overrides: list[str] = ()) -> tuple[RunConfig, str | None]:
    """The validated :class:`RunConfig` for a config (path, shipped name, dict, RunConfig or None for the
    default DQN CartPole) with CLI-style ``overrides`` applied, and the source name recorded with the run
    (the config file's stem, as the CLI records it; None for a dict or RunConfig)."""
    overrides = list(overrides)
    if config is None or isinstance(config, (str, Path)):
        path = default_config_path() if config is None else resolve_config_path(config)
        return build_run_config(read_yaml(path), overrides, source=str(path)), path.stem
    if isinstance(config, RunConfig):
        return build_run_config(to_dict(config), overrides, source="RunConfig"), None
    if isinstance(config, Mapping):
        return build_run_config(dict(config), overrides, source="config dict"), None
    raise ConfigError(f"config must be a YAML path, a shipped config name, a dict or a RunConfig, "
                      f"got {type(config).__name__}")


def prepare_train(config: ConfigLike, overrides: list[str], run_dir: str | Path | None = None,
                  resume_dir: str | Path | None = None) -> tuple[RunConfig, Path, str | None]:
    """What ``rlkit train`` and :func:`train` do before training: (config, run directory, source).

    A new run: the config with ``overrides``, in ``run_dir`` (checked to be new or empty) or in
    ``<log.root>/<config>-<agent>-s<seed>-<timestamp>``. A resumed run (``resume_dir``): the run's own
    ``config.yaml`` with ``overrides``, read under the run's lock (a running process may be writing it).
    """
    if resume_dir is not None:
        if config is not None:
            raise ConfigError("resuming takes the run's own config.yaml; pass overrides only (no config)")
        if run_dir is not None and Path(run_dir) != Path(resume_dir):
            raise ConfigError("a resumed run continues in its own directory; it cannot be combined with another "
                              "run directory (copy the run directory first to resume a copy)")
        resume_dir = check_run_dir(resume_dir)
        with RunLock(resume_dir):
            cfg = build_run_config(read_yaml(resume_dir / CONFIG_FILE), overrides,
                                   source=str(resume_dir / CONFIG_FILE))
        return cfg, resume_dir, None
    cfg, source = make_config(config, overrides)
    if run_dir is not None:
        return cfg, check_new_run_dir(run_dir), source  # before building: refuse a directory of other files
    stem = source if source is not None else _slug(cfg.env.id or Path(cfg.offline.dataset).name)
    return cfg, new_run_dir(cfg.log.root, cfg.log.name, stem, cfg.agent.name, cfg.seed), source


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A finished (or interrupted: ``summary["interrupted"]``) training run."""

    run_dir: Path
    """The run directory: config.yaml, metrics.jsonl, checkpoints/, learning_curve.png, tb/."""
    summary: dict
    """What ``rlkit train`` prints: ``steps``, ``wall_time``, ``final_eval`` (return_mean, return_std,
    length_mean, returns), ``best_eval``, ``best_step``, ``solved``, ``interrupted``, ``plot``."""
    config: RunConfig
    """The resolved config (as written to ``run_dir/config.yaml``)."""
    agent: "Policy"
    """The trained agent, from the run's latest (final) checkpoint; ``rlkit.load(run.run_dir)`` gives the
    best evaluation's. For an SB3 run (``agent.name: sb3.PPO``, ...) the SB3 model itself."""

    def metrics(self, kind: Literal["train", "episode", "eval"] | None = None) -> list[dict]:
        """The records of ``metrics.jsonl`` (each with ``kind``, ``step``, ``time`` and values), optionally
        only those of one kind."""
        from rlkit.runfiles.logger import read_metrics

        records = read_metrics(self.run_dir)
        return records if kind is None else [r for r in records if r["kind"] == kind]

    def plot(self, path: str | Path | None = None) -> Path:
        """Write the learning curve (return vs env steps and vs wall time) to ``path`` (default
        ``run_dir/learning_curve.png``); returns the path."""
        from rlkit.runfiles.logger import CURVE_FILE, plot_runs

        return plot_runs([self.run_dir], Path(path) if path is not None else self.run_dir / CURVE_FILE)


def train(config: ConfigLike = None, *, run_dir: str | Path | None = None, seed: int | None = None,
          device: str | None = None, resume: bool = False,
          overrides: Mapping[str, Any] | list[str] | None = None, **kwargs: Any) -> Run:
    """Train as ``rlkit train`` does and return the :class:`Run`.

    ``config``: a YAML path, a shipped config name (``"dqn_cartpole"``), a dict shaped like the YAML, a
    :class:`~rlkit.config.RunConfig`, or None (``dqn_cartpole``). ``run_dir``: a new or empty directory
    (default ``<log.root>/<config>-<agent>-s<seed>-<timestamp>``, as the CLI). ``seed``, ``device``:
    shortcuts for those keys. ``resume=True`` continues the run in ``run_dir`` from its latest checkpoint
    (``config`` must then be None; overrides are checked as ``rlkit train --resume`` checks them).
    ``overrides`` (a dict of dotted keys, or ``key=value`` strings) and keyword arguments with ``__`` for the
    dot (``train__total_steps=2000``) override config fields; keyword arguments are applied last.

    Ctrl-C stops the run at the end of the step with a checkpoint (``summary["interrupted"]``; resume with
    ``resume=True``), as the CLI does. A run whose loss goes non-finite raises
    :class:`~rlkit.errors.TrainingDiverged`.
    """
    from rlkit.training import distributed
    from rlkit.training.loops import train as train_loop  # train_online, or train_offline for an `offline:` config

    texts = override_list(overrides, **kwargs)
    if seed is not None:
        texts.append(f"seed={_override_value(seed)}")
    if device is not None:
        texts.append(f"device={_override_value(device)}")
    if resume and run_dir is None:
        raise ConfigError("train(resume=True) needs run_dir=, the run to continue")
    with distributed.session():  # under torchrun: join the process group, rank 0 prepares (as `rlkit train`)
        cfg, run_dir, source = distributed.on_main(
            lambda: prepare_train(config, texts, run_dir=run_dir if not resume else None,
                                  resume_dir=run_dir if resume else None))
        if is_sb3_agent(cfg.agent.name):  # an SB3 algorithm (agent.name sb3.PPO, ...): SB3's learn in rlkit's run
            from rlkit.training.sb3_runner import load_model_of_run, train_sb3

            if distributed.active():
                raise ConfigError(f"agent.name {cfg.agent.name}: SB3 runs are single-process; call rlkit.train "
                                  "without torchrun")
            summary = train_sb3(cfg, run_dir, resume=resume, source=source)
            return Run(run_dir=Path(run_dir), summary=summary, config=cfg, agent=load_model_of_run(run_dir))
        summary = train_loop(cfg, run_dir, resume=resume, source=source)
    return Run(run_dir=Path(run_dir), summary=summary, config=cfg,
               agent=load(run_dir, checkpoint="latest", device=cfg.device))


# --------------------------------------------------------------------------------------
# Loading and acting
# --------------------------------------------------------------------------------------


class Policy:
    """A trained agent with its spaces, acting on single observations or batches (SB3's ``predict``).

    Attributes: ``agent`` (the rlkit agent: ``agent.predict(obs_batch, deterministic, epsilon, episode_start)``,
    over ``agent.act(StepRecord, explore, epsilon)``),
    ``observation_space`` and ``action_space`` (one env's, not the vector env's), ``config`` (the run's
    :class:`~rlkit.config.RunConfig`), ``device``, ``source`` (the file the weights came from).
    """

    def __init__(self, agent: Any, observation_space: Any, action_space: Any, config: RunConfig,
                 device: Any = "cpu", source: Path | None = None) -> None:
        self.agent = agent
        self.observation_space = observation_space
        self.action_space = action_space
        self.config = config
        self.device = device
        self.source = source

    def __repr__(self) -> str:
        return (f"Policy({self.config.agent.name} on {self.config.env.id}, observations {self.observation_space}, "
                f"actions {self.action_space}{f', from {self.source}' if self.source else ''})")

    def predict(self, obs: Any, deterministic: bool = True, episode_start: Any = None, prev_reward: Any = None) -> Any:
        """Actions for ``obs``: one observation gives one action, a batch ``[N, *obs_shape]`` gives ``[N, ...]``.

        A Dict observation is a dict of arrays: one observation when every value has its subspace's
        shape, a batch when every value has one more leading axis of the same length N.
        ``deterministic``: the evaluation policy (DQN's greedy action, MPO's mean); False acts as in
        training (``agent.act(..., explore=True)``: DQN's epsilon-greedy at its schedule's current epsilon,
        MPO's Gaussian samples) at the point of its exploration schedule where training left it (the
        schedule follows the training loop's env-step clock, not ``predict`` calls).
        ``episode_start``: True where ``obs`` starts an episode (a bool, or a bool array ``[N]``); agents
        with memory reset their context there. ``prev_reward``: the reward of the step that led to ``obs`` (a
        float, or ``[N]``; 0 at an episode's start), which the Decision Transformer's return-to-go reads.

        Unlike Stable-Baselines3's ``predict``, which returns ``(actions, state)``, this returns the actions
        only: agents with memory keep their state themselves and reset it at ``episode_start``.
        """
        batch, single = self._as_batch(obs)
        n = _batch_size(batch)
        if n == 0:  # an empty batch: no actions (networks cannot reshape 0 rows)
            space = self.action_space
            return np.zeros((0, *(space.shape or ())), dtype=space.dtype)
        starts = None
        if episode_start is not None:
            starts = np.asarray(episode_start, dtype=bool).reshape(-1)
            if starts.shape != (n,):
                raise ValueError(f"episode_start has {starts.size} entries for {n} observation(s)")
        rewards = None
        if prev_reward is not None:
            rewards = np.asarray(prev_reward, dtype=np.float32).reshape(-1)
            if rewards.shape != (n,):
                raise ValueError(f"prev_reward has {rewards.size} entries for {n} observation(s)")
        actions = self.agent.predict(batch, deterministic=deterministic, episode_start=starts, prev_reward=rewards)
        return actions[0] if single else actions

    def evaluate(self, episodes: int = 10, seed: int = 0, epsilon: float = 0.0) -> dict[str, Any]:
        """Run ``episodes`` full episodes in the run's evaluation env (vectorized, as ``rlkit eval``: the env with
        ``train.eval_env_kwargs`` applied): a dict with ``return_mean``, ``return_std``, ``length_mean`` and
        ``returns`` (goal tasks: also ``success_rate`` and ``goal_distance_mean``). ``epsilon``: act at random
        with this probability (0: the deterministic policy)."""
        from rlkit.training.loops import evaluate, make_vector_env

        if episodes < 1:
            raise ConfigError(f"episodes must be >= 1, got {episodes}")
        if not 0.0 <= epsilon <= 1.0:
            raise ConfigError(f"epsilon must lie in [0, 1], got {epsilon}")
        envs = make_vector_env(self.config.env, num_envs=min(episodes, 8), **self.config.train.eval_env_kwargs)
        try:
            return evaluate(self.agent, self.config.env, episodes, epsilon, seed=seed, envs=envs)
        finally:
            envs.close()

    # ------------------------------------------------------------------ single vs batch
    def _as_batch(self, obs: Any) -> tuple[Any, bool]:
        space = self.observation_space
        spaces = getattr(space, "spaces", None)
        if isinstance(spaces, Mapping):  # gymnasium.spaces.Dict
            if not isinstance(obs, Mapping):
                raise ValueError(f"the observation space is a Dict ({sorted(spaces)}); pass a dict of arrays, "
                                 f"got {type(obs).__name__}")
            missing, extra = sorted(set(spaces) - set(obs)), sorted(set(obs) - set(spaces))
            if missing or extra:
                raise ValueError(f"observation keys {sorted(obs)} do not match the space's {sorted(spaces)}"
                                 + (f" (missing {missing})" if missing else "") + (f" (unknown {extra})" if extra else ""))
            parts = {key: _as_batch_array(obs[key], spaces[key], f"observation['{key}']") for key in spaces}
            kinds = {single for _, single in parts.values()}
            sizes = {len(value) for value, _ in parts.values()}
            if len(kinds) > 1 or len(sizes) > 1:
                shapes = {key: np.shape(obs[key]) for key in spaces}
                raise ValueError(f"Dict observation mixes single and batched (or differently batched) values: "
                                 f"{shapes}; expected each value to have its subspace's shape (one observation) "
                                 "or one more leading axis of the same length (a batch)")
            return {key: value for key, (value, _) in parts.items()}, kinds.pop()
        if isinstance(spaces, (tuple, list)):
            raise ValueError(f"Policy.predict does not take {type(space).__name__} observation spaces; "
                             "call policy.agent.act(StepRecord(...), explore=False) directly")
        return _as_batch_array(obs, space, "observation")


def _as_batch_array(obs: Any, space: Any, where: str) -> tuple[np.ndarray, bool]:
    """``obs`` as a batch array of ``space``'s dtype, and whether it was one observation."""
    shape = tuple(space.shape)
    try:
        given = np.asarray(obs)
        array = given.astype(space.dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} cannot be read as an array of {space.dtype}: {exc}") from None
    if given.dtype.kind == "f" and array.dtype.kind in "iu" and not np.array_equal(array, given):
        raise ValueError(f"{where} holds fractional floats but the space stores {space.dtype} (e.g. images in "
                         "[0, 1] where 0..255 bytes are expected); pass values the space holds")
    if array.dtype.kind == "f" and not np.isfinite(array).all():  # a NaN input gives an arbitrary action
        bad = np.argwhere(~np.isfinite(array))[0].tolist()
        raise ValueError(f"{where} holds NaN or inf (first at index {bad}); a policy acts on finite observations")
    if array.shape == shape:
        return array[None], True
    if array.ndim == len(shape) + 1 and array.shape[1:] == shape:
        return array, False
    raise ValueError(f"{where} has shape {array.shape}; the space {space} takes {shape} (one observation) "
                     f"or (N, {', '.join(map(str, shape))}{',' if len(shape) == 0 else ''}) (a batch)")


def _batch_size(batch: Any) -> int:
    return len(next(iter(batch.values()))) if isinstance(batch, Mapping) else len(batch)


def load(path: str | Path | Run, checkpoint: Literal["best", "latest"] = "best", device: str = "cpu") -> Policy:
    """The trained policy of a run directory or of an ``rlkit export`` directory, as ``rlkit eval`` loads it.

    ``checkpoint``: ``best`` (the best evaluation's weights; the latest when the run has not evaluated
    yet) or ``latest``; an exported directory holds one set of weights. ``device``: ``cpu``, ``cuda``,
    ``auto`` or any torch device. Checkpoints load with ``weights_only=True`` and exports with safetensors,
    so loading never runs code from the file. A path that is not a run is a
    :class:`~rlkit.errors.RunDirError`, weights that are not this run's a
    :class:`~rlkit.errors.CheckpointError`.
    """
    import torch

    from rlkit.runfiles.export import load_exported
    from rlkit.training.build import build_agent, load_agent_weights, resolve_device, run_spaces

    run = open_run(path.run_dir if isinstance(path, Run) else path, checkpoint)
    run_dir, cfg, source = run.run_dir, run.config, run.weights
    if is_sb3_agent(cfg.agent.name):
        from rlkit.training.sb3_runner import refuse

        refuse(cfg, run_dir, "rlkit.load")
    try:
        torch_device = resolve_device(device)
    except RuntimeError as exc:  # torch.device("gpu")
        raise ConfigError(f"device {device!r}: {' '.join(str(exc).split())[:200]}") from None
    observation_space, action_space = run_spaces(cfg, run_dir)  # exactly as training saw them (saved, env, dataset)
    agent = build_agent(cfg, observation_space, action_space, torch_device)
    if run.exported:
        load_exported(agent, run_dir, cfg.agent.name, torch_device)
    else:
        load_agent_weights(agent, source, torch_device)
    return Policy(agent, observation_space, action_space, cfg, device=torch.device(torch_device), source=source)


__all__ = ["Policy", "Run", "load", "make_config", "override_list", "prepare_train", "train"]
