"""rlkit dataset make-reference (rlkit.training.reference): D4RL-style datasets from committed policies and from a
training run's replay, with D4RL's normalised score."""

from __future__ import annotations

import numpy as np
import pytest

from rlkit.cli import main
from rlkit.experience.datasets import load_dataset
from rlkit.training import reference as ref_module
from rlkit.training.loops import train
from rlkit.config import build_run_config


@pytest.fixture
def small_run(tmp_path_factory):
    """A 300-step SAC Pendulum run with its replay saved, and its export as a 'policy'."""
    root = tmp_path_factory.mktemp("ref")
    cfg = build_run_config({"seed": 1, "env": {"id": "Pendulum-v1"}, "agent": {"name": "sac", "random_steps": 100},
                            "train": {"total_steps": 300, "learning_starts": 100, "eval_every": 0, "eval_episodes": 1,
                                      "checkpoint_every": 300, "snapshot_every": 100},
                            "log": {"progress": False, "tensorboard": False, "plot": False}})
    train(cfg, root / "run")
    return root


@pytest.fixture
def registry(small_run, monkeypatch, tmp_path):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    pretrained = tmp_path / "pretrained"
    (pretrained / "reference").mkdir(parents=True)
    (pretrained / "reference" / "pendulum-medium").symlink_to(small_run / "run" / "snapshots" / "step_200")
    monkeypatch.setattr(ref_module, "pretrained_dir", lambda: pretrained)
    monkeypatch.setattr(ref_module, "REFERENCES", {})
    common = dict(env_id="Pendulum-v1", random_return=-1200.0, expert_return=-150.0)
    ref_module.register("pendulum-medium-v0", ref_module.Reference(kind="policy", level="medium",
                                                                   policy="pendulum-medium", steps=500, **common))
    ref_module.register("pendulum-medium-replay-v0", ref_module.Reference(
        kind="replay", level="medium-replay", config="sac_pendulum.yaml", until_step=200, seed=1, **common))
    return small_run


def test_policy_dataset_holds_whole_episodes_of_at_least_the_budget_with_its_score(registry, capsys):
    assert main(["dataset", "make-reference", "pendulum-medium-v0"]) == 0
    out = capsys.readouterr().out
    assert "wrote rlkit/pendulum-medium-v0" in out and "normalised" in out
    data = load_dataset("rlkit/pendulum-medium-v0")
    episodes = list(data.episodes)
    assert sum(len(e.actions) for e in episodes) >= 500 and all(len(e.actions) == 200 for e in episodes)
    meta = data.metadata["rlkit"]
    assert meta["level"] == "medium" and meta["expert_return"] == -150.0 and meta["env_id"] == "Pendulum-v1"
    ref = ref_module.reference("pendulum-medium-v0")
    assert ref.normalized(-1200.0) == 0.0 and ref.normalized(-150.0) == 100.0
    # made again only with --overwrite
    assert main(["dataset", "make-reference", "pendulum-medium-v0"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_medium_replay_is_the_runs_replay_up_to_the_medium_step(registry, capsys):
    run = registry / "run"
    assert main(["dataset", "make-reference", "pendulum-medium-replay-v0", "--run", str(run)]) == 0
    episodes = list(load_dataset("rlkit/pendulum-medium-replay-v0").episodes)
    assert sum(len(e.actions) for e in episodes) == 200  # the first 200 steps: one Pendulum episode
    # the same transitions as the run's own replay rows
    from rlkit.training.recording import dataset_from_run

    dataset_from_run(run, "rlkit/whole-replay-v0")
    whole = list(load_dataset("rlkit/whole-replay-v0").episodes)
    assert (whole[0].actions == episodes[0].actions).all() and (whole[0].rewards == episodes[0].rewards).all()


def test_listing_and_unknown_names(registry, capsys):
    assert main(["dataset", "make-reference", "--list"]) == 0
    out = capsys.readouterr().out
    assert "pendulum-medium-v0" in out and "replay of configs/sac_pendulum.yaml" in out
    assert main(["dataset", "make-reference", "hopper-nope-v0"]) == 2
    err = capsys.readouterr().err
    assert "no reference dataset named 'hopper-nope-v0'" in err and "Traceback" not in err


def test_the_shipped_registry_names_policies_that_exist():
    for name, ref in ref_module.REFERENCES.items():
        if ref.kind == "policy":
            assert (ref_module.pretrained_dir() / "reference" / ref.policy / "model.safetensors").is_file(), name
        else:
            assert (ref_module.pretrained_dir().parent / "configs" / ref.config).is_file(), name
        assert ref.expert_return > ref.random_return


def test_reference_scores_are_minaris_keys_and_offline_runs_log_the_normalised_score(registry, tmp_path):
    import json

    import minari

    assert main(["dataset", "make-reference", "pendulum-medium-v0", "--steps", "200"]) == 0
    data = load_dataset("rlkit/pendulum-medium-v0")
    assert data.reference_scores == (-1200.0, -150.0)
    foreign = minari.load_dataset("rlkit/pendulum-medium-v0")
    assert float(minari.get_normalized_score(foreign, np.array([-150.0]))[0]) == 1.0  # Minari reads the same keys
    cfg = tmp_path / "bc.yaml"
    cfg.write_text("env: {id: Pendulum-v1}\noffline: {dataset: rlkit/pendulum-medium-v0}\nagent: {name: bc}\n"
                   "train: {total_steps: 10, eval_every: 10, eval_episodes: 1}\n"
                   "log: {progress: false, tensorboard: false, plot: false}\n")
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run")]) == 0
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in line]
    for record in evals:
        assert record["normalized_score"] == pytest.approx(100 * (record["return_mean"] + 1200) / 1050)


def test_reference_scores_must_be_two_different_finite_returns(tmp_path, monkeypatch):
    import gymnasium as gym
    import numpy as np

    from rlkit.errors import DatasetError
    from rlkit.experience.datasets import Episode, write_dataset

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    space = gym.spaces.Box(-1, 1, (1,), np.float32)
    episode = Episode(np.zeros((3, 1), np.float32), np.zeros((2, 1), np.float32), np.zeros(2, np.float32),
                      np.zeros(2, bool), np.array([False, True]))
    for bad in ((1.0, 1.0), (0.0, float("nan"))):
        with pytest.raises(DatasetError, match="reference scores"):
            write_dataset("mine/scores-v0", [episode], space, space, ref_scores=bad)
    assert not (tmp_path / "mine" / "scores-v0").exists()


def test_policy_datasets_sample_the_trained_policy_not_its_warm_up(registry, monkeypatch):
    """A loaded policy's clock starts at 0: explore=True would act uniformly for SAC's random_steps (the first
    reference datasets came out as random play). The rollout acts past every warm-up schedule."""
    from rlkit.agents.sac import SAC

    seen = []
    original = SAC.act

    def act(self, step, explore, epsilon=None):
        seen.append((explore, self.env_steps >= self.cfg.random_steps))
        return original(self, step, explore, epsilon)

    monkeypatch.setattr(SAC, "act", act)
    assert main(["dataset", "make-reference", "pendulum-medium-v0", "--steps", "200"]) == 0
    assert seen and all(explore and past_warm_up for explore, past_warm_up in seen)
