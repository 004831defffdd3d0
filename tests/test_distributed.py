"""Data parallelism over torch.distributed (rlkit.training.distributed), tested on CPU with gloo: 2 ranks spawned
with ``torch.multiprocessing`` and a ``file://`` store (the loops as ``torchrun`` runs them), and one
``torchrun --standalone --nproc_per_node=2 -m rlkit train`` through the CLI.

- BC offline and DQN online: each rank trains on its own batches (rank-seeded sampler / own envs and replay), the
  gradients are all-reduced, and weights and optimizer states stay bit-identical across ranks;
- rank 0 alone writes the run directory;
- a 2-rank run stopped and resumed ends with the uninterrupted 2-rank run's weights and metrics, bit for bit (a
  SIGTERM to one rank stops both at the same step, with a checkpoint);
- a 2-rank BC run matches a 1-rank run with the doubled batch within noise;
- a checkpoint of 2 ranks refuses to resume in 1 process (one line, exit 2).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from rlkit.cli import main
from rlkit.config import build_run_config
from rlkit.runfiles.checkpoint import load_checkpoint
from rlkit.runfiles.runs import LATEST

QUIET = {"progress": False, "tensorboard": False, "plot": False}


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    """``test/linear-v0``: 5 episodes of 200 Pendulum-v1 steps whose actions are a noisy linear function of the
    observation (something to learn), made once."""
    import gymnasium as gym

    from rlkit.experience.datasets import Episode, write_dataset

    root = tmp_path_factory.mktemp("datasets")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)  # the spawned ranks inherit it
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(5):
        obs = rng.uniform(env.observation_space.low, env.observation_space.high, (201, 3)).astype(np.float32)
        actions = np.clip(obs[:-1] @ np.array([[1.0], [-0.5], [0.2]]) + 0.1 * rng.normal(size=(200, 1)), -2, 2)
        episodes.append(Episode(obs, actions.astype(np.float32), rng.normal(size=200), np.zeros(200, bool),
                                np.arange(200) == 199))
    write_dataset("test/linear-v0", episodes, env.observation_space, env.action_space, env_id="Pendulum-v1")
    yield root
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


def _bc_data(**train) -> dict:
    return {
        "seed": 4, "device": "cpu", "torch_threads": 1, "env": {"id": "Pendulum-v1"},
        "offline": {"dataset": "test/linear-v0"},
        "agent": {"name": "bc", "loss": "gaussian", "hidden": [32, 32], "lr": 1e-3, "normalize_obs": True},
        "train": {"total_steps": 200, "batch_size": 32, "eval_every": 100, "eval_episodes": 1,
                  "checkpoint_every": 0, **train},
        "log": {**QUIET, "log_every": 50},
    }


def _dqn_data(**train) -> dict:
    return {
        "seed": 3, "device": "cpu", "torch_threads": 1, "env": {"id": "CartPole-v1", "num_envs": 2},
        "agent": {"name": "dqn", "lr": 1e-3, "hidden": [32, 32], "target_update_every": 50, "eps_decay_steps": 400},
        "train": {"total_steps": 600, "learning_starts": 100, "train_every": 4, "gradient_steps": 1,
                  "batch_size": 32, "replay": {"capacity": 5000}, "eval_every": 300, "eval_episodes": 1,
                  "checkpoint_every": 0, **train},
        "log": {**QUIET, "log_every": 100},
    }


# ------------------------------------------------------------------ the ranks


def _rank(rank: int, world: int, store: str, jobs: list[tuple], out: str) -> None:
    """One rank: join the group, run the training ``jobs`` ``(name, config data, [run dir per rank], resume,
    stop_at)`` one after the other (``stop_at`` > 0: rank 1 alone gets SIGTERM before its update of that number),
    and after each write what the test compares (its weights, gradients, the sums of the first batches it saw,
    its summary's steps) to ``out/<name>-rank<k>.pt`` — the test's file, not the run's."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from rlkit.agents import AGENTS
    from rlkit.training import distributed, loops

    distributed.init(f"file://{store}")
    kept: dict = {}
    finish = loops._Run.finish

    def keep_agent(self, agent):
        kept["agent"] = agent
        return finish(self, agent)

    loops._Run.finish = keep_agent
    seen: list[float] = []
    signal_at: list[int] = [0]
    for agent_cls in {cls for _, cls in AGENTS.values()}:
        def watched(self, batch, update=agent_cls.update):
            if len(seen) < 3:
                seen.append(float(batch.obs.double().sum()))
            if rank == 1 and self.updates + 1 == signal_at[0]:
                os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler stopping one rank's process
            return update(self, batch)

        agent_cls.update = watched
    try:
        for name, data, run_dirs, resume, stop_at in jobs:
            seen.clear()
            signal_at[0] = stop_at
            summary = loops.train(build_run_config(data, []), Path(run_dirs[rank]), resume=resume)
            agent = kept.pop("agent")
            params = {f"{part}.{k}": v.detach().clone() for part, module in agent.parts.modules.items()
                      for k, v in module.named_parameters()}
            params.update({name: t.detach().clone() for name, t in agent.parts.tensors.items()})  # SAC's log_alpha
            grads = {f"{part}.{k}": v.grad.clone() for part, module in agent.parts.modules.items()
                     for k, v in module.named_parameters() if v.grad is not None}
            torch.save({"params": params, "grads": grads, "seen": list(seen), "steps": summary["steps"],
                        "interrupted": int(summary["interrupted"]),
                        "optimizers": {k: s.optimizer.state_dict() for k, s in agent.parts.optimizers.items()}},
                       Path(out) / f"{name}-rank{rank}.pt")
            del agent
    finally:
        distributed.shutdown()


def _spawn(tmp_path: Path, *jobs: tuple) -> dict[str, list[dict]]:
    """Train each job ``(name, config data, run dir, resume[, stop_at])`` on 2 ranks, in order (rank 0 in the run
    dir; rank 1 is handed a path of its own, which must stay absent); returns each job's ranks' weights, gradients,
    first batch sums and steps."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    elsewhere = tmp_path / "rank1-dir"
    mp.spawn(_rank, args=(2, str(tmp_path / f"store-{jobs[0][0]}"),
                          [(name, data, [str(run_dir), str(elsewhere)], resume, stop_at)
                           for name, data, run_dir, resume, stop_at in (tuple(j) + (0,) * (5 - len(j)) for j in jobs)],
                          str(out)), nprocs=2, join=True)
    assert not elsewhere.exists()  # rank 1 wrote nothing
    return {name: [torch.load(out / f"{name}-rank{k}.pt", weights_only=True) for k in range(2)]
            for name, *_ in jobs}


def _assert_in_step(ranks: list[dict]) -> None:
    """Both ranks hold the same weights, gradients and optimizer states, bit for bit, after training on
    different batches."""
    a, b = ranks
    assert a["params"].keys() == b["params"].keys() and a["params"]
    for key in a["params"]:
        assert torch.equal(a["params"][key], b["params"][key]), key
    assert a["grads"].keys() == b["grads"].keys() and a["grads"]  # the last update's all-reduced gradients
    for key in a["grads"]:
        assert torch.equal(a["grads"][key], b["grads"][key]), key
    for name, state in a["optimizers"].items():
        for pid, moments in state["state"].items():
            for k, v in moments.items():
                other = b["optimizers"][name]["state"][pid][k]
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(other)), (name, pid, k)
    assert len(a["seen"]) == 3 and a["seen"] != b["seen"]  # each rank sampled its own batches


def _records(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time", "sps")} for r in records]


def _final_weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / LATEST)["agent"]


def _assert_same_weights(a: dict, b: dict) -> None:
    for name, value in a.items():
        if isinstance(value, dict):
            _assert_same_weights(value, b[name])
        elif isinstance(value, torch.Tensor):
            assert torch.equal(value, b[name]), name
        else:
            assert value == b[name], name


# ------------------------------------------------------------------ offline


def test_bc_two_ranks_stay_identical_rank0_writes_and_resume_is_exact(dataset_root, tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    # part: rank 1 alone gets SIGTERM before its 130th update; the ranks agree to stop at the next multiple of
    # STOP_POLL (144, mid logging window: each rank's open window is in the checkpoint), then it resumes to 200
    got = _spawn(tmp_path, ("whole", _bc_data(), whole, False), ("part", _bc_data(), part, False, 130),
                 ("resumed", _bc_data(), part, True))
    ranks, resumed = got["whole"], got["resumed"]
    assert [r["steps"] for r in got["part"]] == [144, 144] and [r["interrupted"] for r in got["part"]] == [15, 15]
    assert load_checkpoint(part / LATEST)["step"] == 200
    _assert_in_step(ranks)
    assert sorted(p.name for p in whole.iterdir()) == [".rlkit.lock", "checkpoints", "config.yaml",
                                                       "metrics.jsonl", "spaces.json"]
    checkpoint = load_checkpoint(whole / LATEST)
    assert checkpoint["world_size"] == 2 and len(checkpoint["ranks"]) == 1
    rank1 = checkpoint["ranks"][0]
    assert not torch.equal(rank1["buffer"]["rng_state"], checkpoint["buffer"]["rng_state"])  # its own sampler
    assert [r["step"] for r in _records(whole) if r["kind"] == "train"] == [50, 100, 150, 200]
    _assert_in_step(resumed)
    for key in ranks[0]["params"]:
        assert torch.equal(resumed[0]["params"][key], ranks[0]["params"][key]), key
    _assert_same_weights(_final_weights(part), _final_weights(whole))
    assert _records(part) == _records(whole)


def test_two_rank_bc_matches_one_rank_with_the_doubled_batch(dataset_root, tmp_path):
    """Two ranks of batch 32 against one process of batch 64: the same gradient in expectation, so the loss
    curves (means over the ranks' batches) agree within the noise of the sampling."""
    data = _bc_data(total_steps=600, eval_every=0)
    data["agent"]["loss"] = "mse"
    data["log"]["log_every"] = 100
    two = tmp_path / "two"
    _spawn(tmp_path, ("two", data, two, False))
    single = dict(data, train={**data["train"], "batch_size": 64})
    from rlkit.training.loops import train

    one = tmp_path / "one"
    train(build_run_config(single, []), one)
    loss = {name: np.array([r["loss"] for r in _records(d) if r["kind"] == "train"]) for name, d in
            (("two", two), ("one", one))}
    assert len(loss["two"]) == len(loss["one"]) == 6
    assert loss["two"][-1] < 0.5 * loss["two"][0] and loss["one"][-1] < 0.5 * loss["one"][0]  # both learn
    np.testing.assert_allclose(loss["two"], loss["one"], rtol=0.25)  # every logging window's mean loss
    np.testing.assert_allclose(loss["two"][-3:].mean(), loss["one"][-3:].mean(), rtol=0.1)  # at the noise floor


# ------------------------------------------------------------------ online


def test_dqn_two_ranks_stay_identical_and_resume_is_exact(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    # part: rank 1 alone gets SIGTERM before its 50th update; both stop at the next STOP_POLL-th vector step
    # (16 vector steps = 64 env steps of both ranks), checkpoint (replay, envs, RNGs of both), and resume
    got = _spawn(tmp_path, ("whole", _dqn_data(), whole, False), ("part", _dqn_data(), part, False, 50),
                 ("resumed", _dqn_data(), part, True))
    ranks, resumed = got["whole"], got["resumed"]
    stopped = [r["steps"] for r in got["part"]]
    assert stopped[0] == stopped[1] < 600 and stopped[0] % 64 == 0 and got["part"][1]["interrupted"] == 15
    _assert_in_step(ranks)
    checkpoint = load_checkpoint(whole / LATEST)
    assert checkpoint["step"] == 600 and checkpoint["world_size"] == 2  # env steps of both ranks together
    assert not torch.equal(checkpoint["ranks"][0]["collector"]["obs"], checkpoint["collector"]["obs"])  # own envs
    _assert_in_step(resumed)
    for key in ranks[0]["params"]:
        assert torch.equal(resumed[0]["params"][key], ranks[0]["params"][key]), key
    _assert_same_weights(_final_weights(part), _final_weights(whole))
    assert _records(part) == _records(whole)


def test_sac_two_ranks_keep_their_free_tensors_in_step(tmp_path):
    """SAC's temperature ``log_alpha`` is a free tensor no DDP module holds: its gradient is averaged too."""
    data = {"seed": 0, "device": "cpu", "torch_threads": 1, "env": {"id": "Pendulum-v1", "num_envs": 1},
            "agent": {"name": "sac", "actor_hidden": [32], "critic_hidden": [32], "random_steps": 100},
            "train": {"total_steps": 300, "learning_starts": 100, "batch_size": 32, "eval_every": 0,
                      "checkpoint_every": 0}, "log": {**QUIET, "log_every": 100}}
    got = _spawn(tmp_path, ("sac", data, tmp_path / "sac", False))["sac"]
    assert "log_alpha" in got[0]["params"]
    _assert_in_step(got)


# ------------------------------------------------------------------ through torchrun and the CLI


def test_torchrun_trains_two_ranks_and_a_one_process_resume_is_refused(dataset_root, tmp_path, capsys):
    config = tmp_path / "bc.yaml"
    config.write_text(yaml.safe_dump(_bc_data(total_steps=100, eval_every=0)))
    run = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run([str(torchrun) if torchrun.exists() else shutil.which("torchrun"), "--standalone",
                           "--nproc_per_node=2", "-m", "rlkit", "train", str(config), f"--run-dir={run}"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("run directory:") == 2  # rank 0's start and summary lines only
    assert "terminate called" not in done.stderr and "Traceback" not in done.stderr
    assert load_checkpoint(run / LATEST)["world_size"] == 2
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 rank(s) and cannot resume with 1" in err[0] and "--nproc_per_node=2" in err[0]


def test_python_api_under_torchrun(dataset_root, tmp_path):
    """rlkit.train() under torchrun joins the process group as `rlkit train` does: both ranks train, rank 0 writes."""
    script = tmp_path / "train.py"
    run = tmp_path / "run"
    script.write_text(
        "import rlkit, yaml, sys\n"
        f"data = yaml.safe_load(open({str(tmp_path / 'bc.yaml')!r}))\n"
        f"result = rlkit.train(data, run_dir={str(run)!r})\n"
        "print('steps', result.summary['steps'])\n")
    (tmp_path / "bc.yaml").write_text(yaml.safe_dump(_bc_data(total_steps=60, eval_every=0)))
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run([str(torchrun) if torchrun.exists() else shutil.which("torchrun"), "--standalone",
                           "--nproc_per_node=2", str(script)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("steps 60") == 2 and "terminate called" not in done.stderr
    assert load_checkpoint(run / LATEST)["world_size"] == 2
