"""Box action spaces with a fixed dimension (low == high there): the rescaling to the policy's [-1, 1] units
(``rlkit.contract.agent.BoxActions``) gives that dimension the normalised value 0 and the env value ``low``,
so SAC, MPO, BC and RIS act and learn without NaN (before, (a - c) / (high - low) / 2 was 0 / 0 = NaN in
every critic or BC input)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlkit.agents import BC, MPO, RIS, SAC, BCConfig, MPOConfig, RISConfig, SACConfig
from rlkit.contract.agent import BoxActions
from rlkit.experience.replay import ReplayBuffer

FIXED = 0.5  # the fixed dimension's only value
ACTIONS = gym.spaces.Box(np.array([-1.0, -2.0, FIXED], np.float32), np.array([1.0, 2.0, FIXED], np.float32))


class FixedDimPoint(gym.Env):
    """A point on the plane moved by the first two action dimensions; the third is fixed at 0.5 (low == high)
    and the env refuses any other value. ``goal=True``: Dict observations with a sparse 0/-1 goal reward
    (RIS's setting), else a vector observation and reward -|p|."""

    def __init__(self, goal: bool = False) -> None:
        self.goal = goal
        self.action_space = ACTIONS
        point = gym.spaces.Box(-5.0, 5.0, (2,), np.float32)
        self.observation_space = (gym.spaces.Dict({"observation": point, "achieved_goal": point,
                                                   "desired_goal": point}) if goal else point)
        self.target = np.array([0.5, -0.5], np.float32)

    def _obs(self):
        if not self.goal:
            return self.p.copy()
        return {"observation": self.p.copy(), "achieved_goal": self.p.copy(), "desired_goal": self.target.copy()}

    def compute_reward(self, achieved, desired, info):
        return -(np.linalg.norm(np.asarray(achieved) - desired, axis=-1) > 0.3).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.p, self.t = self.np_random.uniform(-1.0, 1.0, 2).astype(np.float32), 0
        return self._obs(), {}

    def step(self, action):
        assert action[2] == FIXED, f"the fixed dimension reached the env as {action[2]}"
        assert np.all(np.isfinite(action)), action
        self.p = np.clip(self.p + 0.1 * action[:2] * np.array([1.0, 0.5]), -5, 5).astype(np.float32)
        self.t += 1
        reward = (float(self.compute_reward(self.p, self.target, None)) if self.goal
                  else -float(np.linalg.norm(self.p)))
        return self._obs(), reward, False, self.t >= 20, {}


def _rollout(agent, env: FixedDimPoint, buffer: ReplayBuffer, steps: int, seed: int = 0) -> None:
    """Acts in the env with the agent (exploring) and writes the rows as the online loop does (the row after
    an episode's end holds its final observation and is flagged autoreset)."""
    obs, _ = env.reset(seed=seed)
    autoreset = False
    for t in range(steps):
        batched = ({k: v[None] for k, v in obs.items()} if isinstance(obs, dict) else obs[None])
        agent.set_env_steps(t)
        action = agent.predict(batched, deterministic=False)
        assert action.shape == (1, 3) and action.dtype == np.float32
        assert action[0, 2] == FIXED and np.all(np.isfinite(action))
        if autoreset:
            buffer.add(batched, action, np.zeros(1, np.float32), np.zeros(1, bool), np.zeros(1, bool), np.ones(1, bool))
            obs, _ = env.reset()
            autoreset = False
            continue
        next_obs, reward, terminated, truncated, _ = env.step(action[0])
        buffer.add(batched, action, np.array([reward], np.float32), np.array([terminated]), np.array([truncated]),
                   np.zeros(1, bool))
        obs, autoreset = next_obs, terminated or truncated


def _parameters(agent) -> list[torch.Tensor]:
    return [p for value in vars(agent).values() if isinstance(value, nn.Module) for p in value.parameters()]


def _check_learns_without_nan(agent, env: FixedDimPoint, hook=None) -> None:
    buffer = ReplayBuffer.from_spaces(env.observation_space, env.action_space, 2000, 1, seed=1, sample_hook=hook)
    _rollout(agent, env, buffer, 120)
    for _ in range(20):
        metrics = agent.update(buffer.sample(32))
        values = {k: float(v) for k, v in metrics.items()}
        assert all(math.isfinite(v) for v in values.values()), values
    params = _parameters(agent)
    assert params and all(bool(torch.isfinite(p).all()) for p in params)
    _rollout(agent, env, buffer, 30, seed=5)  # acting after learning: finite, the fixed dimension at low


def test_box_actions_fixed_dimension_is_zero_in_policy_units_and_low_in_the_env():
    box = BoxActions(ACTIONS, torch.device("cpu"))
    env_actions = torch.tensor([[1.0, -2.0, FIXED], [0.0, 1.0, FIXED], [-1.0, 2.0, 7.0]])
    unit = box.normalize(env_actions)
    torch.testing.assert_close(unit, torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.5, 0.0], [-1.0, 1.0, 0.0]]))
    back = box.to_env(torch.tensor([[1.0, -1.0, 0.3], [0.0, 0.5, -1.0], [0.2, 0.1, float("nan")]]))
    np.testing.assert_array_equal(back[:, 2], [FIXED, FIXED, FIXED])
    np.testing.assert_allclose(back[:, :2], [[1.0, -2.0], [0.0, 1.0], [0.2, 0.2]], rtol=1e-6)
    # gradients through the normalisation stay finite (no 0/0 in the graph)
    actions = env_actions.clone().requires_grad_(True)
    box.normalize(actions).sum().backward()
    assert torch.isfinite(actions.grad).all() and bool((actions.grad[:, 2] == 0).all())
    # spaces without a fixed dimension keep the plain formula (bitwise: the seeded records depend on it)
    plain = BoxActions(gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32)),
                       torch.device("cpu"))
    x = torch.tensor([[0.3, 7.0]])
    assert torch.equal(plain.normalize(x), (x - plain.center) / plain.half_range)


@pytest.mark.parametrize("name", ["sac", "mpo", "bc-mse", "bc-gaussian"])
def test_agents_learn_and_act_on_a_space_with_a_fixed_dimension(name):
    env = FixedDimPoint()
    torch.manual_seed(0)
    if name == "sac":
        agent = SAC(SACConfig(actor_hidden=[32], critic_hidden=[32], random_steps=40), env.observation_space, ACTIONS)
    elif name == "mpo":
        agent = MPO(MPOConfig(policy_hidden=[32], critic_hidden=[32]), env.observation_space, ACTIONS)
    else:
        agent = BC(BCConfig(hidden=[32], loss=name.split("-")[1]), env.observation_space, ACTIONS)
    _check_learns_without_nan(agent, env)


def test_ris_learns_and_acts_on_a_space_with_a_fixed_dimension():
    env = FixedDimPoint(goal=True)
    cfg = RISConfig(actor_hidden=[32], critic_hidden=[32], subgoal_hidden=[32], subgoal_samples=3, random_steps=40)
    agent = RIS(cfg, env.observation_space, ACTIONS)
    _check_learns_without_nan(agent, env, hook=agent.make_sample_hook())


def test_inverse_dynamics_on_a_space_with_a_fixed_dimension():
    from rlkit.auxiliary import InverseDynamicsConfig

    env = FixedDimPoint()
    torch.manual_seed(0)
    cfg = SACConfig(actor_hidden=[32], critic_hidden=[32], random_steps=40, encoder_hidden=[16],
                    aux=[InverseDynamicsConfig(weight=1.0, hidden=[16])])
    agent = SAC(cfg, env.observation_space, ACTIONS)
    _check_learns_without_nan(agent, env)  # the aux loss is among the metrics checked finite
    batch = ReplayBuffer.from_spaces(env.observation_space, ACTIONS, 100, 1, seed=1)
    _rollout(agent, env, batch, 40)
    assert math.isfinite(float(agent.update(batch.sample(16))["aux/inverse_dynamics"]))
