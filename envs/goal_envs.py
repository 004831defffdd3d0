"""Goal-conditioned navigation and manipulation over gymnasium-robotics, under one rlkit contract.

The tasks of RIS (Chane-Sane, Schmid, Laptev, "Goal-Conditioned Reinforcement Learning with Imagined
Subgoals", ICML 2021) and the standard HER benchmarks, built on gymnasium-robotics' environments:

=============================  =============================================  ==========  ========
id                             upstream env                                   success     episode
=============================  =============================================  ==========  ========
``rlkit/AntMazeU-v0``          ``AntMaze_UMaze-v5`` (Ant, 4 m cells)          xy < 0.5    600
``rlkit/AntMazeMedium-v0``     ``AntMaze_Medium-v5``                          xy < 0.5    1000
``rlkit/AntMazeLarge-v0``      ``AntMaze_Large-v5``                           xy < 0.5    1000
``rlkit/PointMazeU-v0``        ``PointMaze_UMaze-v3`` (2-D ball, 1 m cells)   xy < 0.45   300
``rlkit/PointMazeMedium-v0``   ``PointMaze_Medium-v3``                        xy < 0.45   600
``rlkit/PointMazeLarge-v0``    ``PointMaze_Large-v3``                         xy < 0.45   800
``rlkit/FetchPush-v0``         ``FetchPush-v4``                               xyz < 0.05  50
``rlkit/FetchPickAndPlace-v0`` ``FetchPickAndPlace-v4``                       xyz < 0.05  50
``rlkit/FetchPushPixels-v0``   ``FetchPush-v4`` + ``pixels`` (uint8 3x84x84)  xyz < 0.05  50
=============================  =============================================  ==========  ========

The contract (every id):

* **Observations**: a Dict of ``observation``, ``achieved_goal``, ``desired_goal``, all float32 (upstream
  uses float64; rlkit casts and declares float32 Boxes), plus ``pixels`` for the pixel variant.
* **Reward** (:meth:`GoalTaskEnv.compute_reward`, vectorized over any leading batch shape, ``info`` ignored
  and optional, so HER can relabel ``[B, goal_dim]`` arrays with ``info=None``): ``"sparse"`` (default) is
  0 on success and -1 otherwise (RIS's and Fetch's convention); ``"dense"`` is ``-distance``.  The step
  reward is always ``compute_reward(achieved_goal, desired_goal)`` of the returned observation.
* **Success**: ``info["is_success"]`` (a bool, at reset and every step) is ``distance < success_radius``;
  rlkit's evaluation turns it into ``success_rate``, and ``info["goal_distance"]`` (the distance itself)
  into ``goal_distance_mean`` at the episodes' last step.  The mazes' upstream ``info["success"]`` (radius
  0.45 in 4 m Ant cells) is removed so that no second, different verdict travels with the step.
* **Termination**: the mazes terminate on success (``terminate_on_success=True``: RIS ends an episode,
  training or evaluation, when the xy distance drops below 0.5); Fetch never terminates (the HER
  protocol: 50-step episodes); the registered time limit truncates.

The Ant protocol of RIS, from its reference code (github.com/elliotchanesane31/RIS, ``train_ant.py`` and
``multiworld/envs/mujoco/classic_mujoco/ant_maze.py``): ``--distance_threshold 0.5`` (success and
episode end when the torso's xy distance to the goal is < 0.5), ``--max_episode_length 600`` (training
and evaluation), training resets and goals uniform over the free space (``uniform_pos_and_rot``), and
evaluation (``AntULongTestEnv-v0``, ``test_mode_case_num=1``) from the end of one arm of the U to the end
of the other, each drawn in a 0.5 m x 0.5 m square.  rlkit keeps those numbers on gymnasium-robotics'
maze, whose geometry is not RIS's multiworld maze (RIS: a 7.5 m x 18 m "U-long" arena with its own
gear-10 Ant; here: D4RL's U of 4 m cells, 12 m x 12 m inside, and Gymnasium's Ant-v5), so returns are
not comparable number for number.  Training goals and starts are upstream's: a random free cell plus
uniform noise of +-1 m (a quarter cell), about uniform over the free space.  ``eval_goal=True`` gives
the evaluation task: start in D4RL's reset cell and goal in its goal cell (U: the two arm ends, cells
(1, 1) and (3, 1); medium (1, 1) -> (6, 6); large (1, 1) -> (7, 9); D4RL's ``*_TEST`` maps), each
drawn uniformly in a 0.5 m x 0.5 m square at the cell centre as in RIS.  Medium and large are D4RL's
mazes, not RIS's (RIS's S-, Pi- and omega-shaped mazes are not in gymnasium-robotics); their episode
length is upstream's (1000).

gymnasium-robotics is imported inside the factories, never by ``import rlkit.envs`` (it costs
~0.1-0.15 s and prints a notice); its MuJoCo 4 joint-type bug is patched by
:mod:`rlkit.envs.mujoco_compat`, which ``rlkit.envs`` arms at import.  Upstream ids stay usable
(``gymnasium.register_envs(gymnasium_robotics)``; the patch reaches them too).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.envs import mujoco_compat
from rlkit.errors import ConfigError
from rlkit.mujoco_gl import check_mujoco_gl, ensure_mujoco_gl

#: RIS: success (and episode end) when the xy distance to the goal is below this (``--distance_threshold``).
ANT_SUCCESS_RADIUS = 0.5
#: RIS: ``--max_episode_length 600`` for the Ant mazes, training and evaluation alike.
RIS_EPISODE_STEPS = 600
#: Half the side of the square in which RIS draws the evaluation start and goal (0.5 m x 0.5 m).
EVAL_NOISE = 0.25
#: Pixel observations: ``pixels`` is uint8 [3, PIXELS, PIXELS] (channels first).
PIXELS = 84

#: maze name -> (gymnasium-robotics map name, evaluation (reset cell, goal cell)), cells as (row, col).
MAZES: dict[str, tuple[str, tuple[tuple[int, int], tuple[int, int]]]] = {
    "u": ("U_MAZE", ((1, 1), (3, 1))),
    "medium": ("MEDIUM_MAZE", ((1, 1), (6, 6))),
    "large": ("LARGE_MAZE", ((1, 1), (7, 9))),
}
FETCH_TASKS = {"push": "push:MujocoFetchPushEnv", "pick_and_place": "pick_and_place:MujocoFetchPickAndPlaceEnv"}
REWARD_TYPES = ("sparse", "dense")
_UPSTREAM_OWNED = ("continuing_task", "reset_target", "maze_map")


def goal_distance(achieved_goal: Any, desired_goal: Any) -> np.ndarray:
    """Euclidean distance over the last axis; any leading batch shape."""
    return np.linalg.norm(np.asarray(achieved_goal, np.float32) - np.asarray(desired_goal, np.float32), axis=-1)


def _float32_box(box: gym.spaces.Box) -> gym.spaces.Box:
    return gym.spaces.Box(box.low.astype(np.float32), box.high.astype(np.float32), box.shape, np.float32)


class GoalTaskEnv(gym.Env):
    """An upstream goal env (``inner``) under rlkit's contract (module docstring).

    Holds the upstream env rather than wrapping it, so ``env.unwrapped`` is this class and its
    :meth:`compute_reward` is the one every caller (HER, SB3, the checkers) gets.
    """

    def __init__(self, inner: gym.Env, *, success_radius: float, reward_type: str = "sparse",
                 terminate_on_success: bool = False, reset_options: dict | None = None,
                 pixels: PixelRenderer | None = None) -> None:
        if reward_type not in REWARD_TYPES:
            raise ConfigError(f"env.kwargs.reward_type must be one of {REWARD_TYPES}, got {reward_type!r}")
        if not success_radius > 0:
            raise ConfigError(f"env.kwargs.success_radius must be > 0, got {success_radius!r}")
        self.inner, self.pixels = inner, pixels
        self.success_radius, self.reward_type = float(success_radius), reward_type
        self.terminate_on_success, self.reset_options = bool(terminate_on_success), reset_options
        spaces = {key: _float32_box(inner.observation_space[key])
                  for key in ("observation", "achieved_goal", "desired_goal")}
        if pixels is not None:
            spaces["pixels"] = gym.spaces.Box(0, 255, (3, PIXELS, PIXELS), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = inner.action_space
        # rgb_array only: "human" opens a GLFW window (which aborts the process without a display, e.g. in
        # Gymnasium's check_env); rlkit records videos from rgb_array frames.
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": inner.metadata.get("render_fps")}
        self.render_mode = inner.render_mode

    def compute_reward(self, achieved_goal: Any, desired_goal: Any, info: Any = None) -> np.ndarray:
        """0 on success and -1 otherwise (sparse), or ``-distance`` (dense); float32, batch shape kept."""
        distance = goal_distance(achieved_goal, desired_goal)
        if self.reward_type == "sparse":
            return (distance < self.success_radius).astype(np.float32) - 1.0
        return -distance.astype(np.float32)

    def compute_terminated(self, achieved_goal: Any, desired_goal: Any, info: Any = None) -> np.ndarray:
        """Whether reaching ``achieved_goal`` ends the episode for ``desired_goal`` (GoalEnv API; batched):
        ``terminate_on_success and distance < success_radius``. HER uses it to recompute relabelled
        terminations."""
        reached = goal_distance(achieved_goal, desired_goal) < self.success_radius
        return reached & self.terminate_on_success

    def _observe(self, obs: dict, info: dict) -> tuple[dict[str, np.ndarray], dict]:
        obs = {key: np.asarray(obs[key], np.float32) for key in ("observation", "achieved_goal", "desired_goal")}
        if self.pixels is not None:
            obs["pixels"] = self.pixels.render(self.inner.unwrapped.data)
        info = dict(info)
        info.pop("success", None)  # upstream's maze verdict (radius 0.45): replaced by is_success
        distance = float(goal_distance(obs["achieved_goal"], obs["desired_goal"]))
        info["goal_distance"] = distance
        info["is_success"] = bool(distance < self.success_radius)
        return obs, info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.reset_options is not None:
            options = {**self.reset_options, **(options or {})}
        obs, info = self.inner.reset(seed=seed, options=options)
        return self._observe(obs, info)

    def step(self, action):
        obs, _, _, truncated, info = self.inner.step(action)
        obs, info = self._observe(obs, info)
        reward = float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"]))
        terminated = bool(self.compute_terminated(obs["achieved_goal"], obs["desired_goal"]))
        return obs, reward, terminated, bool(truncated), info

    def render(self):
        return self.inner.render()

    def close(self) -> None:
        if self.pixels is not None:
            self.pixels.close()
        self.inner.close()


#: The goal-env methods :class:`GoalEnvMethods` makes reachable on the outermost wrapper (those the base env has).
GOAL_ENV_METHODS = ("compute_reward", "compute_terminated", "compute_truncated")


class GoalEnvMethods(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The goal-env methods of the base env (:data:`GOAL_ENV_METHODS`, those it has) as attributes of this wrapper.

    Gymnasium >= 1.0 wrappers no longer forward attributes, so ``gymnasium.make(id).compute_reward`` fails on the
    ``TimeLimit`` it returns, while SB3's ``check_env`` recognises a goal env by ``env.unwrapped.compute_reward``
    and then calls ``env.compute_reward`` on the env it was given (HER finds the method with
    ``get_wrapper_attr``, which reaches it either way). Every rlkit goal id registers this wrapper in
    ``additional_wrappers``, which ``gymnasium.make`` applies outside ``TimeLimit``, so the made env answers
    ``compute_reward`` the way both look it up. The methods are the base env's own (bound), not copies.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        for name in GOAL_ENV_METHODS:
            method = getattr(env.unwrapped, name, None)
            if callable(method):
                setattr(self, name, method)


def _import_upstream(entry: str) -> type:
    """Import a gymnasium-robotics env class ("module:Class") with the MuJoCo patch in place."""
    import importlib

    ensure_mujoco_gl()  # before MuJoCo's first import: a pixel env made later in this process still renders
    try:
        import mujoco  # noqa: F401  (its OpenGL backend loads now: MUJOCO_GL=osmesa without OSMesa fails here)
    except Exception as exc:  # noqa: BLE001
        if not os.environ.get("MUJOCO_GL"):
            raise
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"MuJoCo cannot be imported with MUJOCO_GL={os.environ['MUJOCO_GL']} ({reason}); "
                          "unset MUJOCO_GL or set it to a backend installed here (egl, osmesa, glfw with a display)"
                          ) from None
    mujoco_compat.apply()
    if "gymnasium_robotics" not in sys.modules:  # its import prints a notice about Adroit envs on stderr: drop it
        with contextlib.redirect_stderr(io.StringIO()):
            importlib.import_module("gymnasium_robotics")
    module, _, name = entry.partition(":")
    cls = getattr(importlib.import_module(f"gymnasium_robotics.envs.{module}"), name)
    mujoco_compat.apply()  # patches now if the hook has not (e.g. mujoco_utils imported before rlkit.envs)
    return cls


def _make_maze(entry: str, maze: str, eval_goal: bool, reward_type: str, success_radius: float,
               terminate_on_success: bool, render_mode: str | None, kwargs: dict) -> GoalTaskEnv:
    if maze not in MAZES:
        raise ConfigError(f"env.kwargs.maze must be one of {sorted(MAZES)}, got {maze!r}")
    owned = sorted(set(kwargs) & set(_UPSTREAM_OWNED))
    if owned:
        raise ConfigError(f"env.kwargs: {owned} are set by rlkit (goal kept until success, then the episode "
                          "ends: terminate_on_success); choose the maze with maze=u|medium|large")
    cls = _import_upstream(entry)
    from gymnasium_robotics.envs.maze import maps

    map_name, (reset_cell, goal_cell) = MAZES[maze]
    inner = cls(maze_map=getattr(maps, map_name), render_mode=render_mode, reward_type="sparse",
                continuing_task=True, reset_target=False, **kwargs)
    reset_options = None
    if eval_goal:  # RIS's test case: fixed far-apart cells, each drawn in a 0.5 m square (not +-a quarter cell)
        inner.position_noise_range = EVAL_NOISE / inner.maze.maze_size_scaling
        reset_options = {"reset_cell": np.array(reset_cell), "goal_cell": np.array(goal_cell)}
    return GoalTaskEnv(inner, success_radius=success_radius, reward_type=reward_type,
                       terminate_on_success=terminate_on_success, reset_options=reset_options)


def make_ant_maze(maze: str = "u", eval_goal: bool = False, reward_type: str = "sparse",
                  success_radius: float = ANT_SUCCESS_RADIUS, terminate_on_success: bool = True,
                  render_mode: str | None = None, **kwargs) -> GoalTaskEnv:
    """``rlkit/AntMaze{U,Medium,Large}-v0``: gymnasium-robotics' AntMaze (v5) under the RIS protocol.

    ``eval_goal=True``: the evaluation task (start and goal at the maze's far ends); other keywords go
    to upstream's ``AntMazeEnv`` (e.g. ``xml_file``, Ant-v5 arguments such as ``ctrl_cost_weight``).
    """
    return _make_maze("maze.ant_maze_v5:AntMazeEnv", maze, eval_goal, reward_type, success_radius,
                      terminate_on_success, render_mode, kwargs)


def make_point_maze(maze: str = "u", eval_goal: bool = False, reward_type: str = "sparse",
                    success_radius: float = 0.45, terminate_on_success: bool = True,
                    render_mode: str | None = None, **kwargs) -> GoalTaskEnv:
    """``rlkit/PointMaze{U,Medium,Large}-v0``: the 2-D point mass in D4RL's mazes (1 m cells): the fast goal
    tasks (the U for tests and quick checks; the larger mazes' far corners for long horizons on a CPU).

    Same contract and ``eval_goal`` as the Ant mazes; success radius upstream's 0.45 (cells are 1 m).
    """
    return _make_maze("maze.point_maze:PointMazeEnv", maze, eval_goal, reward_type, success_radius,
                      terminate_on_success, render_mode, kwargs)


def make_fetch(task: str = "push", pixels: bool = False, reward_type: str = "sparse",
               render_mode: str | None = None, **kwargs) -> GoalTaskEnv:
    """``rlkit/Fetch{Push,PickAndPlace}-v0`` (and ``rlkit/FetchPushPixels-v0`` with ``pixels=True``).

    gymnasium-robotics' Fetch (v4, MuJoCo bindings) with the joint-type patch; success is upstream's
    ``distance_threshold`` (0.05 m) and the reward its (sparse: 0/-1, dense: -distance). ``pixels=True``
    adds ``obs["pixels"]``, an offscreen 84x84 camera image (uint8, channels first); where no OpenGL
    backend renders, construction raises a one-line :class:`~rlkit.errors.ConfigError`.
    """
    if task not in FETCH_TASKS:
        raise ConfigError(f"env.kwargs.task must be one of {sorted(FETCH_TASKS)}, got {task!r}")
    if reward_type not in REWARD_TYPES:
        raise ConfigError(f"env.kwargs.reward_type must be one of {REWARD_TYPES}, got {reward_type!r}")
    env_id = "rlkit/FetchPushPixels-v0"  # the only pixel id: named in the errors below
    failures = _choose_gl(env_id) if pixels else {}
    inner = _import_upstream(f"fetch.{FETCH_TASKS[task]}")(reward_type=reward_type, render_mode=render_mode,
                                                            **kwargs)
    renderer = None
    if pixels:
        try:
            with warnings.catch_warnings():  # GLFW reports its failures as warnings too: one line only
                warnings.simplefilter("ignore")
                renderer = PixelRenderer(inner.unwrapped.model, camera=FETCH_PIXEL_CAMERA)
        except Exception as exc:  # noqa: BLE001  (GL failures come as many types)
            inner.close()
            raise ConfigError(_no_gl_message(env_id, exc, failures)) from None
    return GoalTaskEnv(inner, success_radius=inner.unwrapped.distance_threshold, reward_type=reward_type,
                       pixels=renderer)


# ----------------------------------------------------------------------------------------- pixels

def _choose_gl(env_id: str) -> dict[str, str]:
    """Pick ``MUJOCO_GL`` (rlkit.mujoco_gl's rule, as videos do) before MuJoCo is imported; refuse a value MuJoCo
    rejects."""

    complaint = check_mujoco_gl()
    if complaint:
        raise ConfigError(f"{env_id}: {complaint}")
    return ensure_mujoco_gl()


def _no_gl_message(env_id: str, exc: BaseException, failures: dict[str, str]) -> str:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if failures:  # rlkit chose: every backend failed
        tried = "; ".join(f"MUJOCO_GL={b}: {why}" for b, why in failures.items())
        where = f"no OpenGL backend works here: {tried}"
    elif os.environ.get("MUJOCO_GL"):
        where = f"MUJOCO_GL={os.environ['MUJOCO_GL']}: {reason}"
    else:  # MuJoCo was imported (GLFW, needs a display) before a backend could be chosen
        where = f"{reason}; MuJoCo was imported before rlkit could choose a backend: set MUJOCO_GL=egl or osmesa"
    return (f"{env_id} renders its pixel observations offscreen, which fails here ({where}); install EGL "
            "(libegl1) or OSMesa (libosmesa6 and PyOpenGL) and set MUJOCO_GL to it, or use the state-based "
            "rlkit/FetchPush-v0")


#: The pixel camera: the table top from behind the object, gripper and goal region (upstream's video view,
#: 2.5 m away, leaves the object a few pixels wide at 84x84).
FETCH_PIXEL_CAMERA = {"distance": 1.0, "azimuth": 180.0, "elevation": -45.0, "lookat": (1.3, 0.75, 0.45)}


class PixelRenderer:
    """Offscreen MuJoCo frames as uint8 [3, size, size] from a free camera (``distance``, ``azimuth``,
    ``elevation``, ``lookat``).  Sites are not drawn: Fetch's goal marker would show the episode's goal
    in every frame, which HER's relabelled goals would then contradict (videos still show it)."""

    def __init__(self, model: Any, camera: dict[str, Any], size: int = PIXELS) -> None:
        import mujoco

        self._renderer = mujoco.Renderer(model, size, size)
        self._camera = mujoco.MjvCamera()
        mujoco.mjv_defaultFreeCamera(model, self._camera)
        self._camera.distance, self._camera.azimuth = camera["distance"], camera["azimuth"]
        self._camera.elevation, self._camera.lookat[:] = camera["elevation"], camera["lookat"]
        self._option = mujoco.MjvOption()
        self._option.sitegroup[:] = 0

    def render(self, data: Any) -> np.ndarray:
        self._renderer.update_scene(data, camera=self._camera, scene_option=self._option)
        return np.ascontiguousarray(self._renderer.render().transpose(2, 0, 1))

    def close(self) -> None:
        renderer, self._renderer = self._renderer, None
        if renderer is not None:
            renderer.close()
