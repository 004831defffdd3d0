"""Self-supervised modules on pixels (issue 21, must-show 1): a pixel DQN as is, with CURL, and with DrQ, per seed.

Runs configs/dqn_pixel_cartpole.yaml (rlkit/PixelCartPole-v0, the Nature CNN) through ``rlkit.train`` once per
variant and seed, in this one process, one after the other, and prints a markdown table: final and mean
evaluation return, env steps per second (wall) and CPU seconds per run, then mean +- std per variant.

    nice -n 10 python scripts/bench_curl.py --out runs/bench-curl --seeds 0 1 2

``--steps`` sets every run's length, evaluated ``--evals`` times (the config's total_steps otherwise);
``--eval-episodes`` the greedy episodes per evaluation; ``--threads`` caps torch's threads (1: a fair share of a
small shared machine). Thin: the runs are ordinary rlkit runs, each in ``<out>/<variant>-s<seed>``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

import rlkit

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "dqn": {},
    "dqn+curl": {"agent.aux": [{"name": "curl", "weight": 1.0}]},
    "dqn+drq": {"agent.drq_k": 2, "agent.drq_m": 2},
    "dqn+drq1": {"agent.drq_k": 1, "agent.drq_m": 1},  # the paper's Atari 100k setting (K = M = 1)
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_run(config: dict, variant: str, seed: int, steps: int | None, out: Path, eval_episodes: int | None = None,
            evals: int = 4, extra: dict | None = None) -> dict:
    overrides = {**(extra or {}), **VARIANTS[variant], "seed": seed}  # main() refuses --set keys these set
    if steps is not None:
        overrides.update({"train.total_steps": steps, "train.eval_every": steps // evals, "train.checkpoint_every": steps})
    if eval_episodes is not None:
        overrides["train.eval_episodes"] = eval_episodes
    run_dir = out / f"{variant}-s{seed}"
    wall, cpu = time.perf_counter(), cpu_seconds()
    rlkit.train(config, run_dir=run_dir, overrides=overrides)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r["return_mean"] for r in records if r["kind"] == "eval" and r["step"] > 0]
    total = steps or (extra or {}).get("train.total_steps") or config["train"]["total_steps"]
    return {"variant": variant, "seed": seed, "final": evals[-1], "mean_eval": float(np.mean(evals)),
            "sps": total / wall, "cpu_s": cpu, "wall_s": wall}


def table(rows: list[dict]) -> str:
    lines = ["| variant | seed | final eval return | mean eval return | env steps/s | CPU s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['seed']} | {r['final']:.1f} | {r['mean_eval']:.1f} | {r['sps']:.1f} | {r['cpu_s']:.0f} |"
              for r in rows]
    lines += ["", "| variant | final eval return (mean ± std) | mean eval return | env steps/s | CPU s per run |",
              "|---|---|---|---|---|"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        sel = [r for r in rows if r["variant"] == variant]
        f, m = np.array([r["final"] for r in sel]), np.array([r["mean_eval"] for r in sel])
        sps, cpu = np.array([r["sps"] for r in sel]), np.array([r["cpu_s"] for r in sel])
        lines.append(f"| {variant} | {f.mean():.1f} ± {f.std():.1f} | {m.mean():.1f} ± {m.std():.1f} | "
                     f"{sps.mean():.1f} | {cpu.mean():.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-curl"))
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "dqn_pixel_cartpole.yaml")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="torch device of every run (cuda: the Atari 100k rows)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="runs at once, each in a process of its own (a GPU has room for several)")
    parser.add_argument("--evals", type=int, default=4, help="evaluations per run when --steps is given")
    parser.add_argument("--eval-episodes", type=int, default=None, help="greedy episodes per evaluation (the config's otherwise)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for every run, e.g. env.id=rlkit/Boxing-v0 (values parsed as YAML)")
    args = parser.parse_args(argv)
    extra = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        extra[key] = yaml.safe_load(value)
    fixed = {"seed"} | {k for v in args.variants for k in VARIANTS[v]}
    if args.steps is not None:
        fixed |= {"train.total_steps", "train.eval_every", "train.checkpoint_every"}
    if args.eval_episodes is not None:
        fixed.add("train.eval_episodes")
    if clash := sorted(fixed & set(extra)):
        parser.error(f"--set {', '.join(clash)}: set by the variants, --seeds, --steps or --eval-episodes; use those")
    if args.evals < 1:
        parser.error(f"--evals must be >= 1, got {args.evals}")
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.config.read_text())
    config["device"] = args.device
    config["torch_threads"] = args.threads
    jobs = [(variant, seed) for seed in args.seeds for variant in args.variants]  # seed-major: a cut-short run
    # still has every variant of the first seeds
    if args.parallel > 1:
        import concurrent.futures
        import multiprocessing

        with concurrent.futures.ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=torch.set_num_threads,
                                                    initargs=(args.threads,)) as pool:
            futures = [pool.submit(one_run, config, v, s, args.steps, args.out, args.eval_episodes, args.evals, extra)
                       for v, s in jobs]
            rows = []
            for (variant, seed), future in zip(jobs, futures):
                try:
                    rows.append(future.result())
                except Exception as exc:  # noqa: BLE001 - one failed run leaves the others' rows
                    print(f"{variant} seed {seed} failed: {exc!r}", flush=True)
                    continue
                print(json.dumps(rows[-1]), flush=True)
    else:
        rows = []
        for variant, seed in jobs:
            rows.append(one_run(config, variant, seed, args.steps, args.out, args.eval_episodes, args.evals, extra))
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    (args.out / "table.md").write_text(table(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
