"""The Python API: rlkit.train (configs as dicts, paths and shipped names; overrides in both forms; the Run
object), rlkit.load (run directories and `rlkit export` directories), Policy.predict on single observations
and batches (Discrete, Box, Dict) and evaluate, and the typed errors of bad inputs. Tiny budgets."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import yaml

import rlkit
from rlkit.api import Policy, Run, make_config, override_list
from rlkit.cli import main
from rlkit.config import RunConfig
from rlkit.errors import CheckpointError, ConfigError, RunDirError


def _dqn_data():
    return {
        "seed": 1,
        "env": {"id": "CartPole-v1", "num_envs": 2},
        "agent": {"name": "dqn", "hidden": [16], "target_update_every": 50, "eps_decay_steps": 200},
        "train": {"total_steps": 300, "learning_starts": 100, "train_every": 4, "batch_size": 16,
                  "replay": {"capacity": 1000}, "eval_every": 150, "eval_episodes": 2, "checkpoint_every": 300},
        "log": {"progress": False, "tensorboard": False, "log_every": 100, "plot": False},
    }


@pytest.fixture(scope="module")
def dqn_run(tmp_path_factory):
    return rlkit.train(_dqn_data(), run_dir=tmp_path_factory.mktemp("api") / "dqn")


@pytest.fixture(scope="module")
def mpo_run(tmp_path_factory):
    data = {
        "env": {"id": "Pendulum-v1"},
        "agent": {"name": "mpo", "policy_hidden": [16], "critic_hidden": [16], "num_samples": 4},
        "train": {"total_steps": 150, "learning_starts": 100, "batch_size": 16, "replay": {"capacity": 1000},
                  "eval_every": 150, "eval_episodes": 1, "checkpoint_every": 150},
        "log": {"progress": False, "tensorboard": False, "plot": False},
    }
    return rlkit.train(data, run_dir=tmp_path_factory.mktemp("api") / "mpo")


# --------------------------------------------------------------------------------------
# rlkit.train and the Run object
# --------------------------------------------------------------------------------------


def test_train_from_a_dict_returns_a_run(dqn_run):
    run = dqn_run
    assert isinstance(run, Run) and run.run_dir.is_dir()
    assert (run.run_dir / "config.yaml").is_file() and (run.run_dir / "checkpoints" / "latest.pt").is_file()
    assert run.summary["steps"] in (300, 301) and run.summary["run_dir"] == str(run.run_dir)
    assert run.summary["final_eval"]["return_mean"] > 0 and not run.summary["interrupted"]
    assert isinstance(run.config, RunConfig) and run.config.seed == 1 and run.config.agent.hidden == [16]
    assert isinstance(run.agent, Policy) and run.agent.source.name == "latest.pt"
    assert run.agent.config.env.id == "CartPole-v1" and isinstance(run.agent.action_space, gym.spaces.Discrete)
    kinds = {r["kind"] for r in run.metrics()}
    assert {"train", "eval"} <= kinds and len(run.metrics("eval")) == 3  # steps 0, 150 and 300 (2 envs: +1)
    assert run.plot(run.run_dir / "curve.png").stat().st_size > 0
    with pytest.raises(AttributeError):  # frozen
        run.summary = {}


def test_train_from_a_path_with_overrides_in_both_forms(tmp_path):
    path = tmp_path / "my_cartpole.yaml"
    data = _dqn_data()
    path.write_text(yaml.safe_dump(data))
    run = rlkit.train(path, seed=4, overrides={"train.eval_every": 0, "agent.hidden": [8, 8]},
                      train__total_steps=120, train__eval_episodes=1, log__root=str(tmp_path / "runs"))
    assert run.summary["steps"] in (120, 121)  # 2 envs: the last step may overshoot
    assert (run.config.seed, run.config.train.eval_every, run.config.agent.hidden) == (4, 0, [8, 8])
    # named as the CLI names runs: <config>-<agent>-s<seed>-<timestamp>, under log.root
    assert run.run_dir.parent == tmp_path / "runs" and run.run_dir.name.startswith("my_cartpole-dqn-s4-")
    assert (run.run_dir / "source.txt").read_text().strip() == "my_cartpole"
    written = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert written["train"]["total_steps"] == 120 and written["agent"]["hidden"] == [8, 8]

    # overrides as "key=value" strings parse as YAML, as on the command line; kwargs win over them
    cfg, source = make_config(path, override_list(["agent.hidden=[4]", "train.total_steps=7"], train__total_steps=9))
    assert (cfg.agent.hidden, cfg.train.total_steps, source) == ([4], 9, "my_cartpole")


def test_config_forms_resolve_to_the_same_config(tmp_path, dqn_run):
    from rlkit.config import configs_dir, load_config

    shipped, source = make_config("dqn_cartpole")
    assert shipped == load_config(configs_dir() / "dqn_cartpole.yaml") and source == "dqn_cartpole"
    assert make_config(None)[0] == shipped
    again, source = make_config(dqn_run.config, override_list(train__total_steps=5))
    assert again.train.total_steps == 5 and again.agent == dqn_run.config.agent and source is None
    # Python values stay what they are: a string "true" is not a boolean
    with pytest.raises(ConfigError, match="expected true/false"):
        make_config(_dqn_data(), override_list({"agent.double": "true"}))
    assert make_config(_dqn_data(), override_list(["agent.double=true"]))[0].agent.double is True


def test_resume_continues_the_run(tmp_path):
    run_dir = tmp_path / "run"
    data = _dqn_data()
    data["train"].update(total_steps=120, eval_every=0, eval_episodes=1)
    rlkit.train(data, run_dir=run_dir)
    run = rlkit.train(resume=True, run_dir=run_dir, train__total_steps=200)
    assert run.summary["steps"] in (200, 201) and run.config.train.total_steps == 200
    with pytest.raises(ConfigError, match="cannot change on resume: agent.hidden"):
        rlkit.train(resume=True, run_dir=run_dir, agent__hidden=[32])
    with pytest.raises(ConfigError, match="needs run_dir"):
        rlkit.train(resume=True)


def test_bad_training_inputs_are_typed_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'train.total_stepz'. Did you mean 'total_steps'"):
        rlkit.train(_dqn_data(), run_dir=tmp_path / "a", train__total_stepz=10)
    with pytest.raises(ConfigError, match="unknown key 'agent.hiden'"):
        rlkit.train(_dqn_data(), run_dir=tmp_path / "a", overrides={"agent.hiden": [8]})
    with pytest.raises(ConfigError, match="unknown top-level key 'sede'"):
        rlkit.train(_dqn_data(), run_dir=tmp_path / "a", sede=1)
    with pytest.raises(ConfigError, match="Did you mean 'dqn_cartpole'"):
        rlkit.train("dqn_cartpol")
    with pytest.raises(ConfigError, match="does not exist"):
        rlkit.train(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="must be a string key.sub=value"):
        rlkit.train(_dqn_data(), overrides=["train.total_steps"])
    with pytest.raises(ConfigError, match="must be a finite number"):
        rlkit.train(_dqn_data(), agent__lr=float("nan"))
    with pytest.raises(ConfigError, match="config must be"):
        rlkit.train(42)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty"):
        rlkit.train(_dqn_data(), run_dir=busy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # nothing was written


# --------------------------------------------------------------------------------------
# rlkit.load and Policy
# --------------------------------------------------------------------------------------


def test_load_a_run_and_predict_single_and_batch_discrete(dqn_run):
    policy = rlkit.load(dqn_run.run_dir)
    assert policy.source.name == "best.pt" and rlkit.load(dqn_run, checkpoint="latest").source.name == "latest.pt"
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    action = policy.predict(obs)
    assert np.shape(action) == () and env.action_space.contains(action)
    env.step(action)
    env.observation_space.seed(0)  # fixed samples: the same test every time
    batch = np.stack([env.observation_space.sample() for _ in range(5)])
    actions = policy.predict(batch)
    assert actions.shape == (5,)
    np.testing.assert_array_equal(actions, policy.agent.predict(batch, deterministic=True))
    assert [policy.predict(o) for o in batch] == list(actions)
    assert policy.predict(batch.tolist()).shape == (5,)  # lists (float64) are converted to the space's dtype
    assert policy.predict(batch, episode_start=np.ones(5, bool)).shape == (5,)
    assert policy.predict(batch, deterministic=False).shape == (5,)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        policy.predict(np.zeros(3))
    with pytest.raises(ValueError, match="episode_start has 2 entries for 5"):
        policy.predict(batch, episode_start=[True, False])
    result = policy.evaluate(episodes=2, seed=5)
    assert set(result) >= {"return_mean", "return_std", "length_mean", "returns"} and len(result["returns"]) == 2


def test_predict_single_and_batch_box(mpo_run):
    policy = rlkit.load(mpo_run.run_dir, device="auto")
    space = policy.action_space
    assert isinstance(space, gym.spaces.Box) and policy.observation_space.shape == (3,)
    policy.observation_space.seed(0)
    obs = policy.observation_space.sample()
    action = policy.predict(obs)
    assert action.shape == (1,) and space.contains(action)
    actions = policy.predict(np.stack([obs] * 4))
    assert actions.shape == (4, 1) and all(space.contains(a) for a in actions)
    np.testing.assert_allclose(actions, np.repeat(action[None], 4, axis=0), rtol=1e-5, atol=1e-6)
    steps = policy.agent.env_steps
    sampled = policy.predict(np.stack([obs] * 4), deterministic=False)  # acts as in training: samples
    assert sampled.shape == (4, 1) and all(space.contains(a) for a in sampled)
    assert policy.agent.env_steps == steps  # schedules follow the training loop's clock, not predict calls
    assert np.isfinite(policy.evaluate(episodes=1)["return_mean"])


def test_predict_dict_observations():
    from rlkit.agents import DQN

    obs_space = gym.spaces.Dict({"position": gym.spaces.Box(-1, 1, (3,), np.float32),
                                 "goal": gym.spaces.Box(-1, 1, (2,), np.float32)})
    cfg, _ = make_config(_dqn_data())
    agent = DQN(cfg.agent, obs_space, gym.spaces.Discrete(4))
    policy = Policy(agent, obs_space, gym.spaces.Discrete(4), cfg)
    obs_space.seed(0)
    single = obs_space.sample()
    assert np.shape(policy.predict(single)) == ()
    batch = {key: np.stack([value] * 6) for key, value in single.items()}
    actions = policy.predict(batch)
    assert actions.shape == (6,) and (actions == policy.predict(single)).all()
    with pytest.raises(ValueError, match="mixes single and batched"):
        policy.predict({"position": batch["position"], "goal": single["goal"]})
    with pytest.raises(ValueError, match="missing"):
        policy.predict({"position": single["position"]})
    with pytest.raises(ValueError, match="pass a dict"):
        policy.predict(np.zeros(5))


@pytest.mark.parametrize("agent", ["dqn", "mpo"])
def test_load_an_exported_directory(dqn_run, mpo_run, tmp_path, agent):
    run = {"dqn": dqn_run, "mpo": mpo_run}[agent]
    out = tmp_path / "exported"
    assert main(["export", str(run.run_dir), str(out)]) == 0
    exported, original = rlkit.load(out), rlkit.load(run.run_dir)
    assert exported.source.name == "model.safetensors" and exported.config == original.config
    exported.observation_space.seed(0)
    batch = np.stack([exported.observation_space.sample() for _ in range(8)])
    np.testing.assert_array_equal(exported.predict(batch), original.predict(batch))


def test_bad_load_inputs_are_typed_errors(dqn_run, tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        rlkit.load(tmp_path / "nope")
    with pytest.raises(RunDirError, match="not an rlkit run"):
        rlkit.load(tmp_path)
    with pytest.raises(RunDirError, match="is a file"):
        rlkit.load(dqn_run.run_dir / "config.yaml")
    with pytest.raises(ConfigError, match="'best' or 'latest'"):
        rlkit.load(dqn_run.run_dir, checkpoint="final")
    broken = tmp_path / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.yaml").write_text((dqn_run.run_dir / "config.yaml").read_text())
    (broken / "checkpoints" / "latest.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        rlkit.load(broken)


def test_import_rlkit_is_light():
    code = ("import sys, rlkit; from rlkit import train, load, Run, Policy; "
            "heavy = [m for m in ('torch', 'gymnasium', 'rlkit.agents', 'rlkit.training.loops') if m in sys.modules]; "
            "assert not heavy, heavy; print(rlkit.__version__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == rlkit.__version__
    assert {"train", "load", "Run", "Policy", "__version__"} <= set(dir(rlkit)) and set(rlkit.__all__) >= {"train"}
    with pytest.raises(AttributeError):
        rlkit.no_such_thing
