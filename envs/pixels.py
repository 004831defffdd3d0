"""Pixel observations of any env that renders: ``PixelObservation`` and the ``rlkit/Pixel*-v0`` ids.

The pixel-control setup of the representation-learning papers (CURL, Srinivas et al. 2020; DrQ, Kostrikov et
al. 2020): the agent sees only rendered frames, stacked so velocities are observable, while the true
low-dimensional state rides along in ``info["state"]`` — what a linear probe regresses onto (issue 21) and
what a debugging user compares against. Each frame is

    x_t = resize(grey(render(s_t)), size x size)        uint8, channel-first (C, H, W), C = frame_stack (grey)
    o_t = [x_{t-k+1}, ..., x_t]                          k = frame_stack; at reset every slot is x_0

Small enough for two CPU cores: CartPole renders in ~2 ms (pygame, no GPU, no MuJoCo), so
``rlkit/PixelCartPole-v0`` (Discrete, for DQN) and ``rlkit/PixelPendulum-v0`` (Box, for SAC) are the pixel
tasks of the self-supervised benchmark (docs/benchmarks.md). MuJoCo envs work too (``MUJOCO_GL``:
:mod:`rlkit.mujoco_gl`).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

__all__ = ["PixelObservation", "make_pixel_env"]


def _to_frame(rgb: np.ndarray, size: int, grey: bool) -> np.ndarray:
    """An ``(H, W, 3)`` RGB render -> ``(1 or 3, size, size)`` uint8."""
    import cv2

    image = np.asarray(rgb, dtype=np.uint8)
    if grey:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image[None] if grey else np.ascontiguousarray(image.transpose(2, 0, 1))


class PixelObservation(gym.Wrapper):
    """Replace an env's observation by its stacked rendered frames; the original goes to ``info["state"]``.

    ``env`` must have been made with ``render_mode="rgb_array"``. Observations: ``Box(0, 255, (C, size,
    size), uint8)`` with ``C = frame_stack`` (grey) or ``3 * frame_stack`` (colour), oldest frame first.
    """

    def __init__(self, env: gym.Env, size: int = 64, frame_stack: int = 3, grey: bool = True) -> None:
        if env.render_mode != "rgb_array":
            raise ValueError(f"PixelObservation renders with render_mode='rgb_array'; the env has {env.render_mode!r} "
                             "(make it with gymnasium.make(id, render_mode='rgb_array'))")
        if size < 1 or frame_stack < 1:
            raise ValueError(f"size and frame_stack must be >= 1, got {size} and {frame_stack}")
        super().__init__(env)
        self.size, self.frame_stack, self.grey = int(size), int(frame_stack), bool(grey)
        channels = (1 if self.grey else 3) * self.frame_stack
        self.observation_space = gym.spaces.Box(0, 255, (channels, self.size, self.size), np.uint8)
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"]}  # it renders for itself, never to a window
        self._frames: np.ndarray | None = None

    def _frame(self) -> np.ndarray:
        return _to_frame(self.env.render(), self.size, self.grey)

    def _with_state(self, info: dict[str, Any], state: Any) -> dict[str, Any]:
        info = dict(info)
        info["state"] = np.array(state, dtype=np.float32, copy=True)
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        state, info = self.env.reset(seed=seed, options=options)
        frame = self._frame()
        self._frames = np.concatenate([frame] * self.frame_stack, axis=0)
        return self._frames.copy(), self._with_state(info, state)

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        state, reward, terminated, truncated, info = self.env.step(action)
        frame = self._frame()
        assert self._frames is not None, "step before reset"
        self._frames = np.concatenate([self._frames[len(frame):], frame], axis=0)
        return self._frames.copy(), reward, terminated, truncated, self._with_state(info, state)


def make_pixel_env(env_id: str, size: int = 64, frame_stack: int = 3, grey: bool = True,
                   render_mode: str | None = "rgb_array", **env_kwargs: Any) -> PixelObservation:
    """``gymnasium.make(env_id, render_mode="rgb_array")`` seen through :class:`PixelObservation` (the entry
    point of the ``rlkit/Pixel*-v0`` ids; the inner id keeps its own time limit). ``render_mode`` may only be
    ``rgb_array`` (or None, meaning it): the observations are the renders."""
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"pixel envs render only as rgb_array, got render_mode={render_mode!r}")
    return PixelObservation(gym.make(env_id, render_mode="rgb_array", **env_kwargs), size, frame_stack, grey)
