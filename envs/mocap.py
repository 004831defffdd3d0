"""Motion capture clips for the DeepMimic humanoid: loading, interpolation, velocities, inverse dynamics.

The reference motions are the 15 DeepMimic ``humanoid3d`` clips (Peng et al. 2018, "DeepMimic:
Example-Guided Deep Reinforcement Learning of Physics-Based Character Skills", ACM ToG 37(4)),
vendored from ``pybullet_data`` under ``envs/assets/mocap/deepmimic/`` (zlib licence, see the
``LICENSE.txt`` there), and the MuJoCo model ``envs/assets/humanoid_deepmimic.xml`` generated from
the same skeleton by ``scripts/make_humanoid_mjcf.py``. Nothing is fetched at run time.

Two clip formats
----------------
**DeepMimic ``.txt``** (read only): JSON ``{"Loop": "wrap" | "none", "Frames": [[...44 floats], ...]}``.
Each frame is: duration of the frame [s], root position (3, **Y-up**, metres), root rotation
(quaternion **w, x, y, z**), then chest, neck, right hip (quaternions), right knee (angle), right
ankle, right shoulder (quaternions), right elbow (angle), left hip (quaternion), left knee (angle),
left ankle, left shoulder (quaternions), left elbow (angle). Joint rotations are local (child frame
relative to parent frame; all frames are aligned in the rest pose). The loader

* normalises every quaternion (several clips are off by up to a factor 2.9 or 0.58),
* converts Y-up to Z-up with ``C = Rx(+90 deg)``, ``(x, y, z) -> (x, -z, y)``: positions ``p -> C p``,
  rotations ``q -> C q C^-1``, i.e. ``(w, v) -> (w, C v)`` (the model's body frames are rotated the
  same way), hinge angles unchanged (the hinge axes are rotated instead),
* places frame ``i`` at time ``sum(durations[:i])`` (the last frame's duration, often 0, is unused)
  and resamples non-uniform clips (``roll``) to a uniform ``dt`` (the smallest frame duration).

**rlkit ``.npz``** (read and write; bring your own retargeted clips): a NumPy archive with

=================  ===========  ===============================================================
key                shape/dtype  meaning
=================  ===========  ===============================================================
``qpos``           (T, nq) f64  MuJoCo ``qpos`` of the model at frames ``0, dt, 2 dt, ...``: free
                                root position (3, world, Z-up) and quaternion (w, x, y, z), then
                                the joints in model order (4 per ball joint, 1 per hinge)
``dt``             () f64       time between frames [s]
``loop``           () bool      ``True``: the clip repeats (frame ``T-1`` is the pose before frame 0
                                of the next cycle, see below)
``joint_names``    (J,) str     model joint names in ``qpos`` order (first: the free joint)
``joint_types``    (J,) str     ``free`` | ``ball`` | ``hinge`` | ``slide`` per joint
``name``           () str       clip name
=================  ===========  ===============================================================

:meth:`MotionClip.save_npz` / :meth:`MotionClip.load_npz` write and read it; ``load_clip`` accepts
a DeepMimic clip name, a ``.txt`` path or a ``.npz`` path.

Time, interpolation, looping
----------------------------
A clip of ``T`` frames lasts ``(T - 1) dt``. :meth:`MotionClip.sample` interpolates at any time:
positions and hinge angles linearly, quaternions (root and ball joints) by slerp along the shortest
arc; the frames themselves are reproduced exactly. A looping clip is periodic with period
``(T - 1) dt``; each completed cycle adds the horizontal root displacement of one cycle,
``(qpos[T-1, :2] - qpos[0, :2])``, to the root position (the character keeps walking forward; the
height and the root heading are not accumulated, as in DeepMimic). Non-looping clips hold their
first / last frame outside ``[0, duration]``.

Velocities and accelerations are finite differences on the configuration manifold with
``mujoco.mj_differentiatePos`` (free-joint linear velocity in the world frame, angular velocities in
the local frames, exactly MuJoCo's ``qvel`` convention): with the forward difference
``v_k = diff(q_k, q_{k+1}) / dt``, frame ``k`` gets ``qvel_k = (v_{k-1} + v_k) / 2`` and
``qacc_k = (v_k - v_{k-1}) / dt`` (one-sided at the ends of a non-looping clip).

Inverse dynamics
----------------
:func:`inverse_dynamics` runs ``mujoco.mj_inverse`` on every frame: the generalized force
``qfrc_inverse`` that reproduces ``qacc`` from ``(qpos, qvel)`` under gravity and floor contacts
(MuJoCo's soft contact model, evaluated from the frame's penetration and velocity). Its last
``nv - 6`` entries are joint torques (what the actuators would have to produce); its first 6 are a
force and torque on the free root that no actuator can produce — the *root residual*, a measure of
how physically implausible a clip is for this model (contact forces that the clip's foot placement
does not explain, mis-scaled masses, retargeting artefacts). The imitation env
(:func:`rlkit.envs.humanoid_imitation.build_mocap_dataset`) turns clips into a state-action dataset
with it, and :func:`rlkit.training.recording.write_mocap_dataset` writes that in Minari's format, one
episode per clip (``rlkit dataset from-mocap``). This module imports neither.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rlkit.mujoco_gl import ensure_mujoco_gl

ensure_mujoco_gl()  # MUJOCO_GL chosen before MuJoCo's first import (it is read then, once)
import mujoco  # noqa: E402

from rlkit.errors import ConfigError

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEEPMIMIC_DIR = ASSETS_DIR / "mocap" / "deepmimic"
HUMANOID_XML = ASSETS_DIR / "humanoid_deepmimic.xml"

DEEPMIMIC_CLIPS = ("backflip", "cartwheel", "crawl", "dance_a", "dance_b", "getup_facedown", "getup_faceup",
                   "jump", "kick", "punch", "roll", "run", "spin", "spinkick", "walk")
"""Names of the vendored DeepMimic humanoid3d clips (file ``humanoid3d_<name>.txt``)."""

DEEPMIMIC_LAYOUT = (("root_pos", 3), ("root", 4), ("chest", 4), ("neck", 4), ("right_hip", 4), ("right_knee", 1),
                    ("right_ankle", 4), ("right_shoulder", 4), ("right_elbow", 1), ("left_hip", 4), ("left_knee", 1),
                    ("left_ankle", 4), ("left_shoulder", 4), ("left_elbow", 1))
"""The 43 values after the duration in a DeepMimic frame: (joint name, width)."""

YUP_TO_ZUP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""``C = Rx(+90 deg)``: DeepMimic's Y-up world (x forward, z right) to rlkit's Z-up (x forward, y left)."""

_JOINT_TYPES = {int(mujoco.mjtJoint.mjJNT_FREE): "free", int(mujoco.mjtJoint.mjJNT_BALL): "ball",
                int(mujoco.mjtJoint.mjJNT_HINGE): "hinge", int(mujoco.mjtJoint.mjJNT_SLIDE): "slide"}
_QPOS_WIDTH = {"free": 7, "ball": 4, "hinge": 1, "slide": 1}


def load_model(path: str | Path = HUMANOID_XML) -> mujoco.MjModel:
    """The DeepMimic humanoid (``envs/assets/humanoid_deepmimic.xml``) or another MJCF file."""
    return mujoco.MjModel.from_xml_path(str(path))


# --------------------------------------------------------------------------------------
# Quaternions (w, x, y, z), vectorised over leading axes
# --------------------------------------------------------------------------------------


def quat_normalize(q: np.ndarray) -> np.ndarray:
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=float), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=float), -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def quat_conj(q: np.ndarray) -> np.ndarray:
    return np.asarray(q, dtype=float) * np.array([1.0, -1.0, -1.0, -1.0])


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v`` (..., 3) by unit quaternions ``q`` (..., 4)."""
    qv = np.concatenate([np.zeros(np.shape(v)[:-1] + (1,)), v], axis=-1)
    return quat_mul(quat_mul(q, qv), quat_conj(q))[..., 1:]


def quat_slerp(q0: np.ndarray, q1: np.ndarray, alpha) -> np.ndarray:
    """Spherical linear interpolation along the shortest arc; ``alpha`` broadcasts over leading axes."""
    q0, q1 = quat_normalize(np.asarray(q0, dtype=float)), quat_normalize(np.asarray(q1, dtype=float))
    alpha = np.asarray(alpha, dtype=float)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    theta = np.arccos(dot)
    sin = np.sin(theta)
    small = sin < 1e-8
    w0 = np.where(small, 1.0 - alpha, np.sin((1.0 - alpha) * theta) / np.where(small, 1.0, sin))
    w1 = np.where(small, alpha, np.sin(alpha * theta) / np.where(small, 1.0, sin))
    return quat_normalize(w0 * q0 + w1 * q1)


# --------------------------------------------------------------------------------------
# Clips
# --------------------------------------------------------------------------------------


def _model_joints(model: mujoco.MjModel) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names = tuple(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint{j}" for j in range(model.njnt))
    types = tuple(_JOINT_TYPES[int(t)] for t in model.jnt_type)
    return names, types


def _quat_columns(joint_types: Sequence[str]) -> list[int]:
    """First qpos column of every quaternion (free-joint rotation and ball joints)."""
    cols, adr = [], 0
    for kind in joint_types:
        if kind == "free":
            cols.append(adr + 3)
        elif kind == "ball":
            cols.append(adr)
        adr += _QPOS_WIDTH[kind]
    return cols


def interpolate_qpos(q0: np.ndarray, q1: np.ndarray, alpha, joint_types: Sequence[str]) -> np.ndarray:
    """Interpolate configurations: linear for positions and angles, slerp for every quaternion."""
    alpha_arr = np.asarray(alpha, dtype=float)
    out = (1.0 - alpha_arr[..., None]) * q0 + alpha_arr[..., None] * q1
    for c in _quat_columns(joint_types):
        out[..., c:c + 4] = quat_slerp(q0[..., c:c + 4], q1[..., c:c + 4], alpha_arr)
    return out


@dataclass
class MotionClip:
    """A reference motion: MuJoCo ``qpos`` at uniformly spaced frames (see the module docstring)."""

    name: str
    qpos: np.ndarray
    """(T, nq) configurations at times ``0, dt, ..., (T-1) dt``."""
    dt: float
    loop: bool
    joint_names: tuple[str, ...]
    joint_types: tuple[str, ...]

    def __post_init__(self) -> None:
        try:
            self.qpos = np.asarray(self.qpos, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"clip '{self.name}': qpos must be an array of numbers ({e})") from None
        self.joint_names, self.joint_types = tuple(self.joint_names), tuple(self.joint_types)
        unknown = [k for k in self.joint_types if k not in _QPOS_WIDTH]
        if unknown:
            raise ConfigError(f"clip '{self.name}': unknown joint types {unknown} (known: {sorted(_QPOS_WIDTH)})")
        nq = sum(_QPOS_WIDTH[k] for k in self.joint_types)
        if self.qpos.ndim != 2 or self.qpos.shape[1] != nq or len(self.qpos) < 2:
            raise ConfigError(f"clip '{self.name}': qpos must have shape (T >= 2, {nq}), got {self.qpos.shape}")
        if not self.joint_types or self.joint_types[0] != "free":
            raise ConfigError(f"clip '{self.name}': the first joint must be the free root joint")
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise ConfigError(f"clip '{self.name}': dt must be a finite number > 0, got {self.dt}")
        bad = np.argwhere(~np.isfinite(self.qpos))
        if len(bad):
            raise ConfigError(f"clip '{self.name}': qpos holds {len(bad)} NaN or infinite values (first at frame "
                              f"{bad[0][0]}, column {bad[0][1]}); fix or drop those frames")
        for c in _quat_columns(self.joint_types):
            norms = np.linalg.norm(self.qpos[:, c:c + 4], axis=-1)
            if np.any(norms < 1e-8):
                raise ConfigError(f"clip '{self.name}': a zero quaternion in qpos columns {c}..{c + 3} (frame "
                                  f"{int(np.argmax(norms < 1e-8))}); rotations must be non-zero quaternions")
            self.qpos[:, c:c + 4] = quat_normalize(self.qpos[:, c:c + 4])

    # -- time ---------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return len(self.qpos)

    @property
    def duration(self) -> float:
        return (self.num_frames - 1) * self.dt

    @property
    def cycle_offset(self) -> np.ndarray:
        """Root translation added per completed cycle of a looping clip (horizontal only; zero otherwise)."""
        off = np.zeros(3)
        if self.loop:
            off[:2] = self.qpos[-1, :2] - self.qpos[0, :2]
        return off

    def frame(self, k: int) -> np.ndarray:
        """Configuration at integer frame ``k`` (any integer: looping clips repeat, others clamp)."""
        if not self.loop:
            return self.qpos[min(max(k, 0), self.num_frames - 1)].copy()
        period = self.num_frames - 1
        cycle, kk = divmod(k, period)
        q = self.qpos[kk].copy()
        q[:3] += cycle * self.cycle_offset
        return q

    def sample(self, t: float | np.ndarray) -> np.ndarray:
        """Configuration(s) at time(s) ``t`` [s], interpolated (slerp for rotations, linear otherwise)."""
        t = np.asarray(t, dtype=float)
        if self.loop:
            cycle = np.floor(t / self.duration)
            local = t - cycle * self.duration
        else:
            cycle = np.zeros_like(t)
            local = np.clip(t, 0.0, self.duration)
        pos = local / self.dt
        i = np.clip(np.floor(pos).astype(int), 0, self.num_frames - 2)
        alpha = np.clip(pos - i, 0.0, 1.0)
        out = interpolate_qpos(self.qpos[i], self.qpos[i + 1], alpha, self.joint_types)
        out[..., :3] += cycle[..., None] * self.cycle_offset
        return out

    def resample(self, dt: float) -> "MotionClip":
        """The same motion at a new frame spacing (the last frame lands on or before the end)."""
        n = int(np.floor(self.duration / dt + 1e-6)) + 1
        return dataclasses.replace(self, qpos=self.sample(np.arange(n) * dt), dt=float(dt))

    # -- derivatives (MuJoCo tangent space) ---------------------------------------------

    def _forward_differences(self, model: mujoco.MjModel) -> np.ndarray:
        """``v_k = diff(q_k, q_{k+1}) / dt`` for k = -1 .. T-1 (wrapped / one-sided at the ends), (T+1, nv)."""
        frames = [self.frame(k) for k in range(-1, self.num_frames + 1)] if self.loop else \
            [self.qpos[0]] + list(self.qpos) + [self.qpos[-1]]
        out = np.zeros((len(frames) - 1, model.nv))
        for k in range(len(frames) - 1):
            mujoco.mj_differentiatePos(model, out[k], self.dt, frames[k], frames[k + 1])
        if not self.loop:  # one-sided at the ends instead of a zero velocity
            out[0], out[-1] = out[1], out[-2]
        return out

    def velocities(self, model: mujoco.MjModel) -> np.ndarray:
        """(T, nv) ``qvel`` at every frame: mean of the backward and forward differences."""
        v = self._forward_differences(model)
        return 0.5 * (v[:-1] + v[1:])

    def accelerations(self, model: mujoco.MjModel) -> np.ndarray:
        """(T, nv) ``qacc`` at every frame: difference of consecutive forward differences."""
        v = self._forward_differences(model)
        return (v[1:] - v[:-1]) / self.dt

    # -- files ----------------------------------------------------------------------------

    def save_npz(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez(f, qpos=self.qpos, dt=np.float64(self.dt), loop=np.bool_(self.loop),
                     joint_names=np.array(self.joint_names), joint_types=np.array(self.joint_types),
                     name=np.array(self.name))
        return path

    @classmethod
    def load_npz(cls, path: str | Path) -> "MotionClip":
        path = Path(path)
        try:  # allow_pickle=False: a clip file never runs code; object arrays are refused by numpy
            with np.load(path, allow_pickle=False) as z:
                missing = {"qpos", "dt", "loop", "joint_names", "joint_types"} - set(z.files)
                if missing:
                    raise ConfigError(f"{path}: not an rlkit clip, missing {sorted(missing)}")
                fields = {k: z[k] for k in ("qpos", "dt", "loop", "joint_names", "joint_types")}
                name = str(z["name"]) if "name" in z.files else path.stem
        except ConfigError:
            raise
        except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError (object arrays), OSError, ...
            raise ConfigError(f"{path}: not a readable .npz clip ({type(e).__name__}: {e})") from None
        for key in ("dt", "loop"):
            if fields[key].shape != () or fields[key].dtype.kind not in "biuf":
                raise ConfigError(f"{path}: '{key}' must be a scalar number, got {fields[key].dtype} "
                                  f"{fields[key].shape}")
        for key in ("joint_names", "joint_types"):
            if fields[key].ndim != 1 or fields[key].dtype.kind != "U":
                raise ConfigError(f"{path}: '{key}' must be a 1-D array of strings, got {fields[key].dtype}")
        if fields["qpos"].dtype.kind not in "iuf":
            raise ConfigError(f"{path}: 'qpos' must hold numbers, got dtype {fields['qpos'].dtype}")
        return cls(name=name, qpos=fields["qpos"], dt=float(fields["dt"]), loop=bool(fields["loop"]),
                   joint_names=tuple(str(s) for s in fields["joint_names"]),
                   joint_types=tuple(str(s) for s in fields["joint_types"]))

    def check_model(self, model: mujoco.MjModel) -> None:
        names, types = _model_joints(model)
        if names != self.joint_names or types != self.joint_types:
            raise ConfigError(f"clip '{self.name}' was made for joints {list(self.joint_names)}, the model has "
                              f"{list(names)}")


def read_deepmimic(path: str | Path) -> tuple[bool, np.ndarray, np.ndarray]:
    """Raw DeepMimic file: (loop, frame times (T,), values (T, 43)) with quaternions normalised, Y-up."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        frames = np.asarray(data["Frames"], dtype=np.float64)
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{path}: not a DeepMimic clip (a JSON object with numeric 'Frames'): "
                          f"{type(e).__name__}: {e}") from None
    if not np.all(np.isfinite(frames)):
        raise ConfigError(f"{path}: 'Frames' holds NaN or infinite values")
    if frames.ndim != 2 or frames.shape[1] != 1 + sum(w for _, w in DEEPMIMIC_LAYOUT):
        raise ConfigError(f"{path}: expected DeepMimic humanoid3d frames of 44 values, got shape {frames.shape}")
    times = np.concatenate([[0.0], np.cumsum(frames[:-1, 0])])
    values = frames[:, 1:].copy()
    col = 0
    for _, width in DEEPMIMIC_LAYOUT:
        if width == 4:
            values[:, col:col + 4] = quat_normalize(values[:, col:col + 4])
        col += width
    return data.get("Loop", "none") == "wrap", times, values


def deepmimic_to_qpos(values: np.ndarray, model: mujoco.MjModel) -> np.ndarray:
    """DeepMimic frame values (T, 43, Y-up) to MuJoCo qpos (T, nq, Z-up) of the DeepMimic humanoid."""
    qpos = np.zeros((len(values), model.nq))
    col = 0
    for name, width in DEEPMIMIC_LAYOUT:
        v = values[:, col:col + width]
        col += width
        if name == "root_pos":
            qpos[:, 0:3] = v @ YUP_TO_ZUP.T
            continue
        adr = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)]
        if name == "root":
            adr += 3
        if width == 4:
            qpos[:, adr] = v[:, 0]
            qpos[:, adr + 1:adr + 4] = v[:, 1:] @ YUP_TO_ZUP.T
        else:  # hinge: the model's axis is C @ (0, 0, 1), the angle is unchanged
            qpos[:, adr] = v[:, 0]
    return qpos


def load_deepmimic(path: str | Path, model: mujoco.MjModel | None = None, name: str | None = None) -> MotionClip:
    """A DeepMimic ``.txt`` clip as a :class:`MotionClip` (resampled to uniform ``dt`` if needed)."""
    model = model if model is not None else load_model()
    path = Path(path)
    loop, times, values = read_deepmimic(path)
    qpos = deepmimic_to_qpos(values, model)
    names, types = _model_joints(model)
    durations = np.diff(times)
    if np.any(durations <= 0):
        raise ConfigError(f"{path}: frame durations must be > 0 (except the last one)")
    dt = float(durations.min())
    name = name or path.stem.removeprefix("humanoid3d_")
    if np.allclose(durations, dt, atol=1e-5):
        return MotionClip(name=name, qpos=qpos, dt=float(durations.mean()), loop=loop, joint_names=names,
                          joint_types=types)
    # non-uniform keyframes: interpolate onto a uniform grid
    grid = np.arange(int(np.floor(times[-1] / dt + 1e-6)) + 1) * dt
    i = np.clip(np.searchsorted(times, grid, side="right") - 1, 0, len(times) - 2)
    alpha = np.clip((grid - times[i]) / durations[i], 0.0, 1.0)
    return MotionClip(name=name, qpos=interpolate_qpos(qpos[i], qpos[i + 1], alpha, types), dt=dt, loop=loop,
                      joint_names=names, joint_types=types)


def resolve_clip_name(name: str) -> Path:
    """The vendored file of a DeepMimic clip name; unknown names are a ConfigError naming the closest."""
    if name in DEEPMIMIC_CLIPS:
        return DEEPMIMIC_DIR / f"humanoid3d_{name}.txt"
    close = difflib.get_close_matches(name, DEEPMIMIC_CLIPS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"unknown motion clip '{name}'{hint} (clips: {', '.join(DEEPMIMIC_CLIPS)}; "
                      f"or pass a path to a DeepMimic .txt or an rlkit .npz clip)")


def turned(clip: MotionClip, turn_deg_per_s: float, cycles: int = 4) -> MotionClip:
    """The clip steered along a circle: its heading turns at a constant ``turn_deg_per_s`` (positive: left,
    counter-clockwise seen from above) while the joints move as recorded.

    Why: the DeepMimic clips walk and run straight, so experts and a skill distilled from them never see a turn,
    and a high-level policy driving that skill cannot steer (issue 23, docs/humanoid_imitation.md). MoCapAct gets
    turns from CMU mocap; we derive them, the usual trajectory-warping augmentation of motion synthesis: frame k's
    heading is rotated by theta_k = omega k dt about the vertical axis, and the root's horizontal displacement
    from frame k-1 to k is rotated by the mid-step angle (theta_{k-1} + theta_k) / 2, so the path bends into an
    arc of radius v / omega while the speed, the height and every joint angle stay the clip's:

        p'_k = p'_{k-1} + R_z((theta_{k-1} + theta_k) / 2) (p_k - p_{k-1}),   q'_root,k = q_z(theta_k) * q_root,k.

    A looping clip is unrolled over ``cycles`` cycles first (its per-cycle offset is a translation, which a
    turning path does not have), so the result does not loop; velocities follow from the frames as for any clip
    (the root's angular velocity gains omega). Small rates keep it physical; large ones make the stance foot slide.
    """
    if not np.isfinite(turn_deg_per_s) or abs(turn_deg_per_s) > 180.0:
        raise ConfigError(f"clip '{clip.name}': turn rate must be a finite number of degrees/s within ±180, got "
                          f"{turn_deg_per_s}")
    if cycles < 1:
        raise ConfigError(f"clip '{clip.name}': cycles must be >= 1, got {cycles}")
    frames = (clip.num_frames - 1) * cycles + 1 if clip.loop else clip.num_frames
    base = np.stack([clip.frame(k) for k in range(frames)])
    theta = np.deg2rad(turn_deg_per_s) * clip.dt * np.arange(frames)
    out = base.copy()
    step = np.diff(base[:, :2], axis=0)
    mid = 0.5 * (theta[:-1] + theta[1:])
    c, s = np.cos(mid), np.sin(mid)
    rotated = np.stack([c * step[:, 0] - s * step[:, 1], s * step[:, 0] + c * step[:, 1]], axis=1)
    out[1:, :2] = base[0, :2] + np.cumsum(rotated, axis=0)
    yaw = np.stack([np.cos(theta / 2), np.zeros(frames), np.zeros(frames), np.sin(theta / 2)], axis=1)
    out[:, 3:7] = quat_mul(yaw, base[:, 3:7])
    name = f"{clip.name}:turn={turn_deg_per_s:g}" + (f",cycles={cycles}" if clip.loop and cycles != 4 else "")
    return dataclasses.replace(clip, name=name, qpos=out, loop=False)


def _parse_derived(text: str) -> tuple[str, dict[str, float]]:
    """``"walk:turn=30,cycles=4"`` as ("walk", {"turn": 30.0, "cycles": 4.0}); a ConfigError names the syntax."""
    base, _, spec = text.partition(":")
    options: dict[str, float] = {}
    for item in filter(None, spec.split(",")):
        key, eq, value = item.partition("=")
        try:
            if not eq or key.strip() not in ("turn", "cycles"):
                raise ValueError
            options[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"motion clip '{text}': expected CLIP:turn=DEG_PER_S[,cycles=N] (e.g. 'walk:turn=30'), "
                              f"got '{item}'") from None
    if "turn" not in options:
        raise ConfigError(f"motion clip '{text}': a derived clip needs turn=DEG_PER_S (e.g. 'walk:turn=30')")
    cycles = options.get("cycles", 4.0)
    if not np.isfinite(cycles) or cycles != int(cycles):
        raise ConfigError(f"motion clip '{text}': cycles must be a whole number")
    return base, options


def load_clip(clip: str | Path | MotionClip, model: mujoco.MjModel | None = None) -> MotionClip:
    """A clip from a DeepMimic name (``"walk"``), a DeepMimic ``.txt`` path, an rlkit ``.npz`` path, or one of
    those steered into a turn (``"walk:turn=30"``, ``"run:turn=-20,cycles=6"``: :func:`turned`)."""
    if isinstance(clip, MotionClip):
        result = clip
    elif ":" in str(clip) and not str(clip).endswith((".txt", ".npz")):
        base, options = _parse_derived(str(clip))
        result = turned(load_clip(base, model), options["turn"], int(options.get("cycles", 4)))
    else:
        text = str(clip)
        if text.endswith(".npz"):
            if not Path(text).is_file():
                raise ConfigError(f"motion clip file '{text}' does not exist")
            result = MotionClip.load_npz(text)
        elif text.endswith(".txt"):
            if not Path(text).is_file():
                raise ConfigError(f"motion clip file '{text}' does not exist")
            result = load_deepmimic(text, model)
        else:
            result = load_deepmimic(resolve_clip_name(text), model)
    if model is not None:
        result.check_model(model)
    return result


class MotionLibrary:
    """A set of clips at one frame spacing, with their per-frame velocities precomputed.

    ``MotionLibrary(["walk", "run"], dt=1/30)`` loads the vendored clips (or ``.txt`` / ``.npz``
    paths), resamples them to ``dt`` (``None`` keeps each clip's own) and computes ``qvel`` with
    ``mj_differentiatePos``. ``library.qpos(i, k)`` / ``library.qvel(i, k)`` give clip ``i`` at
    integer frame ``k`` (looping clips repeat with their root offset, others clamp).
    """

    def __init__(self, clips: Iterable[str | Path | MotionClip], dt: float | None = None,
                 model: mujoco.MjModel | None = None):
        self.model = model if model is not None else load_model()
        self.clips: list[MotionClip] = []
        for c in clips:
            clip = load_clip(c, self.model)
            if dt is not None and abs(clip.dt - dt) > 1e-9:
                clip = clip.resample(dt)
            self.clips.append(clip)
        if not self.clips:
            raise ConfigError("a motion library needs at least one clip")
        self.names = [c.name for c in self.clips]
        self._qvel = [c.velocities(self.model) for c in self.clips]

    def __len__(self) -> int:
        return len(self.clips)

    def qpos(self, i: int, k: int) -> np.ndarray:
        return self.clips[i].frame(k)

    def qvel(self, i: int, k: int) -> np.ndarray:
        clip = self.clips[i]
        k = k % (clip.num_frames - 1) if clip.loop else min(max(k, 0), clip.num_frames - 1)
        return self._qvel[i][k].copy()


# --------------------------------------------------------------------------------------
# Inverse dynamics and datasets
# --------------------------------------------------------------------------------------


def dataset_frames(clip: MotionClip) -> np.ndarray:
    """Frames with well-defined central differences: one whole cycle of a loop, the interior otherwise."""
    return np.arange(clip.num_frames - 1) if clip.loop else np.arange(1, clip.num_frames - 1)


def inverse_dynamics(clip: MotionClip, model: mujoco.MjModel | None = None,
                     frames: np.ndarray | None = None, contacts: bool = True) -> dict[str, np.ndarray]:
    """``mj_inverse`` on clip frames: the generalized forces that reproduce the motion.

    ``contacts=False`` disables contacts (on a copy of the model): the root residual is then the
    whole external wrench the motion needs, gravity support included (about ``m g`` when standing).
    With contacts (default) MuJoCo's soft contact model turns every floor penetration of the clip
    into a (possibly large) contact force, so clips whose feet or hands sink into the floor get large
    residuals, and feet that hover above it get no support at all.

    Returns ``frames`` (K,), ``qpos`` (K, nq), ``qvel`` / ``qacc`` / ``qfrc`` (K, nv) (``qfrc`` =
    ``qfrc_inverse``, which includes the floor contact forces of the soft contact model), and
    ``root_residual`` = ``qfrc[:, :6]`` (force in the world frame, torque in the root frame).
    """
    model = model if model is not None else load_model()
    clip.check_model(model)
    if not contacts:
        model = copy.copy(model)
        model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT)
    frames = dataset_frames(clip) if frames is None else np.asarray(frames)
    qvel_all, qacc_all = clip.velocities(model), clip.accelerations(model)
    data = mujoco.MjData(model)
    out = {"frames": frames, "qpos": np.zeros((len(frames), model.nq)), "qvel": np.zeros((len(frames), model.nv)),
           "qacc": np.zeros((len(frames), model.nv)), "qfrc": np.zeros((len(frames), model.nv))}
    for row, k in enumerate(frames):
        data.qpos[:], data.qvel[:], data.qacc[:] = clip.frame(int(k)), qvel_all[k], qacc_all[k]
        mujoco.mj_inverse(model, data)
        out["qpos"][row], out["qvel"][row], out["qacc"][row] = data.qpos, data.qvel, data.qacc
        out["qfrc"][row] = data.qfrc_inverse
    out["root_residual"] = out["qfrc"][:, :6].copy()
    return out


def actuated_dofs(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    """(dof index, gear) of every actuator; the DeepMimic humanoid has one motor per non-root DOF."""
    dofs, gears = [], []
    for a in range(model.nu):
        j = model.actuator_trnid[a, 0]
        adr = model.jnt_dofadr[j]
        axis = model.actuator_gear[a, :3] if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL else \
            model.actuator_gear[a, :1]
        k = int(np.argmax(np.abs(axis)))
        if np.count_nonzero(axis) != 1:
            raise ValueError(f"actuator {a}: expected a gear along one DOF axis, got {axis}")
        dofs.append(adr + k)
        gears.append(float(axis[k]))
    return np.array(dofs), np.array(gears)


def residual_summary(data: dict[str, np.ndarray]) -> list[dict]:
    """Per clip: mean / median / max norm of the 6-D root residual, its force and torque parts, and the
    mean force over the body weight ``m g``."""
    body_weight = float(data["total_mass"]) * 9.81 if "total_mass" in data else None
    out = []
    for i, name in enumerate(data["clip_names"]):
        r = data["root_residual"][data["clip_index"] == i]
        norm = np.linalg.norm(r, axis=1)
        row = {"clip": str(name), "frames": len(r), "mean": float(norm.mean()), "median": float(np.median(norm)),
               "max": float(norm.max()),
               "force_mean": float(np.linalg.norm(r[:, :3], axis=1).mean()),
               "torque_mean": float(np.linalg.norm(r[:, 3:], axis=1).mean())}
        if body_weight:
            row["force_over_weight"] = row["force_mean"] / body_weight
        out.append(row)
    return out
