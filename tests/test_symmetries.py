"""Symmetry augmentation (train.replay.symmetries): the declared groups are the games' real symmetries (mirrored
games played move by move under PettingZoo's rules), the replay hook maps s, a, s' with one draw, bad
declarations and envs without a group are refused."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("pettingzoo")

from rlkit.envs.board_games import TwoPlayerSeatEnv, _game  # noqa: E402
from rlkit.errors import ConfigError  # noqa: E402
from rlkit.experience.replay import SampleContext, Transitions  # noqa: E402
from rlkit.experience.symmetries import (Symmetry, SymmetryAugmenter, build_augmenter, check_symmetries,  # noqa: E402
                                         inverse)


def _flat(obs):
    return np.asarray(obs["observation"]).reshape(-1), np.asarray(obs["action_mask"]).reshape(-1)


@pytest.mark.parametrize("game,size", [("connect_four", 2), ("tictactoe", 8)])
def test_declared_groups_are_checked_permutations(game, size):
    env = TwoPlayerSeatEnv(game)
    group = env.symmetries()
    assert len(group) == size
    check_symmetries(group, env.observation_space, env.action_space)
    # closed under composition: g2 . g1 is again in the group (action maps compose)
    actions = {tuple(s.action.tolist()) for s in group}
    for g1 in group:
        for g2 in group:
            assert tuple(g2.action[g1.action].tolist()) in actions


@pytest.mark.parametrize("game", ["connect_four", "tictactoe"])
def test_mirrored_games_follow_the_rules_move_by_move(game):
    """Play a random game and, for each symmetry g, the game of moves g(a) in a second PettingZoo env: at every
    turn the second board is g of the first (planes and mask), and rewards and terminations are equal."""
    group = TwoPlayerSeatEnv(game).symmetries()
    rng = np.random.default_rng(0)
    for _ in range(6):
        moves = []
        base = _game(game)
        base.reset(seed=0)
        while not all(base.terminations.values()):
            obs = base.observe(base.agent_selection)
            action = int(rng.choice(np.flatnonzero(obs["action_mask"])))
            moves.append(action)
            base.step(action)
        for sym in group:
            a_env, b_env = _game(game), _game(game)
            a_env.reset(seed=0)
            b_env.reset(seed=0)
            for action in moves:
                for agent in a_env.possible_agents:
                    a_planes, a_mask = _flat(a_env.observe(agent))
                    b_planes, b_mask = _flat(b_env.observe(agent))
                    np.testing.assert_array_equal(b_planes, a_planes[sym.observation["observation"]], err_msg=sym.name)
                    np.testing.assert_array_equal(b_mask, a_mask[sym.observation["action_mask"]], err_msg=sym.name)
                assert b_env.observe(b_env.agent_selection)["action_mask"][sym.action[action]] == 1
                a_env.step(action)
                b_env.step(int(sym.action[action]))
                assert a_env.rewards == b_env.rewards and a_env.terminations == b_env.terminations, sym.name


def _batch(env, n=64, seed=0):
    rng = np.random.default_rng(seed)
    space = env.observation_space
    obs = {"observation": torch.as_tensor(rng.integers(0, 2, (n, *space["observation"].shape)), dtype=torch.int8),
           "action_mask": torch.as_tensor(rng.integers(0, 2, (n, env.action_space.n)), dtype=torch.int8)}
    next_obs = {k: torch.as_tensor(rng.integers(0, 2, tuple(v.shape)), dtype=v.dtype) for k, v in obs.items()}
    return Transitions(obs=obs, actions=torch.as_tensor(rng.integers(0, env.action_space.n, n)),
                       rewards=torch.as_tensor(rng.normal(size=n), dtype=torch.float32), next_obs=next_obs,
                       discounts=torch.full((n,), 0.99), weights=torch.ones(n), indices=torch.arange(n))


def _ctx(seed):
    g = torch.Generator().manual_seed(seed)
    return SampleContext(rows=torch.zeros(1, dtype=torch.long), envs=torch.zeros(1, dtype=torch.long),
                         next_rows=torch.zeros(1, dtype=torch.long), buffer=None, generator=g)


def test_augmenter_maps_obs_action_and_next_obs_with_one_draw_per_row():
    env = TwoPlayerSeatEnv("tictactoe")
    group = env.symmetries()
    batch = _batch(env)
    out = SymmetryAugmenter(group)(batch, _ctx(3))
    which = torch.randint(0, len(group), (64,), generator=torch.Generator().manual_seed(3))  # the same draws
    assert len(set(which.tolist())) > 4
    for i, k in enumerate(which.tolist()):
        sym = group[k]
        for key in ("observation", "action_mask"):
            for part in ("obs", "next_obs"):
                old = getattr(batch, part)[key][i].reshape(-1).numpy()
                new = getattr(out, part)[key][i].reshape(-1).numpy()
                np.testing.assert_array_equal(new, old[sym.observation[key]])
        assert int(out.actions[i]) == int(sym.action[int(batch.actions[i])])
        # the action taken is allowed in the new mask exactly where it was in the old one
        assert out.obs["action_mask"][i][out.actions[i]] == batch.obs["action_mask"][i][batch.actions[i]]
    for field in ("rewards", "discounts", "weights", "indices"):
        assert torch.equal(getattr(out, field), getattr(batch, field))
    again = SymmetryAugmenter(group)(batch, _ctx(3))  # the replay's generator decides: reproducible
    assert torch.equal(again.actions, out.actions)


def test_bad_declarations_and_envs_without_a_group_are_refused():
    env = TwoPlayerSeatEnv("connect_four")
    group = env.symmetries()
    bad_action = [group[0], dataclasses.replace(group[1], action=np.zeros(7, dtype=np.int64))]
    with pytest.raises(ValueError, match="permutation of the 7 actions"):
        check_symmetries(bad_action, env.observation_space, env.action_space)
    bad_mask = [group[0], dataclasses.replace(group[1], observation={**group[1].observation,
                                                                     "action_mask": np.arange(7)})]
    with pytest.raises(ValueError, match="inverse of the action map"):
        check_symmetries(bad_mask, env.observation_space, env.action_space)
    with pytest.raises(ValueError, match="identity"):
        check_symmetries(group[::-1], env.observation_space, env.action_space)
    with pytest.raises(ValueError, match="Discrete"):
        check_symmetries(group, env.observation_space, gym.spaces.Box(-1, 1, (2,)))
    with pytest.raises(ConfigError, match="declares no symmetries"):
        build_augmenter(True, None, gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), "CartPole-v1")
    assert build_augmenter(False, None, env.observation_space, env.action_space) is None
    assert TwoPlayerSeatEnv("leduc_holdem").symmetries() is None
    assert np.array_equal(inverse(np.array([2, 0, 1])), np.array([1, 2, 0]))


def test_a_run_with_symmetries_trains_and_cartpole_refuses_them(tmp_path):
    import rlkit

    run = rlkit.train("configs/dqn_tictactoe.yaml", run_dir=tmp_path / "ttt", overrides={
        "train.total_steps": 400, "train.learning_starts": 100, "train.eval_every": 0, "train.eval_episodes": 4,
        "train.replay.symmetries": True, "env.num_envs": 2, "log.progress": False, "log.tensorboard": False,
        "log.plot": False})
    assert run.summary["steps"] >= 400
    with pytest.raises(ConfigError, match="declares no symmetries"):
        rlkit.train("dqn_cartpole", run_dir=tmp_path / "cp", overrides={
            "train.total_steps": 10, "train.replay.symmetries": True, "log.progress": False})


def test_a_resumed_run_with_symmetries_is_the_same_run(tmp_path):
    """The symmetry draws come from the replay's generator, which the checkpoint saves: a run stopped and resumed
    learns exactly what an uninterrupted one does (same metrics, same weights)."""
    import json

    import rlkit
    from rlkit.runfiles.checkpoint import load_checkpoint

    common = {"env.num_envs": 2, "env.kwargs": {"opponent": "random"}, "agent.hidden": [32],
              "train.learning_starts": 60, "train.batch_size": 32, "train.eval_every": 0, "train.eval_episodes": 2,
              "train.checkpoint_every": 0, "train.replay.symmetries": True, "train.replay.capacity": 1000,
              "log.progress": False, "log.tensorboard": False, "log.plot": False, "log.log_every": 20}
    rlkit.train("configs/dqn_tictactoe.yaml", run_dir=tmp_path / "full", overrides={**common, "train.total_steps": 240})
    rlkit.train("configs/dqn_tictactoe.yaml", run_dir=tmp_path / "part", overrides={**common, "train.total_steps": 120})
    rlkit.train(resume=True, run_dir=tmp_path / "part", train__total_steps=240)

    def records(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("time", "sps")} for r in rows if r["kind"] != "eval"]

    full, part = records(tmp_path / "full"), records(tmp_path / "part")
    assert any(r["kind"] == "train" and r.get("updates", 0) > 0 for r in full)
    assert part == full
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "latest.pt")["agent"]
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "latest.pt")["agent"]
    for part_name, weights in a.items():
        if isinstance(weights, dict):
            for key, value in weights.items():
                if torch.is_tensor(value):
                    assert torch.equal(b[part_name][key], value), (part_name, key)


def test_symmetries_are_refused_where_nothing_would_apply_them():
    """Offline runs and SB3 agents never sample rlkit's replay: the flag would be ignored silently."""
    from rlkit.config import build_run_config, read_yaml

    data = read_yaml("configs/bc_pendulum.yaml")
    data.setdefault("train", {}).setdefault("replay", {})["symmetries"] = True
    with pytest.raises(ConfigError, match="train.replay.symmetries.*offline"):
        build_run_config(data)
    data = read_yaml("configs/sb3_maskable_ppo_connect_four.yaml")
    data.setdefault("train", {}).setdefault("replay", {})["symmetries"] = True
    with pytest.raises(ConfigError, match="train.replay.symmetries.*SB3"):
        build_run_config(data)


def test_symmetries_with_a_frame_stack_are_a_clear_error(tmp_path):
    import rlkit

    with pytest.raises(ConfigError, match="not frame stacks"):
        rlkit.train("configs/dqn_tictactoe.yaml", run_dir=tmp_path / "ttt", overrides={
            "train.total_steps": 10, "train.replay.symmetries": True, "train.replay.frame_stack": 2,
            "log.progress": False})
