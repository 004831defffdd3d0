"""Self-supervised modules of issue 21 (InfoNCE, CURL, CPC, CLAPP, Mean Teacher, DrQ) and the pixel envs."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import rlkit.envs  # noqa: F401  (registers the rlkit/... ids)


# ---------------------------------------------------------------------------------- pixel envs
@pytest.mark.parametrize("env_id", ["rlkit/PixelCartPole-v0", "rlkit/PixelPendulum-v0"])
def test_pixel_env_passes_gymnasium_and_sb3_checks(env_id: str) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
    assert info["state"].dtype == np.float32 and info["state"].shape == env.unwrapped.observation_space.shape
    obs2, _, _, _, info2 = env.step(env.action_space.sample())
    assert (obs2[:2] == obs[1:]).all()  # the stack shifts by one frame
    assert "state" in info2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env)
        sb3_check_env(gym.make(env_id))


def test_pixel_observation_is_exported_and_refuses_human_rendering() -> None:
    from rlkit.envs.wrappers import PixelObservation

    with pytest.raises(ValueError, match="rgb_array"):
        PixelObservation(gym.make("CartPole-v1"))
    env = PixelObservation(gym.make("CartPole-v1", render_mode="rgb_array"), size=32, frame_stack=2, grey=False)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (6, 32, 32)
