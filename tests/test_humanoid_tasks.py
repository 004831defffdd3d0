"""rlkit/HumanoidGoToTarget-v0 and rlkit/HumanoidCarry-v0 (envs/humanoid_tasks.py): checkers, the imitation env's
proprioception and servos, success, falls, time limit, seeding, pixels, bad keywords."""

import warnings

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import rlkit.envs  # noqa: F401
from rlkit.envs.humanoid_imitation import HumanoidImitationEnv
from rlkit.envs.humanoid_tasks import PROPRIO_DIM, PROPRIO_SLICES, CarryEnv, GoToTargetEnv
from rlkit.errors import ConfigError

IDS = ("rlkit/HumanoidGoToTarget-v0", "rlkit/HumanoidCarry-v0")


def _hold_standing_action() -> np.ndarray:
    """The absolute PD action whose target is the neutral (standing) pose: balls 0, knees 1 (0 rad), elbows -1."""
    action = np.zeros(28, dtype=np.float32)
    action[[17, 24]] = 1.0   # knees: range [-3.14, 0]
    action[[9, 13]] = -1.0   # elbows: range [0, 3.14]
    return action


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("pixels", [False, True])
def test_gymnasium_and_sb3_checkers(env_id, pixels):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(env_id, pixels=pixels, render_mode="rgb_array")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
        sb3_check_env(gym.make(env_id, pixels=pixels, reward_type="shaped"), warn=True)
    unexpected = [str(w.message) for w in caught if "observation space m" not in str(w.message)
                  or "infinity" not in str(w.message)]  # unbounded proprio/task Boxes are fine
    assert not unexpected, unexpected
    space = env.observation_space
    assert space["proprio"].shape == (PROPRIO_DIM,) and env.action_space.shape == (28,)
    assert space["task"].shape == ((3,) if "GoTo" in env_id else (22,))
    assert ("pixels" in space.spaces) == pixels
    obs, _ = env.reset(seed=0)
    if pixels:
        assert obs["pixels"].shape == (3, 64, 64) and obs["pixels"].dtype == np.uint8 and obs["pixels"].std() > 1
    assert env.render().shape == (360, 480, 3)
    env.close()


@pytest.mark.parametrize("cls", [GoToTargetEnv, CarryEnv])
def test_proprio_is_the_imitation_envs_and_pd_steps_match(cls):
    """A decoder trained on rlkit/HumanoidImitation-v0 reads "proprio" unchanged, and a PD action moves the body
    as it would there."""
    imitation = HumanoidImitationEnv(clips=["walk"], action_mode="pd")
    task = cls()
    imitation.reset(seed=1)
    task.reset(seed=1, options={"target": (5.0, 5.0)} if cls is GoToTargetEnv else {"box": (5, 5), "zone": (-5, 5)})
    qpos, qvel = task.data.qpos.copy(), task.data.qvel.copy()
    qpos[:43], qvel[:34] = imitation.data.qpos, imitation.data.qvel
    task.set_state(qpos, qvel)
    np.testing.assert_allclose(task._observation()["proprio"], imitation._observation()[:PROPRIO_DIM], atol=1e-6)
    assert PROPRIO_SLICES["body_positions"] == slice(74, 116) and PROPRIO_SLICES["joint_positions"] == slice(10, 46)
    action = np.random.default_rng(0).uniform(-1, 1, 28)
    for _ in range(3):
        imitation.step(action)
        task.step(action)
    np.testing.assert_allclose(task.data.qpos[:43], imitation.data.qpos, atol=1e-6)
    np.testing.assert_allclose(task.proprio(), imitation._observation()[:PROPRIO_DIM], atol=1e-4)


@pytest.mark.parametrize("reward_type", ["sparse", "shaped"])
def test_go_to_target_success_ends_the_episode_with_reward_one(reward_type):
    env = GoToTargetEnv(reward_type=reward_type, init_pose="stand")
    obs, info = env.reset(seed=0, options={"target": (0.2, 0.0)})  # 0.2 m from the root: inside 0.5 m
    assert not info["is_success"] and info["target_distance"] == pytest.approx(0.2, abs=1e-6)
    root_pos, root_mat = env._root_frame()
    np.testing.assert_allclose(obs["task"], (np.array([0.2, 0.0, 0.0]) - root_pos) @ root_mat, atol=1e-6)
    before = info["target_distance"]
    _, reward, terminated, truncated, info = env.step(_hold_standing_action())
    assert info["is_success"] and terminated and not truncated and not info["fell"]
    expected = 1.0 + (before - info["target_distance"] if reward_type == "shaped" else 0.0)
    assert reward == pytest.approx(expected, abs=1e-9)

    env.reset(seed=0, options={"target": (3.0, 0.0)})  # far: no success, sparse reward 0, shaped = progress
    before = env.target_distance()
    _, reward, terminated, _, info = env.step(_hold_standing_action())
    assert not info["is_success"] and not terminated
    assert reward == pytest.approx(0.0 if reward_type == "sparse" else before - info["target_distance"], abs=1e-9)


def test_carry_success_when_the_box_rests_in_the_zone():
    env = CarryEnv(init_pose="stand")
    _, info = env.reset(seed=0, options={"box": (0.0, 1.0), "zone": (2.0, 0.0)})
    assert not info["box_on_floor"] and info["box_zone_distance"] == pytest.approx(np.sqrt(5), abs=1e-6)
    _, reward, terminated, _, info = env.step(_hold_standing_action())  # the box sits still on its pedestal
    assert reward == 0.0 and not terminated and not info["is_success"]
    assert env.box_position()[2] == pytest.approx(env.pedestal_height + env.box_half, abs=5e-3)

    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    q, v = env._box_qpos, env._box_qvel
    qpos[q:q + 7] = [2.1, 0.1, env.box_half - 1e-4, 1, 0, 0, 0]  # on the floor inside the zone
    qvel[v:v + 6] = 0.0
    env.set_state(qpos, qvel)
    _, reward, terminated, _, info = env.step(_hold_standing_action())
    assert info["is_success"] and info["box_on_floor"] and terminated and reward == 1.0

    env.reset(seed=0, options={"box": (0.0, 1.0), "zone": (2.0, 0.0)})
    qvel[v:v + 3] = [2.0, 0.0, 0.0]  # in the zone but sliding fast: not resting
    env.set_state(qpos, qvel)
    _, reward, terminated, _, info = env.step(_hold_standing_action())
    assert not info["is_success"] and reward == 0.0


def test_carry_shaped_reward_is_hand_and_box_progress():
    env = CarryEnv(init_pose="stand", reward_type="shaped", hand_weight=0.5, box_weight=2.0)
    env.reset(seed=2)
    before = 0.5 * env.hand_box_distance() + 2.0 * env.box_zone_distance()
    _, reward, _, _, info = env.step(_hold_standing_action())
    after = 0.5 * info["hand_box_distance"] + 2.0 * info["box_zone_distance"]
    assert reward == pytest.approx(before - after, abs=1e-9)
    obs = env._observation()
    root_pos, root_mat = env._root_frame()
    np.testing.assert_allclose(obs["task"][0:3], (env.box_position() - root_pos) @ root_mat, atol=1e-5)
    np.testing.assert_allclose(obs["task"][13:16], (env.zone - root_pos) @ root_mat, atol=1e-5)


@pytest.mark.parametrize("cls", [GoToTargetEnv, CarryEnv])
def test_falling_terminates(cls):
    env = cls(init_pose="stand")
    env.reset(seed=0)
    qpos = env.data.qpos.copy()
    qpos[:7] = [0.0, 0.0, 0.15, np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0]  # lying, root 0.15 m up
    env.set_state(qpos, np.zeros(env.model.nv))
    assert not env._touching(env._head, (env._floor,))  # the root-height rule alone
    _, reward, terminated, truncated, info = env.step(_hold_standing_action())
    assert terminated and info["fell"] and not truncated and not info["is_success"] and reward == 0.0
    # random PD targets topple the humanoid well within the time limit
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(env.max_episode_steps):
        _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 28))
        if terminated or truncated:
            break
    assert terminated and info["fell"]


@pytest.mark.parametrize("reward_type", ["sparse", "shaped"])
def test_fall_penalty_is_subtracted_on_the_falling_step_only(reward_type):
    """``fall_penalty``: the same fall, with and without it, differs by exactly the penalty; a step that does not
    fall is untouched; bad values are refused."""
    rewards = {}
    for penalty in (0.0, 2.5):
        env = GoToTargetEnv(init_pose="stand", reward_type=reward_type, fall_penalty=penalty)
        env.reset(seed=0, options={"target": (3.0, 0.0)})
        _, upright, terminated, _, _ = env.step(_hold_standing_action())
        assert not terminated
        qpos = env.data.qpos.copy()
        qpos[:7] = [0.0, 0.0, 0.15, np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0]  # lying: a fall
        env.set_state(qpos, np.zeros(env.model.nv))
        _, fall, terminated, _, info = env.step(_hold_standing_action())
        assert terminated and info["fell"]
        rewards[penalty] = (upright, fall)
    assert rewards[2.5][0] == rewards[0.0][0]
    assert rewards[2.5][1] == pytest.approx(rewards[0.0][1] - 2.5)
    for bad in (-1.0, float("nan"), True, "big"):
        with pytest.raises(ConfigError, match="fall_penalty must be a number >= 0"):
            GoToTargetEnv(fall_penalty=bad)


def test_head_on_the_floor_is_a_fall():
    env = GoToTargetEnv(init_pose="stand", min_root_height=0.01)
    env.reset(seed=0)
    qpos = env.data.qpos.copy()
    pitch = np.deg2rad(100.0)  # head-first, head down: the head sphere (r 0.1025) at z 0.09, the chest clear
    qpos[:7] = [0.0, 0.0, 0.2, np.cos(pitch / 2), 0.0, np.sin(pitch / 2), 0.0]
    env.set_state(qpos, np.zeros(env.model.nv))
    assert env._touching(env._head, (env._floor,))
    _, _, terminated, _, info = env.step(_hold_standing_action())
    assert terminated and info["fell"]


def test_time_limit_truncates():
    env = GoToTargetEnv(init_pose="stand", max_episode_steps=3)
    env.reset(seed=0, options={"target": (3.0, 0.0)})
    for t in range(3):
        _, _, terminated, truncated, _ = env.step(_hold_standing_action())
        assert not terminated and truncated == (t == 2)


@pytest.mark.parametrize("env_id", IDS)
def test_seeding_is_reproducible(env_id):
    a, b = gym.make(env_id), gym.make(env_id)
    obs_a, _ = a.reset(seed=7)
    obs_b, _ = b.reset(seed=7)
    actions = np.random.default_rng(1).uniform(-1, 1, (4, 28)).astype(np.float32)
    for act in actions:
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        obs_a, *_ = a.step(act)
        obs_b, *_ = b.step(act)
    other, _ = b.reset(seed=8)
    first, _ = a.reset(seed=7)
    assert not np.allclose(other["task"], first["task"])


def test_egocentric_pixels_see_the_target_ahead():
    env = GoToTargetEnv(init_pose="stand", pixels=True)
    env.reset(seed=0)
    root_pos, root_mat = env._root_frame()
    forward = root_mat[:2, 0] / np.linalg.norm(root_mat[:2, 0])

    def green(xy):
        obs, _ = env.reset(seed=0, options={"target": xy})
        r, g, b = obs["pixels"].astype(int)
        return int(np.sum((g > r + 60) & (g > b + 60)))

    assert green(root_pos[:2] + 2.0 * forward) > 20 * max(green(root_pos[:2] - 2.0 * forward), 1)
    env.close()


def test_bad_keywords_and_options_are_clear_errors():
    with pytest.raises(ConfigError, match="did you mean 'reward_type'"):
        gym.make("rlkit/HumanoidGoToTarget-v0", reward_typ="sparse")
    with pytest.raises(ConfigError, match="reward_type must be one of 'sparse', 'shaped'"):
        gym.make("rlkit/HumanoidCarry-v0", reward_type="dense")
    with pytest.raises(ConfigError, match="did you mean 'box_mass'"):
        CarryEnv(box_mas=3.0)
    with pytest.raises(ConfigError, match="box_distance must be"):
        CarryEnv(box_distance=(2.0, 1.0))
    with pytest.raises(ConfigError, match="min_target_distance"):
        GoToTargetEnv(min_target_distance=5.0, target_radius=2.0)
    with pytest.raises(ConfigError, match="must exceed success_distance"):
        GoToTargetEnv(min_target_distance=0.4, success_distance=0.5)
    with pytest.raises(ConfigError, match="must exceed zone_radius"):
        CarryEnv(min_box_zone_distance=0.5, zone_radius=0.6)
    with pytest.raises(ConfigError, match="action_mode"):
        GoToTargetEnv(action_mode="pd_residual")
    with pytest.raises(ConfigError, match="pixels must be true or false"):
        GoToTargetEnv(pixels="yes")
    with pytest.raises(ConfigError, match="max_episode_steps must be a positive integer"):
        CarryEnv(max_episode_steps=0)
    with pytest.raises(ConfigError, match="width 1280 exceeds the model's offscreen buffer"):
        GoToTargetEnv(render_mode="rgb_array", width=1280)
    env = GoToTargetEnv()
    with pytest.raises(ConfigError, match="unknown reset option"):
        env.reset(options={"box": (1, 1)})
    with pytest.raises(ConfigError, match="finite"):
        env.reset(options={"target": (1, 2, 3)})


def test_torque_mode_drives_the_motors():
    env = GoToTargetEnv(action_mode="torque", init_pose="stand")
    env.reset(seed=0)
    assert env.model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    env.step(np.full(28, 0.5, dtype=np.float32))
    np.testing.assert_allclose(env.data.ctrl, 0.5)
    np.testing.assert_allclose(env.data.qfrc_actuator[6:], 0.5 * env._gear, rtol=1e-6)  # gear x ctrl [N m]


def test_eval_video_records_a_dict_observation_env(tmp_path):
    """`rlkit eval --video` batches a Dict observation for the agent (it used to index obs[None])."""
    from types import SimpleNamespace

    from rlkit.cli import record_video

    seen = []

    class Agent:
        def predict(self, obs, episode_start, prev_reward, epsilon):
            seen.append({key: value.shape for key, value in obs.items()})
            return np.zeros((1, 28), dtype=np.float32)

    cfg = SimpleNamespace(env=SimpleNamespace(id="rlkit/HumanoidGoToTarget-v0", kwargs={"width": 64, "height": 48}))
    path = record_video(Agent(), cfg, tmp_path / "eval.mp4", seed=0, epsilon=0.0, max_steps=3)
    assert path.is_file() and path.stat().st_size > 0
    assert seen[0] == {"proprio": (1, PROPRIO_DIM), "task": (1, 3)} and len(seen) == 3


def test_walking_the_clip_open_loop_reaches_a_target_ahead():
    """Success fires in play, not only when placed by hand: the walk clip replayed through the PD servos from the
    env's start (frame and heading from the reset info) reaches a target 1 m ahead (measured: seeds 0-29, 26 times)."""
    imitation = HumanoidImitationEnv(clips=["walk"])
    library = imitation.library
    heading = library.clips[0].cycle_offset[:2] / np.linalg.norm(library.clips[0].cycle_offset[:2])
    env = GoToTargetEnv()
    successes = 0
    for seed in range(8):
        _, info = env.reset(seed=seed)
        k, yaw = info["start_frame"], info["start_yaw"]
        rotation = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        env.reset(seed=seed, options={"target": rotation @ heading})  # same start (same seed), target 1 m ahead
        for t in range(60):
            _, reward, terminated, truncated, info = env.step(imitation.pd_action(library.qpos(0, k + t + 1)))
            if terminated or truncated:
                break
        successes += info["is_success"]
        assert reward == float(info["is_success"])
    assert successes >= 5  # measured: 6 of these 8 (seeds 2 and 3 fall first)
