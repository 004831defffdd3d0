"""``env.backend: warp`` for rlkit/AntMazeU-v0 (envs/ant_warp.py) against plain MuJoCo, and HER's lookup of its reward.

The env tests need mujoco-warp (``pip install 'rlkit-toolkit[warp]'``) and skip without it (CI installs ``.[dev]``
only), as tests/test_warp_backend.py does; they run on warp's CPU device (building an env costs ~2-3 s; the first
step ever compiles warp's kernels for ~30 s, cached in ~/.cache/warp). The config and HER tests run everywhere.

What is compared, and why these tolerances (mujoco-warp computes in float32, MuJoCo in float64; 5 RK4 substeps per
env step; the Ant falls from z = 0.75 at reset and its first floor contacts come at step ~4):

* One env step from shared states (both sims set to the same ``qpos`` / ``qvel`` / goal, zero warmstart, the same
  action), at states along MuJoCo trajectories with and without floor contacts: qpos within 1e-5, the observation
  (incl. the 78 clipped ``cfrc_ext`` entries) within 1e-3, reward and termination equal. Measured: qpos <= ~1e-6,
  observation <= ~1e-4.
* A short trajectory, 20 env steps (1 s) of uniform random actions from 6 shared starts: qpos within 1e-4, reward
  and termination equal. Measured: 1.3e-5. Why 20 steps: the Ant on the floor amplifies any difference about 10x
  per ~5 steps, so float32 rounding cannot stay small for long; MuJoCo against itself with the joint angles
  perturbed by 1e-6 is 6e-5 apart after 20 steps and 0.4 apart after 40 (docs/benchmarks.md, "mujoco-warp
  backend"), so a longer window would test the chaos, not the backend.
* The reason these match at all: :meth:`AntMazeWarpEnv._align_capsule_frames` gives plane-capsule contacts MuJoCo's
  tangent frame; without it the same one-step check is ~0.3 apart in qvel at a foot contact
  (``test_without_mujocos_contact_frames_the_feet_differ``).
"""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest

import rlkit.envs  # noqa: F401  (registers rlkit/AntMazeU-v0)
from rlkit.config import WARP_BACKENDS, EnvConfig
from rlkit.errors import ConfigError
from rlkit.experience.her import build_relabeler, env_compute_reward, env_compute_terminated

N = 6
TOL_STEP = {"qpos": 1e-5, "obs": 1e-3}
TOL_TRAJ = {"qpos": 1e-4, "steps": 20}


# ------------------------------------------------------------------------ config and HER (no mujoco-warp needed)


def test_ant_maze_has_a_warp_backend():
    assert WARP_BACKENDS["rlkit/AntMazeU-v0"] == "rlkit.envs.ant_warp:AntMazeWarpEnv"


def test_missing_mujoco_warp_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco_warp", None)
    with pytest.raises(ConfigError, match=r"not installed: pip install 'rlkit-toolkit\[warp\]'"):
        EnvConfig(id="rlkit/AntMazeU-v0", backend="warp")
    from rlkit.envs.ant_warp import AntMazeWarpEnv

    with pytest.raises(ConfigError, match=r"needs mujoco-warp .*pip install 'rlkit-toolkit\[warp\]'"):
        AntMazeWarpEnv(num_envs=1, device="cpu")


class _BatchedGoalEnv:
    """What HER sees of a batched vector env: no ``envs``, its own batched goal-env methods."""

    num_envs = 2

    def compute_reward(self, achieved, desired, info=None):
        return -(np.linalg.norm(np.asarray(achieved) - desired, axis=-1) >= 0.5).astype(np.float32)

    def compute_terminated(self, achieved, desired, info=None):
        return np.linalg.norm(np.asarray(achieved) - desired, axis=-1) < 0.5


def test_her_finds_a_batched_vector_envs_own_goal_methods():
    """A batched vector env has no ``envs[0]``: HER takes its own compute_reward / compute_terminated, and
    recomputes terminations with it (the batched check passes)."""
    from rlkit.config import HERConfig

    envs = _BatchedGoalEnv()
    assert env_compute_reward(envs) == envs.compute_reward
    assert env_compute_terminated(envs) == envs.compute_terminated
    space = gym.spaces.Dict({k: gym.spaces.Box(-10, 10, (2,), np.float32)
                             for k in ("observation", "achieved_goal", "desired_goal")})
    relabeler = build_relabeler(HERConfig(), space, env_compute_reward(envs), env_compute_terminated(envs))
    assert relabeler.compute_terminated == envs.compute_terminated


def test_her_lookup_of_a_sync_vector_env_is_unchanged():
    envs = gym.make_vec("rlkit/PointGoal-v0", num_envs=2, vectorization_mode="sync")
    try:
        assert env_compute_reward(envs) == envs.envs[0].unwrapped.compute_reward
        assert env_compute_terminated(envs) == envs.envs[0].unwrapped.compute_terminated
    finally:
        envs.close()


# ------------------------------------------------------------------------ the env (mujoco-warp on its CPU device)


@pytest.fixture(scope="module")
def warp_env():
    pytest.importorskip("mujoco_warp")
    import torch

    from rlkit.training.build import make_vector_env

    torch.set_num_threads(1)
    envs = make_vector_env(EnvConfig(id="rlkit/AntMazeU-v0", num_envs=N, backend="warp", kwargs={"device": "cpu"}))
    yield envs  # the path a run takes
    envs.close()


def _ant(env):
    return env.unwrapped.inner.ant_env


def _cpu_starts(seeds):
    """MuJoCo envs reset with ``seeds``, and their (obs, qpos, goal)."""
    cpus = [gym.make("rlkit/AntMazeU-v0") for _ in seeds]
    obs = [env.reset(seed=int(s))[0] for env, s in zip(cpus, seeds)]
    qpos = np.stack([_ant(env).data.qpos.copy() for env in cpus])
    return cpus, {k: np.stack([o[k] for o in obs]) for k in obs[0]}, qpos


def _share(warp_env, cpus):
    """Set the warp worlds to the MuJoCo envs' states (qpos, qvel, goal); zero both warmstarts."""
    for env in cpus:
        _ant(env).data.qacc_warmstart[:] = 0.0
    warp_env.reset(options={"goal": np.stack([env.unwrapped.inner.goal for env in cpus]),
                            "qpos": np.stack([_ant(env).data.qpos for env in cpus]),
                            "qvel": np.stack([_ant(env).data.qvel for env in cpus])})


def _step_both(warp_env, cpus, actions):
    """One step of both; (qpos error, observation error) and the equality checks of reward and flags."""
    obs_w, rew_w, term_w, trunc_w, info_w = warp_env.step(actions)
    results = [env.step(a) for env, a in zip(cpus, actions)]
    qpos_c = np.stack([_ant(env).data.qpos for env in cpus])
    obs_c = {k: np.stack([r[0][k] for r in results]) for k in obs_w}
    np.testing.assert_array_equal(rew_w, [r[1] for r in results])
    np.testing.assert_array_equal(term_w, [r[2] for r in results])
    np.testing.assert_array_equal(info_w["is_success"], [r[4]["is_success"] for r in results])
    np.testing.assert_allclose(info_w["goal_distance"], [r[4]["goal_distance"] for r in results], atol=1e-4)
    return (float(np.abs(warp_env._qpos.cpu().numpy() - qpos_c).max()),
            max(float(np.abs(obs_w[k] - obs_c[k]).max()) for k in obs_w))


def test_vector_env_interface(warp_env):
    cpu = gym.make("rlkit/AntMazeU-v0")
    assert warp_env.single_observation_space == cpu.observation_space
    assert warp_env.single_action_space == cpu.action_space
    assert warp_env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert warp_env.max_episode_steps == 600
    obs, info = warp_env.reset(seed=3)
    assert {k: (v.shape, v.dtype) for k, v in obs.items()} == {
        "observation": ((N, 105), np.float32), "achieved_goal": ((N, 2), np.float32), "desired_goal": ((N, 2), np.float32)}
    obs2, _ = warp_env.reset(seed=3)
    for k in obs:
        np.testing.assert_array_equal(obs[k], obs2[k])
    assert not (obs["observation"][:, 27:] != 0).any()  # cfrc_ext is zero at reset, as MuJoCo's mj_resetData leaves it


def test_reset_draws_follow_upstream(warp_env):
    """Goals within +-1 m of a free cell's centre; starts within +-1 m of a cell centre more than 2 m from the goal."""
    maze = warp_env.cpu_env.inner.maze
    centres = np.stack(maze.unique_goal_locations)
    obs, _ = warp_env.reset(seed=0)
    for _ in range(20):
        obs, _ = warp_env.reset()
        for key in ("desired_goal", "achieved_goal"):
            offset = np.abs(obs[key][:, None] - centres[None]).max(-1).min(1)  # to the nearest cell centre
            assert (offset <= 1.0 + 1e-5).all()
        start_cell = centres[np.abs(obs["achieved_goal"][:, None] - centres[None]).max(-1).argmin(1)]
        assert (np.linalg.norm(start_cell - obs["desired_goal"], axis=1) > 2.0).all()


def test_reset_observation_matches_mujoco(warp_env):
    cpus, obs_c, qpos = _cpu_starts(range(100, 100 + N))
    obs_w, info = warp_env.reset(options={"goal": obs_c["desired_goal"], "qpos": qpos})
    for k in obs_w:
        np.testing.assert_allclose(obs_w[k], obs_c[k], atol=1e-6, rtol=0)
    np.testing.assert_allclose(info["goal_distance"], np.linalg.norm(obs_c["achieved_goal"] - obs_c["desired_goal"],
                                                                     axis=1), atol=1e-5)


def test_one_step_from_shared_states_matches_mujoco(warp_env):
    """Both sims at the same state, one env step with the same action, at 5 points of 6 MuJoCo trajectories
    (falling, first foot contacts, walking on the floor): qpos, observation, reward and flags as MuJoCo's."""
    cpus, _, _ = _cpu_starts(range(200, 200 + N))
    rng = np.random.default_rng(0)
    worst = {"qpos": 0.0, "obs": 0.0}
    contacts = 0
    for checkpoint in (1, 4, 6, 12, 25):
        while _ant(cpus[0]).data.time < checkpoint * 0.05 - 1e-9:  # advance MuJoCo alone to the checkpoint
            for env in cpus:
                env.step(rng.uniform(-1, 1, 8).astype(np.float32))
        contacts += sum(_ant(env).data.ncon > 0 for env in cpus)
        _share(warp_env, cpus)
        qpos_err, obs_err = _step_both(warp_env, cpus, rng.uniform(-1, 1, (N, 8)).astype(np.float32))
        worst = {"qpos": max(worst["qpos"], qpos_err), "obs": max(worst["obs"], obs_err)}
    print(f"one step from shared states: max qpos error {worst['qpos']:.2e}, max observation error {worst['obs']:.2e}")
    assert contacts >= N  # the checkpoints include states with floor contacts
    assert worst["qpos"] <= TOL_STEP["qpos"] and worst["obs"] <= TOL_STEP["obs"]


def test_short_trajectory_matches_mujoco(warp_env):
    cpus, obs_c, qpos = _cpu_starts(range(300, 300 + N))
    warp_env.reset(options={"goal": obs_c["desired_goal"], "qpos": qpos})
    rng = np.random.default_rng(1)
    errors = [_step_both(warp_env, cpus, rng.uniform(-1, 1, (N, 8)).astype(np.float32))
              for _ in range(TOL_TRAJ["steps"])]
    qpos_err, obs_err = np.max(errors, axis=0)
    print(f"{TOL_TRAJ['steps']}-step trajectory: max qpos error {qpos_err:.2e}, max observation error {obs_err:.2e}")
    assert qpos_err <= TOL_TRAJ["qpos"]


def test_without_mujocos_contact_frames_the_feet_differ(warp_env):
    """mujoco-warp's own plane-capsule frame (no contact filter) turns the friction pyramid at steep lower legs:
    the same one-step check is far apart once the feet touch the floor."""
    cpus, _, _ = _cpu_starts(range(200, 200 + N))
    rng = np.random.default_rng(0)
    for _ in range(30):  # on to a moment where feet touch the floor
        for env in cpus:
            env.step(rng.uniform(-1, 1, 8).astype(np.float32))
        if sum(_ant(env).data.ncon > 0 for env in cpus) >= 2:
            break
    assert sum(_ant(env).data.ncon > 0 for env in cpus) >= 2
    callback = warp_env._model.callback.contactfilter
    warp_env._model.callback.contactfilter = None
    try:
        _share(warp_env, cpus)
        obs_w, *_ = warp_env.step(actions := rng.uniform(-1, 1, (N, 8)).astype(np.float32))
        for env, a in zip(cpus, actions):
            env.step(a)
        qvel_c = np.stack([_ant(env).data.qvel for env in cpus])
        assert np.abs(warp_env._qvel.cpu().numpy() - qvel_c).max() > 1e-2
    finally:
        warp_env._model.callback.contactfilter = callback


def test_success_terminates_and_the_world_resets_alone(warp_env):
    cpus, obs_c, qpos = _cpu_starts(range(400, 400 + N))
    goal = obs_c["desired_goal"].copy()
    goal[1] = qpos[1, :2] + np.array([0.1, 0.0])  # world 1 starts next to its goal
    warp_env.reset(options={"goal": goal, "qpos": qpos})
    actions = np.zeros((N, 8), np.float32)
    _, reward, term, trunc, info = warp_env.step(actions)
    assert term.tolist() == [i == 1 for i in range(N)] and not trunc.any()
    assert reward[1] == 0.0 and (reward[[0, 2, 3, 4, 5]] == -1.0).all() and info["is_success"][1]
    np.testing.assert_array_equal(warp_env.compute_reward(info["goal_distance"][:, None] * [[1, 0]], np.zeros((N, 2))),
                                  reward)
    goals_before = warp_env._goal.cpu().numpy().copy()
    obs, reward, term, trunc, info = warp_env.step(actions)  # the autoreset step of world 1
    assert reward[1] == 0.0 and not term[1] and not trunc[1] and int(warp_env._steps[1]) == 0
    assert not (obs["desired_goal"][1] == goals_before[1]).all()  # a new goal
    assert (obs["observation"][1, 27:] == 0).all() and abs(obs["observation"][1, 0] - 0.75) < 1e-6  # at rest, z0
    np.testing.assert_array_equal(obs["desired_goal"][[0, 2, 3, 4, 5]], goals_before[[0, 2, 3, 4, 5]])
    assert (warp_env._steps.cpu().numpy()[[0, 2, 3, 4, 5]] == 2).all()


def test_truncation_at_the_episode_length(warp_env):
    warp_env.reset(seed=5)
    warp_env._steps[:] = warp_env.max_episode_steps - 1
    _, _, term, trunc, _ = warp_env.step(np.zeros((N, 8), np.float32))
    assert trunc.all() and not term.any()


def test_divergence_truncates_with_the_previous_state(warp_env):
    import torch

    obs0, _ = warp_env.reset(seed=6)
    warp_env._wp.to_torch(warp_env._data.xfrc_applied)[2, 1, 0] = float("nan")  # a NaN force on world 2's torso
    before = warp_env._qpos[2].clone()
    obs, reward, term, trunc, info = warp_env.step(np.zeros((N, 8), np.float32))
    assert info["diverged"].tolist() == [i == 2 for i in range(N)]
    assert trunc[2] and not term[2] and all(np.isfinite(v).all() for v in obs.values()) and np.isfinite(reward).all()
    assert torch.equal(warp_env._qpos[2], before)
    obs, reward, term, trunc, info = warp_env.step(np.zeros((N, 8), np.float32))  # world 2 starts anew
    assert reward[2] == 0.0 and not info["diverged"].any() and all(np.isfinite(v).all() for v in obs.values())


def test_her_takes_the_warp_envs_batched_reward(warp_env):
    assert env_compute_reward(warp_env) == warp_env.compute_reward
    cpu = gym.make("rlkit/AntMazeU-v0").unwrapped
    rng = np.random.default_rng(2)
    achieved, desired = rng.uniform(-5, 5, (64, 2)), rng.uniform(-5, 5, (64, 2))
    desired[:8] = achieved[:8] + 0.1
    np.testing.assert_array_equal(warp_env.compute_reward(achieved, desired, None), cpu.compute_reward(achieved, desired))
    np.testing.assert_array_equal(warp_env.compute_terminated(achieved, desired, None),
                                  cpu.compute_terminated(achieved, desired))


def test_bad_arguments(warp_env):
    from rlkit.envs.ant_warp import AntMazeWarpEnv

    with pytest.raises(ValueError, match="actions of shape"):
        warp_env.step(np.zeros((N + 1, 8), np.float32))
    with pytest.raises(ValueError, match="unknown reset options"):
        warp_env.reset(options={"frame": 3})
    with pytest.raises(ValueError, match="exact state needs 'goal' and 'qpos'"):
        warp_env.reset(options={"qpos": np.zeros(15)})
    with pytest.raises(ValueError, match="is a wall"):
        warp_env.reset(options={"goal_cell": (2, 2)})
    with pytest.raises(ConfigError, match="device='gpu'"):
        AntMazeWarpEnv(num_envs=1, device="gpu")
    with pytest.raises(ConfigError, match="does not render"):
        AntMazeWarpEnv(num_envs=1, device="cpu", render_mode="rgb_array")


def test_eval_goal_is_ris_test_task():
    """``eval_goal=True`` (train.eval_env_kwargs of the SAC+HER / RIS configs): start and goal at the two ends of the U,
    each within +-0.25 m of its cell centre; ``goal_cell`` / ``reset_cell`` options as upstream's."""
    pytest.importorskip("mujoco_warp")
    from rlkit.envs.ant_warp import AntMazeWarpEnv

    envs = AntMazeWarpEnv(num_envs=64, device="cpu", eval_goal=True)
    try:
        maze = envs.cpu_env.inner.maze
        obs, _ = envs.reset(seed=0)
        for key, cell in (("achieved_goal", (1, 1)), ("desired_goal", (3, 1))):
            offset = obs[key] - maze.cell_rowcol_to_xy(np.array(cell))
            assert (np.abs(offset) <= 0.25 + 1e-6).all() and np.abs(offset).max() > 0.2  # uniform in the square
        obs, _ = envs.reset(options={"goal_cell": (1, 3)})  # a call's cells replace eval_goal's
        offset = obs["desired_goal"] - maze.cell_rowcol_to_xy(np.array((1, 3)))
        assert (np.abs(offset) <= 0.25 + 1e-6).all()
    finally:
        envs.close()
