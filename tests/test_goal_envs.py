"""The goal-conditioned envs of envs/goal_envs.py and the MuJoCo patch of envs/mujoco_compat.py.

Every rlkit goal id passes Gymnasium's and SB3's checkers (through test_registry's check_registered_env);
compute_reward works on batches; ``info["is_success"]`` follows the success radius (0.5 for the Ant, RIS);
``eval_goal`` puts start and goal at the far ends; vector envs work; the patch is a no-op where upstream
works; the pixel env renders 84x84 uint8 or fails in one line (exit 2).
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import rlkit.envs  # noqa: F401  (registers rlkit/... ids)
from rlkit.envs import goal_envs, mujoco_compat
from rlkit.errors import ConfigError
from rlkit.mujoco_gl import OFFSCREEN_BACKENDS, probe_mujoco_gl

from test_registry import _can_render, _no_unexpected_warnings  # noqa: E402  (tests/ is on sys.path under pytest)

ROOT = Path(__file__).resolve().parents[1]
STATE_IDS = ["rlkit/PointMazeU-v0", "rlkit/PointMazeMedium-v0", "rlkit/PointMazeLarge-v0", "rlkit/AntMazeU-v0", "rlkit/AntMazeMedium-v0", "rlkit/AntMazeLarge-v0",
             "rlkit/FetchPush-v0", "rlkit/FetchPickAndPlace-v0"]
PIXEL_ID = "rlkit/FetchPushPixels-v0"


def _gl_works() -> bool:
    return probe_mujoco_gl(os.environ.get("MUJOCO_GL", "egl")) is None


def _run(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL")}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**environ, **env}, capture_output=True,
                          text=True, timeout=120)


# ----------------------------------------------------------------------------------------- checkers

def check_goal_env(env_id: str) -> None:
    """Gymnasium's checker on the made env and on rlkit's class; SB3's on the made env.

    SB3 (2.9) recognises a goal env by ``env.unwrapped.compute_reward`` but then calls
    ``env.compute_reward`` on the env it was given; Gymnasium >= 1.0 wrappers (gym.make's TimeLimit...)
    no longer forward attributes, so every rlkit goal id puts GoalEnvMethods outermost (issue 18 #22).
    """
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    skip_render = not _can_render(env_id, {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for env in (gym.make(env_id), gym.make(env_id).unwrapped):  # the whole stack, then rlkit's class
            check_env(env, skip_render_check=skip_render)
            env.close()
        env = gym.make(env_id)
        sb3_check_env(env, warn=True)
        env.close()
    _no_unexpected_warnings(caught, env_id)


@pytest.mark.parametrize("env_id", STATE_IDS)
def test_ids_pass_env_checkers(env_id):
    check_goal_env(env_id)


def test_pixel_id_passes_env_checkers():
    if not _gl_works():
        pytest.skip(f"no offscreen OpenGL here (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): the one-line error is tested")
    check_goal_env(PIXEL_ID)
    env = gym.make(PIXEL_ID)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (3, 84, 84) and obs["pixels"].dtype == np.uint8 and obs["pixels"].std() > 0
    for _ in range(5):
        moved, *_ = env.step(np.ones(4, np.float32))
    assert not np.array_equal(moved["pixels"], obs["pixels"])  # the gripper moved in the picture
    env.close()


def test_no_opengl_is_one_line_exit_2(tmp_path):
    """A backend that cannot render here (GLX without a display): the CLI prints one line, exits 2."""
    result = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "train", str(ROOT / "configs/sac_pendulum.yaml"),
         f"env.id={PIXEL_ID}", "--run-dir", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env={**{k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")},
                          "MUJOCO_GL": "glx"})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("rlkit: error: rlkit/FetchPushPixels-v0 renders its pixel observations offscreen")


def test_pixel_env_renders_after_other_mujoco_envs_with_mujoco_gl_unset():
    """Issue 18 #23: with MUJOCO_GL unset and no display, a MuJoCo env made first (a maze, the humanoid) imported
    MuJoCo with its default backend (GLFW), and the pixel env made next could not render. rlkit now chooses the
    backend (rlkit.mujoco_gl.ensure_mujoco_gl) before any of its modules first imports MuJoCo."""
    if all(probe_mujoco_gl(backend) for backend in OFFSCREEN_BACKENDS):
        pytest.skip("no offscreen OpenGL backend works here: the one-line error is tested")
    result = _run("import os, gymnasium as gym, rlkit.envs\n"
                  "for env_id in ('rlkit/PointMazeU-v0', 'rlkit/HumanoidImitation-v0', 'rlkit/FetchPushPixels-v0'):\n"
                  "    env = gym.make(env_id); obs, _ = env.reset(seed=0); env.close()\n"
                  "print(*obs['pixels'].shape, obs['pixels'].std() > 0, os.environ['MUJOCO_GL'])\n")
    assert result.returncode == 0, result.stderr
    *shape, rendered, backend = result.stdout.split()
    assert shape == ["3", "84", "84"] and rendered == "True" and backend in OFFSCREEN_BACKENDS, result.stdout


def test_no_backend_works_state_envs_still_run_and_pixels_fail_in_one_line():
    """Every candidate backend failing (probes scripted to fail): state MuJoCo envs are unaffected; the pixel env
    is one line naming each backend and why."""
    result = _run("import rlkit.mujoco_gl as gl\n"
                  "gl.probe_mujoco_gl = lambda backend, timeout=60.0: f'no {backend} here'\n"
                  "import gymnasium as gym, rlkit.envs\n"
                  "from rlkit.errors import ConfigError\n"
                  "env = gym.make('rlkit/PointMazeU-v0'); env.reset(seed=0); env.step(env.action_space.sample())\n"
                  "try:\n"
                  "    gym.make('rlkit/FetchPushPixels-v0').reset(seed=0)\n"
                  "except ConfigError as exc:\n"
                  "    print(exc)\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PIXEL_ID} renders its pixel observations offscreen"), lines
    assert "MUJOCO_GL=egl: no egl here; MUJOCO_GL=osmesa: no osmesa here" in lines[0]


# ----------------------------------------------------------------------------------------- rewards and success

@pytest.mark.parametrize("env_id, dim, radius", [("rlkit/AntMazeU-v0", 2, 0.5), ("rlkit/PointMazeU-v0", 2, 0.45),
                                                  ("rlkit/FetchPush-v0", 3, 0.05)])
def test_compute_reward_on_batches(env_id, dim, radius):
    env = gym.make(env_id).unwrapped
    desired = np.zeros((5, dim), np.float32)
    achieved = np.zeros((5, dim), np.float32)
    achieved[:, 0] = [0.0, 0.5 * radius, 0.99 * radius, 1.01 * radius, 10.0]
    expected = np.array([0, 0, 0, -1, -1], np.float32)
    for info in (None, [{}] * 5, np.array([{}] * 5)):
        reward = env.compute_reward(achieved, desired, info)
        assert reward.shape == (5,) and reward.dtype == np.float32
        np.testing.assert_array_equal(reward, expected)
    assert env.compute_reward(achieved[1], desired[1], {}) == 0.0  # a single transition
    assert env.compute_reward(achieved.reshape(5, 1, dim), desired.reshape(5, 1, dim)).shape == (5, 1)
    dense = gym.make(env_id, reward_type="dense").unwrapped
    np.testing.assert_allclose(dense.compute_reward(achieved, desired), -achieved[:, 0], rtol=1e-6)
    # compute_terminated (GoalEnv API, used by HER for relabelled goals): success if the env ends on it
    terminated = env.compute_terminated(achieved, desired, None)
    assert terminated.shape == (5,) and terminated.dtype == bool
    np.testing.assert_array_equal(terminated, (expected == 0) & env.terminate_on_success)
    # the step reward is compute_reward of the returned observation
    obs, _ = env.reset(seed=1)
    obs, reward, *_ = env.step(env.action_space.sample())
    assert reward == env.compute_reward(obs["achieved_goal"], obs["desired_goal"])
    env.close()
    dense.close()


@pytest.mark.parametrize("offset, success", [(0.0, True), (0.3, True), (0.48, True), (0.52, False), (2.0, False)])
def test_ant_success_radius_is_ris(offset, success):
    """The ant placed by hand at ``offset`` from the goal: success (and the episode's end) iff < 0.5."""
    env = gym.make("rlkit/AntMazeU-v0")
    obs, info = env.reset(seed=0)
    assert info["is_success"] is False and "success" not in info
    ant = env.unwrapped.inner.ant_env
    qpos = ant.data.qpos.copy()
    qpos[:2] = obs["desired_goal"] + np.array([offset, 0.0])
    ant.set_state(qpos, np.zeros_like(ant.data.qvel))
    obs, reward, terminated, truncated, info = env.step(np.zeros(8, np.float32))
    assert abs(np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"]) - offset) < 0.01
    assert info["is_success"] is success and terminated is success and truncated is False
    assert info["goal_distance"] == pytest.approx(float(np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"])))
    assert reward == (0.0 if success else -1.0) and "success" not in info
    env.close()


def test_terminate_on_success_can_be_turned_off():
    env = gym.make("rlkit/AntMazeU-v0", terminate_on_success=False)
    obs, _ = env.reset(seed=0)
    ant = env.unwrapped.inner.ant_env
    qpos = ant.data.qpos.copy()
    qpos[:2] = obs["desired_goal"]
    ant.set_state(qpos, np.zeros_like(ant.data.qvel))
    _, _, terminated, _, info = env.step(np.zeros(8, np.float32))
    assert info["is_success"] and not terminated
    assert not env.unwrapped.compute_terminated(obs["desired_goal"][None], obs["desired_goal"][None]).any()
    env.close()


def test_fetch_success_is_upstreams():
    env = gym.make("rlkit/FetchPush-v0")
    obs, info = env.reset(seed=0)
    assert info["is_success"] is False
    inner = env.unwrapped.inner.unwrapped
    assert env.unwrapped.success_radius == inner.distance_threshold == 0.05
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert info["is_success"] == bool(inner._is_success(obs["achieved_goal"], obs["desired_goal"]))
        assert terminated is False
    env.close()


# ----------------------------------------------------------------------------------------- goals

@pytest.mark.parametrize("env_id, start, goal", [("rlkit/AntMazeU-v0", (-4.0, 4.0), (-4.0, -4.0)),
                                                 ("rlkit/PointMazeU-v0", (-1.0, 1.0), (-1.0, -1.0)),
                                                 ("rlkit/PointMazeMedium-v0", (-2.5, 2.5), (2.5, -2.5)),
                                                 ("rlkit/PointMazeLarge-v0", (-4.5, 3.0), (3.5, -3.0))])
def test_eval_goal_is_the_far_end_of_the_u(env_id, start, goal):
    """RIS's test case: start at one arm's end, goal at the other's (the U; the far corners of D4RL's medium and
    large mazes), each within a 0.5 m square."""
    env = gym.make(env_id, eval_goal=True)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert np.all(np.abs(obs["achieved_goal"] - start) <= 0.25 + 1e-6), obs["achieved_goal"]
        assert np.all(np.abs(obs["desired_goal"] - goal) <= 0.25 + 1e-6), obs["desired_goal"]
    env.close()
    training = gym.make(env_id)
    goals = np.array([training.reset(seed=seed)[0]["desired_goal"] for seed in range(20)])
    assert len(np.unique(goals.round(1), axis=0)) > 10  # training goals spread over the maze
    training.close()


def test_bad_kwargs_are_config_errors():
    for kwargs in ({"maze": "spiral"}, {"reward_type": "shaped"}, {"continuing_task": False}):
        with pytest.raises(ConfigError):
            gym.make("rlkit/AntMazeU-v0", **kwargs)
    with pytest.raises(ConfigError):
        gym.make("rlkit/FetchPush-v0", task="slide")


# ----------------------------------------------------------------------------------------- vector envs

@pytest.mark.parametrize("env_id", ["rlkit/PointMazeU-v0", "rlkit/AntMazeU-v0", "rlkit/FetchPickAndPlace-v0"])
def test_make_vec(env_id):
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync")
    obs, infos = envs.reset(seed=0)
    for key, space in envs.single_observation_space.spaces.items():
        assert obs[key].shape == (2, *space.shape) and obs[key].dtype == np.float32
    assert infos["is_success"].shape == (2,)
    obs, reward, terminated, truncated, infos = envs.step(envs.action_space.sample())
    assert reward.shape == (2,) and infos["is_success"].dtype == bool
    rewards = envs.call("compute_reward", obs["achieved_goal"], obs["desired_goal"], None)
    np.testing.assert_array_equal(rewards[0], reward)  # each sub-env's compute_reward relabels the whole batch
    envs.close()


# ----------------------------------------------------------------------------------------- the MuJoCo patch

_BROKEN = '''
import mujoco
def get_joint_qpos(model, data, name):  # upstream's check, as in gymnasium-robotics 1.4.2
    joint_type = model.jnt_type[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)]
    assert joint_type in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)
'''


def _fake_mujoco_utils(source: str) -> types.ModuleType:
    module = types.ModuleType("fake_mujoco_utils")
    exec(source, module.__dict__)
    for name in ("set_joint_qpos", "set_joint_qvel", "get_joint_qvel"):
        module.__dict__.setdefault(name, lambda *a: None)
    return module


def test_patch_only_where_needed_and_idempotent():
    import mujoco

    broken = _fake_mujoco_utils(_BROKEN)
    buggy = np.int32(2) not in (mujoco.mjtJoint.mjJNT_SLIDE,)  # mjJNT_SLIDE is 2: True on mujoco 4.0
    assert mujoco_compat.upstream_is_broken(broken) is buggy  # the bug is the enum's `==` with int32
    if buggy:
        assert mujoco_compat.patch_module(broken) is True and mujoco_compat.is_patched(broken)
    assert mujoco_compat.patch_module(broken) is False  # a second time: nothing to do
    # upstream already fixed (the comparison done right): left alone
    fixed = _fake_mujoco_utils(_BROKEN.replace("joint_type in", "mujoco.mjtJoint(int(joint_type)) in"))
    original = fixed.get_joint_qpos
    assert mujoco_compat.patch_module(fixed) is False and fixed.get_joint_qpos is original
    mujoco_compat.apply()
    mujoco_compat.apply()


def test_patched_helpers_and_upstream_fetch():
    """After ``import rlkit.envs`` the upstream ids work too: FetchPush-v4 builds, resets and steps."""
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    from gymnasium_robotics.utils import mujoco_utils

    assert not mujoco_compat.upstream_is_broken(mujoco_utils)
    env = gym.make("FetchPush-v4")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    model, data = env.unwrapped.model, env.unwrapped.data
    assert mujoco_utils.get_joint_qpos(model, data, "object0:joint").shape == (7,)  # free joint
    assert mujoco_utils.get_joint_qvel(model, data, "object0:joint").shape == (6,)
    mujoco_utils.set_joint_qpos(model, data, "robot0:r_gripper_finger_joint", 0.01)  # slide joint
    assert mujoco_utils.get_joint_qpos(model, data, "robot0:r_gripper_finger_joint")[0] == pytest.approx(0.01)
    env.close()


def test_import_stays_lazy_and_hook_patches_later_imports():
    """``import rlkit.envs`` imports neither gymnasium_robotics nor mujoco; a later upstream import is patched."""
    result = _run(
        "import sys, gymnasium as gym, rlkit.envs\n"
        "assert 'gymnasium_robotics' not in sys.modules and 'mujoco' not in sys.modules\n"
        "import gymnasium_robotics\n"
        "from gymnasium_robotics.utils import mujoco_utils\n"
        "from rlkit.envs import mujoco_compat\n"
        "print(not mujoco_compat.upstream_is_broken(mujoco_utils))\n"
        "gym.register_envs(gymnasium_robotics)\n"
        "env = gym.make('FetchPickAndPlace-v4'); env.reset(seed=0); env.step(env.action_space.sample())\n"
        "print('ok')\n", MUJOCO_GL="egl")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "ok"]

