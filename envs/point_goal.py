"""PointGoal: a point mass on a plane that must reach a goal — the smallest goal-conditioned task.

Why it exists: a Dict-observation env (``observation``, ``achieved_goal``, ``desired_goal``; the
goal-env convention of gymnasium-robotics) that trains in seconds, so tests can prove Dict support end to
end (store, sample, networks, checkpoints, exact resume, evaluation) for continuous and discrete actions,
and HER can be checked on a task where relabelling matters (``reward_type="sparse"``).

Dynamics: position p in [-1, 1]^2, p' = clip(p + step_size * u), u the action: a Box in [-1, 1]^2
(``rlkit/PointGoal-v0``) or one of 4 unit moves (``rlkit/PointGoalDiscrete-v0``). The goal is drawn
uniformly at reset, at least ``2 * goal_tolerance`` from the start. Reward (``compute_reward``, vectorized
as in gymnasium-robotics' GoalEnv): dense ``-||p - g||`` or sparse ``-(||p - g|| > goal_tolerance)``. The
episode terminates on reaching the goal (dense) or never (sparse, the HER setting); the time limit truncates.
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np

from rlkit.errors import ConfigError

_MOVES = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=np.float32)


class PointGoalEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, continuous: bool = True, reward_type: Literal["dense", "sparse"] = "dense",
                 step_size: float = 0.1, goal_tolerance: float = 0.1, render_mode: str | None = None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"env render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        if reward_type not in ("dense", "sparse"):
            raise ConfigError(f"env.kwargs.reward_type must be 'dense' or 'sparse', got {reward_type!r}")
        if not 0.0 < step_size <= 1.0 or not 0.0 < goal_tolerance < 0.5:
            raise ConfigError("env.kwargs: step_size must lie in (0, 1] and goal_tolerance in (0, 0.5)")
        self.continuous, self.reward_type = continuous, reward_type
        self.step_size, self.goal_tolerance = float(step_size), float(goal_tolerance)
        box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = box if continuous else gym.spaces.Discrete(4)
        self._position = np.zeros(2, dtype=np.float32)
        self._goal = np.zeros(2, dtype=np.float32)

    def compute_reward(self, achieved_goal: Any, desired_goal: Any, info: Any = None) -> np.ndarray:
        distance = np.linalg.norm(np.asarray(achieved_goal) - np.asarray(desired_goal), axis=-1)
        if self.reward_type == "sparse":
            return -(distance > self.goal_tolerance).astype(np.float32)
        return -distance.astype(np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": self._position.copy(), "achieved_goal": self._position.copy(),
                "desired_goal": self._goal.copy()}

    def render(self) -> np.ndarray | None:
        """A 64x64 RGB top view: the goal region green, the point blue."""
        if self.render_mode != "rgb_array":
            return None
        size = 64
        coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0
        x, y = np.meshgrid(coords, coords[::-1])
        frame = np.full((size, size, 3), 255, dtype=np.uint8)
        frame[np.hypot(x - self._goal[0], y - self._goal[1]) <= max(self.goal_tolerance, 0.05)] = (60, 180, 75)
        frame[np.hypot(x - self._position[0], y - self._position[1]) <= 0.05] = (0, 90, 200)
        return frame

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._position = self.np_random.uniform(-1.0, 1.0, 2).astype(np.float32)
        while True:
            self._goal = self.np_random.uniform(-1.0, 1.0, 2).astype(np.float32)
            if np.linalg.norm(self._goal - self._position) > 2 * self.goal_tolerance:
                break
        return self._obs(), {}

    def compute_terminated(self, achieved_goal, desired_goal, info=None) -> np.ndarray:
        """GoalEnv API, batched: the episode ends on reaching the goal only with dense rewards."""
        distance = np.linalg.norm(np.asarray(achieved_goal, np.float32) - np.asarray(desired_goal, np.float32), axis=-1)
        return (distance <= self.goal_tolerance) & (self.reward_type == "dense")

    def step(self, action):
        if self.continuous:
            move = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        else:
            move = _MOVES[int(action)]
        self._position = np.clip(self._position + self.step_size * move, -1.0, 1.0).astype(np.float32)
        reward = float(self.compute_reward(self._position, self._goal))
        distance = float(np.linalg.norm(self._position - self._goal))
        success = distance <= self.goal_tolerance
        terminated = bool(self.compute_terminated(self._position, self._goal))
        return self._obs(), reward, terminated, False, {"is_success": success, "goal_distance": distance}
