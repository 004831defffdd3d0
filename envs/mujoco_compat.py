"""A compatibility patch for gymnasium-robotics' joint helpers on MuJoCo >= 3.3 / 4.0.

The bug: ``gymnasium_robotics/utils/mujoco_utils.py`` (checked on gymnasium-robotics 1.4.2 with
mujoco 4.0.0) reads a joint's type as ``model.jnt_type[i]``, a ``numpy.int32``, and then asserts
``joint_type in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)``.  ``in`` compares
``enum == int32`` (the enum on the left), which MuJoCo's pybind11 enums answer False, so the assertion
fails for every hinge or slide joint: ``gymnasium.make("FetchPush-v4")`` dies in its constructor
(``_env_setup`` -> ``set_joint_qpos``).  ``int32 == enum`` (the ``if`` branches above it) still works.

The fix: :func:`apply` replaces the four helpers (``set_joint_qpos``, ``set_joint_qvel``,
``get_joint_qpos``, ``get_joint_qvel``) by versions that convert the type with
``mujoco.mjtJoint(int(...))`` first.  Fetch's code calls them through the module
(``self._utils.set_joint_qpos``, and ``robot_get_obs`` through its globals), so replacing the module
attributes reaches every caller.  One deliberate difference: upstream's ``get_joint_qvel`` returns 4
numbers for a ball joint, whose velocity has 3 (``set_joint_qvel`` already uses 3); the replacement
returns 3.  No rlkit env has a ball joint.

It is a no-op where upstream already works: :func:`apply` first runs upstream's own
``get_joint_qpos`` on a one-slide-joint model and patches only if that raises ``AssertionError``.
It is idempotent (patched functions carry ``_rlkit_patched``; a second call finds them).

Importing ``gymnasium_robotics`` costs ~0.1-0.15 s and prints a notice on stderr, so
``import rlkit.envs`` does not import it: :func:`apply` patches at once when ``mujoco_utils`` is
already imported, and otherwise installs a one-shot import hook that patches the module right after
its first import (by the user's ``import gymnasium_robotics`` or by an rlkit goal env's factory).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

TARGET = "gymnasium_robotics.utils.mujoco_utils"

# (qpos width, qvel width) of each joint type; hinge and slide are 1 and 1.
_FREE, _BALL = (7, 6), (4, 3)


def _joint(model: Any, name: str, velocity: bool) -> tuple[int, int]:
    """The (start, width) of joint ``name`` in qpos (or qvel), with its type read as ``mjtJoint``."""
    import mujoco

    joint_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
    assert joint_id != -1, f"Joint with name '{name}' is not part of the model!"
    joint_type = mujoco.mjtJoint(int(model.jnt_type[joint_id]))  # the fix: int32 -> enum
    if joint_type == mujoco.mjtJoint.mjJNT_FREE:
        width = _FREE[velocity]
    elif joint_type == mujoco.mjtJoint.mjJNT_BALL:
        width = _BALL[velocity]
    else:
        assert joint_type in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)
        width = 1
    start = int(model.jnt_dofadr[joint_id] if velocity else model.jnt_qposadr[joint_id])
    return start, width


def _set(model: Any, array: Any, name: str, value: Any, velocity: bool) -> None:
    import numpy as np

    start, width = _joint(model, name, velocity)
    value = np.array(value)
    if width > 1:
        assert value.shape == (width,), f"Value has incorrect shape {name}: {value}"
    array[start:start + width] = value


def set_joint_qpos(model, data, name, value):
    """Set the joint positions (qpos) of the model."""
    _set(model, data.qpos, name, value, velocity=False)


def set_joint_qvel(model, data, name, value):
    """Set the joints linear and angular (qvel) of the model."""
    _set(model, data.qvel, name, value, velocity=True)


def get_joint_qpos(model, data, name):
    """Return the joints position and orientation (qpos) of the model."""
    start, width = _joint(model, name, velocity=False)
    return data.qpos[start:start + width].copy()


def get_joint_qvel(model, data, name):
    """Return the joints linear and angular velocities (qvel) of the model."""
    start, width = _joint(model, name, velocity=True)
    return data.qvel[start:start + width].copy()


REPLACEMENTS = {f.__name__: f for f in (set_joint_qpos, set_joint_qvel, get_joint_qpos, get_joint_qvel)}
for _f in REPLACEMENTS.values():
    _f._rlkit_patched = True  # type: ignore[attr-defined]


def upstream_is_broken(module: ModuleType) -> bool:
    """True if ``module.get_joint_qpos`` fails on a hinge/slide joint (the bug above)."""
    import mujoco

    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body><joint name="j" type="slide"/><geom size="0.1"/></body></worldbody></mujoco>')
    try:
        module.get_joint_qpos(model, mujoco.MjData(model), "j")
    except AssertionError:
        return True
    return False


def is_patched(module: ModuleType | None = None) -> bool:
    module = sys.modules.get(TARGET) if module is None else module
    return module is not None and getattr(module.get_joint_qpos, "_rlkit_patched", False)


def patch_module(module: ModuleType) -> bool:
    """Patch ``mujoco_utils`` if (and only if) it needs it; returns True if it was changed now."""
    if is_patched(module) or not upstream_is_broken(module):
        return False
    for name, replacement in REPLACEMENTS.items():
        setattr(module, name, replacement)
    return True


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then :func:`patch_module`; everything else is the real loader's."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        patch_module(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename ... for tracebacks and tools
        return getattr(self._loader, name)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of :data:`TARGET`, then removes itself (one shot)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        _remove_hook()
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader)
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _PatchOnImport)]


def apply() -> None:
    """Make gymnasium-robotics' joint helpers work on this MuJoCo (see the module docstring).

    Cheap and idempotent: patches now if ``mujoco_utils`` is imported, else when it first is.
    """
    module = sys.modules.get(TARGET)
    if module is not None:
        patch_module(module)
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
