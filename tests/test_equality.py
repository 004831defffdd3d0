"""The equality proof of the agent-contract refactor (issue 17): seeded runs of shipped configs, recorded
before the refactor under ``tests/data/equality/``, rerun now and compared record for record.

Wall-clock fields (``time``, ``sps``) are left out of the comparison; everything else — every episode
return, every mean training metric, every evaluation return — must match exactly (the same float).
A change that alters a random-number order must say so in its commit and re-record these files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rlkit

DATA = Path(__file__).parent / "data" / "equality"
WALL_CLOCK = ("time", "sps")

# (recorded file, shipped config, overrides used when it was recorded)
RUNS = {
    "dqn_cartpole": ("dqn_cartpole", ["train.total_steps=4000", "train.eval_every=2000", "train.checkpoint_every=2000",
                                      "log.log_every=500"]),
    "sac_pendulum": ("sac_pendulum", ["train.total_steps=2000", "train.eval_every=1000", "train.checkpoint_every=1000",
                                      "log.log_every=250"]),
    "mpo_pendulum": ("mpo_pendulum", ["train.total_steps=1500", "train.eval_every=750", "log.log_every=250"]),
    "ris_pointmaze_u": ("ris_pointmaze_u", ["train.total_steps=1500", "train.eval_every=750", "log.log_every=250"]),
}


def _records(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for key in WALL_CLOCK:
            record.pop(key, None)
        records.append(record)
    return records


@pytest.mark.parametrize("name", sorted(RUNS))
def test_seeded_run_matches_the_recorded_one(tmp_path, name):
    config, overrides = RUNS[name]
    rlkit.train(config, run_dir=tmp_path / "run", overrides=[*overrides, "log.progress=false", "torch_threads=1",
                                                             "device=cpu", "log.tensorboard=false", "log.plot=false"])
    expected = _records(DATA / f"{name}.metrics.jsonl")
    got = _records(tmp_path / "run" / "metrics.jsonl")
    assert len(got) == len(expected), f"{name}: {len(got)} records, recorded {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"{name}: record {i} differs:\n got      {g}\n recorded {e}"
