"""The run state: everything a checkpoint holds besides the agent and the experience source —
counters, best evaluation, the open logging window, the logger's record count, the RNG states and the
collector's env-restore data — saved and loaded in one place, so a resumed run continues exactly.

Also the rules of resuming: which config changes a resume may make (:func:`resume_changes`).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkit.training import distributed
from rlkit.runfiles.checkpoint import load_checkpoint, nonfinite, save_checkpoint  # noqa: F401 (nonfinite re-exported)
from rlkit.config import RunConfig, to_dict
from rlkit.errors import CheckpointError, ConfigError, DatasetError, TrainingDiverged


@dataclass
class RunState:
    """Loop counters and bookkeeping. ``step`` counts env transitions online and gradient steps offline."""

    step: int = 0
    elapsed: float = 0.0                 # training wall time, cumulative over resumes
    best_eval: float = -math.inf
    best_step: int | None = None
    updates_from: int = 0                # online: the step updates start at (refill after a buffer-less resume)
    train_sums: dict[str, float] = field(default_factory=dict)  # metric sums of the open logging window
    train_count: int = 0                 # updates in the open logging window
    records: int = 0                     # metrics.jsonl records written (a resume truncates to this)
    checkpoint_step: int | None = None   # step of the newest checkpoint on disk (not saved: derived)
    pending: list[dict[str, Any]] = field(default_factory=list)  # this window's metrics, not yet read

    def add_metrics(self, metrics: dict[str, Any]) -> None:
        """Keep one update's metrics as they are (device tensors): O(1), no host sync, no arithmetic per
        update; :meth:`pop_means` reads the window in one go."""
        self.pending.append(metrics)
        self.train_count += 1

    def _fold_pending(self) -> None:
        """Add the pending updates' metrics into ``train_sums`` (one host transfer per metric), in update
        order, in float64: the same sums as adding each update's Python float."""
        if not self.pending:
            return
        for key in self.pending[0]:
            values = [m[key] for m in self.pending if key in m]
            if isinstance(values[0], torch.Tensor):
                values = torch.stack([v.detach().reshape(()) for v in values]).double().cpu().tolist()
            total = self.train_sums.get(key, 0.0)
            for value in values:
                total += float(value)
            self.train_sums[key] = total
        self.pending = []

    def pop_means(self) -> tuple[dict[str, float], int]:
        """Means of the logging window's metrics and its update count; opens a new window."""
        self._fold_pending()
        count = self.train_count
        means = {k: v / count for k, v in self.train_sums.items()} if count else {}
        self.train_sums, self.train_count = {}, 0
        return means, count

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: Path, agent, source=None, collector=None) -> None:
        """One atomic checkpoint of the whole run. Refuses non-finite agent state (the last good
        checkpoint stays). Under ``torchrun`` every rank calls it: rank 0 gathers what differs on the
        others (:func:`_rank_entry`) into ``ranks`` and alone writes the file (rlkit.training.distributed)."""
        self._fold_pending()
        agent_state = agent.state_dict()
        broken = nonfinite(agent_state)  # the weights are the same on every rank: all raise, or none
        if broken is not None:
            raise TrainingDiverged(f"agent state '{broken}' is not finite")
        checkpoint = {
            "step": self.step,
            "agent": agent_state,
            "buffer": source.state_dict() if source is not None else None,
            "collector": collector.state_dict() if collector is not None else None,
            "loop": {
                "step": self.step, "elapsed": self.elapsed, "best_eval": float(self.best_eval),
                "best_step": self.best_step, "records": self.records, "updates_from": self.updates_from,
                "train_sums": json.dumps(self.train_sums), "train_count": self.train_count,
            },
            "rng": capture_rng(),
            "world_size": distributed.world(),
        }
        if distributed.active():
            gathered = distributed.gather_to_main(None if distributed.is_main() else _rank_entry(checkpoint, agent))
            checkpoint["ranks"] = gathered[1:] if gathered is not None else None
        if distributed.is_main():
            save_checkpoint(path, checkpoint)
        self.checkpoint_step = self.step

    @classmethod
    def load(cls, path: Path, agent, device: torch.device, source=None, collector=None,
             seed: int = 0) -> tuple["RunState", dict[str, Any]]:
        """Restore agent, experience source (if the checkpoint holds it), collector and RNGs from ``path``
        (``seed``: the collector's env seed). Returns the state and ``info``: ``buffer_restored``, ``envs_exact``.
        Under ``torchrun`` rank 0 reads the file and hands each rank its own state; a checkpoint written by
        another number of ranks is refused (ConfigError)."""
        if distributed.active():
            checkpoint = distributed.scatter_from_main(_rank_checkpoints(path) if distributed.is_main() else None)
            if checkpoint[0] == "error":
                exc = ConfigError(checkpoint[1])
                exc._rlkit_agreed = True  # every rank raises it (rlkit.training.distributed.session)
                raise exc
            checkpoint = checkpoint[1]
        else:
            checkpoint = load_checkpoint(path, map_location=device, required=("agent", "loop", "rng"))
            _check_world(checkpoint, path)
        try:
            agent.load_state_dict(checkpoint["agent"])
            state = cls._from_loop(checkpoint["loop"])
            buffer_restored = source is not None and checkpoint.get("buffer") is not None
            if buffer_restored:
                fresh = _layout(source.state_dict())  # what this run's buffer holds, to check the loaded one against
                source.load_state_dict(checkpoint["buffer"])
                _check_layout(fresh, _layout(source.state_dict()), "the replay buffer")
            envs_exact = True
            if collector is not None:
                collector_state = checkpoint.get("collector") or _collector_state_v0(checkpoint)
                envs_exact = collector.load_state_dict(collector_state, seed, reseed=seed + state.step, agent=agent)
            restore_rng(checkpoint["rng"])  # a tampered RNG state is refused here, like any other entry
        except DatasetError:
            raise  # the source's own one-line reason (e.g. trained on another dataset), not "not a checkpoint"
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, OverflowError) as exc:
            text = " ".join(str(exc).split())[:200]
            raise CheckpointError(f"'{path}' does not fit this run ({type(exc).__name__}: {text}); it is not an "
                                  "rlkit checkpoint of this run's agent, env and experience source") from None
        state.checkpoint_step = state.step
        return state, {"buffer_restored": buffer_restored, "envs_exact": envs_exact}

    @classmethod
    def _from_loop(cls, loop: dict[str, Any]) -> "RunState":
        """The counters of a checkpoint's ``loop`` entry, checked (a ValueError names the first bad one)."""
        counts = {key: loop[key] for key in ("step", "updates_from", "train_count", "records")}
        for key, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"loop.{key} is {value!r}, not a count >= 0")
        elapsed, best_eval, best_step = float(loop["elapsed"]), float(loop["best_eval"]), loop.get("best_step")
        if not 0.0 <= elapsed < math.inf or math.isnan(best_eval) or best_eval == math.inf:
            raise ValueError(f"loop.elapsed {elapsed!r} or loop.best_eval {best_eval!r} is out of range")
        if best_step is not None and (isinstance(best_step, bool) or not isinstance(best_step, int)
                                      or not 0 <= best_step <= counts["step"]):
            raise ValueError(f"loop.best_step is {best_step!r}, not a step of this run")
        sums = json.loads(loop["train_sums"])
        if not isinstance(sums, dict) or not all(isinstance(v, (int, float)) for v in sums.values()):
            raise ValueError("loop.train_sums is not a mapping of metric sums")
        return cls(step=counts["step"], elapsed=elapsed, best_eval=best_eval, best_step=best_step,
                   updates_from=counts["updates_from"], train_sums=sums, train_count=counts["train_count"],
                   records=counts["records"])


def _rank_entry(checkpoint: dict[str, Any], agent) -> dict[str, Any]:
    """What a rank > 0 adds to rank 0's checkpoint: the entries that differ between ranks — the agent's
    generator states (its weights, optimizers and counters are rank 0's, bit for bit), the sampler / replay,
    the collector, the RNGs and the open logging window."""
    generators = set(agent.parts.generators)
    return {"agent": {k: v for k, v in checkpoint["agent"].items() if k in generators},
            **{k: checkpoint[k] for k in ("buffer", "collector", "loop", "rng")}}


def _check_world(checkpoint: dict[str, Any], path: Path) -> None:
    saved, now = checkpoint.get("world_size", 1), distributed.world()
    if saved != now:
        how = (f"torchrun --nproc_per_node={saved} -m rlkit train --resume RUN (or the same total over nodes)"
               if saved > 1 else "rlkit train --resume RUN, without torchrun")
        raise ConfigError(f"'{path}' was written by a run of {saved} rank(s) and cannot resume with {now}: each "
                          f"rank's sampler, replay, env and RNG state is in it; resume with {how}")


def _rank_checkpoints(path: Path) -> list[tuple]:
    """Rank 0's reading of a checkpoint for every rank: ``[("ok", checkpoint of rank k) ...]`` (rank 0's
    entries with rank k's own over them), or ``("error", message)`` for all when it cannot resume here."""
    world = distributed.world()
    try:
        checkpoint = load_checkpoint(path, map_location="cpu", required=("agent", "loop", "rng"))
        _check_world(checkpoint, path)
        ranks = checkpoint.pop("ranks", None)
        if not isinstance(ranks, list) or len(ranks) != world - 1:
            raise CheckpointError(f"'{path}' holds no state of ranks 1..{world - 1}; it is not an rlkit checkpoint "
                                  "of this run")
    except (ConfigError, CheckpointError) as exc:
        return [("error", str(exc))] * world
    out = [("ok", checkpoint)]
    for entry in ranks:
        own = {**checkpoint, **entry, "agent": {**checkpoint["agent"], **(entry.get("agent") or {})}}
        out.append(("ok", own))
    return out


def _layout(state: dict[str, Any]) -> dict[str, tuple]:
    """``{key: (shape, dtype)}`` of a state dict's tensors (and the types of its other entries)."""
    return {k: (tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else (type(v),) for k, v in state.items()}


def _check_layout(fresh: dict[str, tuple], loaded: dict[str, tuple], what: str) -> None:
    """A loaded state has the entries, dtypes and shapes of the freshly built one (its row counts may differ
    where the fresh one has none yet): a tampered position, mask or RNG state is a ValueError."""
    for key, spec in fresh.items():
        got = loaded.get(key)
        if got is None or len(got) != len(spec) or got[1:] != spec[1:] or (len(spec) == 1 and got != spec):
            raise ValueError(f"{what}'s '{key}' is {got}, expected {spec}")
        if len(spec) == 2 and (len(got[0]) != len(spec[0]) or got[0][1:] != spec[0][1:]
                               or (spec[0][:1] != (0,) and got[0][:1] != spec[0][:1])):
            raise ValueError(f"{what}'s '{key}' has shape {list(got[0])}, expected {list(spec[0])}")


def _collector_state_v0(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The collector's state from a checkpoint written before the core restructure (issue 9), which kept
    the env side as loose loop entries and ``env_replay`` at the top level: such runs still resume."""
    loop = checkpoint["loop"]
    autoreset = loop["autoreset"]
    return {"obs": loop["obs"], "autoreset": autoreset,
            "episode_start": loop.get("episode_start", torch.zeros_like(autoreset)),
            "episode_returns": loop["episode_returns"], "episode_lengths": loop["episode_lengths"],
            "env_replay": checkpoint["env_replay"]}


def capture_rng() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": _np_state_to_json(np.random.get_state()),
            "python": json.dumps(random.getstate())}


def restore_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    np.random.set_state(_np_state_from_json(rng["numpy"]))
    random.setstate(_py_state_from_json(rng["python"]))


def _np_state_to_json(state: tuple) -> str:
    name, keys, pos, has_gauss, cached = state
    return json.dumps([name, keys.tolist(), pos, has_gauss, cached])


def _np_state_from_json(text: str) -> tuple:
    name, keys, pos, has_gauss, cached = json.loads(text)
    return name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached


def _py_state_from_json(text: str) -> tuple:
    version, internal, gauss = json.loads(text)
    return version, tuple(internal), gauss


# --------------------------------------------------------------------------------------
# What a resume may change
# --------------------------------------------------------------------------------------

# Everything else in the config is baked into the checkpoint (env state, networks, replay layout,
# seeds, the dataset) or read only when a run starts, so changing it on resume would either break the
# load or be recorded in config.yaml without taking effect: both are refused. Agent configs add their own
# fields through their ``resumable`` and ``optimizer_settings`` class variables (rlkit.contract.agent).
RESUMABLE_KEYS = frozenset({
    "train.total_steps", "train.train_every", "train.gradient_steps", "train.batch_size", "train.eval_every",
    "train.eval_episodes", "train.eval_epsilon", "train.checkpoint_every", "train.save_buffer",
    "train.snapshot_every",
    "train.stop_at_solve", "train.replay.beta_start", "log.progress", "log.tensorboard", "log.log_every",
    "log.plot", "device", "torch_threads", "train.compile", "train.precision", "train.gather_batches",
})  # and train.eval_env_kwargs.* (the evaluation envs are rebuilt when a run resumes)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and (tree or not prefix):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def resume_changes(old: RunConfig, new: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose value differs between the run's config and the resumed one, as (old, new).

    Raises :class:`ConfigError` naming every change a resume cannot honour."""
    before, after = _flatten(to_dict(old)), _flatten(to_dict(new))
    changes = {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k)}
    allowed = set(RESUMABLE_KEYS)
    if type(new.agent) is type(old.agent):
        allowed |= {f"agent.{k}" for k in (*old.agent.resumable, *old.agent.optimizer_settings)}
    refused = [k for k in changes if k not in allowed and not k.startswith("train.eval_env_kwargs")]
    if refused:
        shown = "; ".join(f"{k} {changes[k][0]!r} -> {changes[k][1]!r}" for k in refused[:6])
        more = f" (and {len(refused) - 6} more)" if len(refused) > 6 else ""
        raise ConfigError(f"cannot change on resume: {shown}{more}. The checkpoint holds what they shape (env "
                          "state, networks, replay layout, dataset, seeds), or they are read only when a run starts; "
                          "start a new run instead (nothing was written)")
    return changes


def apply_optimizer_changes(agent, changes: dict[str, tuple[Any, Any]]) -> None:
    """Write changed optimizer hyperparameters into the loaded optimizers' param groups."""
    agent.apply_optimizer_settings({key[len("agent."):]: new for key, (_, new) in changes.items()
                                    if key.startswith("agent.")})
