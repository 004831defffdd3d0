"""Bad inputs, one table (issue 18, findings 14-21): each row is an input, the fragment its one-line
message must hold, exit code 2, and what must be left as it was — the files of the run it touches, and
no run directory left behind without a checkpoint. Rows run through ``rlkit.cli.main`` in-process.

Rows that are Python calls rather than commands (wrapper statistics, ``predict``, checkpoint and export
writers) are a second table below: each input raises its typed error with the fragment.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from rlkit.cli import main
from rlkit.runfiles.runs import BEST, LATEST, LOCK_FILE

EXIT_USAGE = 2


def _tiny() -> dict:
    return {
        "seed": 3,
        "env": {"id": "CartPole-v1", "num_envs": 2},
        "agent": {"name": "dqn", "lr": 1e-3, "hidden": [16], "target_update_every": 50, "eps_decay_steps": 300},
        "train": {"total_steps": 300, "learning_starts": 100, "train_every": 4, "batch_size": 16,
                  "replay": {"capacity": 2000}, "eval_every": 150, "eval_episodes": 1, "checkpoint_every": 300},
        "log": {"progress": False, "tensorboard": False, "log_every": 100, "plot": False},
        "device": "cpu",
    }


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(_tiny()))
    return path


@pytest.fixture(scope="module")
def base_run(tiny_config, tmp_path_factory) -> Path:
    """One finished 300-step run; rows work on copies of it."""
    run = tmp_path_factory.mktemp("base") / "run"
    assert main(["train", str(tiny_config), f"--run-dir={run}"]) == 0
    return run


# --------------------------------------------------------------------------------------
# How a row is set up
# --------------------------------------------------------------------------------------


@dataclass
class Ctx:
    tmp: Path
    config: Path
    run: Path          # a fresh copy of the finished base run
    root: Path         # log.root of new runs (must stay empty)

    def new_run(self, *overrides: str) -> list[str]:
        """`rlkit train` of the tiny config writing under ``root`` (auto-named run directory)."""
        return ["train", str(self.config), f"log.root={self.root}", *overrides]


def _edit_checkpoint(path: Path, edit: Callable[[dict], None]) -> None:
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


def _poison(state: dict) -> None:
    """NaN into the first floating tensor of the agent's state."""
    def walk(tree) -> bool:
        for value in tree.values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                value.fill_(float("nan"))
                return True
            if isinstance(value, dict) and walk(value):
                return True
        return False
    assert walk(state["agent"])


def _tampered(edit: Callable[[dict], None]) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        _edit_checkpoint(ctx.run / LATEST, edit)
        return ["train", "--resume", str(ctx.run), "train.total_steps=400"]
    return setup


def _nan_weights(*command: str) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        for name in (LATEST, BEST):
            _edit_checkpoint(ctx.run / name, _poison)
        return [part.format(run=ctx.run, out=ctx.tmp / "exported") for part in command]
    return setup


def _set(section: str, key: str, value) -> Callable[[dict], None]:
    def edit(state: dict) -> None:
        state[section][key] = value
    return edit


def _rng(key: str, value) -> Callable[[dict], None]:
    def edit(state: dict) -> None:
        state["rng"][key] = value
    return edit


def _agent_entry(command: tuple[str, ...], edit: Callable[[dict], None]) -> Callable[[Ctx], list[str]]:
    """latest.pt's agent state edited, then ``command`` on the run (``{run}``, ``{out}`` filled in)."""
    def setup(ctx: Ctx) -> list[str]:
        _edit_checkpoint(ctx.run / LATEST, lambda state: edit(state["agent"]))
        return [part.format(run=ctx.run, out=ctx.tmp / "exported") for part in command]
    return setup


def _agent_rng_state(value) -> Callable[[dict], None]:
    def edit(agent: dict) -> None:
        state = json.loads(agent["rng"])
        state["state"]["state"] = value
        agent["rng"] = json.dumps(state)
    return edit


EVAL_LATEST = ("eval", "{run}", "--checkpoint", "latest", "--episodes", "1")


def _agent_named_nan(ctx: Ctx) -> list[str]:
    data = _tiny()
    data["agent"]["name"] = float("nan")
    path = ctx.tmp / "nan_name.yaml"
    path.write_text(yaml.safe_dump(data))
    return ["train", str(path), f"log.root={ctx.root}"]


def _symlinked_lock(ctx: Ctx) -> list[str]:
    target = ctx.tmp / "precious.txt"
    target.write_text("the user's file\n")
    run_dir = ctx.tmp / "fresh"
    run_dir.mkdir()
    (run_dir / LOCK_FILE).symlink_to(target)
    return ["train", str(ctx.config), f"--run-dir={run_dir}"]


def _export_into_files(ctx: Ctx) -> list[str]:
    out = ctx.tmp / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    return ["export", str(ctx.run), str(out)]


@dataclass
class Row:
    id: str
    setup: Callable[[Ctx], list[str]]
    fragment: str
    left: str = "nothing"   # "nothing": no new run directory; "checkpoint": one, with a checkpoint
    absent: str = ""         # a fragment the message must not hold (wrong advice)


ROWS = [
    # 14: seeds outside numpy's range, in the config and on the command line
    Row("seed-negative", lambda c: c.new_run("seed=-1"), "seed must be an integer in [0, 2**32 - 1]"),
    Row("seed-2**32", lambda c: c.new_run(f"seed={2**32}"), "seed must be an integer in [0, 2**32 - 1]"),
    Row("seed-flag-negative", lambda c: c.new_run("--seed", "-5"), "seed must be an integer in [0, 2**32 - 1]"),
    Row("eval-seed-2**32", lambda c: ["eval", str(c.run), "--seed", str(2**32)], "--seed must be an integer"),
    # 15: networks and batches that cannot be allocated
    Row("hidden-too-wide", lambda c: c.new_run("agent.hidden=[100000000000]"), "out of memory"),
    Row("batch-size-2**63", lambda c: c.new_run(f"train.batch_size={2**63}"), "does not fit a 64-bit integer"),
    Row("total-steps-1e30", lambda c: c.new_run("train.total_steps=1e30"), "does not fit a 64-bit integer"),
    Row("batch-too-large", lambda c: c.new_run("train.batch_size=100000000000"), "out of memory",
        left="checkpoint"),
    # 16: checkpoints whose RNG state, replay position or counters were tampered with
    Row("rng-torch", _tampered(_rng("torch", torch.zeros(3, dtype=torch.uint8))), "does not fit this run"),
    Row("rng-numpy-short", _tampered(_rng("numpy", json.dumps(["MT19937", [1, 2], 5, 0, 0.0]))),
        "does not fit this run"),
    Row("rng-numpy-garbage", _tampered(_rng("numpy", "garbage")), "does not fit this run"),
    Row("rng-python", _tampered(_rng("python", json.dumps([3, [1, 2, 3], None]))), "does not fit this run"),
    Row("replay-pos-huge", _tampered(lambda s: s["buffer"].update(pos=10**9)), "does not fit this run"),
    Row("replay-pos-negative", _tampered(lambda s: s["buffer"].update(pos=-3)), "does not fit this run"),
    Row("replay-next-first", _tampered(lambda s: s["buffer"].update(next_first=torch.zeros(7, dtype=torch.bool))),
        "the replay buffer's 'next_first'"),
    Row("replay-rng", _tampered(lambda s: s["buffer"].update(rng_state=torch.zeros(2, dtype=torch.uint8))),
        "does not fit this run"),
    Row("optimizer-moment-shape",  # torch's Adam would corrupt memory at the first resumed step
        _tampered(lambda s: next(iter(s["agent"]["optimizer"]["state"].values())).update(exp_avg=torch.tensor(7.0))),
        "state 'exp_avg'"),
    Row("optimizer-moment-deleted",
        _tampered(lambda s: next(iter(s["agent"]["optimizer"]["state"].values())).pop("exp_avg_sq")),
        "optimizer 'optimizer'"),
    Row("replay-actions-out-of-range", _tampered(lambda s: s["buffer"]["actions"].fill_(2**30)),
        "actions outside [0, 2)"),
    Row("collector-prev-reward-shape", _tampered(lambda s: s["collector"].update(prev_reward=torch.zeros(5))),
        "collector.prev_reward has shape"),
    Row("loop-step-negative", _tampered(_set("loop", "step", -5)), "loop.step is -5"),
    Row("loop-best-step", _tampered(_set("loop", "best_step", 10**9)), "loop.best_step"),
    # 16, found by the 10,000-input fuzz: the agent's own counters and generator states out of range (int(inf)
    # raised OverflowError, which rlkit eval / export did not expect: a traceback)
    Row("agent-updates-inf-eval", _agent_entry(EVAL_LATEST, lambda a: a.update(updates=float("inf"))),
        "agent.updates is inf"),
    Row("agent-env-steps-nan-export", _agent_entry(("export", "{run}", "{out}", "--checkpoint", "latest"),
                                                   lambda a: a.update(env_steps=float("nan"))), "agent.env_steps is nan"),
    Row("agent-updates-negative-resume", _agent_entry(("train", "--resume", "{run}", "train.total_steps=400"),
                                                      lambda a: a.update(updates=-4)), "agent.updates is -4"),
    Row("agent-updates-float-eval", _agent_entry(EVAL_LATEST, lambda a: a.update(updates=1.5)), "agent.updates is 1.5"),
    Row("agent-rng-past-uint128-eval", _agent_entry(EVAL_LATEST, _agent_rng_state(2**200)), "a number out of range"),
    # 19: non-finite weights are never resumed, evaluated or exported
    Row("nan-eval", _nan_weights("eval", "{run}", "--episodes", "1"), "non-finite weights"),
    Row("nan-export", _nan_weights("export", "{run}", "{out}"), "non-finite weights"),
    Row("nan-resume", _nan_weights("train", "--resume", "{run}", "train.total_steps=400"), "non-finite weights",
        absent="last good"),
    # 21: a lock file that is a symlink; export into a directory of the user's files
    Row("lock-symlink", _symlinked_lock, "is a symlink"),
    Row("export-not-empty", _export_into_files, "OUT_DIR", absent="--run-dir"),
    # 26, found by the 10,000-input fuzz: the note of an agent switch came before the config's error (two lines),
    # and a file's agent.name of NaN (unequal to itself) read as a switch
    Row("agent-name-nan", _agent_named_nan, "agent.name must be an agent's name", absent="note"),
    Row("switch-to-unknown-agent", lambda c: c.new_run("agent.name=dqm"), "unknown agent 'dqm'", absent="note"),
    Row("switch-agent-then-bad-key", lambda c: c.new_run("agent.name=sac", "train.batch_size=big"),
        "train.batch_size: expected an integer", absent="note"),
]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (the lock file aside: its holder's pid is rewritten) and its hash; symlinks
    by their target."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.name == LOCK_FILE and not path.is_symlink():
            continue
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, tmp_path, tiny_config, base_run, capsys):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    ctx = Ctx(tmp=tmp_path, config=tiny_config, run=run, root=tmp_path / "runs")
    args = row.setup(ctx)
    before = _snapshot(tmp_path)
    capsys.readouterr()

    code = main(args)

    out, err = capsys.readouterr()
    assert code == EXIT_USAGE, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlkit: error: "), err   # one line, no traceback
    assert "Traceback" not in out + err
    assert row.fragment in lines[0], lines[0]
    if row.absent:
        assert row.absent not in lines[0], lines[0]
    after = _snapshot(tmp_path)
    if after.get("runs") == "dir" and "runs" not in before:  # log.root itself may appear (empty): not a run
        del after["runs"]
    new_runs = sorted(ctx.root.iterdir()) if ctx.root.exists() else []
    if row.left == "nothing":
        assert after == before, "files changed or left behind"
        assert new_runs == []
    else:  # a run that failed after its first checkpoint keeps it (and says how to resume)
        assert {k: v for k, v in after.items() if k in before} == before
        assert len(new_runs) == 1 and (new_runs[0] / LATEST).is_file()
        assert f"--resume {new_runs[0]}" in lines[0]


def test_tensorboard_full_disk_is_one_line(tmp_path, tiny_config, capsys, monkeypatch):
    """21: the TensorBoard writer thread hitting a full disk prints no thread traceback; exit 2, one line."""
    from tensorboard.summary.writer import record_writer

    write = record_writer.RecordWriter.write
    calls = []

    def full_disk(self, data):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(self, data)

    monkeypatch.setattr(record_writer.RecordWriter, "write", full_disk)
    thread_errors = []  # what would print "Exception in thread ..." with its traceback
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(args.exc_value))
    code = main(["train", str(tiny_config), f"--run-dir={tmp_path / 'r'}", "log.tensorboard=true",
                 "train.total_steps=2000"])
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE
    assert "Traceback" not in err and "Exception in thread" not in err, err
    assert thread_errors == []
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "the disk is full" in lines[0], err


# --------------------------------------------------------------------------------------
# 17: two runs started in the same second with default names
# --------------------------------------------------------------------------------------


def test_default_run_names_are_unique_under_concurrency(tmp_path, tiny_config, capsys):
    """Both processes pick their directory before either is built (as two `rlkit train` started together
    do); each gets its own, and both finish."""
    from rlkit.api import prepare_train
    from rlkit.training.loops import train

    overrides = [f"log.root={tmp_path}", "log.name=same", "train.total_steps=120"]
    first = prepare_train(str(tiny_config), list(overrides))
    second = prepare_train(str(tiny_config), list(overrides))
    assert first[1] != second[1]
    for cfg, run_dir, source in (first, second):
        assert train(cfg, run_dir, source=source)["steps"] >= 120
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same", "same-2"]


def test_failed_start_removes_the_claimed_directory_only(tmp_path, tiny_config, capsys):
    """A claimed (auto-named) directory goes when the start fails; a user's empty --run-dir stays."""
    mine = tmp_path / "mine"
    mine.mkdir()
    assert main(["train", str(tiny_config), f"--run-dir={mine}", "agent.hidden=[100000000000]"]) == EXIT_USAGE
    assert mine.is_dir() and list(mine.iterdir()) == []


# --------------------------------------------------------------------------------------
# Python calls: wrapper statistics (20), predict (21), checkpoint and export writers (19)
# --------------------------------------------------------------------------------------


def _stats(mean=None, var=None, count=5.0) -> dict:
    return {"mean": torch.zeros(4) if mean is None else mean, "var": torch.ones(4) if var is None else var,
            "count": count}


WRAPPER_ROWS = [
    ("negative-variance", _stats(var=-torch.ones(4)), "variance must be finite and >= 0"),
    ("nan-variance", _stats(var=torch.full((4,), float("nan"))), "variance must be finite and >= 0"),
    ("inf-mean", _stats(mean=torch.full((4,), float("inf"))), "mean holds NaN or inf"),
    ("negative-count", _stats(count=-1.0), "count must be finite and >= 0"),
    ("missing-var", {"mean": torch.zeros(4), "count": 1.0}, "lack 'var'"),
    ("wrong-shape", _stats(mean=torch.zeros(3)), "do not fit"),
]


@pytest.mark.parametrize("state,fragment", [r[1:] for r in WRAPPER_ROWS], ids=[r[0] for r in WRAPPER_ROWS])
def test_wrapper_statistics_are_checked(state, fragment):
    from rlkit.envs.wrappers import NormalizeObservation, NormalizeReward

    env = NormalizeObservation(gym.make("CartPole-v1"))
    good = env.state_dict()
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace("*", r"\*")):
        env.load_state_dict(state)
    assert all(torch.equal(torch.as_tensor(good[k]), torch.as_tensor(env.state_dict()[k])) for k in good)
    reward = NormalizeReward(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="variance"):
        reward.load_state_dict({"mean": torch.tensor(0.0), "var": torch.tensor(-1.0), "count": 2.0})


@pytest.fixture(scope="module")
def policy(base_run):
    import rlkit

    return rlkit.load(base_run)


@pytest.mark.parametrize("obs,fragment", [
    (np.full(4, np.nan, np.float32), "holds NaN or inf"),
    (np.full((3, 4), np.inf, np.float32), "holds NaN or inf"),
], ids=["nan-single", "inf-batch"])
def test_predict_refuses_nonfinite_observations(policy, obs, fragment):
    with pytest.raises(ValueError, match=fragment):
        policy.predict(obs)


def test_predict_on_an_empty_batch_returns_no_actions(policy):
    actions = policy.predict(np.zeros((0, 4), np.float32))
    assert actions.shape == (0,) and actions.dtype == policy.action_space.dtype


def test_nonfinite_weights_are_never_written(tmp_path, policy):
    from rlkit.errors import CheckpointError, TrainingDiverged
    from rlkit.runfiles.checkpoint import save_checkpoint
    from rlkit.runfiles.export import export_agent

    with pytest.raises(TrainingDiverged, match="not finite"):
        save_checkpoint(tmp_path / "best.pt", {"step": 1, "agent": {"q": {"w": torch.tensor([1.0, float("nan")])}}})
    assert not (tmp_path / "best.pt").exists()
    agent = policy.agent
    saved = {k: v.clone() for k, v in agent.acting_tensors().items()}
    broken = {k: v.clone() for k, v in saved.items()}
    next(iter(broken.values())).fill_(float("inf"))
    agent.load_acting_tensors(broken)
    try:
        with pytest.raises(CheckpointError, match="not finite"):
            export_agent(agent, "{}", tmp_path / "out", {"agent": "dqn"})
        assert not (tmp_path / "out").exists()
    finally:
        agent.load_acting_tensors(saved)
