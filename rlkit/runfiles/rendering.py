"""Offscreen rendering for videos (``rlkit eval --video``), with or without a display.

Two libraries render rlkit's videos, and both misbehave on a machine without a display:

* **MuJoCo** (``rlkit/HumanoidImitation-v0``, Gymnasium's MuJoCo envs) picks its OpenGL backend
  from ``MUJOCO_GL`` once, when ``mujoco`` is first imported; unset, it uses GLFW, which needs a
  display, and rendering then fails with ``mujoco.FatalError: an OpenGL platform library has not
  been loaded``.  :func:`choose_mujoco_gl` sets ``MUJOCO_GL`` before that import: the first of
  ``egl`` then ``osmesa`` that renders a frame in a fresh interpreter (a backend cannot be tried
  and dropped within one process).  With a display, GLFW is tried first.
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
import subprocess
import sys
import traceback
import warnings
from collections.abc import MutableMapping
from typing import Any

from rlkit.errors import ConfigError

#: Offscreen backends tried, in order, when there is no display.
OFFSCREEN_BACKENDS = ("egl", "osmesa")

# Renders one frame of a one-geom model: exit 0 if the backend named by MUJOCO_GL works.
_PROBE = """\
import mujoco
model = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size="1"/></worldbody></mujoco>')
renderer = mujoco.Renderer(model, 16, 16)
renderer.update_scene(mujoco.MjData(model))
assert renderer.render().shape == (16, 16, 3)
renderer.close()
"""


class RenderingError(ConfigError):
    """A video cannot be rendered here; the message is one line saying why and what to do."""


def has_display(environ: MutableMapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def quiet_sdl(environ: MutableMapping[str, str] | None = None) -> None:
    """Without a display, use SDL's ``dummy`` video and audio drivers (unless already chosen).

    SDL reads these when pygame initialises it (``pygame.init()`` in the first ``render()``), so
    this works even after pygame was imported.  ``rgb_array`` rendering needs neither driver.
    """
    environ = os.environ if environ is None else environ
    if not has_display(environ):
        environ.setdefault("SDL_VIDEODRIVER", "dummy")
        environ.setdefault("SDL_AUDIODRIVER", "dummy")


def probe_mujoco_gl(backend: str, timeout: float = 60.0) -> str | None:
    """Render one MuJoCo frame with ``MUJOCO_GL=backend`` in a fresh interpreter.

    Returns None if it works, else the reason in one line (the last line of the error).
    """
    env = {**os.environ, "MUJOCO_GL": backend}
    try:
        result = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"no frame within {timeout:.0f} s"
    if result.returncode == 0:
        return None
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {result.returncode}"


def choose_mujoco_gl(environ: MutableMapping[str, str] | None = None) -> tuple[str | None, dict[str, str]]:
    """Set ``MUJOCO_GL`` to a backend that renders here, if it is still time to choose.

    Nothing changes when ``MUJOCO_GL`` is already set (the user's choice, checked later by
    rendering) or when ``mujoco`` is already imported (its backend is fixed).  Otherwise the
    candidates are tried in a subprocess each: ``glfw`` (only with a display), then ``egl``, then
    ``osmesa``; the first that works is set.  Returns ``(backend or None, {backend: why it
    failed})``: None with an empty dict when no choice was made, None with reasons when none works.
    """
    environ = os.environ if environ is None else environ
    if environ.get("MUJOCO_GL") or "mujoco" in sys.modules:
        return environ.get("MUJOCO_GL") or None, {}
    failures: dict[str, str] = {}
    for backend in (("glfw",) if has_display(environ) else ()) + OFFSCREEN_BACKENDS:
        reason = probe_mujoco_gl(backend)
        if reason is None:
            environ["MUJOCO_GL"] = backend
            return backend, failures
        failures[backend] = reason
    return None, failures


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


MUJOCO_GL_VALUES = ("", "enable", "enabled", "on", "true", "1", "glfw", "glx", "egl", "osmesa", "wgl", "cgl",
                    "disable", "disabled", "off", "false", "0")
"""What ``mujoco/rendering/classic/gl_context.py`` accepts (glx/egl/osmesa on Linux, wgl/cgl elsewhere)."""


def check_mujoco_gl(environ: MutableMapping[str, str] | None = None) -> str | None:
    """A one-line complaint when ``MUJOCO_GL`` holds a value MuJoCo refuses at import (it raises a
    RuntimeError from inside ``import mujoco``, whatever the command), else None."""
    environ = os.environ if environ is None else environ
    value = environ.get("MUJOCO_GL")
    if value is None or value.lower().strip() in MUJOCO_GL_VALUES:
        return None
    return (f"MUJOCO_GL={value!r} is not a MuJoCo OpenGL backend (glfw, egl, osmesa, or disable); unset it "
            "(rlkit picks one for videos) or set it to one that works here")
