"""`rlkit export` (acting weights in safetensors + config) and `rlkit eval` of an exported directory."""

import json

import pytest
import yaml
from safetensors import safe_open

from rlkit.cli import main
from rlkit.runfiles.export import WEIGHTS_FILE


def _train(root, agent, env, steps):
    config = root / f"{agent['name']}.yaml"
    config.write_text(yaml.safe_dump({
        "env": {"id": env, "num_envs": 1}, "agent": agent,
        "train": {"total_steps": steps, "learning_starts": 100, "batch_size": 16, "replay": {"capacity": 2000},
                  "eval_every": steps, "eval_episodes": 2, "checkpoint_every": steps},
        "log": {"progress": False, "tensorboard": False, "plot": False}}))
    run = root / f"run-{agent['name']}"
    assert main(["train", str(config), f"--run-dir={run}"]) == 0
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    return {"dqn": _train(root, {"name": "dqn", "hidden": [16]}, "CartPole-v1", 300),
            "mpo": _train(root, {"name": "mpo", "policy_hidden": [16], "critic_hidden": [16]}, "Pendulum-v1", 200)}


@pytest.mark.parametrize("agent,module", [("dqn", "q_net."), ("mpo", "policy.")])
def test_export_holds_only_the_acting_weights_and_evaluates_the_same(runs, tmp_path, capsys, agent, module):
    run, out = runs[agent], tmp_path / "exported"
    assert main(["export", str(run), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", WEIGHTS_FILE]
    assert (out / "config.yaml").read_text() == (run / "config.yaml").read_text()
    with safe_open(str(out / WEIGHTS_FILE), framework="pt") as f:
        assert f.metadata()["agent"] == agent and all(k.startswith(module) for k in f.keys())
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "3", "--checkpoint", "best"]) == 0
    from_run = json.loads((run / "eval.json").read_text())
    assert main(["eval", str(out), "--episodes", "3"]) == 0
    from_export = json.loads((out / "eval.json").read_text())
    assert from_export["returns"] == from_run["returns"]  # same weights, same seeds, same episodes


def test_export_refuses_a_non_empty_out_dir(runs, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["export", str(runs["dqn"]), str(out)]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("damage", ["garbage", "foreign_header", "wrong_agent", "wrong_shape"])
def test_bad_exports_are_one_line_errors(runs, tmp_path, capsys, damage):
    out = tmp_path / "exported"
    assert main(["export", str(runs["dqn"]), str(out)]) == 0
    weights = out / WEIGHTS_FILE
    if damage == "garbage":
        weights.write_bytes(b"\x00" * 64 + b"not safetensors")
    elif damage == "foreign_header":
        import torch
        from safetensors.torch import save_file
        save_file({"q_net.0.weight": torch.zeros(2, 2)}, str(weights), metadata={"format": "someone-else"})
    elif damage == "wrong_agent":
        (out / "config.yaml").write_text((runs["mpo"] / "config.yaml").read_text())
    elif damage == "wrong_shape":
        cfg = yaml.safe_load((out / "config.yaml").read_text())
        cfg["agent"]["hidden"] = [32]
        (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and WEIGHTS_FILE in err
