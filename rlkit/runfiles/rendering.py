"""Offscreen rendering for videos (``rlkit eval --video``), with or without a display.

Two libraries render rlkit's videos, and both misbehave on a machine without a display:

* **MuJoCo** (``rlkit/HumanoidImitation-v0``, Gymnasium's MuJoCo envs) picks its OpenGL backend
  from ``MUJOCO_GL`` once, when ``mujoco`` is first imported; unset, it uses GLFW, which needs a
  display, and rendering then fails with ``mujoco.FatalError: an OpenGL platform library has not
  been loaded``.  :func:`~rlkit.mujoco_gl.choose_mujoco_gl` sets ``MUJOCO_GL`` before that import:
  the first of ``egl`` then ``osmesa`` that renders a frame in a fresh interpreter (a backend cannot
  be tried and dropped within one process).  With a display, GLFW is tried first.  That choice lives
  in the leaf module :mod:`rlkit.mujoco_gl` (the pixel-observation envs make it too); its names are
  re-exported here.
* **pygame/SDL** (classic control: CartPole, Pendulum, ...) renders ``rgb_array`` frames on a
  plain ``pygame.Surface``, but ``pygame.init()`` also starts SDL's video subsystem, which probes
  Wayland, whose client library prints ``error: XDG_RUNTIME_DIR is invalid or not set in the
  environment.`` on stderr (the video is fine).  :func:`quiet_sdl` selects SDL's ``dummy`` video
  and audio drivers when there is no display: nothing is probed, nothing printed.

:func:`prepare_video` does both, then builds the env with ``render_mode="rgb_array"`` and renders
its first frame, so a video that cannot be made fails (:class:`RenderingError`, one line) before
any episode runs.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import MutableMapping
from typing import Any

from rlkit.errors import ConfigError
from rlkit.mujoco_gl import (MUJOCO_GL_VALUES, OFFSCREEN_BACKENDS, check_mujoco_gl,  # noqa: F401  (re-exported)
                             choose_mujoco_gl, has_display, probe_mujoco_gl)


class RenderingError(ConfigError):
    """A video cannot be rendered here; the message is one line saying why and what to do."""


def quiet_sdl(environ: MutableMapping[str, str] | None = None) -> None:
    """Without a display, use SDL's ``dummy`` video and audio drivers (unless already chosen).

    SDL reads these when pygame initialises it (``pygame.init()`` in the first ``render()``), so
    this works even after pygame was imported.  ``rgb_array`` rendering needs neither driver.
    """
    environ = os.environ if environ is None else environ
    if not has_display(environ):
        environ.setdefault("SDL_VIDEODRIVER", "dummy")
        environ.setdefault("SDL_AUDIODRIVER", "dummy")


def prepare_video(env_id: str, env_kwargs: dict[str, Any] | None = None, seed: int = 0) -> str | None:
    """Everything a video needs, checked before any episode runs (see the module docstring).

    Quiets SDL, chooses ``MUJOCO_GL``, then makes ``env_id`` with ``render_mode="rgb_array"``,
    resets it and renders one frame.  Returns the MuJoCo backend in use (None if not chosen or
    not needed).  Raises :class:`RenderingError` with a one-line message if no frame comes.
    """
    import gymnasium as gym
    import numpy as np

    import rlkit.envs  # noqa: F401  (registers rlkit/... ids; imports no renderer)

    quiet_sdl()
    backend, failures = choose_mujoco_gl()
    env = None
    try:
        with warnings.catch_warnings():  # GLFW reports its failures as warnings too: one line only
            warnings.simplefilter("ignore")
            env = gym.make(env_id, render_mode="rgb_array", **(env_kwargs or {}))
            env.reset(seed=seed)
            frame = env.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] != 3:
            raise RenderingError(f"render() returned {type(frame).__name__}, not an RGB frame")
    except RenderingError as exc:
        raise RenderingError(f"cannot record a video of {env_id}: {exc}") from None
    except Exception as exc:  # noqa: BLE001  (GL and SDL failures come as many types)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        frames = traceback.extract_tb(exc.__traceback__)
        mujoco = "mujoco" in sys.modules or any("mujoco" in f.filename.lower() for f in frames)
        raise RenderingError(_failure_message(env_id, reason, failures, mujoco)) from None
    finally:
        if env is not None:
            try:
                env.close()
            except Exception:  # noqa: BLE001  (a half-built renderer may fail to close)
                pass
    return backend if "mujoco" in sys.modules else None


def _failure_message(env_id: str, reason: str, failures: dict[str, str], mujoco: bool) -> str:
    current = os.environ.get("MUJOCO_GL")
    text = f"cannot record a video of {env_id}: {reason}"
    if failures and mujoco:
        tried = "; ".join(f"MUJOCO_GL={b}: {why}" for b, why in failures.items())
        return (f"{text} (no OpenGL backend works here: {tried}); install EGL (libegl1, with a GPU driver "
                "or Mesa) or OSMesa (libosmesa6 and PyOpenGL), or run with a display")
    mujoco_involved = mujoco or "mujoco" in reason.lower()
    if current and mujoco_involved:
        return (f"{text} (with MUJOCO_GL={current}); unset MUJOCO_GL to let rlkit choose a backend "
                f"({', then '.join(OFFSCREEN_BACKENDS)}), or set it to one that works here")
    if mujoco_involved:
        return f"{text}; MuJoCo was imported before a backend could be chosen: set MUJOCO_GL=egl (or osmesa)"
    return text
