"""Ray rollouts (train.rollouts, rlkit/training/ray_rollouts.py) on a local Ray with 2 CPUs: a DQN CartPole run with 2
actors trains and logs both actors' episodes, weights reach the actors, a killed actor is replaced, bad configs are
one line. Skipped where Ray is not installed (the ``ray`` extra), except the missing-Ray message itself."""

import json
import sys

import pytest
import torch

from rlkit.cli import main
from rlkit.config import build_run_config
from rlkit.errors import ConfigError

try:
    import ray
except ImportError:
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed (pip install 'rlkit-toolkit[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _data(cartpole_data, **rollouts):
    data = {**cartpole_data, "train": {**cartpole_data["train"], "total_steps": 3000, "learning_starts": 500,
                                       "train_every": 64, "gradient_steps": 8, "eval_every": 0,
                                       "checkpoint_every": 0}}
    data["train"]["rollouts"] = {"actors": 2, "steps_per_call": 16, "cpus_per_actor": 0.5, **rollouts}
    return data


def _episodes(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "episode"], records


@needs_ray
def test_dqn_with_two_actors_trains_and_logs_both(tmp_path, cartpole_data, local_ray):
    from rlkit.training.loops import train_online

    cfg = build_run_config(_data(cartpole_data), [], source="test")
    summary = train_online(cfg, tmp_path / "run")
    episodes, records = _episodes(tmp_path / "run")
    assert {r["actor"] for r in episodes} == {0, 1}
    assert 3000 <= summary["steps"] < 3000 + 2 * 2  # one row of 2 actors x 2 envs past the budget at most
    trains = [r for r in records if r["kind"] == "train"]
    assert trains and trains[-1]["updates"] > 0
    # env steps are the transitions stored: every finished episode's steps, plus the episodes still running
    assert sum(r["length"] for r in episodes) <= summary["steps"]


@needs_ray
def test_weights_reach_the_actors(cartpole_data, local_ray):
    from rlkit.training.build import build_agent, make_vector_env
    from rlkit.training.ray_rollouts import RayRollouts

    cfg = build_run_config(_data(cartpole_data, sync_every=1), [], source="test")
    envs = make_vector_env(cfg.env)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space, torch.device("cpu"))
    source = RayRollouts(cfg, envs.num_envs)
    try:
        step = source.step(agent)  # starts the actors: one row of 2 actors x 2 envs
        assert step.obs.shape == (4, 4) and source.num_envs == 4
        with torch.no_grad():
            for tensor in agent.acting_tensors().values():
                tensor.add_(0.5)
        agent.updates += 1  # as an update would: the next calls carry the new weights
        source._round(agent)  # takes the round in flight, sends the next one with the new weights
        source._round(agent)  # that round has run on every actor
        want = {k: v.detach().cpu() for k, v in agent.acting_tensors().items()}
        for actor in source.actors:
            got = ray.get(actor.acting_weights.remote())
            assert got.keys() == want.keys()
            assert all(torch.equal(got[k], want[k]) for k in want)
    finally:
        source.close()
        envs.close()


@needs_ray
def test_killed_actor_is_replaced_and_the_run_finishes(tmp_path, cartpole_data, local_ray, monkeypatch, capsys):
    from rlkit.training import ray_rollouts
    from rlkit.training.loops import train_online

    original, rounds = ray_rollouts.RayRollouts._round, []

    def round_then_kill(self, agent):
        original(self, agent)
        rounds.append(1)
        if len(rounds) == 5:  # mid-run: actor 0 dies while its next call is in flight
            ray.kill(self.actors[0])

    monkeypatch.setattr(ray_rollouts.RayRollouts, "_round", round_then_kill)
    cfg = build_run_config(_data(cartpole_data), ["train.total_steps=2000"], source="test")
    summary = train_online(cfg, tmp_path / "run")
    assert summary["steps"] >= 2000
    err = capsys.readouterr()
    assert (err.out + err.err).count("rollout actor 0 died") == 1
    episodes, _ = _episodes(tmp_path / "run")
    late = [r for r in episodes if r["actor"] == 0 and r["step"] > 1000]
    assert late  # the replacement plays on in actor 0's columns


@needs_ray
def test_resume_reseeds_the_actors_and_goes_on(tmp_path, cartpole_data, local_ray, capsys):
    from rlkit.training.loops import train_online

    data = _data(cartpole_data)
    train_online(build_run_config(data, ["train.total_steps=800"], source="test"), tmp_path / "run")
    summary = train_online(build_run_config(data, ["train.total_steps=1400"], source="test"), tmp_path / "run",
                           resume=True)
    assert summary["steps"] >= 1400
    out = capsys.readouterr()
    assert "envs re-seeded" in out.out + out.err  # a statistical resume: the actors start anew from seed + step
    episodes, _ = _episodes(tmp_path / "run")
    assert {r["actor"] for r in episodes if r["step"] > 800} == {0, 1}


@pytest.mark.parametrize("override, fragment", [
    ("train.rollouts={actors: 0}", "train.rollouts.actors must be >= 1"),
    ("train.rollouts={backend: spark}", "train.rollouts.backend"),
])
def test_bad_rollouts_config_is_one_line(tmp_path, capsys, override, fragment):
    code = main(["train", override, f"--run-dir={tmp_path / 'r'}", "log.progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_missing_ray_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    from rlkit.training.ray_rollouts import import_ray

    with pytest.raises(ConfigError, match=r"pip install 'rlkit-toolkit\[ray\]'"):
        import_ray()
    code = main(["train", "train.rollouts={actors: 1}", f"--run-dir={tmp_path / 'r'}", "log.progress=false",
                 "train.total_steps=100"])
    err = capsys.readouterr().err
    assert code == 2 and "rlkit-toolkit[ray]" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_dead_actor_cuts_its_episode_as_truncated():
    """Without Ray: the learner's rows for an actor that died (its held step stored as truncated, bootstrapping from
    its true next observation, then non-transition rows) and for a live one (held step first, last step held)."""
    import numpy as np

    from rlkit.training.collector import VectorStep
    from rlkit.training.ray_rollouts import RayRollouts, _concat

    def step(t):
        no = np.zeros(1, dtype=bool)
        return VectorStep(obs=np.full((1, 2), t, np.float32), actions=np.zeros(1, np.int64), rewards=np.ones(1),
                          next_obs=np.full((1, 2), t + 1, np.float32), terminated=no, truncated=no, life_loss=no,
                          autoreset=no, infos={}, agent_id=None, real_steps=1, episodes=[])

    source = RayRollouts.__new__(RayRollouts)
    source.held = [None, None]
    first = [source._columns(i, [step(t) for t in range(4)], 4) for i in range(2)]
    assert [len(rows) for rows in first] == [3, 3]  # the last step of each call is held back
    live = source._columns(0, [step(t) for t in range(4, 8)], 4)
    dead = source._columns(1, None, 4)
    assert [float(r.obs[0, 0]) for r in live] == [3, 4, 5, 6]
    assert dead[0].truncated.all() and not dead[0].autoreset.any() and float(dead[0].obs[0, 0]) == 3
    assert all(r.autoreset.all() and r.real_steps == 0 and float(r.obs[0, 0]) == 4 for r in dead[1:])
    row = _concat([live[0], dead[0]], per_actor=1)
    assert row.obs.shape == (2, 2) and row.real_steps == 2 and row.truncated.tolist() == [False, True]
