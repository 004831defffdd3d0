"""Pick a reference training run's expert and medium snapshots (D4RL's definitions; rlkit.training.reference) and
copy them into pretrained/reference/.

    python scripts/pick_reference_policies.py RUN_DIR NAME [--episodes 20] [--until STEP]

RUN_DIR is a run of configs/sac_<env>.yaml trained with train.snapshot_every (snapshots/step_<N>/). The expert is
the snapshot with the best periodic evaluation (up to --until); it is evaluated again over --episodes episodes, and
the medium policy is the snapshot, at an evaluated step, whose evaluation is closest to a third of that return.
Both are copied to pretrained/reference/NAME-expert and NAME-medium (config.yaml + model.safetensors) and their
returns printed, with the medium step (the medium-replay cut).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def evaluate(export_dir: Path, episodes: int, seed: int = 4321) -> float:
    from rlkit.runfiles.export import load_exported
    from rlkit.runfiles.runs import open_run
    from rlkit.training.build import build_agent, make_vector_env
    from rlkit.training.evaluation import evaluate as run_episodes

    run = open_run(export_dir, "best")
    cfg = run.config
    envs = make_vector_env(cfg.env, num_envs=min(episodes, 8))
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space, "cpu")
    load_exported(agent, export_dir, cfg.agent.name, "cpu")
    result = run_episodes(agent, cfg.env, episodes, 0.0, seed=seed, envs=envs)
    envs.close()
    return float(result["return_mean"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name", help="e.g. hopper: writes pretrained/reference/hopper-expert, hopper-medium")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--until", type=int, default=None, help="ignore evaluations after this step")
    parser.add_argument("--medium-step", type=int, default=None,
                        help="take this snapshot as the medium policy (when the rule's pick is far from a third)")
    args = parser.parse_args()
    records = [json.loads(line) for line in (args.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["return_mean"] for r in records if r["kind"] == "eval"
             and (args.run_dir / "snapshots" / f"step_{r['step']}").is_dir()
             and (args.until is None or r["step"] <= args.until)}
    if not evals:
        raise SystemExit(f"{args.run_dir}: no evaluation at a snapshot step")
    expert_step = max(evals, key=evals.get)
    expert_dir = args.run_dir / "snapshots" / f"step_{expert_step}"
    expert_return = evaluate(expert_dir, args.episodes)
    earlier = {s: v for s, v in evals.items() if s < expert_step}
    # the snapshots between the two evaluated steps that bracket a third of the expert's return are evaluated too
    target = expert_return / 3
    below = max((s for s, v in earlier.items() if v <= target), default=min(earlier))
    above = min((s for s, v in earlier.items() if v >= target and s > below), default=max(earlier))
    for step_dir in sorted((args.run_dir / "snapshots").glob("step_*"), key=lambda p: int(p.name[5:])):
        step = int(step_dir.name[5:])
        if below < step < above and step not in earlier:
            earlier[step] = evaluate(step_dir, 10)
    medium_step = min(earlier, key=lambda s: abs(earlier[s] - target))
    if args.medium_step is not None:
        medium_step = args.medium_step
        earlier.setdefault(medium_step, evals.get(medium_step, float("nan")))
    medium_dir = args.run_dir / "snapshots" / f"step_{medium_step}"
    medium_return = evaluate(medium_dir, args.episodes)
    out = REPO / "pretrained" / "reference"
    for level, src in (("expert", expert_dir), ("medium", medium_dir)):
        dst = out / f"{args.name}-{level}"
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        for f in ("config.yaml", "model.safetensors"):
            shutil.copy(src / f, dst / f)
    summary = {"expert_step": expert_step, "expert_eval_10": evals[expert_step], "expert_return": expert_return,
               "medium_step": medium_step, "medium_eval_10": earlier[medium_step], "medium_return": medium_return,
               "ratio": medium_return / expert_return if expert_return else float("nan"),
               "evaluations": {int(k): round(float(v), 1) for k, v in sorted({**evals, **earlier}.items())}}
    print(json.dumps(summary, indent=1))
    np.seterr(all="ignore")


if __name__ == "__main__":
    main()
