"""The d3rlpy side of ``rlkit bench dt``: d3rlpy's Decision Transformer, trained by d3rlpy's own ``fit`` loop in
chunks of gradient steps that the harness asks for, so that it and rlkit's run take turns on the cores.

Run by the Python of d3rlpy's own venv (d3rlpy 2.8.1 pins gymnasium 1.0.0 and needs gym; rlkit cannot share
it), as a subprocess of the harness. Self-contained on purpose: it imports nothing from rlkit, and the parts
the harness tests (:func:`read_episodes`) need only numpy and h5py.

    python d3rlpy_dt_driver.py --data DIR --env-id Hopper-v5 --steps 2000 --target-return 3600 [...]

Protocol: one JSON object per line. The driver writes to its stdout (anything else printed, d3rlpy's log
included, goes to stderr); the harness writes commands to its stdin:
    -> {"event": "ready", "parameters": N, "d3rlpy": "2.8.1", "torch": ..., "threads": T, ...}
    <- {"cmd": "train", "until": S}     train (d3rlpy's fit loop, resumed) until S gradient steps are done
    -> {"event": "trained", "step": S, "seconds": t, "loss": l}   t: wall time of that chunk alone
    <- {"cmd": "eval", "episodes": n, "seed": s}  episodes with the current model (d3rlpy's stateful wrapper)
    -> {"event": "evaluated", "step": S, "returns": [...], "lengths": [...], "seconds": t}
    <- {"cmd": "matmul", "seconds": t, "m": M, "k": K, "n": N}  float32 matmul rate in this process
    -> {"event": "matmul", "gflops": g}
    <- {"cmd": "stop"}
The chunk's time runs from the command to the step's callback: d3rlpy's sampling of trajectory windows, its
update (forward, backward, AdamW, the loss read back per step) and its logger's bookkeeping — its training
loop as users run it. The wait for the next command is outside every chunk.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


# --------------------------------------------------------------------------------------
# The dataset (rlkit / Minari HDF5), read directly
# --------------------------------------------------------------------------------------


def read_metadata(data_dir: Path) -> dict[str, Any]:
    return json.loads((Path(data_dir) / "metadata.json").read_text())


def read_episodes(data_dir: Path) -> dict[str, np.ndarray]:
    """A Minari dataset's episodes (``main_data.hdf5``: one group per episode, ``observations`` with ``T + 1``
    rows, ``actions``, ``rewards``, ``terminations``, ``truncations`` with ``T``), concatenated in episode-id
    order as d3rlpy's ``MDPDataset`` takes them: observations without each episode's final one (a DT never
    reads it), float32; ``terminals`` / ``timeouts`` mark each episode's last step (an episode that ends with
    neither flag set is closed as a timeout, so episodes never run together)."""
    import h5py

    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "actions", "rewards", "terminals",
                                                           "timeouts")}
    with h5py.File(Path(data_dir) / "main_data.hdf5", "r") as f:
        names = sorted(f, key=lambda name: int(name.rsplit("_", 1)[-1]))
        for name in names:
            ep = f[name]
            actions = np.asarray(ep["actions"])
            T = len(actions)
            terms = np.asarray(ep["terminations"], dtype=bool)
            truncs = np.asarray(ep["truncations"], dtype=bool)
            if not (terms[-1] or truncs[-1]):
                truncs = truncs.copy()
                truncs[-1] = True
            parts["observations"].append(np.asarray(ep["observations"])[:T].astype(np.float32))
            parts["actions"].append(actions.astype(np.float32).reshape(T, -1))
            parts["rewards"].append(np.asarray(ep["rewards"], dtype=np.float32).reshape(T))
            parts["terminals"].append(terms.astype(np.float32))
            parts["timeouts"].append(truncs.astype(np.float32))
    return {k: np.concatenate(v) for k, v in parts.items()}


def action_bounds(metadata: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The Box action space's bounds from Minari's metadata (the space serialised as JSON)."""
    space = metadata["action_space"]
    space = json.loads(space) if isinstance(space, str) else space
    if space.get("type") != "Box":
        raise SystemExit(f"d3rlpy_dt_driver: a Box action space is needed, got {space.get('type')}")
    shape = space["shape"]
    low = np.broadcast_to(np.asarray(space["low"], dtype=np.float32), shape)
    high = np.broadcast_to(np.asarray(space["high"], dtype=np.float32), shape)
    return low.reshape(-1), high.reshape(-1)


# --------------------------------------------------------------------------------------
# d3rlpy
# --------------------------------------------------------------------------------------


def build(args: argparse.Namespace):
    """(dt, MDPDataset) with the model the harness asks for, built (so it can act before any step)."""
    import d3rlpy
    from d3rlpy.algos import DecisionTransformerConfig
    from d3rlpy.constants import PositionEncodingType
    from d3rlpy.models import VectorEncoderFactory
    from d3rlpy.optimizers import AdamWFactory
    from d3rlpy.optimizers.lr_schedulers import WarmupSchedulerFactory
    from d3rlpy.preprocessing import MinMaxActionScaler, MultiplyRewardScaler, StandardObservationScaler

    d3rlpy.seed(args.seed)
    arrays = read_episodes(args.data)
    low, high = action_bounds(read_metadata(args.data))
    dataset = d3rlpy.dataset.MDPDataset(arrays["observations"], arrays["actions"], arrays["rewards"],
                                        arrays["terminals"], arrays["timeouts"],
                                        action_space=d3rlpy.ActionSpace.CONTINUOUS)
    config = DecisionTransformerConfig(
        batch_size=args.batch, context_size=args.context, max_timestep=args.max_timestep,
        learning_rate=args.lr,
        # the token width is the encoder's output: one Linear(obs, h), no activation (the paper's state embedding)
        encoder_factory=VectorEncoderFactory(hidden_units=[args.embed], exclude_last_activation=True),
        optim_factory=AdamWFactory(weight_decay=args.weight_decay, clip_grad_norm=args.clip,
                                   lr_scheduler_factory=WarmupSchedulerFactory(warmup_steps=args.warmup)),
        num_heads=args.heads, num_layers=args.layers, attn_dropout=args.dropout, resid_dropout=args.dropout,
        embed_dropout=args.dropout, activation_type="relu", position_encoding_type=PositionEncodingType.SIMPLE,
        observation_scaler=StandardObservationScaler(),
        action_scaler=MinMaxActionScaler(minimum=low, maximum=high),
        reward_scaler=MultiplyRewardScaler(1.0 / args.rtg_scale),
    )
    dt = config.create(device=False if args.device == "cpu" else args.device)  # False: d3rlpy's CPU
    dt.build_with_dataset(dataset)
    from d3rlpy.algos.utility import build_scalers_with_trajectory_slicer

    build_scalers_with_trajectory_slicer(dt, dataset)  # as fit does first (idempotent): act before step 1
    return dt, dataset


class Stop(Exception):
    """The harness said stop."""


class Driver:
    def __init__(self, args: argparse.Namespace, out) -> None:
        self.args, self.out = args, out
        self.dt, self.dataset = build(args)
        self.step, self.until, self.resumed_at, self.env = 0, 0, 0.0, None
        self.loss: float | None = None
        self.parent = os.getppid()

    def emit(self, **event: Any) -> None:
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()

    def serve(self) -> None:
        """Answer commands until one asks for training beyond the current step (or says stop)."""
        for line in sys.stdin:
            if not line.strip():
                continue
            cmd = json.loads(line)
            kind = cmd.get("cmd")
            if kind == "train":
                if int(cmd["until"]) > self.step:
                    self.until = int(cmd["until"])
                    self.resumed_at = time.perf_counter()
                    return
                self.emit(event="trained", step=self.step, seconds=0.0, loss=self.loss)
            elif kind == "eval":
                self.emit(event="evaluated", step=self.step, **self.evaluate(int(cmd["episodes"]), int(cmd["seed"])))
            elif kind == "matmul":
                self.emit(event="matmul", gflops=matmul_rate(float(cmd["seconds"]), cmd["m"], cmd["k"], cmd["n"]))
            elif kind == "stop":
                raise Stop
            else:
                self.emit(event="error", message=f"unknown command {kind!r}")
        raise Stop  # the harness went away

    def callback(self, algo, epoch: int, total_step: int) -> None:
        """d3rlpy's fit calls this after every gradient step: at the asked-for step, report the chunk's time and
        wait (outside the chunk) for the next command."""
        self.step = total_step
        if os.getppid() != self.parent:  # the harness is gone (killed): stop now, not at the chunk's end
            raise Stop
        if total_step == self.until:
            seconds = time.perf_counter() - self.resumed_at
            self.emit(event="trained", step=total_step, seconds=seconds, loss=self.loss)
            self.serve()

    def evaluate(self, episodes: int, seed: int) -> dict[str, Any]:
        """``episodes`` episodes with d3rlpy's stateful wrapper (as its evaluate_transformer_with_environment):
        returns, lengths and the wall time of the rollouts (env steps and the model's predictions)."""
        import gymnasium

        if self.env is None:
            self.env = gymnasium.make(self.args.env_id)
        wrapper = self.dt.as_stateful_wrapper(target_return=self.args.target_return)
        returns, lengths = [], []
        started = time.perf_counter()
        for i in range(episodes):
            wrapper.reset()
            observation, reward = self.env.reset(seed=seed + i)[0], 0.0
            total, length = 0.0, 0
            while True:
                action = wrapper.predict(observation, reward)
                observation, reward, terminated, truncated, _ = self.env.step(action)
                reward = float(reward)
                total += reward
                length += 1
                if terminated or truncated:
                    break
            returns.append(total)
            lengths.append(length)
        return {"returns": returns, "lengths": lengths, "seconds": time.perf_counter() - started}

    def run(self) -> None:
        import torch

        from d3rlpy.logging import NoopAdapterFactory

        transformer = self.dt.impl.modules.transformer
        self.emit(event="ready", parameters=sum(p.numel() for p in transformer.parameters()),
                  d3rlpy=__import__("d3rlpy").__version__, torch=torch.__version__, threads=torch.get_num_threads(),
                  transitions=int(self.dataset.transition_count), episodes=len(self.dataset.episodes))
        update = self.dt.update

        def update_keeping_loss(batch):  # fit reads the loss back each step anyway; keep the last for the reply
            metrics = update(batch)
            self.loss = float(metrics.get("loss", float("nan")))
            return metrics

        self.dt.update = update_keeping_loss
        try:
            self.serve()
            self.dt.fit(self.dataset, n_steps=self.args.steps, n_steps_per_epoch=self.args.steps,
                        experiment_name="bench_dt", with_timestamp=False, logger_adapter=NoopAdapterFactory(),
                        show_progress=False, callback=self.callback)
            self.serve()  # evaluations after the last chunk, then stop
        except Stop:
            pass


def matmul_rate(seconds: float, m: int, k: int, n: int) -> float:
    """GFLOP/s of a float32 ``[m, k] @ [k, n]`` matmul (2mkn FLOPs) repeated for ``seconds``."""
    import torch

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    for _ in range(3):
        a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2.0 * m * k * n * count / (time.perf_counter() - started) / 1e9


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="the dataset's data directory (metadata.json, "
                                                            "main_data.hdf5)")
    p.add_argument("--env-id", required=True)
    p.add_argument("--steps", type=int, required=True, help="gradient steps in all")
    p.add_argument("--target-return", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--context", type=int, default=20)
    p.add_argument("--embed", type=int, default=128)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=10_000)
    p.add_argument("--clip", type=float, default=0.25)
    p.add_argument("--rtg-scale", type=float, default=1000.0)
    p.add_argument("--max-timestep", type=int, default=1000)
    p.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N (scripts/gpu_bench.py)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = os.fdopen(os.dup(1), "w")  # the protocol's channel; everything else printed goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import torch

    torch.set_num_threads(args.threads)
    Driver(args, out).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
