"""The online loop end to end: bootstrapping, checkpoints, exact resume (also after SIGKILL), learning."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from rlkit.runfiles.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rlkit.config import build_run_config
from rlkit.training.loops import build_agent, make_vector_env, train_online
from rlkit.experience.replay import ReplayBuffer
from rlkit.runfiles.runs import LATEST


class CounterEnv(gym.Env):
    """obs = [position]; +1 per step, reward 1. Terminates on reaching ``terminal_at`` (if set);
    TimeLimit truncates otherwise. Makes the true final observation easy to recognise."""

    def __init__(self, terminal_at: int | None = None):
        self.observation_space = gym.spaces.Box(0, 100, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.terminal_at = terminal_at
        self.position = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.position = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action):
        self.position += 1
        terminated = self.terminal_at is not None and self.position >= self.terminal_at
        return np.array([self.position], dtype=np.float32), 1.0, terminated, False, {}


gym.register("rlkit-test/Counter-v0", entry_point=CounterEnv, max_episode_steps=4)


def _cfg(data, tmp_overrides=()):
    return build_run_config(data, list(tmp_overrides))


def _metrics(run_dir):
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("time", None)
        r.pop("sps", None)
    return records


@pytest.mark.parametrize("terminal_at, expected_discount_at_end", [(3, 0.0), (None, 0.9)])
def test_terminated_cuts_and_truncated_bootstraps_from_final_obs(tmp_path, cartpole_data, terminal_at, expected_discount_at_end):
    data = dict(cartpole_data)
    data["env"] = {"id": "rlkit-test/Counter-v0", "num_envs": 2, "kwargs": {"terminal_at": terminal_at}}
    data["agent"] = {**data["agent"], "gamma": 0.9}
    data["train"] = {**data["train"], "total_steps": 60, "learning_starts": 10_000, "eval_every": 0,
                     "eval_episodes": 1, "checkpoint_every": 0}
    cfg = _cfg(data)
    train_online(cfg, tmp_path)
    state = load_checkpoint(tmp_path / LATEST)
    envs = make_vector_env(cfg.env)
    buffer = ReplayBuffer.from_spaces(envs.single_observation_space, envs.single_action_space, capacity=5000,
                                      num_envs=2, gamma=0.9)
    buffer.load_state_dict(state["buffer"])
    batch = buffer.sample(512)
    obs, next_obs = batch.obs[:, 0], batch.next_obs[:, 0]
    last = terminal_at if terminal_at is not None else 4  # the episode's final observation
    assert set(obs.tolist()) == set(float(i) for i in range(last))  # never starts from a final obs
    assert torch.all(next_obs == obs + 1)  # no transition crosses into the next episode's reset obs
    at_end = next_obs == last
    assert at_end.any() and (~at_end).any()
    assert torch.allclose(batch.discounts[at_end], torch.tensor(expected_discount_at_end))
    assert torch.allclose(batch.discounts[~at_end], torch.tensor(0.9))
    assert torch.all(batch.rewards == 1.0)


def test_checkpoint_round_trip_gives_same_actions(tmp_path, cartpole_data):
    cfg = _cfg(cartpole_data, ["train.total_steps=600"])
    train_online(cfg, tmp_path)
    envs = make_vector_env(cfg.env)
    trained = build_agent(cfg, envs.single_observation_space, envs.single_action_space, torch.device("cpu"))
    trained.load_state_dict(load_checkpoint(tmp_path / LATEST)["agent"])
    fresh = build_agent(cfg, envs.single_observation_space, envs.single_action_space, torch.device("cpu"))
    obs = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    with torch.no_grad():  # training changed the network (greedy actions alone may coincide by chance)
        assert not torch.equal(fresh.q_net(torch.as_tensor(obs)), trained.q_net(torch.as_tensor(obs)))
    fresh.load_state_dict(load_checkpoint(tmp_path / LATEST)["agent"])
    np.testing.assert_array_equal(fresh.predict(obs, deterministic=True), trained.predict(obs, deterministic=True))
    with torch.no_grad():
        assert torch.equal(fresh.q_net(torch.as_tensor(obs)), trained.q_net(torch.as_tensor(obs)))
    assert fresh.env_steps == trained.env_steps > 0 and fresh.updates == trained.updates > 0


def test_checkpoint_is_atomic_and_never_unpickles_code(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"x": torch.arange(3)})
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(3))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format": 1, "evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not an rlkit checkpoint.*cannot be loaded safely"):
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "cut.pt")


def test_resume_continues_the_same_run(tmp_path, cartpole_data):
    data = {**cartpole_data, "train": {**cartpole_data["train"], "eval_every": 400}}
    full = tmp_path / "full"
    train_online(_cfg(data), full)
    part = tmp_path / "part"
    train_online(_cfg(data, ["train.total_steps=800"]), part)
    train_online(_cfg(data), part, resume=True)
    assert _metrics(part) == _metrics(full)


def _cli(*args, cwd):
    return [sys.executable, "-m", "rlkit.cli", "train", *args]


def test_resume_after_sigkill_between_checkpoints(tmp_path, cartpole_data):
    data = {**cartpole_data, "train": {**cartpole_data["train"], "total_steps": 2400, "eval_every": 400}}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(_cli(str(config), f"--run-dir={tmp_path / 'full'}", cwd=tmp_path), check=True, env=env,
                   capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(str(config), f"--run-dir={killed}", cwd=tmp_path), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:  # kill once a checkpoint exists and the run has moved past it (between checkpoints)
        while time.time() < deadline:
            if (killed / LATEST).exists() and (killed / "metrics.jsonl").exists():
                steps = [json.loads(l)["step"] for l in (killed / "metrics.jsonl").read_text().splitlines() if l.endswith("}")]
                ckpt_step = load_checkpoint(killed / LATEST)["step"] if (killed / LATEST).exists() else 0
                if steps and max(steps) > ckpt_step >= 400 and max(steps) % 400 != 0:
                    break
            if proc.poll() is not None:
                pytest.fail("run finished before it could be killed")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    resumed = subprocess.run(_cli("--resume", str(killed), cwd=tmp_path), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert _metrics(killed) == _metrics(tmp_path / "full")
    assert (killed / "metrics.orphaned.jsonl").exists()  # what the killed run wrote after its checkpoint is kept


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_saves_a_checkpoint(tmp_path, cartpole_data, sig, code):
    """SIGINT/SIGTERM: checkpoint, then exit 128 + signal (a stopped run must not look finished)."""
    data = {**cartpole_data, "train": {**cartpole_data["train"], "total_steps": 200_000, "checkpoint_every": 0}}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(data))
    proc = subprocess.Popen(_cli(str(config), f"--run-dir={tmp_path / 'r'}", cwd=tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = tmp_path / "r" / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
        time.sleep(0.05)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == code, out
    assert "checkpoint saved" in out and "Traceback" not in out and sig.name in out
    assert load_checkpoint(tmp_path / "r" / LATEST)["step"] > 0


def test_dqn_learns_cartpole(tmp_path):
    """A short learning check with the shipped config: far above random (~22) within 10k steps."""
    cfg = build_run_config(yaml.safe_load((Path(__file__).parent.parent / "configs" / "dqn_cartpole.yaml").read_text()),
                           ["train.total_steps=10000", "train.eval_every=2500", "log.progress=false",
                            "log.tensorboard=false", "log.plot=false", "train.save_buffer=false"])
    summary = train_online(cfg, tmp_path)
    evals = [r["return_mean"] for r in _metrics(tmp_path) if r["kind"] == "eval"]
    assert max(evals) >= 200, evals
    assert summary["steps"] == 10000
