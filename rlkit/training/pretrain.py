"""``rlkit pretrain``: train an observation encoder from an offline dataset with auxiliary losses only, and
write its weights (``encoder.safetensors``) for ``agent.encoder: {init: PATH, freeze: true}``.

The losses are the auxiliary modules of :mod:`rlkit.auxiliary` (inverse dynamics, and any module registered
there) attached exactly as inside an agent: :class:`EncoderOnly` is an :class:`~rlkit.contract.agent.Agent`
whose only part is the ``encoder`` (built by ``make_encoder`` as an agent builds it) with one optimizer, so each
module's ``loss(batch, agent)`` reads features through ``agent.encode(obs)`` and joins the step through
``Agent.optimize`` — nothing here knows any module. The batches are the dataset's one-step transitions
(``obs``, ``actions``, ``next_obs``; the offline loop's read-only source), or with ``sequence_length`` its
windows of consecutive steps. Runs log like training runs
(progress bar, TensorBoard, ``metrics.jsonl`` records of kind ``train`` with ``aux/<name>``), checkpoint
(``checkpoints/latest.pt``: encoder, heads, optimizer, sampler and RNG states) and resume exactly
(``rlkit pretrain --resume RUN``).

Config (YAML, strict: an unknown key is one line and exit 2)::

    dataset: rlkit/pixel-cartpole-v0
    encoder: {kind: impala}
    aux: [{name: inverse_dynamics, weight: 1.0}]
    steps: 2000
    batch_size: 64
"""

from __future__ import annotations

import copy
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import torch
import yaml

from rlkit.config import (LogConfig, _aux_config, _set_path, build_dataclass, check_seed, parse_override, read_yaml,
                          to_dict)
from rlkit.contract.agent import Agent, AgentConfig
from rlkit.contract.networks import EncoderConfig, make_encoder, resolved_kind
from rlkit.contract.parts import acting, trains
from rlkit.errors import ConfigError, TrainingDiverged
from rlkit.runfiles.encoder_file import encoder_metadata, save_encoder_file
from rlkit.runfiles.runs import (CONFIG_FILE, LATEST, LOCK_FILE, RunLock, check_new_run_dir, check_run_dir,
                                 create_run_dir, is_claimed_empty, new_run_dir)

ENCODER_FILE = "encoder.safetensors"


@dataclass
class PretrainConfig:
    """A pretraining run: which data, which encoder, which losses, how long."""

    dataset: str = ""
    """A Minari dataset id under ``MINARI_DATASETS_PATH`` (``rlkit dataset list``) or a dataset directory."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The encoder to train, as an agent's ``agent.encoder`` names it (``kind`` and its settings)."""
    encoder_hidden: list[int] = field(default_factory=list)
    """A learned MLP after the encoder, as ``agent.encoder_hidden`` (the agent loading the file sets the same)."""
    aux: list[Any] = field(default_factory=list)
    """The losses, as ``agent.aux``: ``[{name: inverse_dynamics, weight: 1.0}, ...]`` (rlkit.auxiliary)."""
    sequence_length: int = 0
    """0: batches of one-step transitions (``obs``, ``actions``, ``next_obs``); L >= 2: windows of L consecutive
    steps (``rlkit.experience.sequences``), for losses that look further ahead (CPC's ``offsets`` below L)."""
    steps: int = 5_000
    """Gradient steps."""
    batch_size: int = 128
    lr: float = 3e-4
    """Adam's learning rate for the encoder and the modules' heads."""
    max_grad_norm: float | None = None
    """Clip the gradient norm of each step to this (None: no clipping)."""
    checkpoint_every: int = 1_000
    """Gradient steps between checkpoints (one is always written at the end and on Ctrl-C)."""
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int = 1
    log: LogConfig = field(default_factory=lambda: LogConfig(log_every=100))
    """``log.log_every`` counts gradient steps here; ``log.plot`` is not read (no returns to plot)."""

    resumable = frozenset({"steps", "checkpoint_every", "device", "torch_threads", "log.progress", "log.tensorboard",
                           "log.log_every", "log.plot"})

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ConfigError("dataset must name a dataset (an id from `rlkit dataset list`, or a path)")
        if not self.aux:
            raise ConfigError("aux must list at least one loss, e.g. aux: [{name: inverse_dynamics, weight: 1.0}]")
        if self.sequence_length == 1 or self.sequence_length < 0:
            raise ConfigError(f"sequence_length must be 0 (transitions) or >= 2, got {self.sequence_length}")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.checkpoint_every < 0 or self.torch_threads < 0:
            raise ConfigError("checkpoint_every and torch_threads must be >= 0")
        if not 0.0 < self.lr < math.inf:
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr}")
        if self.max_grad_norm is not None and not 0.0 < self.max_grad_norm < math.inf:
            raise ConfigError(f"max_grad_norm must be a finite number > 0, got {self.max_grad_norm}")
        if any(w < 1 for w in self.encoder_hidden):
            raise ConfigError(f"encoder_hidden must be widths >= 1, got {self.encoder_hidden}")
        if self.encoder.init is not None or self.encoder.freeze:
            raise ConfigError("encoder.init / encoder.freeze are an agent's settings for loading pretrained weights; "
                              "rlkit pretrain trains the encoder from scratch: remove them")
        check_seed(self.seed)


def load_pretrain_config(path: str | Path | None, overrides: list[str] = (), data: dict | None = None,
                         source: str | None = None) -> PretrainConfig:
    """A YAML file (or raw ``data``) with ``key.sub=value`` overrides as a checked :class:`PretrainConfig`."""
    source = source or str(path)
    try:
        data = copy.deepcopy(data) if data is not None else read_yaml(path)
        for key, value in (parse_override(text) for text in overrides):
            _set_path(data, key, value)
        cfg = build_dataclass(PretrainConfig, data, "")
        cfg.aux = [_aux_config(entry, f"aux[{i}]") for i, entry in enumerate(cfg.aux)]
        for i, aux in enumerate(cfg.aux):
            check_aux(cfg, aux, f"aux[{i}]")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return cfg


def check_aux(cfg: PretrainConfig, aux: Any, where: str) -> None:
    """A module can learn from this run's batches: attached to the encoder, reading the batch kind the run
    makes (``sequence_length``), and what the module itself asks of the run (``AuxConfig.check_run``: CPC's
    offsets against the transitions' one step or the windows' length)."""
    if aux.part != "encoder":
        raise ConfigError(f"{where}.part: pretraining has one part, the encoder; remove part: {aux.part}")
    experience = "sequences" if cfg.sequence_length else "transitions"
    kinds = getattr(type(aux), "experience", ("transitions", "sequences"))
    if experience not in kinds or (type(aux).needs_one_step and experience != "transitions"):
        need = "transitions" if type(aux).needs_one_step else " or ".join(kinds)
        raise ConfigError(f"{where} ({aux.name}) learns from {need}; set sequence_length: "
                          f"{'0' if need == 'transitions' else 'L >= 2'}")
    check_run = getattr(aux, "check_run", None)
    if check_run is not None:  # the run as the module reads it: one-step transitions, or L-step windows
        run = SimpleNamespace(train=SimpleNamespace(replay=SimpleNamespace(n_step=1)),
                              agent=SimpleNamespace(sequence_length=cfg.sequence_length or 1))
        check_run(run, experience, where)


# --------------------------------------------------------------------------------------
# The encoder as an agent with nothing else
# --------------------------------------------------------------------------------------


@dataclass
class EncoderOnlyConfig(AgentConfig):
    name: str = "pretrain"


class EncoderOnly(Agent):
    """An agent whose only part is the ``encoder`` (acting only in name: it has no policy), trained by one Adam
    through :meth:`Agent.optimize`, so the auxiliary modules attach and run as in any agent."""

    def __init__(self, cfg: PretrainConfig, observation_space, action_space, device: torch.device) -> None:
        agent_cfg = EncoderOnlyConfig(aux=list(cfg.aux), encoder=cfg.encoder, encoder_hidden=list(cfg.encoder_hidden))
        super().__init__(agent_cfg, observation_space, action_space, device)
        self.max_grad_norm = cfg.max_grad_norm
        self.encoder = make_encoder(observation_space, cfg.encoder_hidden, cfg.encoder).to(self.device)
        if not any(p.requires_grad for p in self.encoder.parameters()):
            raise ConfigError(f"encoder.kind {cfg.encoder.kind!r} has no weights for observations {observation_space} "
                              "(they are only flattened): pick an image kind or set encoder_hidden")
        self.optimizer = torch.optim.Adam(self.encoder.parameters(), lr=cfg.lr)
        self.declare(parts={"encoder": acting(self.encoder)}, optimizers={"optimizer": trains(self.optimizer, "encoder")},
                     encoder="encoder")

    def act(self, step, explore, epsilon=None):  # pragma: no cover - an encoder does not act
        raise TypeError("a pretraining encoder does not act")

    def update(self, batch: Any) -> dict[str, torch.Tensor]:
        zero = torch.zeros((), device=self.device)  # no loss of its own: only the attached modules'
        self.optimize("optimizer", zero, batch, self.max_grad_norm)
        self.updates += 1
        return dict(self.aux_metrics)


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def dataset_source(cfg: PretrainConfig, device: torch.device):
    """(dataset, read-only source) for ``cfg.dataset``, as offline runs build it: one-step transitions, or
    ``sequence_length``-step windows."""
    from rlkit.errors import DatasetError
    from rlkit.experience.datasets import load_dataset
    from rlkit.experience.replay import ReplayBuffer
    from rlkit.experience.sources import DatasetSource, episode_rows, fill_replay

    dataset = load_dataset(cfg.dataset)
    episodes = [e for e in dataset.episodes if len(e.actions)]
    if not episodes:
        raise DatasetError(f"dataset '{cfg.dataset}' holds no steps")
    checksum = 0
    for episode in episodes:
        checksum = zlib.crc32(np.ascontiguousarray(episode.rewards, dtype=np.float32).tobytes(), checksum)
    fingerprint = {"dataset_episodes": len(episodes), "dataset_steps": int(sum(len(e.actions) for e in episodes)),
                   "dataset_rewards_crc32": int(checksum), "dataset_fingerprint": str(dataset.metadata["fingerprint"])}
    if cfg.sequence_length:
        from rlkit.experience.sequences import SequenceBuffer

        store = SequenceBuffer.from_episodes(episodes, dataset.observation_space, dataset.action_space,
                                             length=cfg.sequence_length, device=device, seed=cfg.seed)
        return dataset, DatasetSource(store, fingerprint)
    rows = sum(episode_rows(e) for e in episodes)
    try:
        store = ReplayBuffer.from_spaces(dataset.observation_space, dataset.action_space, capacity=max(rows, 2),
                                         num_envs=1, device=device, gamma=0.99, n_step=1, seed=cfg.seed)
    except ValueError as exc:
        raise DatasetError(f"dataset '{cfg.dataset}': {' '.join(str(exc).split())}") from None
    fill_replay(store, episodes)
    return dataset, DatasetSource(store, fingerprint)


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def prepare_pretrain(config: str | Path | None, overrides: list[str], run_dir: str | Path | None = None,
                     resume_dir: str | Path | None = None) -> tuple[PretrainConfig, Path]:
    """(config, run directory): a new run's config from ``config`` + ``overrides`` in ``run_dir`` (new or
    empty) or ``<log.root>/<config stem>-s<seed>-<timestamp>``; a resumed run's own config with ``overrides``."""
    if resume_dir is not None:
        if config is not None:
            raise ConfigError("--resume takes the run's own config.yaml; pass overrides only (no CONFIG)")
        if run_dir is not None:
            raise ConfigError("--resume continues the run in its own directory; --run-dir cannot be combined with it")
        resume_dir = check_run_dir(resume_dir)
        return load_pretrain_config(resume_dir / CONFIG_FILE, overrides), resume_dir
    if config is None:
        raise ConfigError("rlkit pretrain needs a CONFIG file (shipped: configs/pretrain_*.yaml)")
    cfg = load_pretrain_config(config, overrides)
    if run_dir is not None:
        return cfg, check_new_run_dir(run_dir)
    return cfg, new_run_dir(cfg.log.root, cfg.log.name, Path(config).stem, cfg.encoder.kind, cfg.seed)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def pretrain_resume_changes(old: PretrainConfig, new: PretrainConfig) -> list[str]:
    """The keys a resume changes; any outside :attr:`PretrainConfig.resumable` is a one-line ConfigError."""
    before, after = _flatten(to_dict(old)), _flatten(to_dict(new))
    changed = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    refused = [k for k in changed if k not in PretrainConfig.resumable]
    if refused:
        shown = "; ".join(f"{k} {before.get(k)!r} -> {after.get(k)!r}" for k in refused[:4])
        raise ConfigError(f"cannot change on resume: {shown} (the checkpoint holds what they shape); start a new run")
    return changed


def dump_pretrain_config(cfg: PretrainConfig, path: Path) -> None:
    import os

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def pretrain(cfg: PretrainConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train the encoder for ``cfg.steps`` gradient steps; returns a summary (steps, wall time, the last
    logged losses, the encoder file). The run directory appears once everything is built (a failed start
    leaves nothing); ``resume`` continues its latest checkpoint exactly."""
    from rlkit.runfiles.logger import RunLogger

    run_dir = Path(run_dir)
    lock = RunLock(run_dir)
    logger = None
    remove_dir = not resume and (not run_dir.exists() or is_claimed_empty(run_dir))  # rlkit made it
    try:
        dataset, source, holder, state = _start(cfg, run_dir, resume, lock)
        started = time.perf_counter() - state.elapsed
        logger = RunLogger(run_dir, cfg.steps, start_step=state.step, progress=cfg.log.progress,
                           tensorboard=cfg.log.tensorboard, description=f"pretrain {cfg.encoder.kind} {cfg.dataset}",
                           keep_records=state.records if resume else None)
        logger.message(f"resumed {run_dir} at step {state.step}" if resume else f"run directory: {run_dir}")
        signum, losses = _train(cfg, run_dir, holder, source, state, logger, started)
        encoder_path = None
        if state.step >= cfg.steps:
            encoder_path = write_encoder(holder, cfg, dataset.observation_space, run_dir / ENCODER_FILE, state.step)
            logger.message(f"encoder weights: {encoder_path} (agent.encoder.init)")
        return {"run_dir": str(run_dir), "steps": state.step, "wall_time": time.perf_counter() - started,
                "losses": losses, "encoder": str(encoder_path) if encoder_path else None, "interrupted": signum}
    finally:
        if logger is not None:
            logger.close()
        lock.release()
        if not resume and not (run_dir / LATEST).exists() and run_dir.is_dir():  # a failed start leaves nothing
            _remove_new_run(run_dir, remove_dir)


def _start(cfg: PretrainConfig, run_dir: Path, resume: bool, lock: RunLock):
    """(dataset, source, encoder holder, run state): built, then a new run's directory made (under the lock) or
    a resumed run's checkpoint loaded (config changes checked first)."""
    from rlkit.training.build import resolve_device, seed_everything
    from rlkit.training.run_state import RunState

    changed: list[str] = []
    if resume:
        lock.acquire()
        changed = pretrain_resume_changes(load_pretrain_config(run_dir / CONFIG_FILE), cfg)
    seed_everything(cfg.seed, cfg.torch_threads)
    device = resolve_device(cfg.device)
    dataset, source = dataset_source(cfg, device)
    holder = EncoderOnly(cfg, dataset.observation_space, dataset.action_space, device)
    if resume:
        state, _ = RunState.load(run_dir / LATEST, holder, device, source=source, seed=cfg.seed)
        if changed:
            dump_pretrain_config(cfg, run_dir / CONFIG_FILE)
    else:
        state = RunState()
        create_run_dir(run_dir)
        lock.acquire()
        check_new_run_dir(run_dir)  # again, under the lock
        dump_pretrain_config(cfg, run_dir / CONFIG_FILE)
    return dataset, source, holder, state


def _train(cfg: PretrainConfig, run_dir: Path, holder: EncoderOnly, source, state, logger,
           started: float) -> tuple[int, dict[str, float]]:
    """The loop: sample, update, log every ``log.log_every`` steps (and the last), checkpoint every
    ``checkpoint_every`` (and at the end or on Ctrl-C). Returns (the signal that stopped it or 0, last losses)."""
    from rlkit.training.loops import _crossed, _StopRequest

    last: dict[str, float] = {}

    def checkpoint() -> None:
        state.elapsed, state.records = time.perf_counter() - started, logger.records
        state.save(run_dir / LATEST, holder, source)

    with _StopRequest() as stop:
        while state.step < cfg.steps:
            state.add_metrics(holder.update(source.sample(cfg.batch_size)))
            before, state.step = state.step, state.step + 1
            logger.advance(state.step)
            if _crossed(before, state.step, cfg.log.log_every) or state.step == cfg.steps:
                means, count = state.pop_means()
                bad = [k for k, v in means.items() if not math.isfinite(v)]
                if bad:
                    raise TrainingDiverged(f"pretraining diverged at step {state.step}: {bad[0]} is {means[bad[0]]}; "
                                           "lower lr (or the modules' weights) and start again")
                if count:
                    last = means
                    logger.log("train", state.step, time.perf_counter() - started, {**means, "updates": count})
            if _crossed(before, state.step, cfg.checkpoint_every) or stop.requested:
                checkpoint()
            if stop.requested:
                logger.message(f"stopped at step {state.step}; checkpoint saved. Resume with: rlkit pretrain "
                               f"--resume {run_dir}")
                return stop.signum, last
        checkpoint()
    return 0, last


def _remove_new_run(run_dir: Path, remove_dir: bool) -> None:
    import shutil

    if remove_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for child in run_dir.iterdir():  # the user's empty --run-dir stays, empty
        if child.name != LOCK_FILE:
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


def write_encoder(holder: EncoderOnly, cfg: PretrainConfig, observation_space, path: Path, steps: int) -> Path:
    """``encoder.safetensors``: the encoder's weights and what they were made for (see
    :mod:`rlkit.runfiles.encoder_file`)."""
    losses = [{"name": a.name, "label": a.label_or_name(), "weight": a.weight} for a in cfg.aux]
    meta = encoder_metadata(resolved_kind(observation_space, cfg.encoder.kind), cfg.encoder.settings(),
                            list(cfg.encoder_hidden), observation_space, losses=losses, dataset=cfg.dataset,
                            steps=steps, seed=cfg.seed)
    return save_encoder_file(path, holder.encoder, meta)


