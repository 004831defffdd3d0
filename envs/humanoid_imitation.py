"""``rlkit/HumanoidImitation-v0``: a MuJoCo humanoid tracking motion-capture clips (DeepMimic / CoMic style).

The character is the DeepMimic humanoid (``envs/assets/humanoid_deepmimic.xml``: 45 kg, free root,
8 ball joints, 4 hinges, 28 actuated DOFs) and the references are the vendored DeepMimic clips
(``rlkit.envs.mocap``; any ``.npz`` clip for the same model works too)::

    env = gymnasium.make("rlkit/HumanoidImitation-v0", clips=["walk", "run"], render_mode="rgb_array")

Episodes
--------
* **Reference state initialisation** (Peng et al. 2018): ``reset`` picks a clip (probability
  proportional to its number of admissible start frames) and a uniformly random start frame (or
  frame 0 with ``init_at_start=True``) and sets ``qpos`` / ``qvel`` to the reference there.
* Every ``step`` applies the action for ``physics_substeps`` physics steps (``control_dt``, default
  1/30 s = 8 x 1/240 s) and advances the reference by one frame; clips are resampled to
  ``control_dt`` on load.
* **Early termination**: ``terminated`` when the termination error ``e`` (below) exceeds
  ``termination_error_threshold`` (default 0.3, as dm_control), or the simulation diverges.
* **Truncation**: after ``max_episode_steps`` steps, and for a non-looping clip also when its last frame minus
  the reference look-ahead is reached (as dm_control's tracking task). The cap on non-looping clips lets a long
  derived clip (``"walk:turn=30"``, :func:`rlkit.envs.mocap.turned`) give episodes of the same length as its
  looping source; set ``min_steps`` to the cap so that every start frame leaves room for a whole episode.

Reward (dm_control ``locomotion/tasks/reference_pose/rewards.py``, ``comic``; Hasenclever et al. 2020, "CoMic")
---------------------------------------------------------------------------------------------------------------
With walker features ``w`` and reference features ``r`` at the current reference frame::

    r_t = w_term * (1 - e / e_max)
        + w_pose * [ w_com  exp(-k_com  * Δcom²)   + w_jvel exp(-k_jvel * Δjvel²)
                   + w_app  exp(-k_app  * Δapp²)   + w_quat exp(-k_quat * Δquat²) ] / Z

    Δcom²  = ||com_w - com_r||²                         centre of mass of the whole body (world frame)
    Δjvel² = ||qvel_w[6:] - qvel_r[6:]||²               all 28 joint velocities (ball: local angular velocity)
    Δapp²  = Σ_a ||p_w,a - p_r,a||²                      hands, feet, head relative to the root, in the root frame
    Δquat² = Σ_b d(q_w,b, q_r,b)²,  d(a, b) = min(||log(a b⁻¹)||, ||log(a (-b)⁻¹)||)   (all 15 bodies,
                                                        world orientations; ||log q|| is half the angle)
    e      = 0.5 * mean_{b,xyz} |x_w,b - x_r,b| + 0.5 * mean_dof |Δjoints|   (termination error)

with the ``comic`` defaults ``w_term = w_pose = 0.5, e_max = 0.3, (w, k)_com = (0.1, 10),
(w, k)_jvel = (1.0, 0.1), (w, k)_app = (0.15, 40), (w, k)_quat = (0.65, 2)``. ``Δjoints`` is the
joint-space difference ``mj_differentiatePos(q_r, q_w)[6:]`` (radians per DOF; dm_control's
walkers only have hinges, where this is the plain angle difference). By default ``Z = 1``: the reward
is dm_control's ``comic`` reward exactly (maximum 0.5 + 0.5 * 1.9 = 1.45 per step, the termination and
pose terms in CoMic's balance). ``reward={"normalize": True}`` divides the pose term by
``Z = w_com + w_jvel + w_app + w_quat = 1.9`` so that perfect tracking earns 1.0 per step; note that this
shifts weight from the pose term to the termination term (the pose term's maximum drops from 0.95 to 0.5,
the termination term's stays 0.5), so it is a variant, not CoMic. ``e > e_max`` terminates the episode, so the termination term lies
in [0, 0.5] on every non-terminal step. Override any constant with ``reward={"com_scale": 5, ...}``
(keys: :class:`TrackingReward`). ``info`` carries every weighted term (``reward_center_of_mass``,
``reward_joints_velocity``, ``reward_appendages``, ``reward_body_quaternions``,
``reward_termination``), the raw squared errors (``error_*``) and ``termination_error``.

Observation (Box, float32; everything egocentric: relative to the walker's root position and in its root frame)
--------------------------------------------------------------------------------------------------------------
Proprioception (116):

==========================  ====  ==============================================================
root height                   1   z of the root (pelvis) [m]
up vector                     3   world z axis in the root frame (tilt)
root linear velocity          3   in the root frame
root angular velocity         3   in the root frame (MuJoCo's free-joint qvel[3:6])
joint positions              36   qpos[7:]: 8 ball-joint quaternions (sign fixed to w >= 0), 4 hinge angles
joint velocities             28   qvel[6:]
body positions               42   the 14 non-root bodies relative to the root, in the root frame
==========================  ====  ==============================================================

then for every look-ahead ``s`` in ``ref_steps`` (default ``(1, 2, 3, 4, 5)``; 77 each): the reference
root position relative to the root (3), the reference root orientation relative to the root,
``q_root⁻¹ q_ref`` (4, w >= 0), the joint-space difference walker -> reference (28) and the
reference-minus-walker positions of the 14 non-root bodies (42), all in the root frame. Default
size 116 + 5 * 77 = 501. The reference is read at frame ``k + s`` (clamped to the last frame).

Actions (Box [-1, 1]^28, actuator order = ``model.actuator_*``: chest xyz, neck xyz, right shoulder
xyz, right elbow, left shoulder xyz, left elbow, right hip xyz, right knee, right ankle xyz, left hip
xyz, left knee, left ankle xyz)
-----------------------------------------------------------------------------------------------
* ``action_mode="pd"`` (default): PD targets. A hinge target is its joint range mapped linearly
  from [-1, 1] (knee [-3.14, 0], elbow [0, 3.14]); a ball-joint target is the rotation
  ``exp(a_xyz * BALL_ACTION_SCALE[joint])`` (rotation vector in the parent frame, radians; the scales
  cover the clips' 99th percentile). Every physics substep applies the DeepMimic PD torque
  ``τ = clip(kp * diff(q, q_target) - kd * qvel, ±limit)`` (gains from the model's ``pd_kp`` /
  ``pd_kd``, limits = the motors' gears). With ``pd_damping="implicit"`` (default) the damping term is
  integrated implicitly by MuJoCo (``implicitfast``; see :meth:`HumanoidImitationEnv._make_servos_implicit`):
  evaluated explicitly at 240 Hz it is unstable on this body (kd·dt·(M⁻¹)ᵢᵢ up to 6.2 > 2) and the
  servos chatter between their limits; ``"explicit"`` keeps that evaluation for comparison.
* ``action_mode="pd_residual"``: PD targets relative to the reference pose of the frame being
  tracked (the next frame): a ball-joint target is ``q_ref * exp(a_xyz * residual_scale *
  BALL_ACTION_SCALE[joint])``, a hinge target ``q_ref + a * residual_scale * (high - low) / 2``
  (clipped to the joint range). The zero action replays the clip open-loop through the PD servos
  (on the walk clip that keeps the walker up for 1.26 cycles on average), so the policy
  learns feedback corrections, as in Won et al. (2020), "A scalable approach to control diverse behaviors for physically
  simulated characters" and Bergamin et al. (2019), "DReCon". ``residual_scale`` (default 0.3) is the
  fraction of the absolute mode's range an action of 1 stands for.
* ``action_mode="torque"``: ``ctrl = action``; the motors apply ``action * gear`` [N m]
  (gear = DeepMimic's torque limits: chest 200, neck 50, hip 200, knee 150, ankle 90, shoulder
  100, elbow 60).

Rendering
---------
``render_mode="rgb_array"`` renders ``(height, width, 3)`` uint8 frames from the ``track`` camera with
``mujoco.Renderer`` (offscreen). Without a display MuJoCo needs ``MUJOCO_GL=egl`` (GPU or Mesa EGL;
works on rlkit's CI machine) or ``MUJOCO_GL=osmesa`` (needs libOSMesa and PyOpenGL's OSMesa
support); set it before ``mujoco`` is first imported.

Demonstrations
--------------
:func:`build_mocap_dataset` turns clips into state-action rows (this env's observation in each reference
state, the torques of :func:`rlkit.envs.mocap.inverse_dynamics`); ``rlkit dataset from-mocap`` writes
them as a Minari dataset (:func:`rlkit.training.recording.write_mocap_dataset`).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from rlkit.errors import ConfigError
from rlkit.mujoco_gl import ensure_mujoco_gl

ensure_mujoco_gl()  # MUJOCO_GL chosen before MuJoCo's first import (it is read then, once)
import mujoco  # noqa: E402

from rlkit.envs.mocap import (  # noqa: E402
    HUMANOID_XML, MotionClip, MotionLibrary, actuated_dofs, inverse_dynamics, load_model, quat_conj, quat_mul)

BALL_ACTION_SCALE = {"chest": 1.2, "neck": 1.4, "right_shoulder": 2.6, "left_shoulder": 2.6, "right_hip": 2.2,
                     "left_hip": 2.2, "right_ankle": 1.1, "left_ankle": 1.1}
"""Rotation (radians) a ball-joint PD action of 1 stands for, per axis."""

APPENDAGE_SITES = ("right_hand", "left_hand", "right_foot", "left_foot", "head")


@dataclass
class TrackingReward:
    """Weights and scales of the CoMic tracking reward (see the module docstring); defaults = dm_control ``comic``."""

    termination_weight: float = 0.5
    pose_weight: float = 0.5
    com_weight: float = 0.1
    com_scale: float = 10.0
    joints_velocity_weight: float = 1.0
    joints_velocity_scale: float = 0.1
    appendages_weight: float = 0.15
    appendages_scale: float = 40.0
    body_quaternions_weight: float = 0.65
    body_quaternions_scale: float = 2.0
    normalize: bool = False
    """Divide the pose term by the sum of its weights so that perfect tracking earns 1.0 (not CoMic's
    balance of termination and pose terms; off by default, i.e. dm_control's ``comic`` reward)."""

    @classmethod
    def from_kwargs(cls, kwargs: dict | None) -> "TrackingReward":
        names = [f.name for f in dataclasses.fields(cls)]
        for key in kwargs or {}:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                raise ConfigError(f"unknown reward key '{key}'" + (f"; did you mean '{close[0]}'?" if close else "")
                                  + f" (keys: {', '.join(names)})")
        return cls(**(kwargs or {}))

    def __call__(self, sq: dict[str, float], termination_error: float, threshold: float) -> tuple[float, dict]:
        """Reward and its weighted terms from squared errors ``sq`` and the termination error."""
        pose = {
            "center_of_mass": self.com_weight * np.exp(-self.com_scale * sq["center_of_mass"]),
            "joints_velocity": self.joints_velocity_weight * np.exp(-self.joints_velocity_scale * sq["joints_velocity"]),
            "appendages": self.appendages_weight * np.exp(-self.appendages_scale * sq["appendages"]),
            "body_quaternions": self.body_quaternions_weight * np.exp(-self.body_quaternions_scale
                                                                      * sq["body_quaternions"]),
        }
        z = (self.com_weight + self.joints_velocity_weight + self.appendages_weight
             + self.body_quaternions_weight) if self.normalize else 1.0
        terms = {k: self.pose_weight * v / z for k, v in pose.items()}
        terms["termination"] = self.termination_weight * (1.0 - termination_error / threshold)
        return float(sum(terms.values())), terms


def bounded_quat_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dm_control's distance: ||log(a b⁻¹)|| (half the rotation angle) for the closer of ±b; in [0, π/2]."""
    rel = quat_mul(a, quat_conj(b))
    return np.arccos(np.clip(np.abs(rel[..., 0]) / np.linalg.norm(rel, axis=-1), 0.0, 1.0))



def make_servos_implicit(m: "mujoco.MjModel", kd: np.ndarray, gear: np.ndarray) -> None:
    """Every torque motor of ``m`` becomes a PD servo with implicit damping: force ``ctrl - kd qdot`` along one
    unit DOF axis (gain 1, affine bias -kd on the actuator velocity), clamped to the torque limit ``gear``, with
    ``implicitfast`` integration (:meth:`HumanoidImitationEnv._make_servos_implicit` says why; the task envs use
    it too)."""
    for i in range(m.nu):
        axis = int(np.argmax(np.abs(m.actuator_gear[i, :3])))
        m.actuator_gear[i, :] = 0.0
        m.actuator_gear[i, axis] = 1.0
        m.actuator_gaintype[i] = mujoco.mjtGain.mjGAIN_FIXED
        m.actuator_gainprm[i, :] = 0.0
        m.actuator_gainprm[i, 0] = 1.0
        m.actuator_biastype[i] = mujoco.mjtBias.mjBIAS_AFFINE
        m.actuator_biasprm[i, :] = 0.0
        m.actuator_biasprm[i, 2] = -kd[i]
        m.actuator_ctrllimited[i] = 0  # the XML's <motor ctrlrange="-1 1"> default would clamp kp * error
        m.actuator_forcelimited[i] = 1
        m.actuator_forcerange[i] = (-gear[i], gear[i])
    m.opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST


class HumanoidImitationEnv(gym.Env):
    """The DeepMimic humanoid tracking mocap clips; see the module docstring for the full contract."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, clips: Sequence[str | Path | MotionClip] = ("walk",), ref_steps: Sequence[int] = (1, 2, 3, 4, 5),
                 action_mode: str = "pd", control_dt: float = 1.0 / 30.0, physics_substeps: int = 8,
                 termination_error_threshold: float = 0.3, body_error_multiplier: float = 1.0,
                 reward: dict[str, Any] | None = None, max_episode_steps: int = 1000, min_steps: int = 10,
                 init_at_start: bool = False, residual_scale: float = 0.3, pd_damping: str = "implicit",
                 render_mode: str | None = None,
                 width: int = 480, height: int = 360, model_path: str | Path = HUMANOID_XML):
        if isinstance(clips, (str, Path, MotionClip)):
            clips = [clips]
        if action_mode not in ("pd", "pd_residual", "torque"):
            raise ConfigError(f"action_mode must be 'pd', 'pd_residual' or 'torque', got '{action_mode}'")
        if pd_damping not in ("implicit", "explicit"):
            raise ConfigError(f"pd_damping must be 'implicit' or 'explicit', got '{pd_damping}'")
        if not residual_scale > 0:
            raise ConfigError(f"residual_scale must be > 0, got {residual_scale}")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be None or 'rgb_array', got '{render_mode}'")
        ref_steps = tuple(sorted(int(s) for s in ref_steps))
        if not ref_steps or ref_steps[0] < 1:
            raise ConfigError(f"ref_steps must be positive frame offsets, got {ref_steps}")
        if physics_substeps < 1 or control_dt <= 0 or max_episode_steps < 1 or termination_error_threshold <= 0:
            raise ConfigError("physics_substeps, control_dt, max_episode_steps and termination_error_threshold "
                              "must be positive")
        self.model = load_model(model_path)
        self.model.opt.timestep = control_dt / physics_substeps
        self.data = mujoco.MjData(self.model)
        self.library = MotionLibrary(clips, dt=control_dt, model=self.model)
        self.control_dt, self.physics_substeps = float(control_dt), int(physics_substeps)
        self.ref_steps, self.action_mode, self.residual_scale = ref_steps, action_mode, float(residual_scale)
        self.termination_error_threshold = float(termination_error_threshold)
        self.body_error_multiplier = float(body_error_multiplier)
        self.reward_fn = TrackingReward.from_kwargs(reward)
        self.max_episode_steps, self.min_steps, self.init_at_start = int(max_episode_steps), int(min_steps), init_at_start
        self.render_mode, self.width, self.height = render_mode, int(width), int(height)
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / control_dt))}
        self._renderer: mujoco.Renderer | None = None

        m = self.model
        self._root = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "root")
        self._sites = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, s) for s in APPENDAGE_SITES])
        self._dofs, self._gear = actuated_dofs(m)
        if not np.array_equal(self._dofs, np.arange(6, m.nv)):
            raise ValueError("the model must have one actuator per non-root DOF, in DOF order")
        self._kp = np.asarray(m.numeric("pd_kp").data, dtype=float)
        self._kd = np.asarray(m.numeric("pd_kd").data, dtype=float)
        self._pd_map = self._build_pd_map()
        self._pd_arrays()
        self.pd_damping = pd_damping
        if action_mode != "torque" and pd_damping == "implicit":
            self._make_servos_implicit()

        # reference features of every clip frame (root-frame quantities are invariant to the loop offset)
        self._ref = [self._clip_features(i) for i in range(len(self.library))]
        self._starts = self._admissible_starts()

        nb = m.nbody - 2  # non-root bodies (world and root excluded)
        self._proprio_dim = 1 + 3 + 3 + 3 + (m.nq - 7) + (m.nv - 6) + 3 * nb
        self._ref_dim = 3 + 4 + (m.nv - 6) + 3 * nb
        dim = self._proprio_dim + len(ref_steps) * self._ref_dim
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (m.nu,), np.float32)

        self._clip, self._k, self._steps, self._bad_qacc = 0, 0, 0, 0
        self._target = np.zeros(m.nq)
        self._dq = np.zeros(m.nv)

    # ---------------------------------------------------------------- reference features

    def _features(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """dm_control's walker features (after mj_kinematics + mj_comPos)."""
        root_pos, root_mat = data.xpos[self._root], data.xmat[self._root].reshape(3, 3)
        return {
            "center_of_mass": data.subtree_com[self._root].copy(),
            "appendages": (data.site_xpos[self._sites] - root_pos) @ root_mat,
            "body_positions": data.xpos[1:].copy(),
            "body_quaternions": data.xquat[1:].copy(),
        }

    def _clip_features(self, i: int) -> dict[str, np.ndarray]:
        clip, d = self.library.clips[i], mujoco.MjData(self.model)
        feats: dict[str, list] = {}
        for q in clip.qpos:
            d.qpos[:] = q
            mujoco.mj_kinematics(self.model, d)
            mujoco.mj_comPos(self.model, d)
            for key, value in self._features(d).items():
                feats.setdefault(key, []).append(value)
        return {k: np.stack(v) for k, v in feats.items()}

    def _ref_index(self, i: int, k: int) -> tuple[int, np.ndarray]:
        """(row in the clip's tables, world translation to add) for reference frame ``k``."""
        clip = self.library.clips[i]
        if not clip.loop:
            return min(max(k, 0), clip.num_frames - 1), np.zeros(3)
        cycle, kk = divmod(k, clip.num_frames - 1)
        return kk, cycle * clip.cycle_offset

    def _admissible_starts(self) -> list[np.ndarray]:
        starts = []
        for clip in self.library.clips:
            if self.init_at_start:
                starts.append(np.array([0]))
            elif clip.loop:
                starts.append(np.arange(clip.num_frames - 1))
            else:
                last = clip.num_frames - 1 - self.ref_steps[-1] - self.min_steps
                if last < 1:
                    raise ConfigError(f"clip '{clip.name}' ({clip.num_frames} frames) is too short for ref_steps "
                                      f"{self.ref_steps} and min_steps {self.min_steps}")
                starts.append(np.arange(last))
        return starts

    # ---------------------------------------------------------------- actions

    def _build_pd_map(self) -> list[tuple[str, int, int, float, float]]:
        """Per joint: (kind, qpos address, action index, scale or low, high)."""
        m, out, a = self.model, [], 0
        for j in range(1, m.njnt):
            name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j)
            if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL:
                out.append(("ball", int(m.jnt_qposadr[j]), a, BALL_ACTION_SCALE.get(name, 1.0), 0.0))
                a += 3
            else:
                lo, hi = m.jnt_range[j]
                out.append(("hinge", int(m.jnt_qposadr[j]), a, float(lo), float(hi)))
                a += 1
        return out

    def _pd_arrays(self) -> None:
        """Index arrays for a vectorised :meth:`pd_target` (one numpy op per joint kind, not per joint)."""
        balls = [(adr, a, p0) for kind, adr, a, p0, _ in self._pd_map if kind == "ball"]
        hinges = [(adr, a, p0, p1) for kind, adr, a, p0, p1 in self._pd_map if kind == "hinge"]
        self._ball_qidx = np.array([adr + np.arange(4) for adr, _, _ in balls], dtype=int).reshape(-1, 4)  # [J, 4]
        self._ball_act = np.array([a + np.arange(3) for _, a, _ in balls], dtype=int).reshape(-1, 3)      # [J, 3]
        self._ball_scale = np.array([p0 for _, _, p0 in balls], dtype=float).reshape(-1, 1)              # [J, 1]
        self._hinge_qadr = np.array([h[0] for h in hinges], dtype=int)                                    # [H]
        self._hinge_act = np.array([h[1] for h in hinges], dtype=int)
        self._hinge_low = np.array([h[2] for h in hinges], dtype=float)
        self._hinge_high = np.array([h[3] for h in hinges], dtype=float)

    def _make_servos_implicit(self) -> None:
        """Turn the torque motors into PD servos whose damping MuJoCo integrates implicitly.

        Explicit PD, tau = kp diff(q, q*) - kd qdot evaluated once per substep, is stable only while
        kd dt (M^-1)_ii < 2; with DeepMimic's gains at 240 Hz that product reaches 6.1 on the walk clip
        and the servos chatter between their torque limits. Here every actuator becomes a ``<general>``
        one whose force is ``ctrl - kd * qdot`` (gain 1, affine bias -kd on the actuator velocity), clamped
        to the torque limit (``forcerange`` = the motor's gear), acting along one unit DOF axis; ``ctrl`` =
        kp diff(q, q*) is computed per substep by :meth:`_pd_ctrl`. With the ``implicitfast`` integrator
        the velocity derivative -kd enters the implicit update, so the damping is stable at any gain while
        the servo is not saturated, and the control law (error through ``mj_differentiatePos``, clip on
        the total torque) stays DeepMimic's. (MuJoCo drops the derivative of an actuator whose force is
        clamped by ``forcerange``, so a saturated servo is stepped explicitly; with random absolute PD
        targets 6.8% of substeps saturate and 0.2% flip from one limit to the other, against 66% and 40%
        with explicit damping.) MuJoCo's native ``<position>`` servos are not used: on a ball joint their
        spring acts on the rotation vector (rotvec(q*) - rotvec(q)), not on log(q^-1 q*).
        """
        make_servos_implicit(self.model, self._kd, self._gear)

    def pd_target(self, action: np.ndarray) -> np.ndarray:
        """The full ``qpos`` PD target of an action (root entries copied from the current state).

        ``action_mode="pd_residual"``: relative to the reference pose of the next frame; else absolute."""
        action = np.asarray(action, dtype=float)
        target = self.data.qpos.copy()
        residual = self.action_mode == "pd_residual"
        scale = self.residual_scale if residual else 1.0
        # ball joints: q = exp(rotvec) = [cos(|v|/2), sin(|v|/2) v / |v|]
        rotvec = action[self._ball_act] * self._ball_scale * scale                       # [J, 3]
        angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)                           # [J, 1]
        sinc = np.where(angle > 1e-12, np.sin(angle / 2) / np.maximum(angle, 1e-12), 0.5)
        quat = np.concatenate([np.cos(angle / 2), sinc * rotvec], axis=-1)               # [J, 4]
        lo, hi = self._hinge_low, self._hinge_high
        hinge = action[self._hinge_act]                                                  # [H]
        if residual:
            ref = self.library.qpos(self._clip, self._k + 1)
            quat = quat_mul(ref[self._ball_qidx], quat)
            target[self._hinge_qadr] = np.clip(ref[self._hinge_qadr] + hinge * scale * 0.5 * (hi - lo), lo, hi)
        else:
            target[self._hinge_qadr] = lo + (hinge + 1.0) * 0.5 * (hi - lo)
        target[self._ball_qidx] = quat
        return target

    def pd_action(self, qpos: np.ndarray) -> np.ndarray:
        """The absolute-mode PD action whose target is the joint configuration of ``qpos`` (inverse of
        :meth:`pd_target` with ``action_mode="pd"``, clipped to [-1, 1]); e.g.
        ``env.pd_action(env.unwrapped.library.qpos(clip, k))`` tracks a clip open-loop. (With
        ``action_mode="pd_residual"`` the zero action does that.)"""
        action = np.zeros(self.model.nu)
        for kind, adr, a, p0, p1 in self._pd_map:
            if kind == "ball":
                q = qpos[adr:adr + 4] / np.linalg.norm(qpos[adr:adr + 4])
                q = q if q[0] >= 0 else -q
                angle = 2.0 * np.arctan2(np.linalg.norm(q[1:]), q[0])
                axis = q[1:] / np.linalg.norm(q[1:]) if angle > 1e-12 else np.zeros(3)
                action[a:a + 3] = angle * axis / p0
            else:
                action[a] = 2.0 * (qpos[adr] - p0) / (p1 - p0) - 1.0
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _pd_ctrl(self, target: np.ndarray) -> np.ndarray:
        """``ctrl`` for one physics substep towards ``target``.

        ``pd_damping="implicit"``: kp diff(q, q*) [N m]; the servo adds -kd qdot implicitly and clamps
        the sum (see :meth:`_make_servos_implicit`). ``"explicit"``: DeepMimic's explicit torque
        clip(kp diff(q, q*) - kd qdot) in units of the motor's gear (stable only at ~1.2 kHz)."""
        mujoco.mj_differentiatePos(self.model, self._dq, 1.0, self.data.qpos, target)
        if self.pd_damping == "implicit":
            return self._kp * self._dq[6:]
        tau = self._kp * self._dq[6:] - self._kd * self.data.qvel[6:]
        return np.clip(tau / self._gear, -1.0, 1.0)

    def simulate(self, action: np.ndarray, on_substep=None) -> None:
        """Apply ``action`` for ``physics_substeps`` physics steps (the physics of :meth:`step`, without
        the reference, reward or termination); ``on_substep(data)`` is called after each (diagnostics:
        with ``pd_damping="implicit"`` ``data.actuator_force`` is the torque along each DOF, evaluated at
        the start of the substep; with ``"explicit"`` and in torque mode it is the normalised command, the
        torque being ``actuator_force * env._gear``)."""
        m, d = self.model, self.data
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if self.action_mode in ("pd", "pd_residual"):
            target = self.pd_target(action)
            for _ in range(self.physics_substeps):
                d.ctrl[:] = self._pd_ctrl(target)
                mujoco.mj_step(m, d)
                if on_substep is not None:
                    on_substep(d)
        elif on_substep is None:
            d.ctrl[:] = action
            mujoco.mj_step(m, d, nstep=self.physics_substeps)
        else:
            d.ctrl[:] = action
            for _ in range(self.physics_substeps):
                mujoco.mj_step(m, d)
                on_substep(d)

    # ---------------------------------------------------------------- gym API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        counts = np.array([len(s) for s in self._starts], dtype=float)
        self._clip = int(self.np_random.choice(len(counts), p=counts / counts.sum()))
        self._k = int(self.np_random.choice(self._starts[self._clip]))
        self._steps = 0
        self._set_reference_state(self._clip, self._k)
        return self._observation(), self._info(*self._errors())

    def _set_reference_state(self, i: int, k: int) -> None:
        mujoco.mj_resetData(self.model, self.data)
        self._bad_qacc = 0
        self.data.qpos[:] = self.library.qpos(i, k)
        self.data.qvel[:] = self.library.qvel(i, k)
        mujoco.mj_forward(self.model, self.data)

    def step(self, action):
        m, d = self.model, self.data
        self.simulate(action)
        self._k += 1
        self._steps += 1
        # MuJoCo resets the data itself on a bad acceleration (and counts a warning): treat both as divergence
        bad_qacc = int(d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number)
        diverged = bad_qacc > self._bad_qacc or not np.all(np.isfinite(d.qpos)) or not np.all(np.isfinite(d.qvel))
        self._bad_qacc = bad_qacc
        if diverged:
            mujoco.mj_resetData(m, d)  # keep the observation finite
            self._set_reference_state(self._clip, self._k)
        else:
            mujoco.mj_kinematics(m, d)  # positions of the final state (mj_step leaves them one step behind)
            mujoco.mj_comPos(m, d)
        sq, e = self._errors()
        reward, terms = self.reward_fn(sq, e, self.termination_error_threshold)
        terminated = bool(diverged or e > self.termination_error_threshold)
        clip = self.library.clips[self._clip]
        truncated = self._steps >= self.max_episode_steps  # any clip; a non-looping one also ends with its frames
        if not clip.loop:
            truncated = truncated or self._k >= clip.num_frames - 1 - self.ref_steps[-1]
        info = self._info(sq, e, terms)
        if diverged:
            info["diverged"] = True
        return self._observation(), (0.0 if diverged else reward), terminated, bool(truncated and not terminated), info

    def _errors(self) -> tuple[dict[str, float], float]:
        """Squared tracking errors (reward) and the termination error ``e`` at the current reference frame."""
        i, d = self._clip, self.data
        row, offset = self._ref_index(i, self._k)
        ref = self._ref[i]
        w = self._features(d)
        ref_qvel = self.library.qvel(i, self._k)
        sq = {
            "center_of_mass": float(np.sum((w["center_of_mass"] - ref["center_of_mass"][row] - offset) ** 2)),
            "joints_velocity": float(np.sum((d.qvel[6:] - ref_qvel[6:]) ** 2)),
            "appendages": float(np.sum((w["appendages"] - ref["appendages"][row]) ** 2)),
            "body_quaternions": float(np.sum(bounded_quat_dist(w["body_quaternions"],
                                                               ref["body_quaternions"][row]) ** 2)),
        }
        mujoco.mj_differentiatePos(self.model, self._dq, 1.0, self.library.qpos(i, self._k), d.qpos)
        error_joints = float(np.mean(np.abs(self._dq[6:])))
        error_bodies = float(np.mean(np.abs(w["body_positions"] - ref["body_positions"][row] - offset)))
        e = 0.5 * self.body_error_multiplier * error_bodies + 0.5 * error_joints
        return sq, e

    def _info(self, sq: dict[str, float], e: float, terms: dict[str, float] | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"clip": self.library.names[self._clip], "clip_index": self._clip,
                                "frame": self._k, "termination_error": e}
        info.update({f"error_{k}": v for k, v in sq.items()})
        if terms is None:
            terms = self.reward_fn(sq, e, self.termination_error_threshold)[1]
        info.update({f"reward_{k}": float(v) for k, v in terms.items()})
        return info

    # ---------------------------------------------------------------- observations

    def _observation(self) -> np.ndarray:
        m, d = self.model, self.data
        root_pos, root_mat = d.xpos[self._root].copy(), d.xmat[self._root].reshape(3, 3).copy()
        joints = d.qpos[7:].copy()
        for kind, adr, *_ in self._pd_map:
            if kind == "ball" and joints[adr - 7] < 0:
                joints[adr - 7:adr - 3] *= -1
        body_rel = (d.xpos[2:] - root_pos) @ root_mat
        parts = [[root_pos[2]], root_mat[2], d.qvel[0:3] @ root_mat, d.qvel[3:6], joints, d.qvel[6:],
                 body_rel.ravel()]
        root_quat = d.xquat[self._root].copy()
        for s in self.ref_steps:
            k = self._k + s
            clip = self.library.clips[self._clip]
            if not clip.loop:
                k = min(k, clip.num_frames - 1)
            row, offset = self._ref_index(self._clip, k)
            ref_q = self.library.qpos(self._clip, k)
            rel_quat = quat_mul(quat_conj(root_quat), ref_q[3:7])
            rel_quat = rel_quat if rel_quat[0] >= 0 else -rel_quat
            mujoco.mj_differentiatePos(m, self._dq, 1.0, d.qpos, ref_q)
            ref_bodies = self._ref[self._clip]["body_positions"][row][1:] + offset
            parts += [(ref_q[:3] - root_pos) @ root_mat, rel_quat, self._dq[6:].copy(),
                      ((ref_bodies - d.xpos[2:]) @ root_mat).ravel()]
        return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts]).astype(np.float32)

    def reference_observation(self, clip_index: int, frame: int) -> np.ndarray:
        """The observation with the walker exactly in the reference state of ``frame`` (datasets)."""
        self._clip, self._k, self._steps = clip_index, frame, 0
        self._set_reference_state(clip_index, frame)
        return self._observation()

    # ---------------------------------------------------------------- rendering

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.height, self.width)
        self._renderer.update_scene(self.data, camera="track")
        return self._renderer.render().copy()

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


# ------------------------------------------------------------------------ demonstrations

MOCAP_ENV_ID = "rlkit/HumanoidImitation-v0"
"""The env whose observations :func:`build_mocap_dataset` records (and a mocap dataset's ``env_id``)."""


def build_mocap_dataset(clips: Sequence[str | Path], env_kwargs: dict | None = None,
                        contacts: bool = True) -> dict[str, np.ndarray]:
    """A state-action dataset of clips, one row per frame, from inverse dynamics.

    Keys: ``observations`` (N, obs_dim) float32 — the observation :data:`MOCAP_ENV_ID`
    (built with ``env_kwargs``) gives in that reference state; ``qpos`` (N, nq), ``qvel`` /
    ``qacc`` (N, nv); ``actions`` (N, nu) actuator forces [N m] for the actuated DOFs;
    ``actions_normalized`` = actions / gear (the env's ``action_mode="torque"`` action, unclipped);
    ``root_residual`` (N, 6); ``clip_index`` (N,) int; ``frame`` (N,) int; ``episode_starts`` (N,)
    bool; ``final_observations`` (C, obs_dim) float32 — the observation of the frame after each clip's
    last row (the final observation of its episode); ``clip_names`` (C,); ``dt`` (). Frames are those
    of :func:`~rlkit.envs.mocap.dataset_frames` at the env's control ``dt``.
    :func:`rlkit.training.recording.write_mocap_dataset` writes it as a Minari dataset.
    """
    env = HumanoidImitationEnv(clips=list(clips), **(env_kwargs or {}))
    model = env.model
    dofs, gears = env._dofs, env._gear  # the torque limits (the env's PD servos act along unit axes)
    rows: dict[str, list] = {k: [] for k in ("observations", "qpos", "qvel", "qacc", "actions", "root_residual",
                                             "clip_index", "frame", "episode_starts")}
    finals = []
    for i, clip in enumerate(env.library.clips):
        inv = inverse_dynamics(clip, model, contacts=contacts)
        obs = np.stack([env.reference_observation(i, int(k)) for k in inv["frames"]])
        rows["observations"].append(obs)
        for key in ("qpos", "qvel", "qacc", "root_residual"):
            rows[key].append(inv[key])
        rows["actions"].append(inv["qfrc"][:, dofs])
        rows["clip_index"].append(np.full(len(obs), i))
        rows["frame"].append(inv["frames"])
        starts = np.zeros(len(obs), dtype=bool)
        starts[0] = True
        rows["episode_starts"].append(starts)
        finals.append(env.reference_observation(i, int(inv["frames"][-1]) + 1))
    env.close()
    data = {k: np.concatenate(v) for k, v in rows.items()}
    data["observations"] = data["observations"].astype(np.float32)
    data["actions_normalized"] = data["actions"] / gears
    data["clip_names"] = np.array(env.library.names)
    data["dt"] = np.float64(env.control_dt)
    data["contacts"] = np.bool_(contacts)
    data["total_mass"] = np.float64(model.body_subtreemass[1])
    data["final_observations"] = np.stack(finals).astype(np.float32)
    return data
