"""``rlkit pretrain`` (issue 21): an encoder from a dataset with auxiliary losses, loaded by agents frozen or
fine-tuned (``agent.encoder: {init, freeze}``), resumed exactly; its mistakes are one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from rlkit.cli import main
from rlkit.runfiles.checkpoint import load_checkpoint

IMAGE = gym.spaces.Box(0, 255, (3, 16, 16), np.uint8)
QUIET = {"progress": False, "tensorboard": False, "plot": False}
SMALL_IMPALA = {"kind": "impala", "channels": [4, 8], "features": 32}


@pytest.fixture
def pixels(tmp_path, monkeypatch):
    """A tiny pixel dataset (3 episodes of 20 random 3x16x16 frames, 2 actions) under MINARI_DATASETS_PATH."""
    from rlkit.experience.datasets import Episode, write_dataset

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    rng = np.random.default_rng(0)
    episodes = [Episode(rng.integers(0, 256, (21, *IMAGE.shape), dtype=np.uint8), rng.integers(0, 2, 20),
                        rng.random(20).astype(np.float32), np.zeros(20, bool), np.r_[np.zeros(19, bool), True])
                for _ in range(3)]
    write_dataset("test/pixels-v0", episodes, IMAGE, gym.spaces.Discrete(2))
    return "test/pixels-v0"


def _pretrain_config(tmp_path: Path, dataset: str, **changes) -> Path:
    data = {"dataset": dataset, "encoder": dict(SMALL_IMPALA), "aux": [{"name": "inverse_dynamics", "weight": 1.0,
                                                                          "hidden": [16]}],
            "steps": 12, "batch_size": 8, "checkpoint_every": 5, "seed": 1, "device": "cpu",
            "log": {**QUIET, "log_every": 4}, **changes}
    path = tmp_path / f"pretrain-{len(list(tmp_path.glob('pretrain-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _train_config(tmp_path: Path, dataset: str, encoder: dict) -> Path:
    data = {"env": {"id": None}, "offline": {"dataset": dataset}, "device": "cpu",
            "agent": {"name": "dqn", "hidden": [16], "encoder": encoder},
            "train": {"total_steps": 6, "batch_size": 8, "checkpoint_every": 3}, "log": QUIET}
    path = tmp_path / f"train-{len(list(tmp_path.glob('train-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_pretrain_writes_an_encoder_that_loads_frozen_or_fine_tuned(tmp_path, pixels, capsys):
    run = tmp_path / "pre"
    assert main(["pretrain", str(_pretrain_config(tmp_path, pixels)), "--run-dir", str(run)]) == 0
    assert "encoder:" in capsys.readouterr().out
    path = run / "encoder.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["kind"] == "impala" and json.loads(meta["settings"]) == {"channels": [4, 8], "features": 32}
    assert json.loads(meta["observation"]) == {"shape": [3, 16, 16], "dtype": "uint8"}
    assert json.loads(meta["losses"]) == [{"name": "inverse_dynamics", "label": "inverse_dynamics", "weight": 1.0}]
    assert [r["step"] for r in _records(run)] == [4, 8, 12] and "aux/inverse_dynamics" in _records(run)[0]
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["agent"]["updates"] == 12
    weights = load_file(str(path))

    def encoder_of(run_dir: Path, part: str = "q_net") -> dict[str, torch.Tensor]:
        agent = load_checkpoint(run_dir / "checkpoints" / "latest.pt")["agent"]
        return {k[len("encoder."):]: v for k, v in agent[part].items() if k.startswith("encoder.")}

    frozen = tmp_path / "frozen"
    config = _train_config(tmp_path, pixels, {**SMALL_IMPALA, "init": str(path), "freeze": True})
    assert main(["train", str(config), "--run-dir", str(frozen)]) == 0
    for part in ("q_net", "target_net"):
        got = encoder_of(frozen, part)
        assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in weights), part
    head = load_checkpoint(frozen / "checkpoints" / "latest.pt")["agent"]["optimizer"]["state"]
    assert head  # the Q head trained (Adam holds moments for it) while the encoder stayed as loaded

    tuned = tmp_path / "tuned"
    config = _train_config(tmp_path, pixels, {**SMALL_IMPALA, "init": str(path)})
    assert main(["train", str(config), "--run-dir", str(tuned)]) == 0
    got = encoder_of(tuned)
    assert any(not torch.equal(got[k], weights[k]) for k in weights)  # fine-tuned: moved
    assert all(got[k].shape == weights[k].shape for k in weights)
    # resuming does not read the file again (the checkpoint holds the weights): it may be gone
    path.rename(tmp_path / "moved.safetensors")
    assert main(["train", "--resume", str(tuned), "train.total_steps=9"]) == 0
    assert load_checkpoint(tuned / "checkpoints" / "latest.pt")["step"] == 9


def test_init_mistakes_exit_2_in_one_line(tmp_path, pixels, capsys):
    run = tmp_path / "pre"
    assert main(["pretrain", str(_pretrain_config(tmp_path, pixels, steps=2)), "--run-dir", str(run)]) == 0
    path = run / "encoder.safetensors"
    capsys.readouterr()
    cases = [({**SMALL_IMPALA, "init": str(tmp_path / "missing.safetensors")}, "no file"),
             ({"kind": "vit", "width": 16, "depth": 1, "heads": 2, "init": str(path)},
              "holds a 'impala' encoder, this run builds 'vit'"),
             ({**SMALL_IMPALA, "features": 16, "init": str(path)}, "features: file 32 vs run 16")]
    from safetensors.torch import save_file
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    bad = load_file(str(path))
    bad["stages.0.conv.weight"] = torch.zeros(4, 3, 5, 5)
    save_file(bad, str(tmp_path / "bad.safetensors"), metadata=meta)
    cases.append(({**SMALL_IMPALA, "init": str(tmp_path / "bad.safetensors")},
                  "tensor 'stages.0.conv.weight' of .* has shape [4, 3, 5, 5], this run's encoder expects [4, 3, 3, 3]"))
    for i, (encoder, text) in enumerate(cases):
        code = main(["train", str(_train_config(tmp_path, pixels, encoder)), "--run-dir", str(tmp_path / f"r{i}")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert all(piece in err for piece in text.split(" .* ")), err
        assert not (tmp_path / f"r{i}").exists()  # a failed start leaves nothing


def test_pretrain_resume_continues_the_same_run(tmp_path, pixels):
    """12 steps in one go, or 8 then a resume to 12: the same records (a run ending inside a logging window
    logs its tail, so the cut is on a window's end) and bit-identical weights, heads and optimizer."""
    config = _pretrain_config(tmp_path, pixels)
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["pretrain", str(config), "--run-dir", str(full)]) == 0
    assert main(["pretrain", str(config), "--run-dir", str(part), "steps=8"]) == 0
    assert load_checkpoint(part / "checkpoints" / "latest.pt")["step"] == 8
    assert main(["pretrain", "--resume", str(part), "steps=12"]) == 0
    assert _records(part) == _records(full)
    ckpt_full = load_checkpoint(full / "checkpoints" / "latest.pt")
    ckpt_part = load_checkpoint(part / "checkpoints" / "latest.pt")
    assert ckpt_part["step"] == 12 and ckpt_part["agent"]["updates"] == 12
    for name in ("encoder", "aux.inverse_dynamics"):  # and Adam's moments
        assert str(ckpt_full["agent"]["optimizer"]) == str(ckpt_part["agent"]["optimizer"])
        for key, value in ckpt_full["agent"][name].items():
            assert torch.equal(value, ckpt_part["agent"][name][key]), (name, key)
    a, b = load_file(str(full / "encoder.safetensors")), load_file(str(part / "encoder.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretrain_config_mistakes_exit_2_in_one_line(tmp_path, pixels, capsys):
    config = _pretrain_config(tmp_path, pixels)
    cases = [(["batch=4"], "unknown key 'batch'. Did you mean 'batch_size'?"),
             (["aux=[]"], "aux must list at least one loss"),
             (["aux=[{name: nope}]"], "aux[0].name: unknown auxiliary module 'nope'"),
             (["aux=[{name: inverse_dynamics, part: head}]"], "aux[0].part: pretraining has one part"),
             (["encoder.kind=flat"], "has no weights for observations"),
             (["encoder.freeze=true"], "rlkit pretrain trains the encoder from scratch"),
             (["dataset=test/absent-v0"], "absent"),
             (["steps=0"], "steps must be >= 1"),
             (["sequence_length=4"], "aux[0] (inverse_dynamics) learns from transitions; set sequence_length: 0"),
             (["sequence_length=1"], "sequence_length must be 0 (transitions) or >= 2")]
    for i, (overrides, text) in enumerate(cases):
        code = main(["pretrain", str(config), "--run-dir", str(tmp_path / f"r{i}"), *overrides])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and text in err, (overrides, err)
        assert not (tmp_path / f"r{i}").exists()
    assert main(["pretrain", str(config), "--run-dir", str(tmp_path / "ok"), "steps=2"]) == 0
    capsys.readouterr()
    assert main(["pretrain", "--resume", str(tmp_path / "ok"), "encoder.features=64"]) == 2
    assert "cannot change on resume: encoder.features 32 -> 64" in capsys.readouterr().err


@pytest.mark.parametrize("module, extra", [
    ("inverse_dynamics", {}), ("cpc", {}), ("cpc", {"sequence_length": 4, "offsets": [1, 2]}), ("clapp", {}),
    ("curl", {}), ("mean_teacher", {})])
def test_every_registered_module_pretrains_an_encoder(tmp_path, pixels, module, extra):
    """The modules of rlkit.auxiliary run unchanged inside `rlkit pretrain` (through the encoder-only agent's
    Agent.optimize), on transitions or, with sequence_length, on windows; their loss is logged as aux/<name>."""
    from rlkit.auxiliary import AUX_MODULES

    if module not in AUX_MODULES:
        pytest.skip(f"{module} is not registered in rlkit.auxiliary.AUX_MODULES")
    aux = {"name": module, "weight": 1.0, **{k: v for k, v in extra.items() if k != "sequence_length"}}
    changes = {"aux": [aux], "steps": 3, "checkpoint_every": 0, "log": {**QUIET, "log_every": 3}}
    if "sequence_length" in extra:
        changes["sequence_length"] = extra["sequence_length"]
    run = tmp_path / "run"
    assert main(["pretrain", str(_pretrain_config(tmp_path, pixels, **changes)), "--run-dir", str(run)]) == 0
    record = _records(run)[-1]
    assert record["step"] == 3 and np.isfinite(record[f"aux/{module}"])
    assert (run / "encoder.safetensors").is_file()
