"""``agent.policies``: one shared network, one per agent, or one per team, for a multi-agent game's rows.

Checks: the config forms and their errors; routing (each row through its own group's network, in act and in
both halves of the TD target); agent ids stored in and sampled back from the replay (and its checkpoint);
training end to end on knights-archers-zombies with teams, config.yaml recording ids, resume, and export +
evaluation of the grouped DQN without the env's names.
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("pettingzoo")

from rlkit.agents.dqn import DQN, DQNConfig  # noqa: E402
from rlkit.contract.agent import StepRecord  # noqa: E402
from rlkit.contract.policy_groups import PolicyGroups, resolve_policies  # noqa: E402
from rlkit.errors import ConfigError  # noqa: E402
from rlkit.experience.replay import ReplayBuffer  # noqa: E402

NAMES = ["archer_0", "archer_1", "knight_0", "knight_1"]


def test_policy_forms_resolve_to_ids() -> None:
    assert resolve_policies("shared", NAMES) == "shared"
    assert resolve_policies("per_agent", NAMES) == {name: [i] for i, name in enumerate(NAMES)}
    teams = {"archers": ["archer_0", "archer_1"], "knights": ["knight_0", 3]}
    assert resolve_policies(teams, NAMES) == {"archers": [0, 1], "knights": [2, 3]}
    assert resolve_policies({"a": [0, 1], "b": [2, 3]}, None) == {"a": [0, 1], "b": [2, 3]}  # a saved config


@pytest.mark.parametrize("value, names, message", [
    ("solo", NAMES, "must be 'shared', 'per_agent' or a mapping"),
    ({}, NAMES, "non-empty mapping"),
    ({"a": []}, NAMES, "non-empty list"),
    ({"a": ["archer_0"], "b": ["archer_0"]}, NAMES, "in two teams"),
    ({"a": ["archer_0", "archer_1"], "b": ["knight_0"]}, NAMES, "knight_1 are in no team"),
    ({"a": ["wizard_0"]}, NAMES, "unknown agent 'wizard_0'; the env's agents are archer_0"),
    ({"a": [0, 1, 2, 3, 4]}, NAMES, "agent id 4 is out of range"),
    ({"a": [-1]}, NAMES, "not an agent name or an id >= 0"),
    ("per_agent", None, "per_agent needs a multi-agent env"),
    ({"a": ["archer_0"]}, None, "this env names no agents"),
])
def test_policy_errors(value, names, message) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_policies(value, names)


def test_policy_groups_route_each_row_through_its_group() -> None:
    torch.manual_seed(0)
    groups = PolicyGroups(lambda: torch.nn.Linear(3, 2), {"a": [0, 2], "b": [1]})
    obs = torch.randn(7, 3)
    ids = torch.tensor([0, 1, 2, 1, 0, 2, 1])
    out = groups(obs, ids)
    for row in range(7):
        net = groups.nets[0] if ids[row] in (0, 2) else groups.nets[1]
        torch.testing.assert_close(out[row], net(obs[row:row + 1])[0])
    out.sum().backward()  # gradients reach both groups
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in groups.parameters())
    with pytest.raises(ValueError, match="agent id 5 belongs to no team"):
        groups(obs[:1], torch.tensor([5]))
    with pytest.raises(ValueError, match="needs each row's agent id"):
        groups(obs, None)


def _agent(policies) -> DQN:
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    cfg = DQNConfig(hidden=[8], policies=policies, eps_start=0.0, eps_end=0.0)
    cfg.bind_agents(["x", "y", "z"])
    return DQN(cfg, space, gym.spaces.Discrete(4), seed=0)


def test_dqn_acts_and_learns_with_each_rows_network() -> None:
    agent = _agent({"first": ["x"], "rest": ["y", "z"]})
    assert sorted(agent.parts.names())[:2] == ["q_net", "target_net"]
    obs = torch.randn(6, 3)
    ids = torch.tensor([0, 1, 2, 0, 1, 2])
    step = StepRecord.from_arrays(obs.numpy(), "cpu", agent_id=ids.numpy())
    expected = torch.stack([agent.q_net.nets[0 if i == 0 else 1](o[None])[0] for o, i in zip(obs, ids)])
    np.testing.assert_array_equal(agent.act(step, explore=False), expected.argmax(1).numpy())

    # an update moves only the networks of the teams in the batch
    from rlkit.experience.replay import Transitions
    only_rest = torch.tensor([1, 2, 1, 2])
    batch = Transitions(obs=obs[:4], actions=torch.tensor([0, 1, 2, 3]), rewards=torch.ones(4), next_obs=obs[2:6],
                        discounts=torch.full((4,), 0.9), weights=torch.ones(4), indices=torch.arange(4),
                        agent_id=only_rest, next_agent_id=only_rest)
    before = [p.detach().clone() for p in agent.q_net.parameters()]
    agent.update(batch)
    changed = [not torch.equal(b, p) for b, p in zip(before, agent.q_net.parameters())]
    n_first = len(list(agent.q_net.nets[0].parameters()))
    assert not any(changed[:n_first]) and all(changed[n_first:])
    with pytest.raises(ValueError, match="needs each row's agent id"):
        agent.act(StepRecord.from_arrays(obs.numpy(), "cpu"), explore=False)


def test_replay_keeps_agent_ids_and_checkpoints_them() -> None:
    space = gym.spaces.Box(-1, 1, (2,), np.float32)
    replay = ReplayBuffer.from_spaces(space, gym.spaces.Discrete(2), capacity=40, num_envs=4, seed=0)
    ids = np.array([0, 0, 1, 1])
    for t in range(6):
        obs = np.stack([[t, e] for e in range(4)]).astype(np.float32)
        replay.add(obs, np.zeros(4, dtype=np.int64), np.zeros(4), np.zeros(4, bool), np.zeros(4, bool),
                   np.zeros(4, bool), agent_id=ids)
    batch = replay.sample(32)
    envs = batch.obs[:, 1].long()
    assert torch.equal(batch.agent_id, torch.as_tensor(ids)[envs])
    assert torch.equal(batch.next_agent_id, batch.agent_id)
    state = replay.state_dict()
    fresh = ReplayBuffer.from_spaces(space, gym.spaces.Discrete(2), capacity=40, num_envs=4, seed=0)
    fresh.load_state_dict(state)
    again = fresh.sample(8)
    assert again.agent_id is not None and torch.equal(again.agent_id, torch.as_tensor(ids)[again.obs[:, 1].long()])
    with pytest.raises(ValueError, match="every add needs agent_id"):
        replay.add(obs, np.zeros(4, dtype=np.int64), np.zeros(4), np.zeros(4, bool), np.zeros(4, bool),
                   np.zeros(4, bool))
    plain = ReplayBuffer.from_spaces(space, gym.spaces.Discrete(2), capacity=40, num_envs=4, seed=0)
    for _ in range(2):
        plain.add(obs, np.zeros(4, dtype=np.int64), np.zeros(4), np.zeros(4, bool), np.zeros(4, bool),
                  np.zeros(4, bool))
    assert plain.sample(2).agent_id is None


def _kaz_config(tmp_path, policies, total_steps=300):
    data = {
        "torch_threads": 1,
        "env": {"id": "rlkit/KnightsArchersZombies-v0", "num_envs": 1, "kwargs": {"max_cycles": 40}},
        "agent": {"name": "dqn", "hidden": [32], "eps_decay_steps": 200, "target_update_every": 10,
                  "policies": policies},
        "train": {"total_steps": total_steps, "learning_starts": 60, "train_every": 4, "batch_size": 8,
                  "replay": {"capacity": 1000}, "eval_every": 0, "checkpoint_every": 200},
        "log": {"progress": False, "log_every": 100},
    }
    config = tmp_path / "kaz.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def test_teams_train_on_knights_archers_zombies_and_resume(tmp_path) -> None:
    from rlkit.cli import main
    from rlkit.runfiles.checkpoint import load_checkpoint

    teams = {"archers": ["archer_0", "archer_1"], "knights": ["knight_0", "knight_1"]}
    config = _kaz_config(tmp_path, teams)
    run = tmp_path / "run"
    assert main(["train", str(config), f"--run-dir={run}"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["agent"]["policies"] == {"archers": [0, 1], "knights": [2, 3]}  # ids, so eval/export need no env
    state = load_checkpoint(run / "checkpoints" / "latest.pt", map_location="cpu", required=("agent",))
    weights = state["agent"]
    flat = json.dumps(sorted(k for k in _flat_keys(weights)))
    assert "q_net.nets.1." in flat and "q_net.group_of" in flat

    # resume continues the run (counters; parallel rows resume statistically: their games are re-seeded)
    assert main(["train", "--resume", str(run), "train.total_steps=400"]) == 0
    straight = tmp_path / "straight"
    config2 = _kaz_config(tmp_path, teams, total_steps=400)
    assert main(["train", str(config2), f"--run-dir={straight}"]) == 0
    a = load_checkpoint(run / "checkpoints" / "latest.pt", map_location="cpu", required=("agent",))["agent"]
    b = load_checkpoint(straight / "checkpoints" / "latest.pt", map_location="cpu", required=("agent",))["agent"]
    assert a["updates"] == b["updates"] > 0

    out = tmp_path / "export"
    assert main(["export", str(run), str(out)]) == 0
    assert main(["eval", str(out), "--episodes", "2"]) == 0


def _flat_keys(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flat_keys(value, f"{prefix}{key}.")
    else:
        yield prefix


def test_per_agent_refused_on_a_single_agent_env(tmp_path, capsys) -> None:
    from rlkit.cli import main

    assert main(["train", "agent.policies=per_agent", "train.total_steps=10", f"--run-dir={tmp_path / 'r'}"]) == 2
    assert "per_agent needs a multi-agent env" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_evaluation_counts_every_agent_of_every_copy() -> None:
    """Rows are agent-major: spreading 6 episodes over 2 copies x 4 agents' rows used to count the archers only."""
    from rlkit.config import EnvConfig
    from rlkit.training.build import make_vector_env
    from rlkit.training.evaluation import evaluate

    env_cfg = EnvConfig(id="rlkit/KnightsArchersZombies-v0", num_envs=2, kwargs={"max_cycles": 20})
    envs = make_vector_env(env_cfg, num_envs=2)
    seen: list[int] = []

    class Recorder:
        device = torch.device("cpu")

        def act(self, step, explore, epsilon=None):
            seen.extend(step.agent_id.tolist())
            return np.zeros(step.size, dtype=np.int64)

    result = evaluate(Recorder(), env_cfg, 6, 0.0, seed=0, envs=envs)
    envs.close()
    assert len(result["returns"]) == 8  # one episode per row: 2 copies x 4 agents (>= the 6 asked for)
    assert set(seen) == {0, 1, 2, 3}


def test_replay_restored_without_agent_ids_takes_them_per_column() -> None:
    """A multi-agent replay checkpointed before agent ids were stored resumes: each column's id fills its rows."""
    space = gym.spaces.Box(-1, 1, (2,), np.float32)
    old = ReplayBuffer.from_spaces(space, gym.spaces.Discrete(2), capacity=40, num_envs=4, seed=0)
    zeros = np.zeros(4, bool)
    for t in range(3):
        old.add(np.full((4, 2), t, np.float32), np.zeros(4, np.int64), np.zeros(4), zeros, zeros, zeros)
    fresh = ReplayBuffer.from_spaces(space, gym.spaces.Discrete(2), capacity=40, num_envs=4, seed=0)
    fresh.load_state_dict(old.state_dict())
    fresh.add(np.full((4, 2), 3, np.float32), np.zeros(4, np.int64), np.zeros(4), zeros, zeros, zeros,
              agent_id=np.array([0, 0, 1, 1]))
    batch = fresh.sample(64)
    assert torch.equal(batch.agent_id, torch.tensor([0, 0, 1, 1])[batch.indices % 4])


def test_evaluation_ends_when_an_agent_never_joins() -> None:
    """Quotas are per game copy: a possible agent that never joins a game cannot hold the evaluation up."""
    from gymnasium import spaces
    from pettingzoo import ParallelEnv

    from rlkit.envs.multiagent import ParallelEnvRows
    from rlkit.training.evaluation import evaluate

    class OnlyA(ParallelEnv):
        possible_agents, metadata = ["a", "b"], {"name": "only_a_v0"}

        def __init__(self):
            self.agents = []

        def observation_space(self, agent):
            return spaces.Box(0, 100, (1,), np.float32)

        def action_space(self, agent):
            return spaces.Discrete(2)

        def reset(self, seed=None, options=None):
            self.t, self.agents = 0, ["a"]
            return {"a": np.zeros(1, np.float32)}, {"a": {}}

        def step(self, actions):
            self.t += 1
            done = self.t >= 5
            if done:
                self.agents = []
            return {"a": np.array([self.t], np.float32)}, {"a": 1.0}, {"a": done}, {"a": False}, {"a": {}}

        def close(self):
            pass

    class Zeros:
        device = torch.device("cpu")

        def act(self, step, explore, epsilon=None):
            return np.zeros(step.size, dtype=np.int64)

    result = evaluate(Zeros(), None, 4, 0.0, seed=0, envs=ParallelEnvRows([OnlyA, OnlyA]))
    assert result["returns"] == [5.0, 5.0]  # one game per copy (4 asked / 4 rows), agent a's episode in each
