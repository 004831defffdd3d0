"""The Decision Transformer paper's D4RL comparison on rlkit's reference datasets: DT, BC and 10%-BC, several seeds,
normalised scores (0 = uniform random, 100 = our expert; rlkit.training.reference).

    python scripts/dt_reference_sweep.py --datasets hopper-medium-v0 hopper-medium-replay-v0 --seeds 0 1 2 \
        --steps 5000 --out runs/dt-sweep [--parallel 2]

Each run is `rlkit train` of configs/dt_<env>_<level>.yaml or configs/bc_mujoco_reference.yaml (with
agent.top_fraction=0.1 for 10%-BC) with train.total_steps=--steps (the DT's warm-up scaled to a fifth of it when
shorter than the paper's 10k), evaluated at the end over --episodes episodes. Runs that exist under --out are read,
not trained again. ``--set KEY=VALUE ...`` adds overrides to every run (``train.precision=bf16``: the bf16 learning
check of docs/benchmarks.md, "Update options"). Writes OUT/results.json and prints a markdown table (mean ± std
over seeds, per seed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
METHODS = ("dt", "bc", "bc10")


def run_args(method: str, name: str, seed: int, steps: int, episodes: int, run_dir: Path,
             extra_overrides: list[str] = ()) -> list[str]:
    from rlkit.training.reference import reference

    ref = reference(name)
    env_stem, level = name.rsplit("-v", 1)[0].split("-", 1)
    common = [f"train.total_steps={steps}", f"train.eval_every={steps}", f"train.eval_episodes={episodes}",
              f"train.checkpoint_every={steps}", "log.progress=false", "log.tensorboard=false",
              f"log.log_every={max(steps // 20, 1)}", *extra_overrides, "--seed", str(seed),
              "--run-dir", str(run_dir)]
    if method == "dt":
        config = REPO / "configs" / f"dt_{env_stem}_{level.replace('-', '_')}.yaml"
        warmup = min(10_000, max(steps // 5, 1))
        return [str(config), f"agent.warmup_steps={warmup}", *common]
    config = REPO / "configs" / "bc_mujoco_reference.yaml"
    extra = ["agent.top_fraction=0.1"] if method == "bc10" else []
    return [str(config), f"offline.dataset=rlkit/{name}", f"env.id={ref.env_id}", *extra, *common]


def final_return(run_dir: Path) -> float | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    evals = [json.loads(line) for line in path.read_text().splitlines() if '"kind": "eval"' in line]
    finished = (run_dir / "checkpoints" / "latest.pt").is_file()
    return evals[-1]["return_mean"] if evals and finished else None


def train_one(job: tuple[str, str, int], args: argparse.Namespace) -> tuple[tuple[str, str, int], float, float]:
    method, name, seed = job
    run_dir = args.out / f"{name}-{method}-s{seed}"
    done = final_return(run_dir)
    if done is not None and len([1 for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                                 if '"kind": "eval"' in line and f'"step": {args.steps},' in line]):
        return job, done, 0.0
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "rlkit.cli", "train", *run_args(method, name, seed, args.steps, args.episodes,
                                                                 run_dir, args.set)]
    log = (args.out / f"{name}-{method}-s{seed}.log").open("w")
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log.name}")
    return job, final_return(run_dir), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/dt-sweep"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for every run, e.g. train.precision=bf16 (use a separate --out)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from rlkit.training.reference import reference

    jobs = [(m, d, s) for s in args.seeds for d in args.datasets for m in args.methods]  # seeds outermost
    results: dict[str, dict] = {}
    with ThreadPoolExecutor(args.parallel) as pool:
        for (method, name, seed), ret, seconds in pool.map(lambda j: train_one(j, args), jobs):
            score = reference(name).normalized(ret)
            results.setdefault(name, {}).setdefault(method, {})[str(seed)] = {
                "return": ret, "normalized": score, "seconds": seconds}
            print(f"{name} {method} seed {seed}: return {ret:.1f}, normalised {score:.1f} ({seconds:.0f} s)",
                  flush=True)
    (args.out / "results.json").write_text(json.dumps({"steps": args.steps, "episodes": args.episodes,
                                                       "results": results}, indent=1))
    print(f"\n| dataset | DT | BC | 10%-BC |  (normalised, mean ± std over seeds {args.seeds}; {args.steps:,} "
          "gradient steps)\n|---|---|---|---|")
    for name, per_method in results.items():
        cells = []
        for method in METHODS:
            scores = [v["normalized"] for v in per_method.get(method, {}).values()]
            per_seed = " / ".join(f"{x:.1f}" for x in scores)
            cells.append(f"{np.mean(scores):.1f} ± {np.std(scores):.1f} ({per_seed})" if scores else "—")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
