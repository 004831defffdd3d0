"""``rlkit/HumanoidGoToTarget-v0`` and ``rlkit/HumanoidCarry-v0``: the Catch & Carry tasks, in small.

Merel, Tunyasuvunakool, Ahuja, Tassa, Hasenclever, Pham, Erez, Wayne, Heess (2020), "Catch & Carry:
Reusable Neural Controllers for Vision-Guided Whole-Body Tasks" (SIGGRAPH): a low-level motor module
distilled from mocap experts (the NPMP, issue 23) is reused by high-level task policies trained
with sparse rewards. These are the tasks, built on the body of ``rlkit/HumanoidImitation-v0``
(:mod:`rlkit.envs.humanoid_imitation`): the DeepMimic humanoid (``envs/assets/humanoid_deepmimic.xml``),
the same PD servos (DeepMimic's gains, damping integrated implicitly by MuJoCo's ``implicitfast``),
8 physics substeps of 1/240 s per 30 Hz control step, and the same proprioceptive features, so a skill
decoder trained on the imitation env reads them unchanged::

    env = gymnasium.make("rlkit/HumanoidGoToTarget-v0", reward_type="shaped", pixels=True)
    env = gymnasium.make("rlkit/HumanoidCarry-v0")

Tasks
-----
* **Go to target** (:class:`GoToTargetEnv`): a target on the floor is drawn per episode, uniformly over
  the annulus ``min_target_distance <= r <= target_radius`` (default 1 m to 4 m) around the humanoid's
  start (the origin); success when the root (pelvis) is within ``success_distance`` (0.5 m, horizontal
  distance) of it. The target is drawn as a green disc of that radius with a pole (no collision), so the
  head camera sees it.
* **Carry** (:class:`CarryEnv`; the paper's warehouse task in small): a box (a free body added to the
  MJCF at load time; default 0.3 m cube, 2 kg, friction 1.5) rests on a pedestal (``pedestal_height``
  0.45 m; 0 puts it on the floor) at ``box_distance`` (0.8 m to 1.5 m) from the start in a uniformly
  random direction; a target zone (a disc of radius ``zone_radius`` 0.5 m on the floor) is drawn at
  ``zone_distance`` (1 m to 3 m) from the start and at least ``min_box_zone_distance`` (1 m) from the
  box. Success when the box **rests in the zone**: its centre is horizontally within ``zone_radius`` of
  the zone's centre, it touches the floor and its speed is below 0.1 m/s.

Reward (``reward_type``)
------------------------
* ``"sparse"`` (default; as Catch & Carry trains its tasks): ``r_t = 1`` on the step that reaches
  success, else 0. Success ends the episode (``terminated``).
* ``"shaped"``: the sparse term plus progress, potential-based shaping (Ng, Harada, Russell 1999) with
  γ = 1 (policy-invariant for undiscounted returns, approximately so for a discount near 1):
  ``r_t = 1[success] + Φ(s_{t+1}) - Φ(s_t)`` with, for go-to-target, ``Φ = -d(root, target)`` (metres
  of horizontal progress toward the target per step) and, for carry,
  ``Φ = -(hand_weight * d_hand + box_weight * d_box)``: ``d_hand`` the mean distance of the two hands to
  the box centre, ``d_box`` the box centre's horizontal distance to the zone's centre (weights 1, 1).
* ``fall_penalty`` (default 0, either reward type): subtracted on the step of a fall. A fall ends the episode,
  so without it falling is free — and under the shaped reward it is cheaper than walking away from the target,
  which the high-level policies over z were measured to learn (docs/humanoid_imitation.md); a penalty larger
  than the shaping a walk away can cost (a few metres) removes that answer.

Episodes
--------
* ``reset``: the humanoid is put at the origin with a uniformly random heading, in a random frame of the
  walk clip with its velocities (``init_pose="walk"``, the low-level skill's training distribution) or in
  the neutral standing pose at rest (``"stand"``); the reset ``info`` names them: ``start_frame`` (the walk
  clip's frame, -1 standing) and ``start_yaw`` (radians, the rotation applied to the clip's heading).
  ``reset(options={"target": (x, y)})`` (go-to) or
  ``options={"box": (x, y), "zone": (x, y)}`` (carry) places the task by hand.
* ``terminated``: success; a fall — the root below ``min_root_height`` (0.5 m; standing it is 0.88 m,
  walking 0.85-0.87 m) or the head (the ``neck`` geom) touching the floor — with reward 0 beyond the
  shaping; or a diverged simulation (as the imitation env: MuJoCo's bad-acceleration warning or a
  non-finite state; the state is restored to the episode's start to keep the observation finite,
  ``info["diverged"]``).
* ``truncated``: after ``max_episode_steps`` control steps (go-to 300 = 10 s, carry 600 = 20 s).
* ``info``: ``is_success`` (rlkit's evaluation reports it as ``success_rate``), ``fell``, and the task's
  distances (``target_distance``; ``box_zone_distance``, ``hand_box_distance``, ``box_on_floor``).

Observation (Dict, float32 except pixels)
-----------------------------------------
``"proprio"`` (116): exactly the first 116 entries of ``rlkit/HumanoidImitation-v0``'s observation (its
proprioception; :data:`PROPRIO_SLICES`), everything relative to the root and in the root frame:

==========================  =========  =========================================================
root height                 [0:1]      z of the root (pelvis) [m]
up vector                   [1:4]      world z axis in the root frame
root linear velocity        [4:7]      in the root frame
root angular velocity       [7:10]     MuJoCo's free-joint ``qvel[3:6]`` (root frame)
joint positions             [10:46]    ``qpos[7:43]``: 8 ball-joint quaternions (w >= 0), 4 hinge angles
joint velocities            [46:74]    ``qvel[6:34]``
body positions              [74:116]   the 14 non-root humanoid bodies relative to the root, root frame
==========================  =========  =========================================================

``"task"``, egocentric (relative to the root, in the root frame):

* go-to-target (3): ``[0:3]`` target position relative to the root (the target lies on the floor, z = 0).
* carry (22): ``[0:3]`` box centre relative to the root; ``[3:7]`` box orientation relative to the root
  (``q_root⁻¹ q_box``, w >= 0); ``[7:10]`` box linear velocity; ``[10:13]`` box angular velocity;
  ``[13:16]`` zone centre (on the floor) relative to the root; ``[16:19]`` right hand minus box centre;
  ``[19:22]`` left hand minus box centre.

``"pixels"`` (only with ``pixels=True``): uint8 ``[3, pixel_size, pixel_size]`` (default 64) from the
``egocentric`` camera at the front of the head, looking forward and 20 degrees down (80 degree field of
view), rendered offscreen without shadows or floor reflections (on this project's CPU machine, Mesa's
software EGL, that takes a 64x64 frame from 64 ms to 18 ms). Without a display rlkit picks ``MUJOCO_GL``
(``egl``, then ``osmesa``; :mod:`rlkit.mujoco_gl`) when this module is first imported, unless MuJoCo was
imported before; a backend that cannot render is a :class:`~rlkit.errors.ConfigError` saying how to fix
it. ``pixels=False`` (default) never touches GL.

Actions
-------
The imitation env's: Box [-1, 1]^28 in actuator order. ``action_mode="pd"`` (default): absolute PD
targets (a hinge's range mapped from [-1, 1]; a ball joint's target ``exp(a_xyz * BALL_ACTION_SCALE)``),
servoed every substep by ``ctrl = kp * diff(q, q*)`` with the damping ``-kd * qdot`` integrated implicitly
(:meth:`HumanoidImitationEnv._make_servos_implicit
<rlkit.envs.humanoid_imitation.HumanoidImitationEnv._make_servos_implicit>` explains why);
``"torque"``: the motors' torques ``action * gear`` (raw torques, for learning from scratch), integrated
with MuJoCo's RK4: the model has no joint damping, random torques spin the light limbs past 100 rad/s
within 0.2 s and the XML's Euler integrator (as the imitation env's torque mode uses) then diverges in
72% of random-action episodes on go-to-target (324 of 447 in 3,000 steps; ``implicitfast`` the same,
``implicit`` 18 of 120 in 2,000), RK4 in 2 of 276 (3,000 steps), at 4 force evaluations per substep. A
high-level policy over a skill's latent z drives the ``"pd"`` action space through the skill's decoder.

Rendering: ``render_mode="rgb_array"`` renders ``(height, width, 3)`` frames from the ``task_view``
camera (tracking the humanoid from behind and above, so the target, box and zone are in view).
"""

from __future__ import annotations

import difflib
import xml.etree.ElementTree as ET
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from rlkit.envs.humanoid_imitation import (  # chooses MUJOCO_GL before MuJoCo's first import
    BALL_ACTION_SCALE, make_servos_implicit)
from rlkit.errors import ConfigError

import mujoco  # noqa: E402  (after rlkit.envs.humanoid_imitation: its import picks the GL backend)

from rlkit.envs.mocap import HUMANOID_XML, MotionLibrary, actuated_dofs, load_model, quat_conj, quat_mul  # noqa: E402

PROPRIO_LAYOUT = (("root_height", 1), ("up_vector", 3), ("root_linear_velocity", 3), ("root_angular_velocity", 3),
                  ("joint_positions", 36), ("joint_velocities", 28), ("body_positions", 42))
"""The proprioceptive features, in order, with their sizes (the imitation env's first 116 entries)."""
PROPRIO_SLICES = {name: slice(start, start + size) for (name, size), start in
                  zip(PROPRIO_LAYOUT, np.cumsum([0] + [s for _, s in PROPRIO_LAYOUT])[:-1].tolist())}
PROPRIO_DIM = sum(size for _, size in PROPRIO_LAYOUT)
GOTO_TASK_DIM = 3
CARRY_TASK_DIM = 22
REWARD_TYPES = ("sparse", "shaped")
ACTION_MODES = ("pd", "torque")
INIT_POSES = ("walk", "stand")
REST_SPEED = 0.1
"""A box moving slower than this [m/s] while touching the floor rests."""
BASE_KWARGS = ("reward_type", "fall_penalty", "action_mode", "init_pose", "max_episode_steps", "min_root_height",
               "control_dt", "physics_substeps", "pixels", "pixel_size", "render_mode", "width", "height")
"""Keywords both tasks accept (:class:`HumanoidTaskEnv`)."""
HEAD_GEOM = "neck"
"""The head sphere's geom (its contact with the floor is a fall)."""


def _reject_unknown(env_name: str, unknown: dict, known: Sequence[str]) -> None:
    for key in unknown:
        close = difflib.get_close_matches(key, list(known), n=1)
        raise ConfigError(f"{env_name}: unknown keyword '{key}'" + (f"; did you mean '{close[0]}'?" if close else "")
                          + f" (env.kwargs accepts: {', '.join(sorted(known))})")


def _positive(env_name: str, **values: float) -> None:
    for key, value in values.items():
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise ConfigError(f"{env_name}: {key} must be a positive number, got {value!r}")


def _choice(env_name: str, key: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{env_name}: {key} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _xy(env_name: str, key: str, value: Any) -> np.ndarray:
    xy = np.asarray(value, dtype=float).reshape(-1)
    if xy.shape != (2,) or not np.all(np.isfinite(xy)):
        raise ConfigError(f"{env_name}: reset option '{key}' must be a finite (x, y) pair, got {value!r}")
    return xy


# ----------------------------------------------------------------------------------------- the model

def task_model(extra_world: Sequence[ET.Element] = ()) -> mujoco.MjModel:
    """The DeepMimic humanoid with the task's cameras and ``extra_world`` elements appended to the worldbody
    (after the humanoid, so its bodies, joints and DOFs keep their indices: qpos[0:43], qvel[0:34])."""
    root = ET.parse(HUMANOID_XML).getroot()
    neck = root.find(".//body[@name='neck']")
    a = np.deg2rad(20.0)  # looking 20 degrees down: viewing direction (cos a, 0, -sin a) in the head's frame
    ET.SubElement(neck, "camera", name="egocentric", pos="0.11 0 0.2", fovy="80",
                  xyaxes=f"0 -1 0 {np.sin(a):.6f} 0 {np.cos(a):.6f}")
    body = root.find(".//body[@name='root']")
    ET.SubElement(body, "camera", name="task_view", mode="trackcom", pos="0 -4.5 3.5", xyaxes="1 0 0 0 0.6 0.8")
    world = root.find("worldbody")
    for element in extra_world:
        world.append(element)
    return mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))


def _marker(name: str, radius: float, pole: bool) -> list[ET.Element]:
    """A flat disc (and optionally a 1 m pole) on the floor; visual only (no contacts)."""
    out = [ET.Element("geom", name=name, type="cylinder", size=f"{radius} 0.003", pos="0 0 0.003",
                      rgba="0.2 0.85 0.3 0.6", contype="0", conaffinity="0")]
    if pole:
        out.append(ET.Element("geom", name=f"{name}_pole", type="cylinder", size="0.03 0.5", pos="0 0 0.5",
                              rgba="0.2 0.85 0.3 1", contype="0", conaffinity="0"))
    return out


# ----------------------------------------------------------------------------------------- the body

class HumanoidTaskEnv(gym.Env):
    """The humanoid's body, servos, proprioception, falls and episode bookkeeping shared by the tasks.

    A task subclass defines the MJCF additions (:meth:`_world_elements`), the task's placement
    (:meth:`_place_task`), its features (:meth:`_task_features`), success (:meth:`_success`), the
    shaping potential (:meth:`_potential`) and its ``info`` (:meth:`_task_info`)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    env_name = "rlkit/HumanoidTask"
    task_dim = 0

    def __init__(self, *, reward_type: str = "sparse", fall_penalty: float = 0.0, action_mode: str = "pd",
                 init_pose: str = "walk", max_episode_steps: int = 300, min_root_height: float = 0.5, control_dt: float = 1.0 / 30.0,
                 physics_substeps: int = 8, pixels: bool = False, pixel_size: int = 64,
                 render_mode: str | None = None, width: int = 480, height: int = 360) -> None:
        name = self.env_name
        _choice(name, "reward_type", reward_type, REWARD_TYPES)
        _choice(name, "action_mode", action_mode, ACTION_MODES)
        _choice(name, "init_pose", init_pose, INIT_POSES)
        _choice(name, "render_mode", render_mode, (None, "rgb_array"))
        if not isinstance(pixels, bool):
            raise ConfigError(f"{name}: pixels must be true or false, got {pixels!r}")
        for key, value in (("max_episode_steps", max_episode_steps), ("physics_substeps", physics_substeps),
                           ("pixel_size", pixel_size), ("width", width), ("height", height)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}: {key} must be a positive integer, got {value!r}")
        _positive(name, min_root_height=min_root_height, control_dt=control_dt)
        if isinstance(fall_penalty, bool) or not (isinstance(fall_penalty, (int, float, np.integer, np.floating))
                                                  and np.isfinite(fall_penalty)
                                                  and fall_penalty >= 0):
            raise ConfigError(f"{name}: fall_penalty must be a number >= 0 (subtracted on the step of a fall), "
                              f"got {fall_penalty!r}")
        self.fall_penalty = float(fall_penalty)
        if pixels and pixel_size < 16:
            raise ConfigError(f"{name}: pixel_size must be >= 16, got {pixel_size}")
        self.reward_type, self.action_mode, self.init_pose = reward_type, action_mode, init_pose
        self.max_episode_steps, self.min_root_height = int(max_episode_steps), float(min_root_height)
        self.control_dt, self.physics_substeps = float(control_dt), int(physics_substeps)
        self.render_mode, self.width, self.height = render_mode, int(width), int(height)
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / control_dt))}

        humanoid = load_model()  # the imitation env's model: sizes of the humanoid part of qpos, qvel, bodies
        self._nq, self._nv, self._nbody = humanoid.nq, humanoid.nv, humanoid.nbody
        self.model = task_model(self._world_elements())
        self.model.opt.timestep = self.control_dt / self.physics_substeps
        self.data = mujoco.MjData(self.model)
        m = self.model
        limits = (m.vis.global_.offwidth, m.vis.global_.offheight)
        for key, value, limit in (("width", width, limits[0]), ("height", height, limits[1]),
                                  ("pixel_size", pixel_size if pixels else 1, min(limits))):
            if value > limit:
                raise ConfigError(f"{name}: {key} {value} exceeds the model's offscreen buffer ({limits[0]}x"
                                  f"{limits[1]}); use at most {limit}")
        self._root = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "root")
        self._floor = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "floor")
        self._head = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, HEAD_GEOM)
        self._hands = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, s) for s in ("right_hand", "left_hand")])
        self._setup_actuation()
        self._walk = MotionLibrary(["walk"], dt=self.control_dt, model=humanoid) if init_pose == "walk" else None
        self._stand_qpos = self._standing_pose(humanoid)

        spaces = {"proprio": gym.spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32),
                  "task": gym.spaces.Box(-np.inf, np.inf, (self.task_dim,), np.float32)}
        self._pixels: mujoco.Renderer | None = None
        if pixels:
            self._pixels = self._make_renderer(pixel_size, pixel_size, "pixels")
            for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
                self._pixels.scene.flags[flag] = False  # 3.5x cheaper on software EGL (module docstring)
            spaces["pixels"] = gym.spaces.Box(0, 255, (3, pixel_size, pixel_size), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (m.nu,), np.float32)
        self._renderer: mujoco.Renderer | None = None
        self._steps, self._bad_qacc = 0, 0
        self._start_qpos, self._start_qvel = self.data.qpos.copy(), self.data.qvel.copy()
        self._dq = np.zeros(m.nv)

    # ---------------------------------------------------------------- task hooks

    def _world_elements(self) -> list[ET.Element]:
        return []

    def _place_task(self, options: dict) -> None:
        raise NotImplementedError

    def _task_features(self, root_pos: np.ndarray, root_mat: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def _success(self) -> bool:
        raise NotImplementedError

    def _potential(self) -> float:
        raise NotImplementedError

    def _task_info(self) -> dict[str, Any]:
        return {}

    # ---------------------------------------------------------------- actuation (the imitation env's "pd" mode)

    def _setup_actuation(self) -> None:
        m = self.model
        dofs, self._gear = actuated_dofs(m)
        if not np.array_equal(dofs, np.arange(6, self._nv)):
            raise ValueError("the humanoid must have one actuator per non-root DOF, in DOF order")
        self._kp = np.asarray(m.numeric("pd_kp").data, dtype=float)
        self._kd = np.asarray(m.numeric("pd_kd").data, dtype=float)
        balls, hinges, a = [], [], 0
        for j in range(1, m.njnt):
            if m.jnt_dofadr[j] >= self._nv:  # the task's own bodies (the box)
                continue
            name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j)
            adr = int(m.jnt_qposadr[j])
            if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL:
                balls.append((adr, a, BALL_ACTION_SCALE.get(name, 1.0)))
                a += 3
            else:
                hinges.append((adr, a, *m.jnt_range[j]))
                a += 1
        self._ball_qidx = np.array([adr + np.arange(4) for adr, _, _ in balls], dtype=int)   # [J, 4]
        self._ball_act = np.array([i + np.arange(3) for _, i, _ in balls], dtype=int)       # [J, 3]
        self._ball_scale = np.array([[s] for _, _, s in balls], dtype=float)               # [J, 1]
        self._hinge_qadr = np.array([h[0] for h in hinges], dtype=int)                     # [H]
        self._hinge_act = np.array([h[1] for h in hinges], dtype=int)
        self._hinge_low = np.array([h[2] for h in hinges], dtype=float)
        self._hinge_high = np.array([h[3] for h in hinges], dtype=float)
        if self.action_mode == "pd":
            self._make_servos_implicit()
        else:  # raw torques: the model's Euler diverges (module docstring, "Actions"); RK4 does not
            m.opt.integrator = mujoco.mjtIntegrator.mjINT_RK4

    def _make_servos_implicit(self) -> None:
        """The imitation env's servos (``HumanoidImitationEnv._make_servos_implicit``): force ``ctrl - kd qdot``
        along one unit DOF axis, clamped to the motor's torque limit, with ``implicitfast`` integration."""
        make_servos_implicit(self.model, self._kd, self._gear)

    def pd_target(self, action: np.ndarray) -> np.ndarray:
        """The full ``qpos`` PD target of an absolute PD action (non-actuated entries copied from the state)."""
        action = np.asarray(action, dtype=float)
        target = self.data.qpos.copy()
        rotvec = action[self._ball_act] * self._ball_scale                                # [J, 3]
        angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)                            # [J, 1]
        sinc = np.where(angle > 1e-12, np.sin(angle / 2) / np.maximum(angle, 1e-12), 0.5)
        target[self._ball_qidx] = np.concatenate([np.cos(angle / 2), sinc * rotvec], axis=-1)
        lo, hi = self._hinge_low, self._hinge_high
        target[self._hinge_qadr] = lo + (action[self._hinge_act] + 1.0) * 0.5 * (hi - lo)
        return target

    def simulate(self, action: np.ndarray) -> None:
        """``action`` for ``physics_substeps`` physics steps (PD: ``ctrl = kp diff(q, q*)`` each substep)."""
        m, d = self.model, self.data
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if self.action_mode == "torque":
            d.ctrl[:] = action
            mujoco.mj_step(m, d, nstep=self.physics_substeps)
            return
        target = self.pd_target(action)
        for _ in range(self.physics_substeps):
            mujoco.mj_differentiatePos(m, self._dq, 1.0, d.qpos, target)
            d.ctrl[:] = self._kp * self._dq[6:self._nv]
            mujoco.mj_step(m, d)

    # ---------------------------------------------------------------- state

    def _standing_pose(self, humanoid: mujoco.MjModel) -> np.ndarray:
        """The neutral pose (qpos0) with the soles 1 mm above the floor."""
        d = mujoco.MjData(humanoid)
        mujoco.mj_kinematics(humanoid, d)
        lowest = min(d.geom_xpos[g, 2] - humanoid.geom_size[g, 2] for g in range(humanoid.ngeom)
                     if humanoid.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX)
        qpos = d.qpos.copy()
        qpos[2] += 0.001 - lowest
        return qpos

    def _place_humanoid(self) -> None:
        """At the origin, random heading; a random walk-clip frame with its velocities, or standing at rest."""
        qpos, qvel, k = self._stand_qpos.copy(), np.zeros(self._nv), -1
        if self._walk is not None:
            clip = self._walk.clips[0]
            k = int(self.np_random.integers(clip.num_frames - 1))
            qpos, qvel = self._walk.qpos(0, k), self._walk.qvel(0, k)
        yaw = self.np_random.uniform(-np.pi, np.pi)
        self._start = {"start_frame": k, "start_yaw": float(yaw)}
        q_yaw = np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
        c, s = np.cos(yaw), np.sin(yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        qpos[:2] = 0.0
        qpos[3:7] = quat_mul(q_yaw, qpos[3:7])
        qvel[:3] = rot @ qvel[:3]  # world-frame linear velocity; the angular velocity qvel[3:6] is local
        self.data.qpos[:self._nq], self.data.qvel[:self._nv] = qpos, qvel

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Put the whole simulation (humanoid, and the box in carry) in ``qpos`` / ``qvel`` (tests, demos)."""
        qpos, qvel = np.asarray(qpos, dtype=float), np.asarray(qvel, dtype=float)
        if qpos.shape != (self.model.nq,) or qvel.shape != (self.model.nv,):
            raise ConfigError(f"{self.env_name}.set_state: expected qpos ({self.model.nq},) and qvel "
                              f"({self.model.nv},), got {qpos.shape} and {qvel.shape}")
        self.data.qpos[:], self.data.qvel[:] = qpos, qvel
        mujoco.mj_forward(self.model, self.data)

    def _root_frame(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.data
        return d.xpos[self._root].copy(), d.xmat[self._root].reshape(3, 3).copy()

    def proprio(self) -> np.ndarray:
        """The imitation env's proprioception (its observation's first 116 entries; :data:`PROPRIO_SLICES`)."""
        d, nq, nv = self.data, self._nq, self._nv
        root_pos, root_mat = self._root_frame()
        joints = d.qpos[7:nq].copy()
        for adr in self._ball_qidx[:, 0] - 7:
            if joints[adr] < 0:
                joints[adr:adr + 4] *= -1
        body_rel = (d.xpos[2:self._nbody] - root_pos) @ root_mat
        parts = [[root_pos[2]], root_mat[2], d.qvel[0:3] @ root_mat, d.qvel[3:6], joints, d.qvel[6:nv],
                 body_rel.ravel()]
        return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts]).astype(np.float32)

    def _observation(self) -> dict[str, np.ndarray]:
        root_pos, root_mat = self._root_frame()
        task = np.concatenate([np.asarray(p, dtype=np.float64).ravel()
                               for p in self._task_features(root_pos, root_mat)]).astype(np.float32)
        obs = {"proprio": self.proprio(), "task": task}
        if self._pixels is not None:
            self._pixels.update_scene(self.data, camera="egocentric")
            obs["pixels"] = np.ascontiguousarray(self._pixels.render().transpose(2, 0, 1))
        return obs

    def _touching(self, geom: int, others: Sequence[int]) -> bool:
        d = self.data
        g1, g2 = d.contact.geom1[:d.ncon], d.contact.geom2[:d.ncon]
        return bool(np.any(((g1 == geom) & np.isin(g2, others)) | ((g2 == geom) & np.isin(g1, others))))

    def _fallen(self) -> bool:
        return bool(self.data.xpos[self._root, 2] < self.min_root_height
                    or self._touching(self._head, (self._floor,)))

    # ---------------------------------------------------------------- gym API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self._steps, self._bad_qacc = 0, 0
        self._place_humanoid()
        self._place_task(dict(options or {}))
        mujoco.mj_forward(self.model, self.data)
        self._start_qpos, self._start_qvel = self.data.qpos.copy(), self.data.qvel.copy()
        return self._observation(), {**self._info(False, False), **self._start}

    def step(self, action):
        m, d = self.model, self.data
        before = self._potential()
        self.simulate(action)
        self._steps += 1
        bad_qacc = int(d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number)
        diverged = bad_qacc > self._bad_qacc or not (np.all(np.isfinite(d.qpos)) and np.all(np.isfinite(d.qvel)))
        self._bad_qacc = bad_qacc
        if diverged:  # keep the observation finite: back to the episode's start
            d.qpos[:], d.qvel[:] = self._start_qpos, self._start_qvel
        mujoco.mj_forward(m, d)  # positions and contacts of the final state
        fell = not diverged and self._fallen()
        success = not (diverged or fell) and self._success()
        reward = float(success) - (self.fall_penalty if fell else 0.0)
        if self.reward_type == "shaped" and not diverged:
            reward += self._potential() - before
        terminated = bool(diverged or fell or success)
        truncated = bool(self._steps >= self.max_episode_steps and not terminated)
        info = self._info(success, fell)
        if diverged:
            info["diverged"] = True
        return self._observation(), reward, terminated, truncated, info

    def _info(self, success: bool, fell: bool) -> dict[str, Any]:
        return {"is_success": bool(success), "fell": bool(fell), **self._task_info()}

    # ---------------------------------------------------------------- rendering

    def _make_renderer(self, width: int, height: int, what: str) -> mujoco.Renderer:
        try:
            return mujoco.Renderer(self.model, height, width)
        except Exception as exc:  # noqa: BLE001  (GL failures come as many types)
            import os

            backend = os.environ.get("MUJOCO_GL", "unset (GLFW, needs a display)")
            raise ConfigError(f"{self.env_name}: {what} need offscreen rendering, which fails here (MUJOCO_GL="
                              f"{backend}: {' '.join(str(exc).split()) or type(exc).__name__}); install EGL "
                              "(libegl1) or OSMesa (libosmesa6, PyOpenGL) and set MUJOCO_GL=egl or osmesa before "
                              "MuJoCo is first imported, or use pixels: false") from None

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = self._make_renderer(self.width, self.height, "rgb_array frames")
        self._renderer.update_scene(self.data, camera="task_view")
        return self._renderer.render().copy()

    def close(self):
        for name in ("_renderer", "_pixels"):
            renderer = getattr(self, name, None)
            if renderer is not None:
                renderer.close()
                setattr(self, name, None)


def _annulus(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """A point uniform over the annulus low <= r <= high around the origin."""
    r = np.sqrt(rng.uniform(low ** 2, high ** 2))
    angle = rng.uniform(-np.pi, np.pi)
    return np.array([r * np.cos(angle), r * np.sin(angle)])


# ----------------------------------------------------------------------------------------- go to target

class GoToTargetEnv(HumanoidTaskEnv):
    """``rlkit/HumanoidGoToTarget-v0``: walk the root to within ``success_distance`` of a floor target."""

    env_name = "rlkit/HumanoidGoToTarget-v0"
    task_dim = GOTO_TASK_DIM

    def __init__(self, *, target_radius: float = 4.0, min_target_distance: float = 1.0,
                 success_distance: float = 0.5, max_episode_steps: int = 300, **kwargs: Any) -> None:
        known = ("target_radius", "min_target_distance", "success_distance", *BASE_KWARGS)
        _reject_unknown(self.env_name, {k: v for k, v in kwargs.items() if k not in known}, known)
        _positive(self.env_name, target_radius=target_radius, min_target_distance=min_target_distance,
                  success_distance=success_distance)
        if min_target_distance <= success_distance:
            raise ConfigError(f"{self.env_name}: min_target_distance ({min_target_distance}) must exceed success_distance "
                              f"({success_distance}), or an episode could start already at its target")
        if min_target_distance > target_radius:
            raise ConfigError(f"{self.env_name}: min_target_distance ({min_target_distance}) must be <= target_radius "
                              f"({target_radius})")
        self.target_radius, self.min_target_distance = float(target_radius), float(min_target_distance)
        self.success_distance = float(success_distance)
        self.target = np.zeros(3)
        super().__init__(max_episode_steps=max_episode_steps, **kwargs)
        self._marker = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, n) for n in ("target", "target_pole")]

    def _world_elements(self) -> list[ET.Element]:
        return _marker("target", self.success_distance, pole=True)

    def _place_task(self, options: dict) -> None:
        unknown = set(options) - {"target"}
        if unknown:
            raise ConfigError(f"{self.env_name}: unknown reset option(s) {sorted(unknown)}; the only one is 'target'")
        xy = (_xy(self.env_name, "target", options["target"]) if "target" in options
              else _annulus(self.np_random, self.min_target_distance, self.target_radius))
        self.target = np.array([xy[0], xy[1], 0.0])
        for g in self._marker:
            self.model.geom_pos[g, :2] = xy

    def target_distance(self) -> float:
        return float(np.linalg.norm(self.data.xpos[self._root, :2] - self.target[:2]))

    def _task_features(self, root_pos, root_mat):
        return [(self.target - root_pos) @ root_mat]

    def _success(self) -> bool:
        return self.target_distance() < self.success_distance

    def _potential(self) -> float:
        return -self.target_distance()

    def _task_info(self) -> dict[str, Any]:
        return {"target_distance": self.target_distance()}


# ----------------------------------------------------------------------------------------- carry

class CarryEnv(HumanoidTaskEnv):
    """``rlkit/HumanoidCarry-v0``: pick up a box from its pedestal and set it down in the target zone."""

    env_name = "rlkit/HumanoidCarry-v0"
    task_dim = CARRY_TASK_DIM

    def __init__(self, *, box_size: float = 0.3, box_mass: float = 2.0, box_friction: float = 1.5,
                 pedestal_height: float = 0.45, box_distance: Sequence[float] = (0.8, 1.5),
                 zone_distance: Sequence[float] = (1.0, 3.0), min_box_zone_distance: float = 1.0,
                 zone_radius: float = 0.5, hand_weight: float = 1.0, box_weight: float = 1.0,
                 max_episode_steps: int = 600, **kwargs: Any) -> None:
        name = self.env_name
        known = ("box_size", "box_mass", "box_friction", "pedestal_height", "box_distance", "zone_distance",
                 "min_box_zone_distance", "zone_radius", "hand_weight", "box_weight", *BASE_KWARGS)
        _reject_unknown(name, {k: v for k, v in kwargs.items() if k not in known}, known)
        _positive(name, box_size=box_size, box_mass=box_mass, box_friction=box_friction, zone_radius=zone_radius,
                  min_box_zone_distance=min_box_zone_distance)
        if not (isinstance(pedestal_height, (int, float)) and 0 <= pedestal_height <= 1.5):
            raise ConfigError(f"{name}: pedestal_height must be in [0, 1.5] m (0: the box on the floor), "
                              f"got {pedestal_height!r}")
        for key, value in (("hand_weight", hand_weight), ("box_weight", box_weight)):
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ConfigError(f"{name}: {key} must be a number >= 0, got {value!r}")
        for key, value in (("box_distance", box_distance), ("zone_distance", zone_distance)):
            pair = np.asarray(value, dtype=float).reshape(-1) if np.ndim(value) else np.zeros(0)
            if pair.shape != (2,) or not (0 < pair[0] <= pair[1] < np.inf):
                raise ConfigError(f"{name}: {key} must be [min, max] metres with 0 < min <= max, got {value!r}")
        if min_box_zone_distance <= zone_radius:
            raise ConfigError(f"{name}: min_box_zone_distance ({min_box_zone_distance}) must exceed zone_radius "
                              f"({zone_radius}), or the box could start inside its zone")
        if min_box_zone_distance > box_distance[1] + zone_distance[1]:
            raise ConfigError(f"{name}: min_box_zone_distance ({min_box_zone_distance}) cannot be met with "
                              f"box_distance {box_distance} and zone_distance {zone_distance}")
        self.box_half = float(box_size) / 2
        self.box_mass, self.box_friction = float(box_mass), float(box_friction)
        self.pedestal_height = float(pedestal_height)
        self.box_distance, self.zone_distance = tuple(map(float, box_distance)), tuple(map(float, zone_distance))
        self.min_box_zone_distance, self.zone_radius = float(min_box_zone_distance), float(zone_radius)
        self.hand_weight, self.box_weight = float(hand_weight), float(box_weight)
        self.zone = np.zeros(3)
        super().__init__(max_episode_steps=max_episode_steps, **kwargs)
        m = self.model
        self._box = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "box")
        self._box_geom = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "box")
        self._box_qpos = int(m.jnt_qposadr[m.body_jntadr[self._box]])
        self._box_qvel = int(m.jnt_dofadr[m.body_jntadr[self._box]])
        self._pedestal = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "pedestal")  # -1 without one
        self._zone_geom = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "zone")

    def _world_elements(self) -> list[ET.Element]:
        h = self.box_half
        elements = _marker("zone", self.zone_radius, pole=False)
        if self.pedestal_height > 0:  # a static block: collides with the humanoid (contype 2) and the box
            half = self.pedestal_height / 2
            elements.append(ET.Element("geom", name="pedestal", type="box", size=f"{h + 0.05} {h + 0.05} {half}",
                                       pos=f"0 0 {half}", rgba="0.45 0.45 0.5 1", contype="2", conaffinity="1"))
        box = ET.Element("body", name="box", pos=f"0 0 {self.pedestal_height + h}")
        ET.SubElement(box, "freejoint", name="box")
        ET.SubElement(box, "geom", name="box", type="box", size=f"{h} {h} {h}", mass=f"{self.box_mass}",
                      friction=f"{self.box_friction} 0.005 0.0001", rgba="0.8 0.55 0.25 1",
                      contype="3", conaffinity="3")  # touches the humanoid, the floor and the pedestal
        return [*elements, box]

    def _place_task(self, options: dict) -> None:
        unknown = set(options) - {"box", "zone"}
        if unknown:
            raise ConfigError(f"{self.env_name}: unknown reset option(s) {sorted(unknown)}; known: 'box', 'zone'")
        rng = self.np_random
        box = _xy(self.env_name, "box", options["box"]) if "box" in options else _annulus(rng, *self.box_distance)
        if "zone" in options:
            zone = _xy(self.env_name, "zone", options["zone"])
        else:
            for _ in range(1000):
                zone = _annulus(rng, *self.zone_distance)
                if np.linalg.norm(zone - box) >= self.min_box_zone_distance:
                    break
            else:
                raise ConfigError(f"{self.env_name}: no zone at least {self.min_box_zone_distance} m from the box "
                                  f"in 1000 draws; lower min_box_zone_distance or widen zone_distance")
        self.zone = np.array([zone[0], zone[1], 0.0])
        self.model.geom_pos[self._zone_geom, :2] = zone
        if self._pedestal >= 0:
            self.model.geom_pos[self._pedestal, :2] = box
        q, v = self._box_qpos, self._box_qvel
        self.data.qpos[q:q + 7] = [box[0], box[1], self.pedestal_height + self.box_half, 1.0, 0.0, 0.0, 0.0]
        self.data.qvel[v:v + 6] = 0.0

    def box_position(self) -> np.ndarray:
        return self.data.xpos[self._box].copy()

    def box_zone_distance(self) -> float:
        return float(np.linalg.norm(self.data.xpos[self._box, :2] - self.zone[:2]))

    def hand_box_distance(self) -> float:
        return float(np.mean(np.linalg.norm(self.data.site_xpos[self._hands] - self.data.xpos[self._box], axis=-1)))

    def box_on_floor(self) -> bool:
        return self._touching(self._box_geom, (self._floor,))

    def _task_features(self, root_pos, root_mat):
        d, v = self.data, self._box_qvel
        box_pos, box_mat = d.xpos[self._box], d.xmat[self._box].reshape(3, 3)
        rel_quat = quat_mul(quat_conj(d.xquat[self._root]), d.xquat[self._box])
        rel_quat = rel_quat if rel_quat[0] >= 0 else -rel_quat
        angular_world = box_mat @ d.qvel[v + 3:v + 6]  # the free joint's angular velocity is in the box frame
        hands = (d.site_xpos[self._hands] - box_pos) @ root_mat
        return [(box_pos - root_pos) @ root_mat, rel_quat, d.qvel[v:v + 3] @ root_mat, angular_world @ root_mat,
                (self.zone - root_pos) @ root_mat, hands]

    def _success(self) -> bool:
        v = self._box_qvel
        resting = np.linalg.norm(self.data.qvel[v:v + 3]) < REST_SPEED and self.box_on_floor()
        return bool(resting and self.box_zone_distance() < self.zone_radius)

    def _potential(self) -> float:
        return -(self.hand_weight * self.hand_box_distance() + self.box_weight * self.box_zone_distance())

    def _task_info(self) -> dict[str, Any]:
        return {"box_zone_distance": self.box_zone_distance(), "hand_box_distance": self.hand_box_distance(),
                "box_on_floor": self.box_on_floor()}
