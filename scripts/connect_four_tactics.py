"""How often a connect-four policy makes the one-move tactics: takes an immediate win when one is on the board, and
blocks the opponent's immediate win when it has none of its own; and its wins and losses per seat.

    python scripts/connect_four_tactics.py RUN_DIR [--checkpoint best|latest] [--opponent random|heuristic] [--games 400]

Used in docs/benchmarks.md ("Two-player games") to show what the masked DQN had not learnt (it took 39% of its
immediate wins) and what symmetry replay and gamma 0.9 changed (78%).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--checkpoint", default="best", choices=["best", "latest"])
    parser.add_argument("--opponent", default="random", choices=["random", "heuristic"])
    parser.add_argument("--games", type=int, default=400)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import rlkit
    from rlkit.envs.board_games import TwoPlayerSeatEnv, _connect_four_cell, completing_moves

    policy = rlkit.load(args.run, args.checkpoint)
    env = TwoPlayerSeatEnv("connect_four", opponent=args.opponent)

    counts = dict(win_available=0, win_taken=0, block_needed=0, blocked=0)
    outcomes: dict[int, list[int]] = {0: [], 1: []}
    for game in range(args.games):
        obs, info = env.reset(seed=game)
        done = False
        while not done:
            planes = obs["observation"].astype(bool)
            legal = np.flatnonzero(obs["action_mask"])
            action = int(policy.predict(obs))
            wins, blocks = (completing_moves(planes, plane, legal, _connect_four_cell, 4) for plane in (0, 1))
            if wins:
                counts["win_available"] += 1
                counts["win_taken"] += action in wins
            elif blocks:
                counts["block_needed"] += 1
                counts["blocked"] += action in blocks
            obs, _, done, _, step_info = env.step(action)
        outcomes[info["seat"]].append(step_info["outcome"])
    print(f"immediate wins taken {counts['win_taken']} / {counts['win_available']} "
          f"({counts['win_taken'] / max(counts['win_available'], 1):.0%}); blocks made {counts['blocked']} / "
          f"{counts['block_needed']} ({counts['blocked'] / max(counts['block_needed'], 1):.0%})")
    for seat, results in outcomes.items():
        r = np.array(results)
        print(f"seat {seat}: {len(r)} games, win {np.mean(r == 1):.3f}, draw {np.mean(r == 0):.3f}, "
              f"loss {np.mean(r == -1):.3f} against {args.opponent}")


if __name__ == "__main__":
    main()
