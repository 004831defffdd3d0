"""Stable-Baselines3 through the rlkit CLI (issue 20): `rlkit train` with `agent.name: sb3.PPO` writes the same run
directory, records and checkpoints as rlkit's agents, resumes, evaluates and plots; bad input is one line."""

import json
import sys

import gymnasium as gym
import numpy as np
import pytest
import yaml

from rlkit.cli import main

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

COMMON_TRAIN_KEYS = {"kind", "step", "time", "updates", "sps"}


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _keys(records, kind):
    return {frozenset(r) for r in records if r["kind"] == kind}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny rlkit DQN run and a tiny SB3 PPO run of CartPole, through the CLI."""
    root = tmp_path_factory.mktemp("sb3")
    log = {"progress": False, "log_every": 64}
    dqn = _write(root / "dqn.yaml", {
        "env": {"id": "CartPole-v1"}, "agent": {"name": "dqn", "hidden": [16]},
        "train": {"total_steps": 256, "learning_starts": 64, "train_every": 4, "batch_size": 16,
                  "replay": {"capacity": 1000}, "eval_every": 128, "eval_episodes": 2, "checkpoint_every": 128},
        "log": log})
    ppo = _write(root / "ppo.yaml", {
        "env": {"id": "CartPole-v1", "num_envs": 2},
        "agent": {"name": "sb3.PPO", "policy": "MlpPolicy",
                  "kwargs": {"n_steps": 32, "batch_size": 32, "n_epochs": 2, "policy_kwargs": {"net_arch": [16]}}},
        "train": {"total_steps": 256, "eval_every": 128, "eval_episodes": 2, "checkpoint_every": 128},
        "log": log})
    assert main(["train", dqn, f"--run-dir={root / 'dqn'}"]) == 0
    assert main(["train", ppo, f"--run-dir={root / 'ppo'}"]) == 0
    return root / "dqn", root / "ppo"


def test_sb3_run_writes_rlkits_run_directory_with_the_same_record_keys(runs):
    dqn, ppo = runs
    for name in ("config.yaml", "metrics.jsonl", "learning_curve.png", "checkpoints/latest.pt", "checkpoints/best.pt",
                 "checkpoints/latest.zip", "checkpoints/best.zip"):
        assert (ppo / name).is_file(), name
    assert list((ppo / "tb").iterdir()), "no TensorBoard events"
    assert yaml.safe_load((ppo / "config.yaml").read_text())["agent"]["name"] == "sb3.PPO"
    ours, theirs = _records(dqn), _records(ppo)
    assert {r["kind"] for r in theirs} == {r["kind"] for r in ours} == {"train", "episode", "eval"}
    for kind in ("episode", "eval"):  # identical keys, record for record
        assert _keys(theirs, kind) == _keys(ours, kind), kind
    assert all(COMMON_TRAIN_KEYS <= set(r) for r in theirs + ours if r["kind"] == "train")
    trained = [r for r in theirs if r["kind"] == "train" and r["updates"] > 0]
    assert trained and {"loss", "lr", "entropy_loss"} <= set(trained[-1])  # SB3's train/* under rlkit's names
    assert [r["step"] for r in theirs if r["kind"] == "eval"] == [0, 128, 256]
    from stable_baselines3 import PPO

    assert PPO.load(ppo / "checkpoints" / "latest.zip").num_timesteps == 256  # SB3's own file


def test_tensorboard_tags_match(runs):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = []
    for run in runs:
        acc = EventAccumulator(str(run / "tb"))
        acc.Reload()
        tags.append(set(acc.Tags()["scalars"]))
    for tag in ("episode/return", "episode/length", "eval/return_mean", "train/updates", "train/sps", "train/loss"):
        assert tag in tags[0] and tag in tags[1], tag


def test_resume_continues_the_step_counter_metrics_and_best(runs, capsys):
    _, ppo = runs
    before = _records(ppo)
    best_before = max(r["return_mean"] for r in before if r["kind"] == "eval")
    assert main(["train", "--resume", str(ppo), "train.total_steps=448"]) == 0
    assert "resumed" in capsys.readouterr().out
    after = _records(ppo)
    assert after[:len(before)] == before  # the saved records are kept as they were
    new = after[len(before):]
    assert new and min(r["step"] for r in new) >= 256
    for kind in ("train", "eval"):
        steps = [r["step"] for r in after if r["kind"] == kind]
        assert steps == sorted(set(steps)), (kind, steps)  # strictly increasing: nothing written twice
    episodes = [r["step"] for r in after if r["kind"] == "episode"]
    assert episodes == sorted(episodes)
    assert [r["step"] for r in new if r["kind"] == "eval"] == [384, 448]
    assert len({json.dumps(r, sort_keys=True) for r in after}) == len(after)
    from stable_baselines3 import PPO

    assert PPO.load(ppo / "checkpoints" / "latest.zip").num_timesteps == 448
    import torch

    best = torch.load(ppo / "checkpoints" / "best.pt", weights_only=True)
    evals = [r for r in after if r["kind"] == "eval"]
    top = max(evals, key=lambda r: r["return_mean"])  # the first evaluation that reached the best mean
    assert best["step"] == top["step"] and top["return_mean"] >= best_before


def test_eval_and_plot_of_an_sb3_run(runs, tmp_path, capsys):
    dqn, ppo = runs
    assert main(["eval", str(ppo), "--episodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "sb3.PPO" in out and "over 3 episodes" in out
    assert len(json.loads((ppo / "eval.json").read_text())["returns"]) == 3
    assert main(["plot", str(dqn), str(ppo), "--out", str(tmp_path / "both.png")]) == 0
    assert (tmp_path / "both.png").stat().st_size > 10_000
    assert main(["export", str(ppo), str(tmp_path / "export")]) == 2  # one line: how to load it instead
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rlkit eval" in err[0] and "PPO.load" in err[0]


def test_dict_observations_train_with_multi_input_policy(tmp_path):
    config = _write(tmp_path / "sac.yaml", {
        "env": {"id": "rlkit/PointMazeU-v0"},
        "agent": {"name": "sb3.SAC", "policy": "MultiInputPolicy",
                  "kwargs": {"learning_starts": 50, "batch_size": 32, "buffer_size": 1000,
                             "policy_kwargs": {"net_arch": [32, 32]}}},
        "train": {"total_steps": 200, "eval_every": 0, "eval_episodes": 1, "checkpoint_every": 100},
        "log": {"progress": False, "log_every": 100, "tensorboard": False, "plot": False}})
    run = tmp_path / "run"
    assert main(["train", config, f"--run-dir={run}"]) == 0
    records = _records(run)
    assert [r["step"] for r in records if r["kind"] == "eval"] == [200]
    assert "success_rate" in records[-1]  # rlkit's evaluation of a goal env
    trained = [r for r in records if r["kind"] == "train" and r["updates"] > 0]
    assert trained and {"actor_loss", "critic_loss"} <= set(trained[-1])
    import torch

    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["agent"]["replay_buffer"].numel() > 0


class MaskedChoice(gym.Env):
    """Ten steps; each step two of four actions are allowed (its mask), and any other action is an error."""

    def __init__(self, dict_obs: bool = False):
        self.dict_obs = dict_obs
        inner = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
        self.observation_space = (gym.spaces.Dict({"obs": inner, "action_mask": gym.spaces.MultiBinary(4)})
                                  if dict_obs else inner)
        self.action_space = gym.spaces.Discrete(4)

    def _obs(self):
        self.mask = np.zeros(4, dtype=np.int8)
        self.mask[self.np_random.choice(4, 2, replace=False)] = 1
        obs = self.mask.astype(np.float32)
        return {"obs": obs, "action_mask": self.mask.copy()} if self.dict_obs else obs

    def action_masks(self):
        return self.mask.astype(bool)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        if not self.mask[int(action)]:
            raise ValueError(f"masked action {action} taken (mask {self.mask})")
        self.t += 1
        return self._obs(), 1.0, self.t >= 10, False, {}


if "rlkit_test/MaskedChoice-v0" not in gym.registry:
    gym.register("rlkit_test/MaskedChoice-v0", entry_point=MaskedChoice)


@pytest.mark.parametrize("dict_obs", [False, True], ids=["action_masks-method", "action_mask-key"])
def test_maskable_ppo_never_takes_a_masked_action(tmp_path, dict_obs):
    config = _write(tmp_path / "masked.yaml", {
        "env": {"id": "rlkit_test/MaskedChoice-v0", "num_envs": 2, "kwargs": {"dict_obs": dict_obs}},
        "agent": {"name": "sb3_contrib.MaskablePPO", "kwargs": {"n_steps": 32, "batch_size": 32, "n_epochs": 1}},
        "train": {"total_steps": 128, "eval_every": 64, "eval_episodes": 3, "eval_epsilon": 0.5},
        "log": {"progress": False, "log_every": 64, "tensorboard": False, "plot": False}})
    run = tmp_path / "run"
    assert main(["train", config, f"--run-dir={run}"]) == 0  # the env raises on a masked action
    evals = [r for r in _records(run) if r["kind"] == "eval"]
    assert evals and all(r["returns"] == [10.0] * 3 for r in evals)
    assert main(["eval", str(run), "--episodes", "2", "--epsilon", "1.0"]) == 0


BAD = {
    "unknown algorithm": (["agent.name=sb3.PPOO"], "sb3.PPO"),
    "unknown kwarg": (["agent.kwargs.n_stepz=64"], "n_steps"),
    "kwarg SB3 rejects": (["agent.kwargs.n_steps=1"], "agent.kwargs"),
    "kwarg of the wrong type": (["agent.kwargs.learning_rate=fast"], "agent.kwargs"),
    "unknown policy": (["agent.policy=MlpPolicyy"], "MlpPolicy"),
    "kwarg rlkit sets": (["agent.kwargs.seed=3"], "seed"),
    "rlkit's own train setting": (["train.batch_size=32"], "agent.kwargs.batch_size"),
    "masks the env lacks": (["agent.name=sb3_contrib.MaskablePPO"], "action masks"),
    "unknown class name": (["agent.kwargs.policy_kwargs={activation_fn: Relu}"], "ReLU"),
    "action space the algorithm lacks": (["agent.name=sb3.SAC"], "action spaces"),
    "setting SB3 refuses while learning": (
        ["agent.name=sb3.SAC", "env.id=rlkit/PointMazeU-v0",
         "agent.kwargs={replay_buffer_class: HerReplayBuffer, learning_starts: 10, buffer_size: 1000}"],
        "Unable to sample before the end of the first episode"),
    "vectorization SB3 runs do not use": (["env.vectorization=async"], "DummyVecEnv"),
    "two learning_starts": (["agent.name=sb3.DQN", "train.learning_starts=50", "agent.kwargs.learning_starts=60"],
                            "disagree"),
}


@pytest.mark.parametrize("overrides,expected", list(BAD.values()), ids=list(BAD))
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, overrides, expected):
    run = tmp_path / "run"
    code = main(["train", "--agent", "sb3.PPO", *overrides, "log.progress=false", f"--run-dir={run}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("rlkit: error:"), err
    assert expected in err[0], err[0]
    assert not run.exists() or not any(p.name != ".rlkit.lock" for p in run.iterdir())


@pytest.mark.parametrize("module", ["stable_baselines3", "sb3_contrib"])
def test_sb3_missing_names_the_extra(tmp_path, capsys, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    name = "sb3.PPO" if module == "stable_baselines3" else "sb3_contrib.MaskablePPO"
    assert main(["train", "--agent", name, "log.progress=false", f"--run-dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'rlkit-toolkit[sb3]'" in err[0], err


def test_python_api_trains_an_sb3_agent(tmp_path):
    import rlkit
    from stable_baselines3 import A2C

    run = rlkit.train({"env": {"id": "CartPole-v1"}, "agent": {"name": "sb3.A2C", "kwargs": {"n_steps": 8}},
                       "train": {"total_steps": 64, "eval_every": 0, "eval_episodes": 1}},
                      run_dir=tmp_path / "run", log__progress=False, log__tensorboard=False, log__plot=False)
    assert isinstance(run.agent, A2C) and run.agent.num_timesteps == run.summary["steps"] == 64
    assert [r["step"] for r in run.metrics("eval")] == [64]
    with pytest.raises(rlkit.errors.ConfigError, match="rlkit eval"):
        rlkit.load(run.run_dir)


def test_maskable_ppo_plays_a_board_game_and_eval_pits_it(tmp_path, capsys):
    """rlkit's two-player games carry their mask in the observation ({"observation", "action_mask"})."""
    pytest.importorskip("pettingzoo")
    run = tmp_path / "ttt"
    assert main(["train", "--agent", "sb3_contrib.MaskablePPO", "--env", "rlkit/TicTacToe-v0",
                 "agent.kwargs={n_steps: 32, batch_size: 32, n_epochs: 1}", "train.total_steps=64",
                 "train.eval_every=0", "train.eval_episodes=4", "log.progress=false", "log.tensorboard=false",
                 "log.plot=false", f"--run-dir={run}"]) == 0
    assert "win_rate" in _records(run)[-1]
    assert main(["eval", str(run), "--games", "6", "--opponent", "heuristic"]) == 0
    assert "against heuristic" in capsys.readouterr().out

    # a snapshot pool (rlkit's collector keeps it) is refused in an SB3 run, not silently replaced by random games
    assert main(["train", "--agent", "sb3_contrib.MaskablePPO", "--env", "rlkit/TicTacToe-v0",
                 "env.kwargs={opponent: selfplay}", "train.total_steps=64", f"--run-dir={tmp_path / 'pool'}"]) == 2
    assert "SB3 runs do not keep" in capsys.readouterr().err and not (tmp_path / "pool").exists()

    # SB3 against rlkit and rlkit against SB3: --opponent takes either kind of run
    dqn = tmp_path / "dqn"
    assert main(["train", "--agent", "dqn", "--env", "rlkit/TicTacToe-v0", "train.total_steps=64",
                 "train.learning_starts=32", "train.eval_every=0", "log.progress=false", "log.tensorboard=false",
                 "log.plot=false", f"--run-dir={dqn}"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--games", "6", "--opponent", str(dqn)]) == 0
    assert f"against {dqn}" in capsys.readouterr().out
    assert main(["eval", str(dqn), "--games", "6", "--opponent", str(run)]) == 0
    assert f"against {run}" in capsys.readouterr().out
    assert main(["eval", str(run), "--games", "6", "--opponent", str(tmp_path / "nothing")]) == 2


def test_damaged_sb3_checkpoint_is_one_line(runs, tmp_path, capsys):
    import shutil

    import torch

    run = tmp_path / "copy"
    shutil.copytree(runs[1], run)
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    state["agent"]["sb3_zip"] = torch.zeros(64, dtype=torch.uint8)
    torch.save(state, run / "checkpoints" / "latest.pt")
    for argv in (["train", "--resume", str(run), "train.total_steps=4096"],
                 ["eval", str(run), "--checkpoint", "latest"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "SB3 model" in err[0] and "latest.pt" in err[0], err
