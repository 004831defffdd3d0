"""DQN on CartPole-v1: env steps and wall time to the first evaluation with mean >= 475, per seed.

    python scripts/bench_dqn_cartpole.py [--config configs/dqn_cartpole.yaml] [--seeds 0 1 2] [--out bench_out/dqn_cartpole]

Runs the whole budget for each seed (no early stop), so the final evaluation is reported too, and
writes results.json plus a learning-curve PNG with all seeds. Thin: it calls rlkit's own loop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from rlkit.config import load_config
from rlkit.logging import plot_runs, read_metrics
from rlkit.loops import train_online

SOLVED = 475.0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/dqn_cartpole.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="bench_out/dqn_cartpole")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides for every seed")
    args = parser.parse_args()
    out = Path(args.out)
    results = []
    for seed in args.seeds:
        cfg = load_config(args.config, [*args.overrides, f"seed={seed}", "log.progress=false"])
        run_dir = out / f"seed{seed}-{time.strftime('%H%M%S')}"
        summary = train_online(cfg, run_dir)
        evals = [r for r in read_metrics(run_dir) if r["kind"] == "eval"]
        solved = next((r for r in evals if r["return_mean"] >= SOLVED), None)
        results.append({
            "seed": seed, "solved": solved is not None,
            "steps_to_solve": solved["step"] if solved else None,
            "time_to_solve_s": solved["time"] if solved else None,
            "final_eval": evals[-1]["return_mean"], "total_steps": summary["steps"],
            "total_time_s": round(summary["wall_time"], 1), "run_dir": str(run_dir),
        })
        print(json.dumps(results[-1]))
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(),
               "torch": torch.__version__, "torch_threads": cfg.torch_threads}
    (out / "results.json").write_text(json.dumps({"config": args.config, "overrides": args.overrides,
                                                   "machine": machine, "results": results}, indent=1))
    plot_runs([Path(r["run_dir"]) for r in results], out / "learning_curves.png")
    print(f"| seed | steps to ≥{SOLVED:.0f} | wall time to solve (s) | final eval | total time (s) |")
    for r in results:
        print(f"| {r['seed']} | {r['steps_to_solve']} | {r['time_to_solve_s']} | {r['final_eval']:.1f} | {r['total_time_s']} |")


if __name__ == "__main__":
    main()
