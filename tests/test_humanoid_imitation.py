"""rlkit/HumanoidImitation-v0: API checks, reward terms, early termination, observations, rendering."""

import os
import warnings

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import rlkit.envs  # noqa: F401
from rlkit.errors import ConfigError
from rlkit.envs.humanoid_imitation import HumanoidImitationEnv, TrackingReward


def test_gymnasium_and_sb3_check_env():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("rlkit/HumanoidImitation-v0").unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded Box observations are fine
        check_env(env, skip_render_check=True)
        sb3_check_env(HumanoidImitationEnv(clips=["run", "kick"], action_mode="torque", ref_steps=(1, 3)))
    assert env.observation_space.shape == (501,) and env.action_space.shape == (28,)


def test_reference_state_gives_maximal_reward_and_terms_decrease():
    env = HumanoidImitationEnv(clips=["walk"])
    _, info = env.reset(seed=3)
    assert info["termination_error"] < 1e-12
    for key in ("center_of_mass", "joints_velocity", "appendages", "body_quaternions"):
        assert info[f"error_{key}"] < 1e-20
    total = sum(info[f"reward_{k}"] for k in ("center_of_mass", "joints_velocity", "appendages",
                                               "body_quaternions", "termination"))
    # the default is dm_control's comic reward, which peaks at 0.5 + 0.5 * 1.9
    assert total == pytest.approx(1.45, abs=1e-12)
    fn = TrackingReward()
    zero = {"center_of_mass": 0.0, "joints_velocity": 0.0, "appendages": 0.0, "body_quaternions": 0.0}
    assert fn(zero, 0.0, 0.3)[0] == pytest.approx(1.45)
    assert TrackingReward(normalize=True)(zero, 0.0, 0.3)[0] == pytest.approx(1.0)
    for key in zero:
        values = [fn({**zero, key: err}, 0.0, 0.3)[1][key] for err in (0.0, 0.01, 0.1, 1.0)]
        assert all(a > b for a, b in zip(values, values[1:])), key
    terms = [fn(zero, e, 0.3)[1]["termination"] for e in (0.0, 0.1, 0.2, 0.3)]
    assert terms[0] == 0.5 and terms[-1] == pytest.approx(0.0) and all(a > b for a, b in zip(terms, terms[1:]))
    with pytest.raises(ConfigError, match="com_scale"):
        HumanoidImitationEnv(reward={"com_scael": 1.0})


def test_errors_in_the_simulator_lower_each_term():
    env = HumanoidImitationEnv(clips=["walk"])
    env.reset(seed=0)
    base = env._info(*env._errors())
    d, m = env.data, env.model
    d.qvel[6:] += 0.5  # joint velocities only
    mujoco.mj_forward(m, d)
    info = env._info(*env._errors())
    assert info["reward_joints_velocity"] < base["reward_joints_velocity"]
    assert info["reward_center_of_mass"] == pytest.approx(base["reward_center_of_mass"])
    env.reset(seed=0)
    adr = m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "right_shoulder")]
    d.qpos[adr:adr + 4] = [np.cos(0.5), np.sin(0.5), 0, 0]  # arm raised sideways: appendage + quaternion error
    mujoco.mj_forward(m, d)
    info = env._info(*env._errors())
    for key in ("appendages", "body_quaternions", "center_of_mass", "termination"):
        assert info[f"reward_{key}"] < base[f"reward_{key}"], key


def test_early_termination_when_displaced():
    env = HumanoidImitationEnv(clips=["walk"])
    env.reset(seed=1)
    env.data.qpos[:3] += [0.0, 1.5, 1.0]  # 1.8 m away from the reference
    mujoco.mj_forward(env.model, env.data)
    _, reward, terminated, truncated, info = env.step(env.pd_action(env.library.qpos(env._clip, env._k + 1)))
    assert terminated and not truncated and info["termination_error"] > 0.3
    # tracking the reference from the reference state does not terminate at once
    env.reset(seed=1)
    _, reward, terminated, _, info = env.step(env.pd_action(env.library.qpos(env._clip, env._k + 1)))
    assert not terminated and info["termination_error"] < 0.1 and reward > 0.5


def test_residual_pd_actions_are_relative_to_the_reference():
    env = HumanoidImitationEnv(clips=["walk"], action_mode="pd_residual", residual_scale=0.5)
    env.reset(seed=2)
    ref = env.library.qpos(env._clip, env._k + 1)
    zero = env.pd_target(np.zeros(28))
    np.testing.assert_allclose(zero[7:], ref[7:], atol=1e-12)  # the zero action targets the next reference pose
    np.testing.assert_allclose(zero[:7], env.data.qpos[:7])    # the root is not actuated
    absolute = HumanoidImitationEnv(clips=["walk"])
    action = np.zeros(28)
    action[0] = 1.0  # chest, x axis: a rotation of 0.5 * 1.2 rad after the reference's chest rotation
    dq = np.zeros(env.model.nv)
    mujoco.mj_differentiatePos(env.model, dq, 1.0, ref, env.pd_target(action))
    np.testing.assert_allclose(dq[6:9], [0.5 * 1.2, 0, 0], atol=1e-12)
    knee = next(p for p in env._pd_map if p[0] == "hinge")
    _, adr, a, low, high = knee
    action = np.zeros(28)
    action[a] = -0.2
    assert env.pd_target(action)[adr] == pytest.approx(np.clip(ref[adr] - 0.2 * 0.5 * (high - low) / 2, low, high))
    assert absolute.pd_target(np.zeros(28))[adr] == pytest.approx((low + high) / 2)
    # the zero action replays the clip through the PD servos: it tracks far better than the neutral pose
    totals = []
    for e in (env, absolute):
        e.reset(seed=2)
        totals.append(sum(e.step(np.zeros(28, dtype=np.float32))[1] for _ in range(8)))
    assert totals[0] > 3.0 and totals[0] > totals[1] + 0.5, totals
    with pytest.raises(ConfigError, match="action_mode"):
        HumanoidImitationEnv(action_mode="residual")
    with pytest.raises(ConfigError, match="residual_scale"):
        HumanoidImitationEnv(action_mode="pd_residual", residual_scale=0.0)


def test_truncation_and_lookahead():
    env = HumanoidImitationEnv(clips=["kick"], init_at_start=True, ref_steps=(2,), termination_error_threshold=1e9)
    env.reset(seed=0)
    clip = env.library.clips[0]
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(28, dtype=np.float32))
        steps += 1
        assert not terminated
    assert steps == clip.num_frames - 1 - 2
    env = HumanoidImitationEnv(clips=["walk"], max_episode_steps=5, termination_error_threshold=1e9)
    env.reset(seed=0)
    flags = [env.step(np.zeros(28, dtype=np.float32))[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]


def test_observation_is_egocentric():
    """Rotating and moving the walker and its reference together (yaw, translation) leaves the observation unchanged."""
    env = HumanoidImitationEnv(clips=["walk"], ref_steps=(1, 5))
    env.reset(seed=4)
    obs = env.reference_observation(0, 7)
    assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
    # at the reference state the reference block for step s describes the motion ahead; joints diff small
    proprio = env._proprio_dim
    assert abs(obs[0] - env.data.xpos[env._root][2]) < 1e-6
    assert np.abs(obs[proprio + 7:proprio + 7 + 28]).max() < 0.6  # one frame of joint motion
    # perturb the walker away from the reference: the reference block changes, the proprioception does not
    env.data.qpos[:2] += [0.3, -0.2]
    mujoco.mj_forward(env.model, env.data)
    moved = env._observation()
    np.testing.assert_allclose(moved[:proprio], obs[:proprio], atol=1e-5)
    np.testing.assert_allclose(moved[proprio:proprio + 2], obs[proprio:proprio + 2] - (
        np.array([0.3, -0.2, 0.0]) @ env.data.xmat[env._root].reshape(3, 3))[:2], atol=1e-5)


def test_render_rgb_array():
    if os.environ.get("MUJOCO_GL") not in ("egl", "osmesa", "glfw"):
        pytest.skip("offscreen rendering needs MUJOCO_GL=egl or osmesa (set before mujoco is imported)")
    env = gym.make("rlkit/HumanoidImitation-v0", render_mode="rgb_array", width=160, height=120)
    env.reset(seed=0)
    try:
        frame = env.render()
    except Exception as exc:  # no EGL / OSMesa on this machine
        pytest.skip(f"offscreen rendering unavailable with MUJOCO_GL={os.environ.get('MUJOCO_GL')}: {exc}")
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8 and frame.std() > 5
    env.close()


def test_plot_imitation_script_curves(tmp_path):
    """scripts/plot_imitation.py: normalised length and reward per step from a run's metrics.jsonl."""
    import importlib.util
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "plot_imitation.py"
    spec = importlib.util.spec_from_file_location("plot_imitation", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = tmp_path / "run"
    run.mkdir()
    records = [{"kind": "episode", "step": 19, "return": 5.7, "length": 19},
               {"kind": "episode", "step": 57, "return": 19.0, "length": 38},
               {"kind": "eval", "step": 100, "return_mean": 11.4, "length_mean": 19.0},
               {"kind": "episode", "step": 150, "return": 3.8, "length": 38},
               {"kind": "eval", "step": 200, "return_mean": 30.4, "length_mean": 38.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "config.yaml").write_text("seed: 0\nenv: {kwargs: {max_episode_steps: 38}}\n")
    c = module.curves(run, clip_frames=38, window=100)
    np.testing.assert_allclose(c["eval_length"], [0.5, 1.0])
    np.testing.assert_allclose(c["eval_reward"], [0.6, 0.8])
    np.testing.assert_allclose(c["train_step"], [50, 150])
    np.testing.assert_allclose(c["train_length"], [(19 + 38) / 2 / 38, 1.0])
    np.testing.assert_allclose(c["train_reward"], [(0.3 + 0.5) / 2, 0.1])
    out = tmp_path / "curves.png"
    done = subprocess.run([sys.executable, str(script), str(run), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 1000 and "| normalised length | 0.50 | 1.00 |" in done.stdout
    # bad input: exit code 2 and a message naming the problem, no traceback
    for bad in (tmp_path / "missing", tmp_path):
        done = subprocess.run([sys.executable, str(script), str(bad), "--out", str(tmp_path / "x.png")],
                              capture_output=True, text=True)
        assert done.returncode == 2 and "Traceback" not in done.stderr and str(bad) in done.stderr, done.stderr
    done = subprocess.run([sys.executable, str(script), str(run), "--labels", "a", "b"], capture_output=True, text=True)
    assert done.returncode == 2 and "one label per run" in done.stderr
    (run / "config.yaml").write_text("seed: 0\n")  # no full length in the config: --clip-frames is needed
    done = subprocess.run([sys.executable, str(script), str(run), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 2 and "--clip-frames" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, str(script), str(run), "--clip-frames", "38", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "| normalised length | 0.50 | 1.00 |" in done.stdout


def test_default_reward_is_dm_control_comic_formula():
    """dm_control ``rewards.py`` (comic), written out by hand for arbitrary errors."""
    sq = {"center_of_mass": 0.02, "joints_velocity": 3.0, "appendages": 0.01, "body_quaternions": 0.2}
    e = 0.05
    comic = 0.5 * (1 - e / 0.3) + 0.5 * (0.1 * np.exp(-10 * 0.02) + 1.0 * np.exp(-0.1 * 3.0)
                                          + 0.15 * np.exp(-40 * 0.01) + 0.65 * np.exp(-2 * 0.2))
    assert TrackingReward()(sq, e, 0.3)[0] == pytest.approx(comic, rel=1e-12)
    normalised = TrackingReward(normalize=True)(sq, e, 0.3)[0]
    assert normalised == pytest.approx(0.5 * (1 - e / 0.3) + (comic - 0.5 * (1 - e / 0.3)) / 1.9, rel=1e-12)


def _servo_torques(env: HumanoidImitationEnv, steps: int) -> np.ndarray:
    """Per-substep joint torques [T, 28] with action 0 (open-loop replay of the clip in residual mode)."""
    env.reset(seed=0)
    limit, forces = env._gear, []
    record = (lambda d: forces.append(d.actuator_force.copy())) if env.pd_damping == "implicit" else \
        (lambda d: forces.append(d.actuator_force * limit))
    zero = np.zeros(28, dtype=np.float32)
    for _ in range(steps):
        env.simulate(zero, on_substep=record)
        env._k += 1
    return np.array(forces)


def _chatter(tau: np.ndarray, limit: np.ndarray) -> tuple[float, float]:
    """(median over joints of the fraction of substeps whose torque flips sign while above 5% of the
    limit, fraction of torques at the limit)."""
    big = np.abs(tau) > 0.05 * limit
    both = big[1:] & big[:-1]
    flips = (np.sign(tau[1:]) != np.sign(tau[:-1])) & both
    return float(np.median(flips.sum(0) / np.maximum(1, both.sum(0)))), float(np.mean(np.abs(tau) >= 0.99 * limit))


def test_pd_servos_do_not_chatter_on_the_walk_clip():
    env = HumanoidImitationEnv(clips=["walk"], action_mode="pd_residual")
    flips, saturated = _chatter(_servo_torques(env, 30), env._gear)
    assert flips < 0.1 and saturated < 0.05, (flips, saturated)
    # the test has teeth: DeepMimic's explicit PD at 240 Hz chatters between the torque limits
    explicit = HumanoidImitationEnv(clips=["walk"], action_mode="pd_residual", pd_damping="explicit")
    flips, saturated = _chatter(_servo_torques(explicit, 30), explicit._gear)
    assert flips > 0.5 and saturated > 0.3, (flips, saturated)


def test_implicit_servo_applies_the_clipped_pd_law():
    """The servo's torque is clip(kp diff(q, q*) - kd qdot, +-limit), along one DOF, ctrl unclamped."""
    env = HumanoidImitationEnv(clips=["walk"], action_mode="pd")
    env.reset(seed=1)
    m, d = env.model, env.data
    assert m.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    rng = np.random.default_rng(0)
    target = env.pd_target(rng.uniform(-1, 1, 28))
    d.qvel[6:] = rng.normal(0, 5, m.nv - 6)
    d.ctrl[:] = env._pd_ctrl(target)
    mujoco.mj_forward(m, d)
    dq = np.zeros(m.nv)
    mujoco.mj_differentiatePos(m, dq, 1.0, d.qpos, target)
    expected = np.clip(env._kp * dq[6:] - env._kd * d.qvel[6:], -env._gear, env._gear)
    np.testing.assert_allclose(d.actuator_force, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(d.qfrc_actuator[6:], expected, rtol=1e-9, atol=1e-9)
    assert np.any(np.abs(expected) == env._gear) and np.any(np.abs(d.ctrl) > 1.0)  # clip on the sum, not on ctrl


def test_torque_mode_keeps_its_motors():
    env = HumanoidImitationEnv(clips=["walk"], action_mode="torque")
    env.reset(seed=0)
    action = np.linspace(-1, 1, 28)
    env.data.ctrl[:] = action
    mujoco.mj_forward(env.model, env.data)
    np.testing.assert_allclose(env.data.qfrc_actuator[6:], action * env._gear, rtol=1e-9)
    assert not np.any(env.model.actuator_biasprm)  # no built-in damping in torque mode


def test_pd_target_matches_the_per_joint_formula():
    """The vectorised pd_target equals the per-joint definition in the docstring."""
    from rlkit.envs.mocap import quat_mul
    rng = np.random.default_rng(3)
    for mode in ("pd", "pd_residual"):
        env = HumanoidImitationEnv(clips=["walk"], action_mode=mode)
        env.reset(seed=2)
        action = rng.uniform(-1, 1, 28)
        target = env.pd_target(action)
        ref = env.library.qpos(env._clip, env._k + 1)
        scale = env.residual_scale if mode == "pd_residual" else 1.0
        for kind, adr, a, p0, p1 in env._pd_map:
            if kind == "ball":
                v = action[a:a + 3] * p0 * scale
                angle = np.linalg.norm(v)
                q = np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * v / angle])
                np.testing.assert_allclose(target[adr:adr + 4], quat_mul(ref[adr:adr + 4], q) if mode == "pd_residual"
                                           else q, atol=1e-12)
            elif mode == "pd_residual":
                assert target[adr] == pytest.approx(np.clip(ref[adr] + action[a] * scale * 0.5 * (p1 - p0), p0, p1))
            else:
                assert target[adr] == pytest.approx(p0 + (action[a] + 1) * 0.5 * (p1 - p0))
