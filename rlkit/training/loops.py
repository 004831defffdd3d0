"""The training loops: ``train_online`` (collect from vector envs) and ``train_offline`` (gradient steps
from a dataset). Each reads top to bottom like CleanRL — collect, store, update, log, evaluate,
checkpoint — with plain ``if`` blocks and no callbacks; ``train`` picks one from the config.

What both loops share lives in named pieces: :class:`rlkit.training.collector.Collector` (the collect step and
the env side of a checkpoint), :func:`rlkit.training.evaluation.evaluate`, :class:`rlkit.training.run_state.RunState`
(the whole checkpoint, saved and loaded in one place; exact resume) and :class:`_Run` below (the run
directory, its lock, the logger, evaluation bookkeeping, Ctrl-C and divergence handling). Agents are the
same objects in both loops: they only see ``act`` and ``update(batch)``.

Collection conventions (NEXT_STEP autoreset, ``info["raw_reward"]``, ``info["life_loss"]``) are in
:mod:`rlkit.training.collector`'s docstring.
"""

from __future__ import annotations

import copy
import contextlib
import dataclasses
import math
import random
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkit.training import distributed
from rlkit.training.build import (build_agent, build_experience, build_replay, env_spec, load_agent_weights, make_vector_env,  # noqa: F401
                         env_agent_names, resolve_device, save_run_spaces, seed_everything, SPACES_FILE)
from rlkit.runfiles.checkpoint import CheckpointError, save_checkpoint
from rlkit.runfiles.export import export_agent
from rlkit.training.collector import Collector, EnvReplay, EpisodeTracker  # noqa: F401  (re-exported)
from rlkit.config import RunConfig, build_run_config, dump_yaml, read_yaml
from rlkit.errors import ConfigError, TrainingDiverged
from rlkit.training.evaluation import evaluate, evaluation_seed
from rlkit.experience.her import env_compute_reward, env_compute_terminated
from rlkit.experience.symmetries import env_symmetries
from rlkit.runfiles.logger import CURVE_FILE, RunLogger, plot_runs
from rlkit.training.run_state import RESUMABLE_KEYS, RunState, apply_optimizer_changes, resume_changes  # noqa: F401
from rlkit.runfiles.runs import (BEST, CONFIG_FILE, LATEST, LOCK_FILE, RunLock, check_new_run_dir, check_run_dir,
                                create_run_dir, is_claimed_empty)
from rlkit.contract.schedules import linear_schedule

SNAPSHOTS = "snapshots"  # run_dir/snapshots/step_<N>/: train.snapshot_every's exported policies


def train(cfg: RunConfig, run_dir: Path, resume: bool = False, source: str | None = None) -> dict[str, Any]:
    """Train as the config says: ``train_offline`` if it has an ``offline:`` section, else ``train_online``."""
    loop = train_offline if cfg.offline is not None else train_online
    return loop(cfg, run_dir, resume=resume, source=source)


def train_online(cfg: RunConfig, run_dir: Path, resume: bool = False, source: str | None = None) -> dict[str, Any]:
    """Train an off-policy agent on vectorized envs. Returns a summary (final evaluation, steps, time).

    A new run's directory is created only once everything is built (a failed start leaves nothing);
    it must be absent or empty. The run holds an exclusive lock on its directory while it runs.
    On resume, config changes are checked (:func:`resume_changes`) before anything is built or
    written, and ``config.yaml`` is rewritten only once the checkpoint has loaded.
    ``source`` (the config file's stem) is recorded in ``source.txt`` for plot labels.
    """
    with _Run(cfg, run_dir, resume, source) as run:
        seed_everything(cfg.seed, cfg.torch_threads)
        device = distributed.local_device(resolve_device(cfg.device))
        train = cfg.train
        envs = run.own(make_vector_env(cfg.env))
        eval_envs = run.own(make_vector_env(cfg.env, num_envs=min(train.eval_episodes, 8), **train.eval_env_kwargs))
        agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space, device,
                            agent_names=env_agent_names(envs), init_encoder=not resume)
        distributed.reseed_rank(agent, cfg.seed)  # torchrun: ranks > 0 draw their own streams (distributed.py)
        env_seed = distributed.env_seed(cfg.seed, envs.num_envs)  # rank r's envs: seed + r * num_envs + e
        if train.rollouts is not None:  # Ray actors collect; one row of all their columns per step (ray_rollouts.py)
            collector = run.own(_ray_rollouts(cfg, envs.num_envs))
        else:
            collector = Collector(envs, env_seed)
        rank_cfg = dataclasses.replace(cfg, seed=distributed.rank_seed(cfg.seed))  # each rank's replay samples its own
        replay = build_experience(rank_cfg, envs.single_observation_space, envs.single_action_space,
                                  collector.num_envs, device,
                                  compute_reward=env_compute_reward(envs),
                                  compute_terminated=env_compute_terminated(envs),
                                  agent_hook=agent.make_sample_hook(),  # e.g. RIS's subgoal candidates
                                  symmetries=env_symmetries(envs) if train.replay.symmetries else None)  # board games
        state = run.start(agent, device, source=replay, collector=collector, updates_from=train.learning_starts,
                          env_seed=env_seed)
        if train.rollouts is not None:
            collector.message = run.logger.message  # an actor's replacement is logged once
        if resume and not run.buffer_restored:  # refill before updating again
            state.updates_from = state.step + train.learning_starts
        warning = no_update_warning(train, state.updates_from, state.step)
        if warning:
            run.logger.message(warning)
        if train.replay.prioritized:  # the config checked capabilities.priority_feedback
            agent.connect_priorities(replay.update_priorities)
        agent.set_env_steps(state.step)  # every agent keeps the clock (checkpointed); env-step schedules read it

        ready = False  # the source has something to sample
        with _StopRequest() as stop:
            if train.eval_every > 0 and not resume:  # the curve starts at the untrained policy
                run.evaluate_untrained(agent, eval_envs)
            while state.step < train.total_steps and not run.solved:
                # collect one vector step and store it
                step = collector.step(agent, explore=True)
                replay.add(step.obs, step.actions, step.rewards, step.terminated | step.life_loss, step.truncated,
                           step.autoreset, agent_id=step.agent_id)
                success = step.infos.get("is_success")  # goal envs: whether each ended episode reached its goal
                reported = step.infos.get("_is_success")  # which sub-envs reported it on this step
                for e, ret, length in step.episodes:
                    record = {"return": ret, "length": length}
                    if train.rollouts is not None:  # which Ray actor played it
                        record["actor"] = e // envs.num_envs
                    if success is not None and (reported is None or reported[e]):
                        record["success"] = float(bool(success[e]))
                    run.logger.log("episode", state.step, run.clock(), record)
                before = state.step
                state.step += distributed.env_steps(step.real_steps, collector.num_envs)  # torchrun: all ranks' rows
                stop.poll()  # torchrun: all ranks stop at the same step
                agent.set_env_steps(state.step)
                run.logger.advance(state.step)

                # update
                phases = (_crossed(max(before, state.updates_from - 1), state.step, train.train_every)
                          if state.step >= state.updates_from else 0)
                ready = ready or (phases > 0 and replay.num_sampleable() > 0)  # stays true: rows only get added
                if phases and ready:
                    if state.checkpoint_step is None:  # a good state to fall back on if the first updates diverge
                        run.checkpoint(agent, replay, collector)
                    beta = linear_schedule(train.replay.beta_start, 1.0, train.total_steps, state.step)
                    due = phases * train.gradient_steps
                    while due > 0:  # train.gather_batches: several updates' batches from one replay gather
                        count = min(train.gather_batches, due)
                        batches = ([replay.sample(train.batch_size, beta=beta)] if count == 1
                                   else replay.sample_batches(train.batch_size, count, beta=beta))
                        for batch in batches:
                            with run.update_precision():
                                state.add_metrics(agent.update(batch))
                        due -= count

                # log, evaluate, checkpoint
                if _crossed(before, state.step, cfg.log.log_every):
                    run.log_train()
                if _crossed(before, state.step, train.eval_every) or state.step >= train.total_steps:
                    run.evaluate(agent, eval_envs)
                if _crossed(before, state.step, train.snapshot_every):
                    run.snapshot(agent)
                if _crossed(before, state.step, train.checkpoint_every) or stop.requested:
                    run.checkpoint(agent, replay, collector)
                if stop.requested:
                    run.stopped_by(stop.signum)
                    break
            if not stop.requested:
                run.checkpoint(agent, replay, collector)
        return run.finish(agent)


def train_offline(cfg: RunConfig, run_dir: Path, resume: bool = False, source: str | None = None) -> dict[str, Any]:
    """Train an agent from a dataset (``offline.dataset``, Minari format): ``train.total_steps`` gradient
    steps on batches from a read-only experience source, with the same logging, evaluation in the env
    (when ``env.id`` is set), checkpoints, exact resume and Ctrl-C handling as online runs."""
    from rlkit.experience.sources import dataset_source

    with _Run(cfg, run_dir, resume, source) as run:
        seed_everything(cfg.seed, cfg.torch_threads)
        device = distributed.local_device(resolve_device(cfg.device))
        train = cfg.train
        # torchrun: every rank samples the whole dataset with its own generator, seed + rank (distributed.py)
        dataset, experience = dataset_source(dataclasses.replace(cfg, seed=distributed.rank_seed(cfg.seed)), device)
        eval_envs = None
        if cfg.env.id is not None:
            eval_envs = run.own(make_vector_env(cfg.env, num_envs=min(train.eval_episodes, 8),
                                                **train.eval_env_kwargs))
            _check_dataset_fits(dataset, eval_envs, cfg)
        agent = build_agent(cfg, dataset.observation_space, dataset.action_space, device, init_encoder=not resume)
        distributed.reseed_rank(agent, cfg.seed)
        agent.observe_dataset(dataset)  # data statistics into the agent's parts (a resume loads the saved ones)
        run.reference_scores = dataset.reference_scores  # D4RL's normalised score in the eval records
        state = run.start(agent, device, source=experience)
        if distributed.is_main():
            save_run_spaces(run_dir, dataset.observation_space, dataset.action_space)  # eval/export/load without it

        with _StopRequest() as stop:
            if eval_envs is not None and not resume:  # the curve starts at the untrained policy
                run.evaluate_untrained(agent, eval_envs)
            while state.step < train.total_steps and not run.solved:
                # update
                batch = experience.sample(train.batch_size)
                with run.update_precision():
                    state.add_metrics(agent.update(batch))
                before = state.step
                state.step += 1
                stop.poll()  # torchrun: all ranks stop at the same step
                run.logger.advance(state.step)

                # log, evaluate, checkpoint
                if _crossed(before, state.step, cfg.log.log_every):
                    run.log_train()
                if eval_envs is not None and (_crossed(before, state.step, train.eval_every)
                                              or state.step >= train.total_steps):
                    run.evaluate(agent, eval_envs)
                if _crossed(before, state.step, train.snapshot_every):
                    run.snapshot(agent)
                if _crossed(before, state.step, train.checkpoint_every) or stop.requested:
                    run.checkpoint(agent, experience)
                if stop.requested:
                    run.stopped_by(stop.signum)
                    break
            if not stop.requested:
                run.checkpoint(agent, experience)
        return run.finish(agent)


def _ray_rollouts(cfg: RunConfig, num_envs: int):
    """``train.rollouts``' learner side (Ray imported only here); refused under torchrun."""
    if distributed.active():
        raise ConfigError("train.rollouts (Ray actors) and torchrun are two ways to scale collection: use one")
    from rlkit.training.ray_rollouts import RayRollouts

    return RayRollouts(cfg, num_envs)


def _check_dataset_fits(dataset, envs, cfg: RunConfig) -> None:
    from rlkit.experience.datasets import check_dataset_fits

    check_dataset_fits(dataset, envs.single_observation_space, envs.single_action_space,
                       where=f"offline.dataset '{cfg.offline.dataset}' vs env.id '{cfg.env.id}'")


# --------------------------------------------------------------------------------------
# The run: directory, lock, logger, evaluation bookkeeping, checkpoints (shared by both loops)
# --------------------------------------------------------------------------------------


class _Run:
    """One training run's plumbing, so the loops above show only the algorithm's order of events.

    Entering checks the run directory (and, on resume, the config changes) before anything is built;
    :meth:`start` creates the directory (new runs) or loads the checkpoint (resume), then opens the
    logger; :meth:`finish` writes the summary and the learning-curve plot. Leaving closes envs.
    """

    def __init__(self, cfg: RunConfig, run_dir: Path, resume: bool, source: str | None) -> None:
        self.cfg, self.run_dir, self.resume, self.source = cfg, Path(run_dir), resume, source
        self.lock = RunLock(self.run_dir)
        self.reference_scores: tuple[float, float] | None = None  # an offline dataset's (random, expert) returns
        self.changes: dict[str, tuple[Any, Any]] = {}
        self.owned: list[Any] = []
        self.logger: RunLogger | None = None
        self.state = RunState()
        self.solved = False
        self.last_eval: dict[str, Any] | None = None
        self.buffer_restored = False
        self.stop_signum = 0
        self._remove_dir = False
        self._started = time.perf_counter()
        self._sps_mark = (0, time.perf_counter())

    def __enter__(self) -> "_Run":
        # torchrun: rank 0 alone checks (and locks) the directory; the others get its resume changes or error
        self.changes = distributed.on_main(self._enter)
        return self

    def _enter(self) -> dict[str, tuple[Any, Any]]:
        if self.resume:
            check_run_dir(self.run_dir)
            self.lock.acquire()
            try:
                old = build_run_config(read_yaml(self.run_dir / CONFIG_FILE), [],
                                       source=str(self.run_dir / CONFIG_FILE))
                self.changes = resume_changes(old, self.cfg)
            except BaseException:
                self.lock.release()
                raise
        else:
            check_new_run_dir(self.run_dir)
            # a failed start leaves nothing behind: the directory goes too if rlkit made it (else only its files)
            self._remove_dir = not self.run_dir.exists() or is_claimed_empty(self.run_dir)
        return self.changes

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.logger is not None:
                self.logger.close()
        finally:
            for thing in self.owned:
                thing.close()
            if distributed.is_main():
                self.lock.release()
        if exc is None:
            return
        if distributed.is_main() and not self.resume and not (self.run_dir / LATEST).exists():
            self._remove_new_run()  # a new run that failed before its first checkpoint: nothing to resume
        if _allocation_error(exc):
            raise ConfigError(self._allocation_message(exc)) from None

    def _remove_new_run(self) -> None:
        if not self.run_dir.is_dir():
            return
        if self._remove_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:  # the user's empty --run-dir: as it was (empty, or holding only a lock file)
            for child in self.run_dir.iterdir():
                if child.name == LOCK_FILE:
                    continue
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)

    def _allocation_message(self, exc: BaseException) -> str:
        import re

        size = re.search(r"allocate (\d+) bytes", str(exc))
        tried = f" (tried {int(size.group(1)) / 2**30:.1f} GiB)" if size else ""
        if (self.run_dir / LATEST).exists():
            kept = (f"the checkpoint at step {self.state.checkpoint_step} is kept: resume with smaller settings, e.g. "
                    f"`rlkit train --resume {self.run_dir} train.batch_size=64`")
        else:
            kept = "no run directory was left behind"
        return (f"out of memory{tried}: the networks, batch or replay buffer this config asks for do not fit in "
                "memory; lower agent.hidden (or the agent's other widths), train.batch_size or "
                f"train.replay.capacity; {kept}")

    def own(self, closable):
        """Close ``closable`` (an env) when the run ends, however it ends."""
        self.owned.append(closable)
        return closable

    def update_precision(self):
        """The context of one update: ``torch.autocast`` to bfloat16 under ``train.precision: bf16``, else none."""
        if self.cfg.train.precision == "bf16":
            return torch.autocast(self._device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def clock(self) -> float:
        """Training wall time, cumulative over resumes."""
        return time.perf_counter() - self._started

    def start(self, agent, device: torch.device, source=None, collector=None, updates_from: int = 0,
              env_seed: int | None = None) -> RunState:
        """Load the checkpoint (resume) or create the run directory (new run), open the logger; under torchrun,
        wrap the agent's trained parts in DDP. ``env_seed``: the collector's (this rank's) env seed."""
        cfg, run_dir = self.cfg, self.run_dir
        main = distributed.is_main()
        if self.resume:
            self.state, info = RunState.load(run_dir / LATEST, agent, device, source=source, collector=collector,
                                             seed=cfg.seed if env_seed is None else env_seed)
            self.buffer_restored = info["buffer_restored"]
            apply_optimizer_changes(agent, self.changes)
            if self.changes and main:  # only now: every change is allowed and the checkpoint loaded
                dump_yaml(cfg, run_dir / CONFIG_FILE)
            envs_note = "" if info["envs_exact"] else " (envs re-seeded: this env cannot restore its exact state)"
        else:
            self.state = RunState(updates_from=updates_from)
            distributed.on_main(self._create)  # everything is built: only now does the run directory appear
        if distributed.active():
            distributed.wrap_agent(agent)  # DDP: gradients averaged across ranks inside backward
        if cfg.train.compile:  # after DDP, as torch recommends: compile sees the DDP-wrapped parts
            agent.compile()
        self._device_type = device.type
        state = self.state
        self._started = time.perf_counter() - state.elapsed
        self._sps_mark = (state.step, time.perf_counter())
        if not main:  # rank 0 alone writes the run directory
            self.logger = distributed.NullLogger()
            return state
        what = "offline " if cfg.offline is not None else ""
        self.logger = RunLogger(run_dir, cfg.train.total_steps, start_step=state.step, progress=cfg.log.progress,
                                tensorboard=cfg.log.tensorboard,
                                description=f"{what}{cfg.agent.name} {cfg.env.id or cfg.offline.dataset}",
                                keep_records=state.records if self.resume else None)
        if self.resume:
            applied = f"; applied {', '.join(self.changes)}" if self.changes else ""
            self.logger.message(f"resumed {run_dir} at step {state.step}{envs_note}{applied}")
        else:
            self.logger.message(f"run directory: {run_dir}" + (f" ({distributed.world()} ranks)"
                                                               if distributed.active() else ""))
        return state

    def _create(self) -> None:
        create_run_dir(self.run_dir)
        self.lock.acquire()
        check_new_run_dir(self.run_dir)  # again, under the lock: another process may have started here meanwhile
        dump_yaml(self.cfg, self.run_dir / CONFIG_FILE)
        if self.source is not None:
            (self.run_dir / "source.txt").write_text(self.source + "\n")

    def log_train(self) -> None:
        """One ``train`` record: the means of the logging window's metrics, updates and steps/s."""
        state, now = self.state, time.perf_counter()
        sps = (state.step - self._sps_mark[0]) / max(now - self._sps_mark[1], 1e-9)
        self._sps_mark = (state.step, now)
        means, count = distributed.mean_over_ranks(*state.pop_means())  # torchrun: the mean over all ranks
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if bad:
            raise self.diverged(f"{bad[0]} is {means[bad[0]]} (mean over the {count} updates of the logging "
                                f"window ending at step {state.step})")
        self.logger.log("train", state.step, self.clock(), {**means, "updates": count, "sps": sps})

    def evaluate(self, agent, eval_envs) -> None:
        """Evaluate (rank 0 alone under torchrun; the others learn whether ``stop_at_solve`` was reached)."""
        if distributed.is_main():
            self._evaluate(agent, eval_envs)
        self.solved = distributed.broadcast_flag(self.solved)

    def _evaluate(self, agent, eval_envs) -> None:
        cfg, state = self.cfg, self.state
        self.logger.evaluating(0, cfg.train.eval_episodes)
        result = evaluate(agent, cfg.env, cfg.train.eval_episodes, cfg.train.eval_epsilon,
                          seed=evaluation_seed(cfg.seed, state.step), envs=eval_envs, on_episode=self.logger.evaluating)
        if self.reference_scores is not None:  # 100 * (R - R_random) / (R_expert - R_random), as D4RL reports
            low, high = self.reference_scores
            result["normalized_score"] = 100.0 * (result["return_mean"] - low) / (high - low)
        self.last_eval = result
        self.logger.log("eval", state.step, self.clock(), result)
        if result["return_mean"] > state.best_eval:
            try:  # never a best.pt of non-finite weights (a NaN net can still act, and score)
                save_checkpoint(self.run_dir / BEST, {"step": state.step, "agent": agent.state_dict()})
            except TrainingDiverged as exc:
                raise self.diverged(str(exc)) from None
            state.best_eval, state.best_step = result["return_mean"], state.step
        if cfg.train.stop_at_solve is not None and result["return_mean"] >= cfg.train.stop_at_solve:
            self.solved = True
        self.logger.progress(state.step)

    def evaluate_untrained(self, agent, eval_envs) -> None:
        """A new run's evaluation at step 0, before any update, so that learning curves start at the untrained
        policy. It adds one ``eval`` record (and may be the first ``best.pt``; ``stop_at_solve`` may stop the run
        there) and changes nothing else: evaluation runs its own envs on its own seeds, and every generator
        training draws from — the agent's declared ones (``eval_epsilon`` draws from them), torch's, numpy's and
        Python's global ones — is put back as it was, so the run trains exactly as it would without it
        (``tests/test_equality.py``)."""
        with _generators_kept(agent):
            self.evaluate(agent, eval_envs)

    def checkpoint(self, agent, source=None, collector=None) -> None:
        state = self.state
        state.elapsed = self.clock()
        state.records = self.logger.records
        try:
            # an offline source saves only its sampling state (the data stays in the dataset): always kept
            keep_source = self.cfg.train.save_buffer or self.cfg.offline is not None
            state.save(self.run_dir / LATEST, agent, source if keep_source else None, collector)
        except TrainingDiverged as exc:
            raise self.diverged(str(exc)) from None

    def snapshot(self, agent) -> None:
        """Export the acting weights as ``snapshots/step_<N>/`` (``train.snapshot_every``; rank 0)."""
        if not distributed.is_main():
            return
        out = self.run_dir / SNAPSHOTS / f"step_{self.state.step}"
        try:
            export_agent(agent, (self.run_dir / "config.yaml").read_text(), out,
                         {"agent": self.cfg.agent.name, "env": self.cfg.env.id, "step": str(self.state.step)})
            if (self.run_dir / SPACES_FILE).is_file():  # an offline run's spaces: the snapshot acts without the dataset
                shutil.copyfile(self.run_dir / SPACES_FILE, out / SPACES_FILE)
        except CheckpointError as exc:  # non-finite weights
            raise self.diverged(str(exc)) from None

    def diverged(self, reason: str) -> TrainingDiverged:
        kept = (f"the last good checkpoint (step {self.state.checkpoint_step}) is kept in {self.run_dir / LATEST}"
                if self.state.checkpoint_step is not None else "no checkpoint had been written yet")
        return TrainingDiverged(f"training diverged at step {self.state.step}: {reason}; stopped without saving the "
                                f"broken state, {kept}. Lower the learning rate (agent.lr or its kin) and start again, "
                                "or resume with a lower one")

    def stopped_by(self, signum: int) -> None:
        self.stop_signum = signum
        self.logger.message(f"stopped at step {self.state.step} by {signal.Signals(signum).name}; checkpoint saved. "
                            f"Resume with: rlkit train --resume {self.run_dir}")

    def finish(self, agent) -> dict[str, Any]:
        state = self.state
        self.logger.progress(state.step)
        summary = {"run_dir": str(self.run_dir), "steps": state.step, "wall_time": state.elapsed,
                   "interrupted": self.stop_signum, "solved": self.solved, "final_eval": self.last_eval,
                   "best_eval": float(state.best_eval) if state.best_step is not None else None,
                   "best_step": state.best_step,
                   "step_unit": "gradient steps" if self.cfg.offline is not None else "env steps"}
        if self.cfg.log.plot and not self.stop_signum and distributed.is_main():
            summary["plot"] = str(plot_runs([self.run_dir], self.run_dir / CURVE_FILE))
        return summary


class _StopRequest:
    """First Ctrl-C (or SIGTERM) asks the loop to checkpoint and stop at the end of the step. Under torchrun a
    signal only marks the request ``pending``: the ranks agree on it (:meth:`poll`) so that all stop at one step."""

    def __init__(self) -> None:
        self.requested = False
        self.pending = False
        self.signum = 0  # the signal that asked (the CLI exits with 128 + signum: 130, 143)
        self._previous: dict[int, Any] = {}
        self._distributed = distributed.active()
        self._calls = 0

    def poll(self) -> None:
        """Called once per loop iteration (the ranks iterate in lockstep); under torchrun every
        :data:`~rlkit.training.distributed.STOP_POLL`-th call agrees on the stop request: any rank's pending
        request stops all of them at that iteration."""
        self._calls += 1
        if self._distributed and self._calls % distributed.STOP_POLL == 0:
            if distributed.agree([float(self.pending)])[0] > 0 and not self.requested:
                self.requested = True
                self.signum = self.signum or signal.SIGTERM  # a rank the signal did not reach

    def __enter__(self) -> "_StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested or self.pending:
            raise KeyboardInterrupt
        self.pending = True
        self.requested = not self._distributed
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@contextmanager
def _generators_kept(agent):
    """Run the block, then put back the state of every random generator training draws from: the agent's
    declared generators (``agent.parts.generators``) and torch's (CPU and CUDA), numpy's and Python's global ones."""
    declared = getattr(getattr(agent, "parts", None), "generators", None) or {}
    kept = [(gen, copy.deepcopy(gen.bit_generator.state) if isinstance(gen, np.random.Generator) else gen.get_state())
            for gen in declared.values()]
    torch_state, numpy_state, python_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        for gen, state in kept:
            if isinstance(gen, np.random.Generator):
                gen.bit_generator.state = state
            else:
                gen.set_state(state)
        torch.set_rng_state(torch_state)
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def _allocation_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed allocation (host or GPU): a config asking for more memory than there is."""
    if isinstance(exc, MemoryError) or isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def _crossed(before: int, after: int, every: int) -> int:
    """How many multiples of ``every`` lie in (before, after]."""
    return 0 if every <= 0 else after // every - before // every


def no_update_warning(train, updates_from: int, step: int) -> str | None:
    """A warning when the run ends before (or right at) the step its updates start at, else None."""
    if not (train.total_steps <= updates_from and step < train.total_steps):
        return None
    what = ("no update will happen" if train.total_steps < updates_from else
            f"only the updates of that last step ({train.gradient_steps}) will happen")
    return (f"rlkit: warning: train.total_steps ({train.total_steps}) <= the step updates start at "
            f"({updates_from}, train.learning_starts): {what} and the agent stays (almost) as "
            "initialised; raise train.total_steps or lower train.learning_starts")
