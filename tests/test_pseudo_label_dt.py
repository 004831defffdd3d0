"""scripts/pseudo_label_study.py --agent dt: the Decision Transformer arm of issue 21's pseudo-labelling study. The
DT runs with the reference sweep's config and scaled warm-up, BC keeps its earlier run names (so the first study's
runs are read again, not retrained), and the DT trains on an uncut pseudo-labelled dataset (the study's kind)."""

import argparse
import importlib.util
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlkit.cli import main
from rlkit.experience.datasets import Episode, load_dataset, write_dataset
from rlkit.training.pseudo_label import pseudo_label

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("pseudo_label_study", REPO / "scripts" / "pseudo_label_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(agent: str, steps: int = 2000) -> argparse.Namespace:
    return argparse.Namespace(agent=agent, reference=Path("/x/walker2d-medium-replay-v0"), steps=steps, episodes=10)


@pytest.mark.parametrize("name", ["hopper-medium-v0", "hopper-medium-replay-v0", "halfcheetah-medium-v0",
                                  "halfcheetah-medium-replay-v0", "walker2d-medium-v0", "walker2d-medium-replay-v0"])
def test_every_reference_dataset_has_its_dt_config(study, name):
    config, warmup = study.learner_args("dt", name, 2000)
    assert Path(config).is_file() and Path(config).name == "dt_" + name[:-3].replace("-", "_") + ".yaml"
    assert warmup == "agent.warmup_steps=400"  # a fifth of a short budget, as scripts/dt_reference_sweep.py


def test_warmup_is_the_papers_10k_at_long_budgets_and_bc_takes_no_override(study):
    assert study.learner_args("dt", "walker2d-medium-replay-v0", 100_000)[1] == "agent.warmup_steps=10000"
    assert study.learner_args("dt", "walker2d-medium-replay-v0", 3)[1] == "agent.warmup_steps=1"
    assert study.learner_args("bc", "walker2d-medium-replay-v0", 2000) == [
        str(REPO / "configs" / "bc_mujoco_reference.yaml")]


def test_a_dataset_without_a_dt_config_stops_with_its_name(study):
    with pytest.raises(SystemExit, match="no Decision Transformer config for walker2d-expert-v0"):
        study.learner_args("dt", "walker2d-expert-v0", 2000)


def test_bc_keeps_the_first_studys_run_names_and_the_dt_has_its_own(study):
    assert study.run_name("bc", "walker2d-medium-replay-v0", "pl", 3, 2000) == "walker2d-medium-replay-v0-pl-s3-2000"
    assert study.run_name("dt", "walker2d-medium-replay-v0", "pl", 3, 2000) == "walker2d-medium-replay-v0-dt-pl-s3-2000"


def test_dt_command_trains_the_given_dataset_with_the_sweeps_settings(study, tmp_path):
    cmd = study.train_cmd("pl/walker2d-medium-replay-pl10-s1-v0", "Walker2d-v5", 1, _args("dt"), tmp_path / "run")
    assert cmd[:4] == [sys.executable, "-m", "rlkit.cli", "train"]
    assert cmd[4] == str(REPO / "configs" / "dt_walker2d_medium_replay.yaml") and cmd[5] == "agent.warmup_steps=400"
    for item in ("offline.dataset=pl/walker2d-medium-replay-pl10-s1-v0", "env.id=Walker2d-v5",
                 "train.total_steps=2000", "train.eval_every=2000", "train.eval_episodes=10", "log.progress=false"):
        assert item in cmd
    assert cmd[cmd.index("--seed") + 1] == "1" and cmd[-1] == str(tmp_path / "run")


def test_the_dt_trains_on_an_uncut_pseudo_labelled_box_dataset(tmp_path, monkeypatch):
    """No --threshold on Box actions keeps every label, so no episode is cut and the DT's returns-to-go and timesteps
    stay whole (a cut dataset is refused: tests/test_pseudo_label.py)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = gym.make("Pendulum-v1")
    env.action_space.seed(0)
    episodes = []
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        observations, actions, rewards = [obs], [], []
        for _ in range(30):
            action = env.action_space.sample()
            obs, reward, *_ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
        episodes.append(Episode(np.array(observations), np.array(actions), np.array(rewards, np.float32),
                                np.zeros(30, bool), np.arange(30) == 29))
    write_dataset("test/pendulum-v0", episodes, env.observation_space, env.action_space, env_id="Pendulum-v1")
    env.close()
    _, summary = pseudo_label("test/pendulum-v0", "test/pendulum-pl-v0", labelled_fraction=0.5, steps=20, seed=0,
                              show_progress=False)
    assert summary["dropped_steps"] == 0
    data = load_dataset("test/pendulum-pl-v0")
    assert [len(ep) for ep in data.episodes] == [30] * 6
    run = tmp_path / "dt-run"
    assert main(["train", "--agent", "decision_transformer", "offline.dataset=test/pendulum-pl-v0", "env.id=null",
                 "agent.context_length=5", "agent.embed_dim=16", "agent.n_layers=1", "agent.max_timestep=40",
                 "agent.target_return=0", "agent.warmup_steps=1", "train.batch_size=4", "train.total_steps=3",
                 "train.checkpoint_every=3", "log.progress=false", "log.tensorboard=false",
                 f"--run-dir={run}"]) == 0
    assert (run / "checkpoints" / "latest.pt").is_file()
