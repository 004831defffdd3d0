"""Pseudo-labelled BC or DT with a tenth of the actions labelled, against 100% labelled and against the tenth alone
(issue 21).

    MINARI_DATASETS_PATH=runs/pseudo-label/datasets python scripts/pseudo_label_study.py \
        --reference /work/runs/ref/datasets/rlkit/walker2d-medium-replay-v0 --seeds 0 1 2 --steps 2000 \
        --out runs/pseudo-label [--agent dt]

Per seed s, three runs of the learner --agent, each with the reference sweep's settings (scripts/dt_reference_sweep.py:
train.total_steps=--steps, one evaluation of --episodes episodes at the end):
  bc  configs/bc_mujoco_reference.yaml (current state only, 256x256 MLP);
  dt  configs/dt_<env>_<level>.yaml (the Decision Transformer paper's MuJoCo model), its warm-up scaled to a fifth
      of --steps when that is shorter than the paper's 10k, exactly as the sweep does;
on the three datasets:
  full  on rlkit/<name> (every action);
  lab   on pl/<name>-lab<100 F>-s<s>-v0, the episodes `--labelled-fraction F --seed s` keeps labelled, alone
        (rlkit.training.pseudo_label.labelled_subset);
  pl    on pl/<name>-pl<100 F>-s<s>-v0, written by `rlkit dataset pseudo-label rlkit/<name> --labelled-fraction F --seed s`
        (the same labelled episodes + the rest labelled by the inverse model).
The reference dataset is linked into MINARI_DATASETS_PATH (a symlink), so every dataset is an id there. Runs and
datasets that exist are read, not made again (the datasets are the same for both learners). Writes
OUT/results-<steps>.json (BC; the name earlier studies wrote) or OUT/results-dt-<steps>.json after every seed, and
prints a markdown table. --arms picks which runs, in that order within a seed (the table keeps full, lab, pl).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def sh(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` (output to ``log``); its wall seconds. Exits with the command's failure."""
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    return time.perf_counter() - start


def final_return(run_dir: Path, steps: int) -> float | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file() or not (run_dir / "checkpoints" / "latest.pt").is_file():
        return None
    evals = [json.loads(line) for line in path.read_text().splitlines() if '"kind": "eval"' in line]
    return evals[-1]["return_mean"] if evals and evals[-1]["step"] == steps else None


ARMS = ("full", "lab", "pl")


def learner_args(agent: str, name: str, steps: int) -> list[str]:
    """The config and overrides that make --agent the reference sweep's learner on dataset ``name``'s environment."""
    if agent == "bc":
        return [str(REPO / "configs" / "bc_mujoco_reference.yaml")]
    env_stem, level = name.rsplit("-v", 1)[0].split("-", 1)
    config = REPO / "configs" / f"dt_{env_stem}_{level.replace('-', '_')}.yaml"
    if not config.is_file():
        raise SystemExit(f"--agent dt: no Decision Transformer config for {name} ({config} does not exist)")
    return [str(config), f"agent.warmup_steps={min(10_000, max(steps // 5, 1))}"]


def run_name(agent: str, name: str, method: str, seed: int, steps: int) -> str:
    """BC keeps the names the first study wrote (so its runs are found again); the DT's carry ``dt``."""
    return f"{name}-{method}-s{seed}-{steps}" if agent == "bc" else f"{name}-dt-{method}-s{seed}-{steps}"


def train_cmd(dataset: str, env_id: str, seed: int, args: argparse.Namespace, run_dir: Path) -> list[str]:
    steps = args.steps
    return [sys.executable, "-m", "rlkit.cli", "train", *learner_args(args.agent, args.reference.name, steps),
            f"offline.dataset={dataset}", f"env.id={env_id}", f"train.total_steps={steps}", f"train.eval_every={steps}",
            f"train.eval_episodes={args.episodes}", f"train.checkpoint_every={steps}", "log.progress=false",
            "log.tensorboard=false", f"log.log_every={max(steps // 20, 1)}", "--seed", str(seed), "--run-dir",
            str(run_dir)]


def train(dataset: str, env_id: str, seed: int, args: argparse.Namespace, method: str) -> tuple[float, float]:
    run_dir = args.out / "runs" / run_name(args.agent, args.reference.name, method, seed, args.steps)
    done = final_return(run_dir, args.steps)
    if done is not None:
        return done, 0.0
    seconds = sh(train_cmd(dataset, env_id, seed, args, run_dir), args.out / "logs" / f"{run_dir.name}.log")
    return final_return(run_dir, args.steps), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="the reference dataset's directory")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--labelled-fraction", type=float, default=0.1)
    parser.add_argument("--agent", choices=("bc", "dt"), default="bc", help="the learner trained on each dataset")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS),
                        help="which datasets to train on, in this order within a seed")
    parser.add_argument("--steps", type=int, default=2000, help="the learner's gradient steps")
    parser.add_argument("--label-steps", type=int, default=2000, help="inverse-model steps (pseudo-label --steps)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/pseudo-label"))
    args = parser.parse_args()
    from rlkit.experience.datasets import dataset_path, datasets_root, load_dataset
    from rlkit.training.pseudo_label import labelled_subset
    from rlkit.training.reference import reference

    name = args.reference.name
    ref = reference(name)
    learner_args(args.agent, name, args.steps)  # a missing DT config fails before any dataset is made
    for sub in ("logs", "runs"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    link = datasets_root() / "rlkit" / name
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(args.reference.resolve())
    f, results = args.labelled_fraction, {}
    for seed in args.seeds:
        stem, pct = name.rsplit("-v", 1)[0], round(100 * f)
        lab_id, pl_id = f"pl/{stem}-lab{pct}-s{seed}-v0", f"pl/{stem}-pl{pct}-s{seed}-v0"
        if not dataset_path(lab_id).exists():
            labelled_subset(f"rlkit/{name}", lab_id, f, seed)
        label_seconds = 0.0
        if not dataset_path(pl_id).exists():
            label_seconds = sh([sys.executable, "-m", "rlkit.cli", "dataset", "pseudo-label", f"rlkit/{name}", "--out",
                                pl_id, "--labelled-fraction", str(f), "--steps", str(args.label_steps), "--seed",
                                str(seed)], args.out / "logs" / f"pseudo-label-s{seed}.log")
        meta = load_dataset(pl_id).metadata["rlkit"]["pseudo_label"]
        row = {"inverse_model": meta["inverse_model"], "labelled_steps": meta["labelled_steps"],
               "pseudo_labelled_steps": meta["pseudo_labelled_steps"], "label_seconds": label_seconds}
        datasets = {"full": f"rlkit/{name}", "lab": lab_id, "pl": pl_id}
        for method in args.arms:
            ret, seconds = train(datasets[method], ref.env_id, seed, args, method)
            row[method] = {"return": ret, "normalized": ref.normalized(ret), "seconds": seconds}
            print(f"seed {seed} {args.agent} {method}: return {ret:.1f}, normalised {ref.normalized(ret):.1f} "
                  f"({seconds:.0f} s)", flush=True)
        results[str(seed)] = row
        stem_out = f"results-{args.steps}.json" if args.agent == "bc" else f"results-{args.agent}-{args.steps}.json"
        (args.out / stem_out).write_text(json.dumps({"dataset": name, "agent": args.agent, "steps": args.steps,
                                                     "episodes": args.episodes, "results": results}, indent=1))
    print(f"\n| {args.agent.upper()}, {args.steps:,} steps, {name} | normalised score, mean ± std (per seed "
          f"{args.seeds}) |\n|---|---|")
    for method, title in (("full", "100% labelled"), ("lab", f"{f:.0%} labelled alone"),
                          ("pl", f"{f:.0%} labelled + pseudo-labelled rest")):
        if method not in args.arms:
            continue
        scores = [r[method]["normalized"] for r in results.values()]
        print(f"| {title} | {np.mean(scores):.1f} ± {np.std(scores):.1f} ({' / '.join(f'{x:.1f}' for x in scores)}) |")
    mse = [r["inverse_model"]["held_out_mse"] for r in results.values()]
    hidden = [r["inverse_model"]["hidden_actions_mse"] for r in results.values()]
    var = [r["inverse_model"]["held_out_target_variance"] for r in results.values()]
    print(f"inverse model: held-out MSE {' / '.join(f'{x:.3f}' for x in mse)}, on the hidden actions "
          f"{' / '.join(f'{x:.3f}' for x in hidden)} (held-out action variance {' / '.join(f'{x:.3f}' for x in var)}; "
          "normalised units)")


if __name__ == "__main__":
    main()
