"""The DeepMimic humanoid on mujoco-warp against MuJoCo from shared states with floor contacts, per contact kind.

States (qpos, qvel, ctrl) of the imitation env's model (implicit PD servos, the pd / pd_residual model), from two
sources: ``--rollouts`` MuJoCo rollouts of ``--steps`` env steps from random reference states of the walk clip, a
third each with zero control (``zero``: the limp, damped humanoid collapses), random servo torques of up to
``--torque`` x each motor's limit held for an env step (``torque``: it flails and falls) and the env's own PD
tracking with random pd_residual actions (``track``: it stumbles, as an untrained policy does), keeping every
``--every``-th env step's state; and ``--poses`` random poses resting on a limb capsule (:func:`pose_states`),
half of them steeper than 60 degrees, which the rollouts did not reach (none in 900 states). From each state (zero warmstart in both
engines) both simulators take one physics substep and one env step (8 substeps, the same ctrl) and the largest
|qpos| and |qvel| differences are reported per state class, from MuJoCo's contacts at the state:

* ``none``: no floor contact; ``box/sphere``: feet (boxes), root/chest/head/hands (spheres) only;
* ``capsule <60``: also limb capsules (upper arms, forearms, thighs, shins), all less than 60 degrees from the floor
  (where mujoco-warp 4.0 still turns the contact frame as MuJoCo does);
* ``capsule >=60``: at least one capsule contact steeper than that.

Each class is measured with mujoco-warp's own contact frames and with :class:`rlkit.envs.warp_contacts.
CapsuleFrameFilter` (MuJoCo's frames), on warp's CPU device::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/warp_humanoid_contacts.py --rollouts 30 --steps 90 --every 3 --poses 96
"""

from __future__ import annotations

import argparse

import mujoco
import numpy as np
import torch

from rlkit.envs.humanoid_imitation import HumanoidImitationEnv
from rlkit.envs.humanoid_warp import HumanoidImitationWarpEnv

CLASSES = ("none", "box/sphere", "capsule <60", "capsule >=60")


def rollout_states(env: HumanoidImitationEnv, rollouts: int, steps: int, every: int, torque: float, seed: int):
    """(qpos, qvel, ctrl, source) of states along MuJoCo rollouts from reference states of the walk clip, a third
    each with zero control (``zero``), random torques (``torque``) and the env's own PD tracking of the clip with
    random pd_residual actions (``track``: it stumbles and falls, as an untrained policy does)."""
    m, rng = env.model, np.random.default_rng(seed)
    d = env.data
    limit = m.actuator_forcerange[:, 1]
    clip = env.library.clips[0]
    states = []
    for r in range(rollouts):
        source = ("zero", "torque", "track")[r % 3]
        frame = int(rng.integers(clip.num_frames - 1))
        mujoco.mj_resetData(m, d)
        env._clip, env._k, env._steps = 0, frame, 0
        env._set_reference_state(0, frame)
        for t in range(steps):
            if source == "track":
                env.step(rng.uniform(-1, 1, m.nu).astype(np.float32))
            else:
                d.ctrl[:] = 0.0 if source == "zero" else torque * limit * rng.uniform(-1, 1, m.nu)
                for _ in range(env.physics_substeps):
                    mujoco.mj_step(m, d)
            if t % every == every - 1:
                states.append((d.qpos.copy(), d.qvel.copy(), d.ctrl.copy(), source))
    return states


def lowest_point(m: mujoco.MjModel, d: mujoco.MjData) -> float:
    """The lowest z of the humanoid's geoms (spheres, capsules, boxes) after ``mj_kinematics``."""
    low = np.inf
    for g in range(m.ngeom):
        kind, size, pos, mat = m.geom_type[g], m.geom_size[g], d.geom_xpos[g], d.geom_xmat[g].reshape(3, 3)
        if kind == mujoco.mjtGeom.mjGEOM_SPHERE:
            low = min(low, pos[2] - size[0])
        elif kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
            low = min(low, pos[2] - abs(mat[2, 2]) * size[1] - size[0])
        elif kind == mujoco.mjtGeom.mjGEOM_BOX:
            low = min(low, pos[2] - np.abs(mat[2]) @ size)
    return float(low)


def random_pose(m: mujoco.MjModel, rng: np.random.Generator) -> np.ndarray:
    """A random ``qpos``: the root turned uniformly, each ball joint by up to 1.5 rad about a random axis, each hinge
    uniform in its range, lowered until its lowest geom is 2 mm into the floor."""
    d = mujoco.MjData(m)

    def turn(max_angle):
        axis = rng.standard_normal(3)
        angle = rng.uniform(0.0, max_angle)
        return np.r_[np.cos(angle / 2), np.sin(angle / 2) * axis / np.linalg.norm(axis)]

    qpos = m.qpos0.copy()
    for j in range(m.njnt):
        adr, kind = m.jnt_qposadr[j], m.jnt_type[j]
        if kind == mujoco.mjtJoint.mjJNT_FREE:
            qpos[adr + 3:adr + 7] = turn(np.pi)
        elif kind == mujoco.mjtJoint.mjJNT_BALL:
            qpos[adr:adr + 4] = turn(1.5)
        elif kind == mujoco.mjtJoint.mjJNT_HINGE:
            qpos[adr] = rng.uniform(*m.jnt_range[j])
    qpos[2] = 0.0
    d.qpos[:] = qpos
    mujoco.mj_kinematics(m, d)
    qpos[2] = -lowest_point(m, d) - 0.002
    return qpos


def pose_states(env: HumanoidImitationEnv, count: int, torque: float, seed: int):
    """(qpos, qvel, ctrl, ``pose``) of random poses resting on a limb (:func:`random_pose`) with small random
    velocities and torques: ``count`` // 2 whose floor contacts include a capsule steeper than 60 degrees (a shin or
    an upper arm standing on its end; ~3% of random poses) and ``count`` - ``count`` // 2 with capsules below that."""
    m, rng = env.model, np.random.default_rng(seed + 1)
    d = mujoco.MjData(m)
    limit = m.actuator_forcerange[:, 1]
    want = {"capsule >=60": count // 2, "capsule <60": count - count // 2}
    states = []
    while any(want.values()):
        qpos = random_pose(m, rng)
        d.qpos[:], d.qvel[:] = qpos, 0.0
        mujoco.mj_forward(m, d)
        cls = classify(m, d)[0]
        if want.get(cls, 0) > 0:
            want[cls] -= 1
            states.append((qpos, 0.5 * rng.standard_normal(m.nv), torque * limit * rng.uniform(-1, 1, m.nu), "pose"))
    return states


def classify(m: mujoco.MjModel, d: mujoco.MjData) -> tuple[str, float, dict[str, int]]:
    """The state's class (module docstring), its steepest capsule contact's tilt in degrees, contacts per geom type."""
    kinds: dict[str, int] = {}
    steepest = -1.0
    for c in d.contact[: d.ncon] if d.ncon else []:
        for g in c.geom:
            kind = mujoco.mjtGeom(m.geom_type[g]).name[7:].lower()
            if kind == "plane":
                continue
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind == "capsule":
                steepest = max(steepest, float(np.degrees(np.arcsin(min(1.0, abs(d.geom_xmat[g][8]))))))
    if not kinds:
        return "none", steepest, kinds
    if "capsule" not in kinds:
        return "box/sphere", steepest, kinds
    return ("capsule >=60" if steepest >= 60.0 else "capsule <60"), steepest, kinds


def mujoco_steps(m, states, substeps):
    """MuJoCo from each state (zero warmstart): (qpos, qvel) after ``substeps`` steps, class, tilt, kinds."""
    d = mujoco.MjData(m)
    out = []
    for qpos, qvel, ctrl, _ in states:
        mujoco.mj_resetData(m, d)
        d.qpos[:], d.qvel[:], d.ctrl[:] = qpos, qvel, ctrl
        mujoco.mj_step(m, d)  # contacts of the start state stay in d.contact after the first step
        cls = classify(m, d)
        for _ in range(substeps - 1):
            mujoco.mj_step(m, d)
        out.append((d.qpos.copy(), d.qvel.copy(), *cls))
    return out


def warp_steps(env: HumanoidImitationWarpEnv, states, substeps):
    """The warp env's worlds from the same states: (qpos, qvel) [K, ...] after ``substeps`` mujoco-warp steps."""
    qpos, qvel, ctrl = (torch.as_tensor(np.stack(s), dtype=torch.float32) for s in list(zip(*states))[:3])
    with env._warp_scope():
        env._set_reference_state(torch.ones(env.num_envs, dtype=torch.bool))  # zero warmstart, applied forces, time
        env._qpos.copy_(qpos)
        env._qvel.copy_(qvel)
        env._ctrl.copy_(ctrl)
        for _ in range(substeps):
            env._mjw.step(env._model, env._data)
    return env._qpos.cpu().numpy().astype(np.float64), env._qvel.cpu().numpy().astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=16)
    parser.add_argument("--steps", type=int, default=45, help="env steps per rollout (30 per second)")
    parser.add_argument("--every", type=int, default=3, help="keep every n-th env step's state")
    parser.add_argument("--torque", type=float, default=0.3, help="random torques, fraction of each motor's limit")
    parser.add_argument("--poses", type=int, default=48, help="random poses resting on a capsule (half steep)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpu = HumanoidImitationEnv(clips=["walk"], action_mode="pd_residual")
    m = cpu.model
    states = rollout_states(cpu, args.rollouts, args.steps, args.every, args.torque, args.seed)
    states += pose_states(cpu, args.poses, args.torque, args.seed)
    env = HumanoidImitationWarpEnv(num_envs=len(states), device="cpu", clips=["walk"], action_mode="pd_residual")
    filt = env._contact_filter  # the env's rlkit.envs.warp_contacts.CapsuleFrameFilter
    print(f"{len(states)} states: {args.rollouts} rollouts x {args.steps} env steps (every {args.every}) and "
          f"{args.poses} poses, "
          f"seed {args.seed}, random torques {args.torque} x limit; cone {mujoco.mjtCone(m.opt.cone).name}")
    for label, substeps in (("one substep", 1), ("one env step (8 substeps, same ctrl)", cpu.physics_substeps)):
        ref = mujoco_steps(m, states, substeps)
        classes = np.array([r[2] for r in ref])
        q_c, v_c = np.stack([r[0] for r in ref]), np.stack([r[1] for r in ref])
        results = {}
        for name, callback in (("mujoco-warp's frames", None), ("MuJoCo's frames (filter)", filt)):
            env._model.callback.contactfilter = callback
            q_w, v_w = warp_steps(env, states, substeps)
            results[name] = (np.abs(q_w - q_c).max(1), np.abs(v_w - v_c).max(1))
        print(f"\n{label}:")
        sources = np.array([s[3] for s in states])
        print("| contacts at the state | states (zero/torque/track/pose) | contacts (geom: count) | steepest capsule | "
              + " | ".join(f"{n}: qpos / qvel" for n in results) + " |")
        print("|---|---:|---|---:|" + "---:|" * len(results))
        for cls in CLASSES:
            sel = classes == cls
            if not sel.any():
                print(f"| {cls} | 0 | | |" + " |" * len(results))
                continue
            kinds: dict[str, int] = {}
            for r, s in zip(ref, sel):
                if s:
                    for k, v in r[4].items():
                        kinds[k] = kinds.get(k, 0) + v
            tilt = max(r[3] for r, s in zip(ref, sel) if s)
            cells = " | ".join(f"{q[sel].max():.1e} / {v[sel].max():.1e}" for q, v in results.values())
            kind_text = ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items()))
            count = "/".join(str(int((sel & (sources == k)).sum())) for k in ("zero", "torque", "track", "pose"))
            print(f"| {cls} | {count} | {kind_text} | {f'{tilt:.0f} deg' if tilt >= 0 else ''} | {cells} |")
    env.close()


if __name__ == "__main__":
    main()
