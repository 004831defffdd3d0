"""Turning clips derived from straight ones (``"walk:turn=30"``, :func:`rlkit.envs.mocap.turned`) and the
episode cap on non-looping clips that gives them the episodes of their looping source."""

import gymnasium as gym
import numpy as np
import pytest

from rlkit.envs.mocap import load_clip, load_model, quat_rotate
from rlkit.errors import ConfigError


@pytest.fixture(scope="module")
def model():
    return load_model()


def _heading(qpos: np.ndarray) -> np.ndarray:
    forward = quat_rotate(qpos[:, 3:7], np.tile([1.0, 0.0, 0.0], (len(qpos), 1)))
    return np.unwrap(np.arctan2(forward[:, 1], forward[:, 0]))


@pytest.mark.parametrize("rate", [30.0, -45.0])
def test_turned_clip_turns_at_the_rate_and_keeps_speed_height_and_joints(model, rate):
    straight, turning = load_clip("walk", model), load_clip(f"walk:turn={rate:g}", model)
    assert turning.name == f"walk:turn={rate:g}" and not turning.loop
    assert turning.num_frames == 4 * (straight.num_frames - 1) + 1  # four cycles unrolled
    base = np.stack([straight.frame(k) for k in range(turning.num_frames)])
    extra = _heading(turning.qpos) - _heading(base)
    expected = np.deg2rad(rate) * turning.dt * np.arange(turning.num_frames)
    np.testing.assert_allclose(extra, expected, atol=1e-9)
    speed = np.linalg.norm(np.diff(turning.qpos[:, :2], axis=0), axis=1)
    np.testing.assert_allclose(speed, np.linalg.norm(np.diff(base[:, :2], axis=0), axis=1), atol=1e-12)
    np.testing.assert_array_equal(turning.qpos[:, 2], base[:, 2])
    np.testing.assert_allclose(turning.qpos[:, 7:], base[:, 7:], atol=1e-12)  # re-normalised quaternions
    # the path bends to the side of the turn: positive rates end left of the straight line (its +y side here)
    straight_dir = base[-1, :2] - base[0, :2]
    end = turning.qpos[-1, :2] - turning.qpos[0, :2]
    side = straight_dir[0] * end[1] - straight_dir[1] * end[0]  # z of the 2-D cross product
    assert np.sign(side) == np.sign(rate)


def test_zero_turn_is_the_unrolled_clip(model):
    straight, same = load_clip("walk", model), load_clip("walk:turn=0,cycles=2", model)
    base = np.stack([straight.frame(k) for k in range(same.num_frames)])
    np.testing.assert_allclose(same.qpos, base, atol=1e-12)
    assert same.num_frames == 2 * (straight.num_frames - 1) + 1


@pytest.mark.parametrize("name, words", [("walk:turn=abc", "expected CLIP:turn"), ("walk:speed=2", "expected CLIP:turn"),
                                         ("walk:turn=400", "within"), ("walk:turn=10,cycles=0", "cycles"),
                                         ("walk:turn=10,cycles=1.5", "whole"),
                                         ("walk:turn=10,cycles=inf", "whole"), ("walk:turn=nan", "within"), ("wakl:turn=10", "did you mean")])
def test_bad_derived_clip_names_are_config_errors(model, name, words):
    with pytest.raises(ConfigError, match=words):
        load_clip(name, model)


def test_episode_cap_applies_to_non_looping_clips():
    env = gym.make("rlkit/HumanoidImitation-v0", clips=["walk:turn=30"], max_episode_steps=12, min_steps=12,
                   action_mode="pd_residual")
    for seed in range(3):
        env.reset(seed=seed)
        for t in range(12):
            _, _, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
            if terminated:
                break
            assert truncated == (t == 11)  # zero residual tracks the reference: the cap ends it, not a fall
    env.close()
