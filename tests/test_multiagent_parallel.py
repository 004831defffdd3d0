"""PettingZoo parallel games as agent-major vector-env rows (envs/multiagent.py, issue 20).

A synthetic game pins down the row conventions exactly (an agent that dies at step 2, one that joins at step 3,
known rewards): which rows are transitions, where rewards land, and what a ReplayBuffer filled through the
Collector holds. Real games (pistonball, cooperative pong, knights-archers-zombies, SISL pursuit) pass
PettingZoo's parallel_api_test raw and the vector-env checks below wrapped; a tiny `rlkit train` runs DQN's
Nature CNN on pistonball through the CLI.
"""

from __future__ import annotations

import functools
import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("pettingzoo")
from pettingzoo import ParallelEnv  # noqa: E402
from pettingzoo.test import parallel_api_test  # noqa: E402

import rlkit.envs  # noqa: E402,F401  (registers the rlkit/ ids)
from rlkit.envs.wrappers import ParallelEnvRows, make_parallel_rows  # noqa: E402  (lazy re-export)
from rlkit.experience.replay import ReplayBuffer  # noqa: E402
from rlkit.training.collector import Collector  # noqa: E402

GAMMA = 0.9


class ThreeAgents(ParallelEnv):
    """a0 plays 5 steps (truncated at 5); a1 is terminated at step 2; a2 joins after step 3 and is truncated at 5.
    obs = [t, agent index]; reward of agent i at step t = 10 i + t; agent i's actions are recorded; action mask:
    action t % 4 is disabled for everyone at step t (in the infos)."""

    metadata = {"name": "three_agents_v0", "render_modes": []}

    def __init__(self):
        self.possible_agents = ["a0", "a1", "a2"]
        self.received: list[dict[str, int]] = []

    @functools.lru_cache(maxsize=None)
    def observation_space(self, agent):
        return gym.spaces.Box(-100.0, 100.0, (2,), np.float32)

    @functools.lru_cache(maxsize=None)
    def action_space(self, agent):
        return gym.spaces.Discrete(4)

    def _obs(self, agent):
        return np.array([self.t, self.possible_agents.index(agent)], dtype=np.float32)

    def _infos(self, agents):
        mask = np.ones(4, dtype=np.int8)
        mask[self.t % 4] = 0
        return {a: {"action_mask": mask.copy()} for a in agents}

    def reset(self, seed=None, options=None):
        self.t = 0
        self.agents = ["a0", "a1"]
        return {a: self._obs(a) for a in self.agents}, self._infos(self.agents)

    def step(self, actions):
        assert set(actions) == set(self.agents), (actions, self.agents)
        self.received.append(dict(actions))
        self.t += 1
        acted = list(self.agents)
        rewards = {a: float(10 * self.possible_agents.index(a) + self.t) for a in acted}
        terminated = {a: a == "a1" and self.t == 2 for a in acted}
        truncated = {a: self.t == 5 for a in acted}
        self.agents = [a for a in acted if not (terminated[a] or truncated[a])]
        if self.t == 3:
            self.agents.append("a2")
        obs = {a: self._obs(a) for a in set(acted) | set(self.agents)}
        infos = self._infos(set(acted) | set(self.agents))
        for a in set(self.agents) - set(acted):  # the newcomer: no reward, no flags for a step it did not play
            rewards[a], terminated[a], truncated[a] = 0.0, False, False
        return obs, rewards, terminated, truncated, infos


class ScriptedAgent:
    """Acts ``(10 * step + row) % 4`` and records what it was given."""

    device = torch.device("cpu")

    def __init__(self):
        self.calls = 0

    def act(self, record, explore, epsilon=None):
        self.calls += 1
        return (10 * self.calls + np.arange(record.size)) % 4


COPIES = 2


def _rows(agent):  # agent index -> its rows, agent-major
    return [agent * COPIES + c for c in range(COPIES)]


def test_synthetic_game_passes_pettingzoo_parallel_api_test():
    parallel_api_test(ThreeAgents(), num_cycles=20)


def test_synthetic_rows_transitions_rewards_and_flags():
    envs = ParallelEnvRows([ThreeAgents for _ in range(COPIES)], agent_id_input=False)
    assert envs.num_envs == 6 and envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, infos = envs.reset(seed=0)
    assert infos["inactive"].tolist() == [False, False, False, False, True, True]
    assert infos["agent_id"].tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(obs[_rows(1)], [[0, 1], [0, 1]])
    collector = Collector(envs, seed=0)
    agent = ScriptedAgent()
    steps = [collector.step(agent, explore=True) for _ in range(7)]
    real = np.array([~s.autoreset for s in steps])  # [step, row]: which rows were transitions
    expect_real = np.zeros((7, 6), dtype=bool)
    expect_real[0:5, _rows(0)] = True   # a0: steps 1..5
    expect_real[0:2, _rows(1)] = True   # a1: steps 1..2, dead after
    expect_real[3:5, _rows(2)] = True   # a2: joins on step 3 (its autoreset step), plays 4..5
    expect_real[6, :4] = True           # step 6 resets both copies; step 7 plays a0, a1 (a2 not joined yet)
    np.testing.assert_array_equal(real, expect_real)
    rewards = np.array([s.rewards for s in steps])
    for t in range(7):
        for a in range(3):
            want = (10 * a + (t + 1 if t < 5 else 1)) if expect_real[t, _rows(a)[0]] else 0
            np.testing.assert_array_equal(rewards[t, _rows(a)], [want] * COPIES, err_msg=f"step {t + 1} agent {a}")
    term = np.array([s.terminated for s in steps])
    trunc = np.array([s.truncated for s in steps])
    assert term[1, _rows(1)].all() and term[2:5, _rows(1)].all() and not trunc[:, _rows(1)][:5].any()  # a1 dead
    assert trunc[4, _rows(0)].all() and trunc[4, _rows(2)].all() and not term[4, _rows(0)].any()
    assert term[0:2, _rows(2)].all() and not term[2, _rows(2)].any()  # a2 inactive until step 3
    # the game received exactly the live agents' actions (the collector's actions of those rows)
    for c, env in enumerate(envs.envs):
        assert [sorted(r) for r in env.received[:5]] == [["a0", "a1"], ["a0", "a1"], ["a0"], ["a0", "a2"],
                                                          ["a0", "a2"]]
        for t, received in enumerate(env.received[:5]):
            for name, action in received.items():
                assert action == steps[t].actions[int(name[1]) * COPIES + c]
    # episodes: one per agent per copy, with the agent's own return and length
    episodes = sorted((e, ret, length) for s in steps for e, ret, length in s.episodes)
    assert episodes == sorted([(r, 15.0, 5) for r in _rows(0)] + [(r, 23.0, 2) for r in _rows(1)]
                              + [(r, 49.0, 2) for r in _rows(2)])
    # masks: action t % 4 disabled for the rows that act at step t + 1; inactive rows all True
    assert steps[2].infos["action_mask"][_rows(1)].all()  # a1 is dead at step 3's return
    assert not steps[3].infos["action_mask"][_rows(0), 4 % 4].any()


def test_replay_filled_through_the_collector_holds_exactly_the_transitions():
    envs = ParallelEnvRows([ThreeAgents for _ in range(COPIES)], agent_id_input=False)
    collector = Collector(envs, seed=0)
    replay = ReplayBuffer.from_spaces(envs.single_observation_space, envs.single_action_space, capacity=600,
                                      num_envs=envs.num_envs, gamma=GAMMA, n_step=1, seed=0)
    agent = ScriptedAgent()
    taken = {}
    for t in range(1, 8):
        step = collector.step(agent, explore=True)
        replay.add(step.obs, step.actions, step.rewards, step.terminated, step.truncated, step.autoreset)
        for row in range(envs.num_envs):
            taken[(t, row)] = int(step.actions[row])
    expected = set()
    for c in range(COPIES):
        for t in range(1, 6):   # a0: obs [t-1, 0] -> [t, 0], reward t, truncated at 5 (bootstraps from [5, 0])
            expected.add((t - 1, 0, taken[(t, c)], float(t), t, 0, GAMMA))
        for t in (1, 2):        # a1: reward 10 + t; terminated at 2 (discount 0)
            expected.add((t - 1, 1, taken[(t, 2 + c)], 10.0 + t, t, 1, GAMMA if t == 1 else 0.0))
        for t in (4, 5):        # a2: first obs [3, 2] (returned by step 3), reward 20 + t
            expected.add((t - 1, 2, taken[(t, 4 + c)], 20.0 + t, t, 2, GAMMA))
    assert replay.num_sampleable() == 2 * (5 + 2 + 2)
    batch = replay.sample(3000)
    got = {(*batch.obs[i].tolist(), int(batch.actions[i]), float(batch.rewards[i]), *batch.next_obs[i].tolist(),
            round(float(batch.discounts[i]), 6)) for i in range(3000)}
    got = {(int(a), int(b), act, r, int(c), int(d), disc) for a, b, act, r, c, d, disc in got}
    assert got == {(a, b, act, r, c, d, round(disc, 6)) for a, b, act, r, c, d, disc in expected}


def test_agent_id_input_and_refusal_of_unequal_spaces():
    envs = ParallelEnvRows([ThreeAgents], agent_id_input=True)
    obs, _ = envs.reset(seed=0)
    assert envs.single_observation_space.shape == (5,)
    np.testing.assert_array_equal(obs[:2, 2:], [[1, 0, 0], [0, 1, 0]])
    assert envs.observation_space.contains(obs)

    class Unequal(ThreeAgents):
        @functools.lru_cache(maxsize=None)
        def action_space(self, agent):
            return gym.spaces.Discrete(4 if agent == "a0" else 5)

    with pytest.raises(ValueError, match="one action space for all agents.*pad them"):
        ParallelEnvRows([Unequal])


# ---------------------------------------------------------------------- real games

GAMES = {  # name: (parallel_env path, wrapper kwargs, game kwargs that keep the test short)
    "pistonball": ("pettingzoo.butterfly.pistonball_v6:parallel_env",
                   {"frame_size": 84, "grayscale": True, "frame_stack": 2}, {"continuous": False, "max_cycles": 20}),
    "cooperative_pong": ("pettingzoo.butterfly.cooperative_pong_v6:parallel_env",
                         {"frame_size": 64, "grayscale": True}, {"max_cycles": 40}),
    "kaz": ("pettingzoo.butterfly.knights_archers_zombies_v11:parallel_env", {},  # agents die before the end
            {"max_cycles": 100, "line_death": True}),
    "pursuit": ("pettingzoo.sisl.pursuit_v5:parallel_env", {}, {"max_cycles": 30}),
}


def _load_game(path):
    from rlkit.envs.multiagent import _load

    return _load(path)


@pytest.mark.parametrize("name", sorted(GAMES))
def test_raw_game_passes_parallel_api_test(name):
    path, _, kwargs = GAMES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel_api_test(_load_game(path)(**kwargs), num_cycles=60)


def _check_rows_env(envs: gym.vector.VectorEnv, steps: int, seed: int = 0) -> tuple[int, int]:
    """Gymnasium's vector-env contract, and the row conventions, on random actions; returns the rows seen
    finishing, and those of them that finished before the rest of their copy (early finishers)."""
    n, copies = envs.num_envs, envs.copies
    obs, infos = envs.reset(seed=seed)
    assert obs.shape == (n, *envs.single_observation_space.shape) and obs.dtype == envs.single_observation_space.dtype
    assert envs.observation_space.contains(obs)
    assert infos["inactive"].shape == (n,) and infos["agent_id"].tolist() == np.repeat(
        np.arange(envs.n_agents), copies).tolist()
    envs.action_space.seed(seed)
    first_obs = obs.copy()
    done_prev = np.zeros(n, dtype=bool) | infos["inactive"]
    dones = early = 0
    for _ in range(steps):
        prev = obs
        obs, rewards, term, trunc, infos = envs.step(envs.action_space.sample())
        assert envs.observation_space.contains(obs), "an observation outside the space"
        assert rewards.shape == term.shape == trunc.shape == (n,) and np.isfinite(rewards).all()
        assert (rewards[done_prev] == 0).all(), "an autoreset row got a reward"
        copy_done = done_prev.reshape(envs.n_agents, copies).all(axis=0)  # [copies]: reset on this step
        for r in np.flatnonzero(done_prev):
            if not copy_done[r % copies] and term[r] | trunc[r]:  # still waiting: same obs, same flags
                np.testing.assert_array_equal(obs[r], prev[r])
        if copy_done.any():  # a reset copy: its rows are not done (except late joiners, which are inactive)
            rows = np.concatenate([np.arange(envs.n_agents) * copies + c for c in np.flatnonzero(copy_done)])
            assert not trunc[rows].any()
        finishing = (term | trunc) & ~done_prev
        dones += int(finishing.sum())
        copy_all = (term | trunc).reshape(envs.n_agents, copies).all(axis=0)
        early += int(sum(not copy_all[r % copies] for r in np.flatnonzero(finishing)))
        done_prev = term | trunc
    # same seed, same actions: the same rows (determinism of reset)
    obs2, _ = envs.reset(seed=seed)
    np.testing.assert_array_equal(obs2, first_obs)
    return dones, early


@pytest.mark.parametrize("name", sorted(GAMES))
def test_wrapped_game_passes_vector_checks(name):
    path, wrapper_kwargs, kwargs = GAMES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        envs = make_parallel_rows(2, parallel_env=path, env_kwargs=kwargs, **wrapper_kwargs)
        try:
            steps = kwargs["max_cycles"] * 2 + 3
            dones, early = _check_rows_env(envs, steps)
            assert dones > 0, "no episode ended: the autoreset path was not exercised"
            if name == "kaz":  # knights and archers die: rows wait as autoreset rows for their copy's reset
                assert early > 0
            if wrapper_kwargs.get("frame_size"):  # images: channel-first uint8, frames + the agent-id plane
                c = wrapper_kwargs.get("frame_stack", 1) + 1
                assert envs.single_observation_space.shape == (c, wrapper_kwargs["frame_size"],
                                                                 wrapper_kwargs["frame_size"])
                obs, _ = envs.reset(seed=0)
                planes = obs[:: envs.copies, -1, 0, 0].astype(int)  # one per agent
                assert len(set(planes.tolist())) == envs.n_agents and planes[-1] == 255
                later = obs
                for _ in range(5):
                    later, *_ = envs.step(envs.action_space.sample())
                # the game draws its frames (butterfly games made with render_mode=None never redraw them)
                assert (later[:, :-1] != obs[:, :-1]).any()
        finally:
            envs.close()


def test_pixel_game_made_without_a_render_mode_is_flagged():
    """PettingZoo's pistonball made with render_mode=None observes a screen it never redraws (parallel_api_test
    passes): the wrapper warns, and make_parallel_rows makes such games with render_mode='rgb_array'."""
    factory = _load_game(GAMES["pistonball"][0])
    with pytest.warns(UserWarning, match="render_mode=None"):
        ParallelEnvRows([lambda: factory(continuous=False, max_cycles=5)], frame_size=84, grayscale=True).close()
    envs = make_parallel_rows(1, parallel_env=GAMES["pistonball"][0], env_kwargs={"continuous": False})
    assert envs.envs[0].render_mode == "rgb_array"
    envs.close()


def test_registered_ids_make_vec_and_the_builder():
    from rlkit.config import EnvConfig
    from rlkit.errors import ConfigError
    from rlkit.training.build import make_vector_env

    envs = gym.make_vec("rlkit/Pistonball-v0", num_envs=1, vectorization_mode="vector_entry_point", max_cycles=5)
    assert envs.num_envs == 20 and envs.single_observation_space.shape == (2, 84, 84)
    assert envs.single_action_space == gym.spaces.Discrete(3)
    envs.close()
    envs = make_vector_env(EnvConfig(id="rlkit/KnightsArchersZombies-v0", num_envs=2))
    assert envs.num_envs == 8 and envs.single_observation_space.shape == (27 * 5 + 4,)
    envs.close()
    with pytest.raises(ConfigError, match="vector-only"):
        make_vector_env(EnvConfig(id="rlkit/KnightsArchersZombies-v0", vectorization="sync"))


def test_dqn_trains_on_pistonball_through_the_cli(tmp_path):
    """A few hundred agent steps of shared-CNN DQN on pixel pistonball: `rlkit train` end to end."""
    from rlkit.cli import main

    data = {
        "torch_threads": 1,
        "env": {"id": "rlkit/Pistonball-v0", "num_envs": 1, "kwargs": {"max_cycles": 10}},
        "agent": {"name": "dqn", "eps_decay_steps": 200, "target_update_every": 10},
        "train": {"total_steps": 400, "learning_starts": 100, "train_every": 20, "batch_size": 8,
                  "replay": {"capacity": 1000}, "eval_every": 400, "eval_episodes": 20, "checkpoint_every": 400},
        "log": {"progress": False, "log_every": 100},
    }
    config = tmp_path / "pistonball.yaml"
    config.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    assert main(["train", str(config), f"--run-dir={run}"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    episodes = [r for r in records if r["kind"] == "episode"]
    assert episodes and all(r["length"] == 10 for r in episodes)  # per-agent episodes of max_cycles steps
    assert any(r["kind"] == "eval" for r in records) and any(r["kind"] == "train" for r in records)


@pytest.mark.parametrize("env_id, kwargs", [
    ("rlkit/KnightsArchersZombies-v0", {"max_cycles": 30}),
    ("rlkit/Pistonball-v0", {"max_cycles": 15, "frame_size": 36}),
])
def test_resume_is_exact(tmp_path, env_id, kwargs):
    """Checkpoint mid-episode (episodes of several lengths have ended, copies have re-reset from their games' RNG),
    resume, and end with the weights and metrics of an uninterrupted run: the games were replayed exactly."""
    from rlkit.cli import main
    from rlkit.runfiles.checkpoint import load_checkpoint

    def config(total):
        data = {
            "torch_threads": 1,
            "env": {"id": env_id, "num_envs": 2, "kwargs": kwargs},
            "agent": {"name": "dqn", "hidden": [16], "eps_decay_steps": 300, "target_update_every": 10},
            "train": {"total_steps": total, "learning_starts": 40, "train_every": 8, "batch_size": 8,
                      "replay": {"capacity": 2000}, "eval_every": 0, "checkpoint_every": 10_000},
            "log": {"progress": False, "log_every": 50},
        }
        path = tmp_path / f"{total}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", str(config(600)), f"--run-dir={straight}"]) == 0
    assert main(["train", str(config(300)), f"--run-dir={resumed}"]) == 0
    assert main(["train", "--resume", str(resumed), "train.total_steps=600"]) == 0
    a = load_checkpoint(straight / "checkpoints" / "latest.pt", map_location="cpu", required=("agent",))["agent"]
    b = load_checkpoint(resumed / "checkpoints" / "latest.pt", map_location="cpu", required=("agent",))["agent"]
    assert a["updates"] == b["updates"] > 0
    for key, value in a["q_net"].items():
        assert torch.equal(value, b["q_net"][key]), key
    episodes = lambda run: [{k: v for k, v in json.loads(line).items() if k != "time"}  # noqa: E731
                            for line in (run / "metrics.jsonl").read_text().splitlines()
                            if json.loads(line)["kind"] == "episode"]
    assert episodes(straight) == episodes(resumed)


class MaskedTurns(ParallelEnv):
    """2 agents, 3 actions; the one legal action at step t is t % 3 (the mask in a Dict observation)."""

    metadata = {"name": "masked_turns_v0", "render_modes": []}
    possible_agents = ["a", "b"]

    def __init__(self):
        self.agents = []

    @functools.lru_cache(maxsize=None)
    def observation_space(self, agent):
        return gym.spaces.Dict({"observation": gym.spaces.Box(0, 100, (1,), np.float32),
                                "action_mask": gym.spaces.Box(0, 1, (3,), np.int8)})

    @functools.lru_cache(maxsize=None)
    def action_space(self, agent):
        return gym.spaces.Discrete(3)

    def _obs(self):
        mask = np.zeros(3, np.int8)
        mask[self.t % 3] = 1
        return {a: {"observation": np.array([self.t], np.float32), "action_mask": mask.copy()} for a in self.agents}

    def reset(self, seed=None, options=None):
        self.t, self.agents = 0, list(self.possible_agents)
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        assert all(int(actions[a]) == self.t % 3 for a in self.agents), (actions, self.t)  # only legal moves
        self.t += 1
        done = self.t >= 50
        obs, flags = self._obs(), {a: done for a in self.agents}
        rewards, infos = {a: 0.0 for a in self.agents}, {a: {} for a in self.agents}
        truncated = {a: False for a in self.agents}
        if done:
            self.agents = []
        return obs, rewards, flags, truncated, infos


def test_resume_restores_the_rows_action_masks():
    """The step record after a resume carries the checkpoint's masks, not those of the fresh reset."""

    class LegalOnly:
        device = torch.device("cpu")

        def act(self, record, explore, epsilon=None):
            return record.action_mask.float().argmax(1).numpy()

    first = Collector(ParallelEnvRows([MaskedTurns]), seed=0)
    for _ in range(4):
        first.step(LegalOnly(), explore=True)
    resumed = Collector(ParallelEnvRows([MaskedTurns]), seed=0)
    assert resumed.load_state_dict(first.state_dict(), seed=0, reseed=1)
    np.testing.assert_array_equal(resumed.rows["action_mask"], first.rows["action_mask"])
    for _ in range(3):  # the game asserts every move is the legal one
        resumed.step(LegalOnly(), explore=True)
        first.step(LegalOnly(), explore=True)
    np.testing.assert_array_equal(resumed.obs, first.obs)
