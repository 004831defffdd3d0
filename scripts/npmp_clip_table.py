"""Per-clip closed-loop normalised length of a distilled motor-skill module (NPMP) against each clip's expert.

    python scripts/npmp_clip_table.py RUN_OR_EXPORT_DIR [--experts DIR ...] [--episodes 100] [--seed 12345]
                                      [--horizon 1] [--heldout DATASET]

Both act from random start frames (reference state initialisation) on each expert's clip, episodes capped at
the expert's ``max_episode_steps``; normalised length = mean episode length / that cap
(:func:`rlkit.training.expert_rollouts.compare_with_experts`). The module acts in its own action mode (absolute
PD targets), the expert in its own (PD residuals). ``--heldout``: also the module's action error against the
experts' clean actions on expert episodes it never saw (``rlkit dataset experts --seed 1 --out ...``),
:func:`rlkit.training.expert_rollouts.heldout_action_error`.
"""

from __future__ import annotations

import argparse
import json

from rlkit.training.expert_rollouts import compare_with_experts, heldout_action_error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("student", help="an npmp run directory or `rlkit export` directory")
    parser.add_argument("--experts", nargs="+", metavar="DIR", help="clip experts (default: the shipped walk, run)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--horizon", type=int, default=1,
                        help="episode cap in expert episodes (1: the experts' own; 3: three cycles of a looping clip)")
    parser.add_argument("--heldout", metavar="DATASET", help="expert episodes the module did not train on")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    ns = parser.parse_args()
    heldout = heldout_action_error(ns.student, ns.heldout) if ns.heldout else []
    if heldout:
        print("| clip | held-out steps | action MSE | action MAE | zero-action MSE |")
        print("|---|---|---|---|---|")
        for r in heldout:
            print(f"| {r['clip']} | {r['steps']} | {r['mse']:.4f} | {r['mae']:.3f} | {r['zero_action_mse']:.3f} |")
    rows = compare_with_experts(ns.student, ns.experts, ns.episodes, ns.seed, ns.horizon)
    print("| clip | episode steps | module (normalised length) | expert | module return | expert return |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clip']} | {r['episode_steps']} | {r['student']:.2f} | {r['expert']:.2f} | "
              f"{r['student_return']:.2f} | {r['expert_return']:.2f} |")
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump({"closed_loop": rows, "heldout": heldout}, f, indent=1)


if __name__ == "__main__":
    main()
