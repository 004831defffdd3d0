"""Env steps/s of rlkit/AntMazeU-v0 on the mujoco-warp backend against the plain MuJoCo vector env.

Both are built the way a run builds them (``rlkit.training.build.make_vector_env`` with ``env.backend``; the plain
MuJoCo path is gymnasium's ``SyncVectorEnv`` of the goal env, 600-step episodes), reset with seed 0 and stepped with
uniform random actions; after ``--warmup`` untimed steps (the first warp step loads or compiles its kernels)
``--steps`` steps are timed. Env steps/s = worlds x steps / seconds. ``--raw-frames`` adds warp rows without the
contact filter that gives plane-capsule contacts MuJoCo's frame (what that filter costs). The load average is
printed with each row (2 shared cores here)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/bench_warp_ant.py --sizes 1 64 256 --mujoco-sizes 1 64 256
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from bench_warp import time_vector_steps  # scripts/: the same timing for both warp backends

from rlkit.config import EnvConfig
from rlkit.training.build import make_vector_env


def measure(backend: str, n: int, steps: int, warmup: int, device: str, raw_frames: bool = False) -> dict:
    kwargs = {"device": device} if backend == "warp" else {}
    t0 = time.perf_counter()
    envs = make_vector_env(EnvConfig(id="rlkit/AntMazeU-v0", num_envs=n, kwargs=kwargs, backend=backend))
    build_s = time.perf_counter() - t0
    if raw_frames:
        envs._model.callback.contactfilter = None
    name = backend + (" (mujoco-warp's own contact frames)" if raw_frames else "")
    return {"backend": name, "num_envs": n, "steps": steps, "build_s": build_s, **time_vector_steps(envs, steps, warmup)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 256], help="warp worlds")
    parser.add_argument("--mujoco-sizes", type=int, nargs="*", default=[1, 64, 256], help="plain MuJoCo sub-envs")
    parser.add_argument("--raw-frames", type=int, nargs="*", default=[], help="warp worlds, without the frame filter")
    parser.add_argument("--steps", type=int, default=20, help="timed vector steps per row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="warp device (cpu, cuda, auto)")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print("| backend | worlds | env steps/s | ms / vector step | build s | warm-up s | load (1 min) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    plan = [("mujoco", n, False) for n in args.mujoco_sizes] + [("warp", n, False) for n in args.sizes]
    plan += [("warp", n, True) for n in args.raw_frames]
    for backend, n, raw in plan:
        row = measure(backend, n, args.steps, args.warmup, args.device, raw)
        rows.append(row)
        print(f"| {row['backend']} | {n} | {row['env_steps_per_s']:,.0f} | {row['ms_per_vector_step']:.1f} | "
              f"{row['build_s']:.1f} | {row['warmup_s']:.1f} | {row['load_1min']:.2f} |", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
