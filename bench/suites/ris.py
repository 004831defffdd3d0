"""Suites ``ris-antmaze`` and ``ris-pointmaze``: RIS vs SAC + HER, both rlkit, at equal env steps; every run a
separate ``rlkit train`` process, resumed from its checkpoint when the suite runs again."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlkit.bench.figures import Figure
from rlkit.bench.suites.sac_her import success_at, success_evals
from rlkit.config import configs_dir


@dataclass(frozen=True)
class RISTask:
    """One RIS vs SAC + HER comparison: its two configs (both rlkit) and, per mode (quick?), (env steps per
    run, evaluation every, overrides that shrink the run)."""

    label: str
    configs: dict[str, str]
    budgets: dict[bool, tuple[int, int, list[str]]]


_RIS_QUICK = (1_200, 600, ["train.learning_starts=600", "agent.random_steps=600", "train.eval_episodes=1",
                           "train.batch_size=32", "train.replay.capacity=5000", "train.checkpoint_every=600",
                           "log.log_every=300"])
RIS_TASKS: dict[str, RISTask] = {
    "ris-antmaze": RISTask("AntMazeU", {"ris": "ris_antmaze_u.yaml", "sac_her": "sac_her_antmaze_u.yaml"},
                           {False: (100_000, 10_000, []), True: _RIS_QUICK}),
    "ris-pointmaze": RISTask("PointMazeMedium",
                             {"ris": "ris_pointmaze_medium.yaml", "sac_her": "sac_her_pointmaze_medium.yaml"},
                             {False: (30_000, 2_000, []), True: _RIS_QUICK}),
}
RIS_SOLVED = 0.5


def _train_to(config: str, seed: int, run_dir: Path, overrides: list[str]) -> list[str]:
    """The CLI command that brings ``run_dir`` to the budget in ``overrides``: a fresh run, or the run resumed
    from its latest checkpoint (so the suite continues across sessions: run it again to go on). A run that
    stopped before its first checkpoint cannot resume: it is moved aside (kept for its log) and started anew."""
    command = [sys.executable, "-m", "rlkit.cli", "train"]
    if (run_dir / "checkpoints" / "latest.pt").is_file():
        return [*command, "--resume", str(run_dir), *overrides]
    if run_dir.exists():
        aside = run_dir.with_name(f"{run_dir.name}.no-checkpoint-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(aside)
        print(f"  {run_dir} has no checkpoint to resume from: moved to {aside.name}, starting it anew", flush=True)
    return [*command, config, "--seed", str(seed), "--run-dir", str(run_dir), *overrides]


def _run_parallel(commands: list[tuple[str, list[str], Path]], jobs: int) -> tuple[bool, list[str]]:
    """Run the CLI commands, ``jobs`` at a time, each logging to its own file. Returns (finished, the names of
    the runs that exited with an error). Ctrl-C or SIGTERM reaches only this process (the runs have their own
    sessions) and is passed on once as SIGINT, on which a run saves a checkpoint and stops; ``finished`` is
    then False (the suite reports what the runs reached; running it again resumes them)."""
    import signal
    import subprocess

    pending, running, failed = list(commands), [], []

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name, command, log = pending.pop(0)
                print(f"  start {name}: {' '.join(command[2:])}", flush=True)
                handle = open(log, "a")
                process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
                running.append((name, process, handle))
            time.sleep(1.0)
            for entry in list(running):
                name, process, handle = entry
                if process.poll() is not None:
                    running.remove(entry)
                    handle.close()
                    if process.returncode != 0:
                        failed.append(name)
                    print(f"  {name}: exit {process.returncode}" + ("" if process.returncode == 0 else
                                                                      " (see its log)"), flush=True)
    except KeyboardInterrupt:
        print("  interrupted: the runs save a checkpoint and stop; run the suite again to resume them", flush=True)
        for _, process, _ in running:
            process.send_signal(signal.SIGINT)
        for _, process, handle in running:
            process.wait()
            handle.close()
        return False, failed
    finally:
        signal.signal(signal.SIGTERM, previous)
    return True, failed


def _training_success(records: list[dict[str, Any]], lo: int, hi: int) -> float | None:
    """Success rate in percent of the training episodes that ended in env steps ``(lo, hi]`` (goals uniform over
    the maze, the training distribution). An episode record's step counts the env steps before its last one."""
    ended = [r["success"] for r in records if r["kind"] == "episode" and lo <= r["step"] < hi and "success" in r]
    return 100.0 * float(np.mean(ended)) if ended else None


def suite_ris(task: RISTask, seeds: list[int], out: Path, quick: bool, threads: int
              ) -> tuple[list[Figure], dict[str, Any]]:
    """RIS vs SAC + HER (both rlkit) at equal env steps: every run at once as its own process, resumed from its
    checkpoint when the suite runs again; test-task success per evaluation, training-goal success per window."""
    total, eval_every, shrink = task.budgets[quick]
    label = task.label
    jobs = len(task.configs) * len(seeds)  # all at once, each with an equal share of the cores
    commands, run_dirs = [], {}
    for seed in seeds:
        for algo, config in task.configs.items():
            run_dir = out / ("runs-quick" if quick else "runs") / f"{algo}_s{seed}"  # never resume across modes
            run_dirs[algo, seed] = run_dir
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            overrides = [f"train.total_steps={total}", f"train.eval_every={eval_every}", f"torch_threads={threads}",
                         "log.progress=false", *shrink]
            commands.append((f"{algo} seed {seed}", _train_to(str(configs_dir() / config), seed, run_dir, overrides),
                             run_dir.with_suffix(".log")))
    finished, failed = _run_parallel(commands, jobs)
    if not finished:
        print("  reporting the steps the runs reached (the suite is not finished)", flush=True)

    steps = list(range(eval_every, total + 1, eval_every))
    at = [Figure(f"{label} test task: success rate at {step:,} env steps", "%", paired=False) for step in steps]
    train_at = [Figure(f"{label} training goals: success of the episodes ended in ({step - eval_every:,}, {step:,}]",
                       "%", paired=False) for step in steps]
    solve = Figure(f"{label} test task: env steps to the first success rate >= {RIS_SOLVED}", "steps",
                   higher_is_better=False, paired=False)
    rate = Figure(f"{label}: training env steps/s (run wall time over steps; both ran at once, sharing the cores)",
                  "steps/s", paired=False)
    reached: dict[str, int] = {}
    for seed in seeds:
        for algo in task.configs:
            path = run_dirs[algo, seed] / "metrics.jsonl"
            records = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
            evals = success_evals(records)
            side = "rlkit" if algo == "ris" else "reference"
            for figure, step in zip(at, steps):
                getattr(figure, side).append(success_at(evals, step))
            for figure, step in zip(train_at, steps):
                getattr(figure, side).append(_training_success(records, step - eval_every, step))
            getattr(solve, side).append(next((float(s) for s, v in evals if v >= RIS_SOLVED), None))
            last = records[-1] if records else None  # time: training wall seconds, summed over resumes
            getattr(rate, side).append(last["step"] / last["time"] if last and last.get("time") else None)
            reached[f"{algo} seed {seed}"] = max((r["step"] for r in records), default=0)
            print(f"  {algo} seed {seed}: test success {[(s, round(v, 2)) for s, v in evals]}", flush=True)
    figures = [*at, *train_at, solve, rate]
    if failed:
        return figures, {"complete": False, "failed": failed,
                         "status": f"runs failed: {', '.join(failed)} (see their logs under {out})"}
    behind = {name: step for name, step in reached.items() if step < total}
    if not finished or behind:
        where = ", ".join(f"{name} {step:,}" for name, step in reached.items())
        return figures, {"complete": False, "status": f"partial: the runs reached {where} of {total:,} env steps "
                                                      "(figures past that are empty); repeating the command "
                                                      "continues them"}
    return figures, {"complete": True}


ANTMAZE_NOTES = (
    "RIS (the 'rlkit' column: configs/ris_antmaze_u.yaml) vs SAC + HER (the 'reference' column: "
    "configs/sac_her_antmaze_u.yaml), both rlkit, on rlkit/AntMazeU-v0 (gymnasium-robotics' Ant in D4RL's "
    "U maze, RIS's protocol: success and episode end at xy distance < 0.5, 600-step episodes) at the same "
    "env-step budget, batch 256 (RIS's paper: 2048), replay as RIS's reference (80% relabelled: half "
    "future states, half states from the whole buffer; terminations recomputed for the new goal), "
    "gamma 0.99, lr 1e-3 for critic and actor, 10,000 uniform random steps first, one update per env "
    "step. Test task: RIS's (start at the end of one arm of the U, goal at the end of the other), 10 "
    "deterministic episodes every 10,000 env steps. Training goals: the training episodes' own "
    "success (goals uniform over the maze). All runs train at once as separate processes sharing the "
    "cores; the suite resumes runs from their checkpoints, so repeating the command continues them."
)

POINTMAZE_NOTES = (
    "RIS (the 'rlkit' column: configs/ris_pointmaze_medium.yaml) vs SAC + HER (the 'reference' "
    "column: configs/sac_her_pointmaze_medium.yaml), both rlkit, on rlkit/PointMazeMedium-v0 (the "
    "2-D point mass in D4RL's medium maze, 8x8 cells of 1 m; success and episode end at xy < 0.45, "
    "600-step episodes) at the same env-step budget: batch 256, gamma 0.99, lr 1e-3, 1,000 random "
    "steps, replay as RIS's reference (80% relabelled: half future states, half states from the whole "
    "buffer; terminations recomputed). Test task: from one far corner of the maze to the other "
    "(cells (1,1) -> (6,6)), 20 deterministic episodes every 2,000 env steps. All runs train at once "
    "as separate processes sharing the cores; repeating the command resumes them."
)
