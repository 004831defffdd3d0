"""The GPU rows of issue 22, measured in one prepared run on a lent GPU machine (and runnable on CPU to check it).

Each part is one subcommand that prints one JSON line (``RESULT {...}``) and is run by ``scripts/gpu_bench.sh`` in
its own process under a time limit, so a part that fails or runs long costs only itself::

    python scripts/gpu_bench.py dqn-pong --device cuda        # rlkit DQN on Pong: training env steps/s
    python scripts/gpu_bench.py sb3-pong --device cuda        # SB3 DQN, same settings
    python scripts/gpu_bench.py dt --device cuda              # rlkit Decision Transformer: training samples/s
    python scripts/gpu_bench.py d3rlpy-dt --device cuda       # d3rlpy 2.8.1 DT, same model (PYTHONPATH: d3rlpy's)
    python scripts/gpu_bench.py warp-env --sizes 1024 4096    # humanoid on mujoco-warp: env steps/s, eager vs graph
    python scripts/gpu_bench.py mpo-warp --device cuda        # MPO on the warp backend: walk clip, wall time

Pong and DT use the settings of ``rlkit bench dqn-throughput`` and ``rlkit bench dt`` (equal hyperparameters,
equal updates per transition; the same DT model on both sides); rates are taken over a window after a warm-up
(learning start, first chunk), so start-up, kernel compilation and the first updates are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def emit(part: str, **values) -> None:
    import torch

    values.update(part=part, torch=torch.__version__,
                  gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    print("RESULT " + json.dumps(values), flush=True)


def _window_rate(records: list[dict], start: int, per_step: float = 1.0) -> tuple[float | None, int]:
    """Steps/s (times ``per_step``) between the first train record at or after ``start`` and the last one."""
    inside = [r for r in records if r["kind"] == "train" and r["step"] >= start]
    if len(inside) < 2:
        return None, len(inside)
    a, b = inside[0], inside[-1]
    return per_step * (b["step"] - a["step"]) / max(b["time"] - a["time"], 1e-9), len(inside)


QUIET = ["log.progress=false", "log.tensorboard=false", "log.plot=false", "train.checkpoint_every=0",
         "train.eval_every=0"]


def dqn_pong(args) -> None:
    """rlkit's DQN on Pong as ``rlkit bench dqn-throughput`` runs it: 8 envs, one update per 4 env steps."""
    from rlkit.config import load_config
    from rlkit.runfiles.logger import read_metrics
    from rlkit.training import loops

    n = args.envs
    overrides = [*QUIET, "train.save_buffer=false", f"device={args.device}", f"torch_threads={args.threads}",
                 f"env.num_envs={n}", f"train.total_steps={args.steps}", f"train.learning_starts={args.learning_starts}",
                 "train.replay.capacity=50000", f"train.train_every={n}", f"train.gradient_steps={n // 4}",
                 f"env.kwargs.num_threads={args.ale_threads}", f"log.log_every={max(100, args.steps // 24)}", "seed=0", *args.set]
    cfg = load_config(str(REPO / "configs" / "dqn_pong.yaml"), overrides)
    run_dir = Path(args.out) / f"dqn-pong-{args.device}"
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    loops.train_online(cfg, run_dir)
    wall = time.perf_counter() - t0
    sps, points = _window_rate(read_metrics(run_dir), args.learning_starts + 1000)
    emit("dqn-pong", side="rlkit", device=args.device, overrides=args.set, env_steps_per_s=sps, window_points=points, wall_s=wall,
         num_envs=n, threads=args.threads, steps=args.steps, learning_starts=args.learning_starts)


def sb3_pong(args) -> None:
    """SB3's DQN with the settings of ``rlkit bench dqn-throughput``'s Pong side, on ``--device``."""
    import torch

    sys.path.insert(0, str(REPO))
    torch.set_num_threads(args.threads)
    from bench.suites.dqn_throughput import _sb3_throughput
    import bench.suites.dqn_throughput as suite
    from stable_baselines3 import DQN as SB3DQN

    original = SB3DQN.__init__

    def on_device(self, *a, **kw):  # the suite builds SB3 on the CPU: the same model, on --device here
        kw["device"] = args.device
        original(self, *a, **kw)

    SB3DQN.__init__ = on_device
    n = args.envs
    model = suite._sb3_pong_model(0, n, args.learning_starts, n // 4)
    t0 = time.perf_counter()
    sps = _sb3_throughput(model, args.steps, (args.learning_starts + 1000, args.steps))
    emit("sb3-pong", side="sb3", device=args.device, env_steps_per_s=sps, wall_s=time.perf_counter() - t0,
         num_envs=n, threads=args.threads, steps=args.steps, learning_starts=args.learning_starts)


def dt(args) -> None:
    """rlkit's DT on hopper-medium with the paper's model (``configs/dt_hopper_medium.yaml``): samples/s."""
    from rlkit.config import load_config
    from rlkit.runfiles.logger import read_metrics
    from rlkit.training import loops

    overrides = [*QUIET, f"device={args.device}", f"torch_threads={args.threads}", f"train.total_steps={args.steps}",
                 f"log.log_every={max(25, args.steps // 8)}", "seed=0", *args.set]
    cfg = load_config(str(REPO / "configs" / "dt_hopper_medium.yaml"), overrides)
    run_dir = Path(args.out) / f"dt-{args.device}-{'-'.join(args.set) or 'default'}"
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    loops.train_offline(cfg, run_dir)
    wall = time.perf_counter() - t0
    records = read_metrics(run_dir)
    sps, points = _window_rate(records, args.warmup, per_step=cfg.train.batch_size)
    loss = [r.get("loss") for r in records if r["kind"] == "train"][-1:]
    emit("dt", side="rlkit", device=args.device, overrides=args.set, samples_per_s=sps, updates_per_s=None if sps is None else
         sps / cfg.train.batch_size, window_points=points, wall_s=wall, steps=args.steps, threads=args.threads,
         last_loss=loss[0] if loss else None)


def d3rlpy_dt(args) -> None:
    """d3rlpy 2.8.1's DecisionTransformer with the model ``rlkit bench dt`` races (bench/d3rlpy_dt_driver.py's
    ``build``), on ``--device``: samples/s over the steps after ``--warmup``. Run with d3rlpy's packages first on
    PYTHONPATH (it pins gymnasium 1.0.0)."""
    import torch

    sys.path.insert(0, str(REPO / "bench"))
    import d3rlpy_dt_driver as driver
    from d3rlpy.logging import NoopAdapterFactory

    torch.set_num_threads(args.threads)
    data = Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets")) / "rlkit" / \
        "hopper-medium-v0" / "data"
    ns = driver.parse(["--data", str(data), "--env-id", "Hopper-v5", "--steps", str(args.steps),
                       "--target-return", "1200", "--threads", str(args.threads), "--device", args.device])
    algo, dataset = driver.build(ns)
    marks: dict[int, float] = {}

    def callback(algo_, epoch, total_step):
        if total_step in (args.warmup, args.steps):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            marks[total_step] = time.perf_counter()

    t0 = time.perf_counter()
    algo.fit(dataset, n_steps=args.steps, n_steps_per_epoch=args.steps, experiment_name="gpu_bench_dt",
             with_timestamp=False, logger_adapter=NoopAdapterFactory(), show_progress=False, callback=callback)
    sps = None
    if len(marks) == 2:
        sps = (args.steps - args.warmup) * ns.batch / (marks[args.steps] - marks[args.warmup])
    emit("d3rlpy-dt", side="d3rlpy", device=args.device, samples_per_s=sps,
         updates_per_s=None if sps is None else sps / ns.batch, wall_s=time.perf_counter() - t0, steps=args.steps,
         threads=args.threads, d3rlpy=__import__("d3rlpy").__version__)


def warp_env(args) -> None:
    """Humanoid imitation on mujoco-warp at each ``--sizes`` worlds and each ``--graph`` mode (``off``: eager
    launches; ``auto``: the substeps replayed as one CUDA graph, envs/humanoid_warp.py ``StepGraph``): env steps/s
    of the full vector step (physics, reference, reward, observation, autoreset, one host copy) and of the physics
    alone (device-synchronised). With both modes, the two runs take the same actions from the same seeded reset,
    and the row of the second says how far apart their last observations are (a graph replays the same kernels,
    so only mujoco-warp's own run-to-run differences should show)."""
    import numpy as np
    import torch

    sys.path.insert(0, str(REPO / "scripts"))
    from bench_warp import KWARGS

    from rlkit.config import EnvConfig
    from rlkit.training.build import make_vector_env

    torch.set_num_threads(args.threads)
    for n in args.sizes:
        last_obs = {}
        for mode in args.graph:
            t0 = time.perf_counter()
            kwargs = dict(KWARGS, device=args.device, cuda_graph={"off": False, "auto": "auto", "on": True}[mode])
            envs = make_vector_env(EnvConfig(id="rlkit/HumanoidImitation-v0", num_envs=n, kwargs=kwargs,
                                             backend="warp"))
            build_s = time.perf_counter() - t0
            rng = np.random.default_rng(0)
            actions = rng.uniform(-1, 1, (4, n, envs.single_action_space.shape[0])).astype(np.float32)
            envs.reset(seed=0)
            t0 = time.perf_counter()
            for t in range(args.warmup):
                envs.step(actions[t % 4])
            warmup_s = time.perf_counter() - t0
            sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
            sync()
            t0 = time.perf_counter()
            for t in range(args.steps):
                obs = envs.step(actions[t % 4])[0]
            sync()
            step_s = (time.perf_counter() - t0) / args.steps
            last_obs[mode] = np.array(obs, copy=True)
            inner = envs.unwrapped if hasattr(envs, "unwrapped") else envs
            action = torch.as_tensor(actions[0], device=inner.device)
            with inner._warp_scope():
                sync()
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    inner._simulate(action)
                sync()
            physics_s = (time.perf_counter() - t0) / args.steps
            substeps = inner.cpu_env.physics_substeps
            sentinels_ok = None
            if inner._step_graph.enabled:  # memory the replays write must not be handed to eager tensors
                sentinels = [torch.full((k,), 7.0, device=inner.device) for k in (1, 997, 65536, 4_000_000)]
                for t in range(3):
                    envs.step(actions[t % 4])
                sync()
                sentinels_ok = all(bool((x == 7.0).all()) for x in sentinels)
                del sentinels
            agree = None
            if len(last_obs) == 2:
                a, b = last_obs.values()
                agree = {"obs_max_abs_diff": float(np.nanmax(np.abs(a - b))), "obs_nan": int(np.isnan(b).sum())}
            emit("warp-env", device=args.device, num_envs=n, graph=mode, graph_active=bool(inner._step_graph.enabled),
                 env_steps_per_s=n / step_s, ms_per_vector_step=1e3 * step_s, physics_env_steps_per_s=n / physics_s,
                 physics_steps_per_s=n * substeps / physics_s, substeps=substeps, build_s=build_s,
                 warmup_s=warmup_s, timed_steps=args.steps, graph_vs_eager=agree, sentinels_unchanged=sentinels_ok)
            envs.close()
            del envs, inner
            torch.cuda.empty_cache() if torch.cuda.is_available() else None


def mpo_warp(args) -> None:
    """MPO (``configs/mpo_humanoid_walk.yaml``) on the warp backend with ``--envs`` worlds and the config's one
    update per env step, the observations kept on the device (``tensor_obs``): wall time until the evaluation's
    normalised length first reaches 0.98, env steps/s."""
    from rlkit.config import load_config
    from rlkit.runfiles.logger import read_metrics
    from rlkit.training import loops

    n = args.envs
    overrides = ["log.progress=false", "log.tensorboard=false", "log.plot=false", "train.checkpoint_every=0",
                 f"device={args.device}", f"torch_threads={args.threads}", "env.backend=warp",
                 f"env.kwargs.device={args.device}", "env.kwargs.tensor_obs=true", f"env.num_envs={n}",
                 f"train.train_every={n}",
                 f"train.gradient_steps={n}", f"train.total_steps={args.steps}", f"train.eval_every={args.eval_every}",
                 "log.log_every=1000", "seed=0", *args.set]
    cfg = load_config(str(REPO / "configs" / "mpo_humanoid_walk.yaml"), overrides)
    run_dir = Path(args.out) / f"mpo-warp-{args.device}-{n}"
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    loops.train_online(cfg, run_dir)
    wall = time.perf_counter() - t0
    records = read_metrics(run_dir)
    evals = [r for r in records if r["kind"] == "eval"]
    sps, points = _window_rate(records, cfg.train.learning_starts + 1000)
    emit("mpo-warp", device=args.device, num_envs=n, wall_s=wall, env_steps_per_s=sps, window_points=points,
         evals=[{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in evals], steps=args.steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=["dqn-pong", "sb3-pong", "dt", "d3rlpy-dt", "warp-env", "mpo-warp"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--learning-starts", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--ale-threads", type=int, default=4)
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--graph", nargs="+", default=["off", "auto"], choices=["off", "auto", "on"],
                   help="warp-env: the env's cuda_graph modes to measure at each size (off: eager launches)")
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--out", default="gpu_bench_out")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for the rlkit parts, e.g. train.precision=bf16 train.compile=true")
    args = p.parse_args()
    defaults = {"dqn-pong": (12000, None), "sb3-pong": (12000, None), "dt": (2000, 500), "d3rlpy-dt": (2000, 500),
                "warp-env": (30, 3), "mpo-warp": (20000, None)}[args.part]
    args.steps = args.steps or defaults[0]
    args.warmup = args.warmup if args.warmup is not None else defaults[1]
    {"dqn-pong": dqn_pong, "sb3-pong": sb3_pong, "dt": dt, "d3rlpy-dt": d3rlpy_dt, "warp-env": warp_env,
     "mpo-warp": mpo_warp}[args.part](args)


if __name__ == "__main__":
    main()
