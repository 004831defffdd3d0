"""The policies shipped in pretrained/ load from safetensors and do what their README claims."""

import json
from pathlib import Path

import pytest

from rlkit.cli import main

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"


@pytest.mark.parametrize("name,full_length,min_normalised", [("mpo_humanoid_walk", 38, 0.98),
                                                             ("mpo_humanoid_run", 24, 0.9)])
def test_shipped_humanoid_policies_track_their_clip(tmp_path, name, full_length, min_normalised):
    run = tmp_path / name  # a copy: eval writes eval.json beside the weights
    run.mkdir()
    for f in ("config.yaml", "model.safetensors"):
        (run / f).write_bytes((PRETRAINED / name / f).read_bytes())
    assert main(["eval", str(run), "--episodes", "8"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["length_mean"] / full_length >= min_normalised, result["lengths"] if "lengths" in result else result
