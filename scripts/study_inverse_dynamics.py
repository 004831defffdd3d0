"""Study: does attaching inverse dynamics (``agent.aux``) by config alone keep an agent learning?

Runs a shipped config twice per seed with the same learned encoder (``agent.encoder_hidden``) and one-step
replay (inverse dynamics reads s_t+1), once without and once with ``agent.aux: [{name: inverse_dynamics,
weight: W}]``, and prints one markdown row per run plus the means (the figures in docs/benchmarks.md):

    python scripts/study_inverse_dynamics.py dqn --seeds 0 1 2
    python scripts/study_inverse_dynamics.py sac --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import rlkit

STUDIES = {
    # shipped config, overrides shared by both arms (the same network as the shipped one: one encoder layer
    # plus one head layer of 256 instead of a two-layer head), the solved threshold
    "dqn": ("dqn_cartpole", ["train.replay.n_step=1", "agent.hidden=[256]", "agent.encoder_hidden=[256]"], 475.0),
    "sac": ("sac_pendulum", ["train.total_steps=10000", "agent.actor_hidden=[256]", "agent.critic_hidden=[256]",
                             "agent.encoder_hidden=[256]"], -200.0),
}


def run(study: str, seed: int, weight: float | None, root: Path) -> dict:
    config, overrides, solved = STUDIES[study]
    arm = "off" if weight is None else f"w{weight}"
    run_dir = root / f"{study}-aux-{arm}-s{seed}"
    extra = [] if weight is None else [f"agent.aux=[{{name: inverse_dynamics, weight: {weight}}}]"]
    if not (run_dir / "metrics.jsonl").exists():  # a finished run is read again, not retrained
        rlkit.train(config, run_dir=run_dir, seed=seed,
                    overrides=[*overrides, *extra, "log.progress=false", "log.plot=false"])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["step"], r["return_mean"]) for r in records if r["kind"] == "eval"]
    aux = [r["aux/inverse_dynamics"] for r in records if r["kind"] == "train" and "aux/inverse_dynamics" in r]
    first = next((step for step, value in evals if value >= solved), None)
    half = evals[len(evals) // 2:]
    return {"arm": arm, "seed": seed, "final": evals[-1][1], "first_solved": first,
            "late_mean": float(np.mean([v for _, v in half])), "aux_first": aux[0] if aux else None,
            "aux_last": aux[-1] if aux else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--weight", type=float, default=0.1)
    parser.add_argument("--root", type=Path, default=Path("runs/study-inverse-dynamics"))
    args = parser.parse_args()
    rows = [run(args.study, seed, weight, args.root) for seed in args.seeds for weight in (None, args.weight)]
    print("| arm | seed | final eval | first eval >= solved | mean of the 2nd half's evals | aux loss first -> last |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        aux = "—" if r["aux_first"] is None else f"{r['aux_first']:.3f} -> {r['aux_last']:.3f}"
        print(f"| {r['arm']} | {r['seed']} | {r['final']:.1f} | {r['first_solved'] or 'never'} | "
              f"{r['late_mean']:.1f} | {aux} |")
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        print(f"{arm}: mean final {np.mean([r['final'] for r in mine]):.1f}, mean 2nd-half "
              f"{np.mean([r['late_mean'] for r in mine]):.1f}")


if __name__ == "__main__":
    main()
