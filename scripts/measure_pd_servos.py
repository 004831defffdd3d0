"""Measure the humanoid's PD servos: chatter, saturation, open-loop survival and speed.

With action 0 in ``action_mode="pd_residual"`` the servos replay the reference clip open-loop, so any
torque that flips sign every substep between its limits is the controller, not the policy. For each
controller variant this prints:

* ``kd_dt_minv``: the worst kd * dt * (M^-1)_ii over the visited states (explicit damping is stable
  only below 2);
* ``flip_median`` / ``flip_max``: over joints, the fraction of consecutive substeps whose torque
  changes sign while both are above 5% of the joint's limit (median and worst joint);
* ``saturated``: the fraction of (substep, joint) torques within 1% of the limit;
* ``survival``: open-loop survival in clip cycles from ``--starts`` random phases, capped at
  ``--cap`` steps (the episode ends on the tracking-error termination);
* ``steps_per_s``: env steps per second with uniformly random actions (same process, interleaved).

    python scripts/measure_pd_servos.py --clip walk --starts 30 --cap 380
    python scripts/measure_pd_servos.py --speed-rounds 5     # env steps/s only, variants interleaved, as ratios
"""

from __future__ import annotations

import argparse
import time

import mujoco
import numpy as np

from rlkit.envs.humanoid_imitation import HumanoidImitationEnv

VARIANTS = {
    "explicit, 8 substeps (240 Hz)": dict(pd_damping="explicit", physics_substeps=8),
    "explicit, 40 substeps (1.2 kHz)": dict(pd_damping="explicit", physics_substeps=40),
    "implicit damping, 8 substeps (shipped)": dict(pd_damping="implicit", physics_substeps=8),
}


def servo_stats(env: HumanoidImitationEnv, steps: int, seed: int) -> dict[str, float]:
    """Chatter and saturation with action 0 over ``steps`` control steps (resetting on termination)."""
    env.reset(seed=seed)
    limit = env._gear
    forces, worst = [], 0.0
    full_m = np.zeros((env.model.nv, env.model.nv))
    zero = np.zeros(env.action_space.shape, dtype=np.float32)

    def record(d: mujoco.MjData) -> None:
        nonlocal worst
        tau = d.actuator_force.copy()
        forces.append(tau if env.pd_damping == "implicit" else tau * limit)
        mujoco.mj_fullM(env.model, d, full_m)  # MuJoCo 4.0: (m, d, dst)
        minv = np.diag(np.linalg.inv(full_m))[6:]
        worst = max(worst, float(np.max(env._kd * env.model.opt.timestep * minv)))

    for _ in range(steps):
        env.simulate(zero, on_substep=record)
        env._k += 1
        env._steps += 1
        if env._errors()[1] > env.termination_error_threshold:
            env.reset()
    tau = np.array(forces)                                        # [T, nu]
    big = np.abs(tau) > 0.05 * limit
    flips = (np.sign(tau[1:]) != np.sign(tau[:-1])) & big[1:] & big[:-1]
    per_joint = flips.sum(0) / np.maximum(1, (big[1:] & big[:-1]).sum(0))
    return {"kd_dt_minv": worst, "flip_median": float(np.median(per_joint)), "flip_max": float(per_joint.max()),
            "saturated": float(np.mean(np.abs(tau) >= 0.99 * limit))}


def open_loop_survival(kwargs: dict, clip: str, starts: int, cap: int, seed: int) -> float:
    env = HumanoidImitationEnv(clips=[clip], action_mode="pd_residual", max_episode_steps=cap, **kwargs)
    cycle = env.library.clips[0].num_frames - 1
    rng = np.random.default_rng(seed)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    lengths = []
    for _ in range(starts):
        env.reset(seed=int(rng.integers(2**31)))
        n, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(zero)
            n += 1
            done = terminated or truncated
        lengths.append(n)
    return float(np.mean(lengths)) / cycle


def steps_per_second(kwargs: dict, clip: str, steps: int, seed: int) -> float:
    env = HumanoidImitationEnv(clips=[clip], action_mode="pd_residual", **kwargs)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default="walk")
    parser.add_argument("--starts", type=int, default=30)
    parser.add_argument("--cap", type=int, default=380, help="steps per open-loop episode at most")
    parser.add_argument("--stat-steps", type=int, default=200, help="control steps for the servo statistics")
    parser.add_argument("--speed-steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-rounds", type=int, default=0,
                        help="only measure env steps/s: this many interleaved rounds of every variant, as ratios")
    args = parser.parse_args()
    if args.speed_rounds:
        speeds: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(args.speed_rounds):
            for name, kwargs in VARIANTS.items():
                speeds[name].append(steps_per_second(kwargs, args.clip, args.speed_steps, args.seed))
        base = np.array(speeds[next(iter(VARIANTS))])
        for name, values in speeds.items():
            ratio = np.array(values) / base
            print(f"{name:40s} steps_per_s {np.median(values):6.0f} (min {min(values):.0f}, max {max(values):.0f})"
                  f"  ratio to the first, per round: median {np.median(ratio):.2f} ({ratio.min():.2f}..{ratio.max():.2f})")
        return
    print(f"clip {args.clip}: {args.starts} open-loop starts capped at {args.cap} steps")
    for name, kwargs in VARIANTS.items():
        env = HumanoidImitationEnv(clips=[args.clip], action_mode="pd_residual", **kwargs)
        stats = servo_stats(env, args.stat_steps, args.seed)
        survival = open_loop_survival(kwargs, args.clip, args.starts, args.cap, args.seed)
        speed = steps_per_second(kwargs, args.clip, args.speed_steps, args.seed)
        print(f"{name:40s} kd_dt_minv {stats['kd_dt_minv']:5.2f}  flip_median {stats['flip_median']:6.1%}  "
              f"flip_max {stats['flip_max']:6.1%}  saturated {stats['saturated']:6.1%}  "
              f"survival {survival:5.2f} cycles  steps_per_s {speed:6.0f}", flush=True)


if __name__ == "__main__":
    main()
