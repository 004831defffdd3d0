"""Which OpenGL backend MuJoCo renders with here: ``MUJOCO_GL``, picked before MuJoCo is imported.

MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is first imported; unset, it uses GLFW, which needs
a display. :func:`choose_mujoco_gl` sets it before that import to the first backend that renders a
frame in a fresh interpreter (``glfw`` with a display, then ``egl``, then ``osmesa``: a backend cannot
be tried and dropped within one process); :func:`check_mujoco_gl` names a value MuJoCo would refuse.

A leaf module (standard library only): the envs that render offscreen (``rlkit.envs.goal_envs``'s
pixel observations), the videos of :mod:`rlkit.runfiles.rendering` and the CLI's start-up check all
use it, and it imports none of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import MutableMapping

__all__ = ["OFFSCREEN_BACKENDS", "MUJOCO_GL_VALUES", "has_display", "probe_mujoco_gl", "choose_mujoco_gl",
           "ensure_mujoco_gl", "check_mujoco_gl"]

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


def has_display(environ: MutableMapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


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


# What ensure_mujoco_gl found, once per process: {backend: why it failed} ({} when one was set or chosen).
_ENSURED: dict[str, str] | None = None


def ensure_mujoco_gl() -> dict[str, str]:
    """:func:`choose_mujoco_gl` once per process, for ``os.environ``: every rlkit module calls it before its first
    ``import mujoco`` (``rlkit.envs``' MuJoCo envs, gymnasium-robotics' factories), so that whichever MuJoCo env is
    made first, the backend is already one that renders (a later pixel env or video still works).

    Costs one probe subprocess per candidate on the first call, nothing after.  Returns the backends that failed
    (``{}`` when one was chosen, ``MUJOCO_GL`` was set, or MuJoCo was imported before rlkit could choose): when none
    works, MuJoCo keeps its default and only rendering fails, with one line naming these reasons.
    """
    global _ENSURED
    if _ENSURED is None:
        _, _ENSURED = choose_mujoco_gl()
    return dict(_ENSURED)


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
