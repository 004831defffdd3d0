"""Study: HER sampling only transitions of finished episodes (as SB3's HerReplayBuffer) vs rlkit's sampling of
every stored transition, the running episode included (issue 18, finding 12; docs/benchmarks.md).

SB3 samples a transition only once its episode has ended (``ep_length > 0``), real and relabelled ones alike.
rlkit's replay samples every stored transition, and HER relabels one of the running episode with the goals it
has achieved so far ("final" = its newest state). This script trains with rlkit's own CLI after replacing the
replay's uniform draw by one that redraws (with the buffer's generator: still seeded, uniform over the rest)
every sample whose episode is still running, and counts how many first draws fell in a running episode: the
share of rlkit's batches that SB3 would not have sampled.

    python scripts/study_her_finished_episodes.py --seeds 10 11 --config configs/sac_her_pointmaze.yaml

writes runs/her-finished-s<seed> (metrics.jsonl as any run) and runs/her-finished-s<seed>/running_share.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from rlkit import cli
from rlkit.experience.replay import ReplayBuffer

COUNTS = {"drawn": 0, "running": 0}


def running_mask(buffer: ReplayBuffer, rows: torch.Tensor, envs: torch.Tensor) -> torch.Tensor:
    """Which sampled (row, env) pairs belong to their stream's running episode: from the reset row of the
    newest row's episode up to the newest row, unless the newest row ended it (done: finished)."""
    R, written = buffer.rows_per_env, buffer.rows_stored
    newest = torch.full((buffer.num_envs,), (buffer.oldest_row + written - 1) % R, dtype=torch.long)
    every_env = torch.arange(buffer.num_envs)
    start = buffer.episode_start_rows(newest, every_env)                                   # [N]
    done = (buffer._terminated[newest, every_env] | buffer._truncated[newest, every_env]).bool()
    offset = (rows - buffer.oldest_row) % R
    start_offset = (start[envs] - buffer.oldest_row) % R
    return (offset >= start_offset) & ~done[envs]


def patch() -> None:
    uniform = ReplayBuffer._sample_uniform

    def finished_only(self: ReplayBuffer, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows, envs = uniform(self, batch_size)
        running = running_mask(self, rows, envs)
        COUNTS["drawn"] += batch_size
        COUNTS["running"] += int(running.sum())
        for _ in range(1000):
            if not bool(running.any()):
                return rows, envs
            more_rows, more_envs = uniform(self, int(running.sum()))
            rows[running], envs[running] = more_rows, more_envs
            running = running_mask(self, rows, envs)
        raise RuntimeError("no finished episode to sample")

    ReplayBuffer._sample_uniform = finished_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--config", default="configs/sac_her_pointmaze.yaml")
    parser.add_argument("--runs", default="runs")
    args = parser.parse_args()
    patch()
    for seed in args.seeds:
        COUNTS.update(drawn=0, running=0)
        run_dir = Path(args.runs) / f"her-finished-s{seed}"
        code = cli.main(["train", args.config, "--seed", str(seed), "--run-dir", str(run_dir)])
        share = COUNTS["running"] / max(COUNTS["drawn"], 1)
        (run_dir / "running_share.json").write_text(json.dumps({**COUNTS, "share": share}) + "\n")
        print(f"seed {seed}: exit {code}; {COUNTS['running']} of {COUNTS['drawn']} first draws "
              f"({100 * share:.2f}%) fell in a running episode and were redrawn")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
