"""Data parallelism over ``torch.distributed``: what the loops need to run as one of N ranks under ``torchrun``.

``torchrun --nproc_per_node=N -m rlkit train CONFIG`` (or torchrun's multi-node rendezvous) starts N copies of
``rlkit train``; each finds torchrun's ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in its environment and joins
the process group (:func:`session`: gloo on CPU; with CUDA, NCCL for CUDA tensors and gloo for host values, one
GPU per ``LOCAL_RANK``). The loops then run unchanged on every rank, with these rules:

- **The same agent everywhere.** Every rank builds the agent from ``seed`` (identical weights), then the
  agent's trained parts are wrapped in DDP (:func:`wrap_agent`: ``Agent.wrap_ddp``, plus a gradient hook on free
  trained tensors such as SAC's ``log_alpha``): each update's gradients are averaged across ranks inside
  ``backward``, so the weights and optimizer states stay bit-identical. What is random per rank
  — the agent's declared generators and the global torch / numpy / Python generators — is re-seeded from
  :func:`rank_seed` (rank 0 keeps ``seed``: a 1-rank run is the single-process run).
- **Offline: rank-seeded sampling.** Each rank samples its own batches from the whole dataset with its own
  generator (``seed + rank``). rlkit's dataset sources draw i.i.d. uniform rows (with replacement), not epochs,
  so N independent batches of ``train.batch_size`` are distributed exactly as one batch of N x batch_size from a
  single process: disjoint shards (torch's ``DistributedSampler``) exist to split an *epoch* without overlap,
  which i.i.d. sampling does not have. ``train.batch_size`` is per rank: the global batch is N x batch_size, and
  ``train.total_steps`` counts gradient steps (the same on every rank).
- **Online: one actor-learner per rank** (CleanRL's multi-GPU PPO pattern): own vector envs seeded
  ``seed + rank * env.num_envs`` (the seeds of one run with N x num_envs envs), own replay, gradients
  all-reduced by DDP. The env-step counter is global and needs no communication: each vector step adds
  N x ``env.num_envs`` (:func:`env_steps`), so every rank updates, logs, evaluates and checkpoints at the same
  steps, and ``train.total_steps``, ``learning_starts``, ``train_every`` ... count the env steps of all ranks
  together. N ranks then behave as one process with N x ``env.num_envs`` envs and N x ``batch_size``, except
  that the counter includes the rows of autoreset steps (NEXT_STEP autoreset: one per finished episode), which a
  single process leaves out: counting each rank's real transitions exactly would take an all-reduce per vector
  step, and every such sync waits for the slowest rank (docs/benchmarks.md, "torchrun data parallelism").
- **Rank 0 alone writes.** Config, logs, TensorBoard, evaluations, best.pt, snapshots, checkpoints and curves;
  other ranks write nothing and need no run directory (multi-node without a shared filesystem works): what they
  need (config, run directory, resume changes, checkpoint) reaches them through the process group. Episode
  records are rank 0's envs'; ``train`` records are means over all ranks (one all-reduce per log point).
- **Checkpoints: one file, gathered.** At a checkpoint every rank hands rank 0 what differs on it — its sampler /
  replay, collector (env restore), RNG and agent-generator states and its open logging window — which rank 0 writes
  into ``latest.pt`` under ``ranks`` (tensors, numbers and strings only, as everywhere: ``weights_only`` loads it;
  pickle is only the wire format of the gather), with ``world_size``. One atomic file cannot leave the ranks at
  different steps, which per-rank files written at slightly different times could. On resume rank 0 reads it
  and scatters each rank its own state; a checkpoint of another world size is refused with one line (exit 2).
- **Stopping.** Ctrl-C / SIGTERM sets a flag that the ranks agree on every :data:`STOP_POLL` loop iterations
  (vector steps online, updates offline), so all ranks checkpoint and stop at the same step.
- **Shutdown** (:func:`session`): ``gc.collect(); barrier(); destroy_process_group()`` once the loop has released
  model and optimizer; else gloo (torch 2.x, CPU) aborts at interpreter exit in a good share of runs
  ("terminate called without an active exception").
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch

import rlkit.errors as errors

T = TypeVar("T")

STOP_POLL = 16
"""The ranks agree on a stop request (Ctrl-C, SIGTERM) every this many loop iterations (updates offline, vector
steps online): one tiny all-reduce per 16 iterations, and a stop at most 16 iterations after the signal."""

_HOST_GROUP: Any = None


def no_buffer_sync() -> dict[str, bool]:
    """DDP's keyword for "no buffer broadcast at each forward" (``broadcast_buffers``, deprecated in recent torch
    for ``forward_sync_buffers``)."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    params = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}  # the gloo group for host values (counters, flags, objects) when the default is NCCL


# --------------------------------------------------------------------------------------
# Process group: join, who am I, leave
# --------------------------------------------------------------------------------------


def launched() -> bool:
    """Whether this process was started as one of several ranks (torchrun's ``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether a process group of more than one rank is initialised (the loops' test)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes the run directory."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init(init_method: str = "env://") -> None:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, and ``MASTER_ADDR``/``PORT`` for
    ``env://``). With CUDA: one device per ``LOCAL_RANK``, NCCL for CUDA tensors and gloo for CPU tensors."""
    import torch.distributed as dist

    global _HOST_GROUP
    if dist.is_initialized():
        return
    kwargs = dict(init_method=init_method, rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        dist.init_process_group("cpu:gloo,cuda:nccl", device_id=torch.device("cuda", local_rank()), **kwargs)
    else:
        dist.init_process_group("gloo", **kwargs)
    _HOST_GROUP = None


def shutdown(clean: bool = True) -> None:
    """Leave the process group: collect garbage (DDP reducers, optimizers), wait for every rank, destroy the
    group. ``clean=False`` (this rank is failing): a bounded wait, since the others may never arrive."""
    import torch.distributed as dist

    global _HOST_GROUP
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()
    try:
        if clean:
            dist.barrier()
        else:
            dist.monitored_barrier(group=host_group(), timeout=timedelta(seconds=30))
    except Exception:  # noqa: BLE001 — another rank died: leave anyway
        pass
    _HOST_GROUP = None
    dist.destroy_process_group()


@contextmanager
def session() -> Iterator[None]:
    """``with session():`` — a process group for the block when torchrun started this process (no-op otherwise),
    left cleanly (:func:`shutdown`) however the block ends."""
    if not launched():
        yield
        return
    init()
    clean = False
    try:
        yield
        clean = True
    except BaseException as exc:
        clean = bool(getattr(exc, "_rlkit_agreed", False))  # every rank raised it: all reach the barrier
        raise
    finally:
        shutdown(clean)


def wrap_agent(agent) -> None:
    """DDP for the agent: its trained module parts wrapped (``Agent.wrap_ddp``, without a buffer broadcast per
    forward: buffers hold data statistics, the same on every rank, and a broadcast would make rank 0's evaluation
    a collective the others do not join), and the gradients of its free trained tensors (SAC's ``log_alpha``,
    MPO's dual variables), which no DDP module holds, averaged across ranks by a hook as ``backward`` computes
    them. Averaging is idempotent on equal values, so a second averaging elsewhere would change nothing."""
    agent.wrap_ddp(**no_buffer_sync())
    for tensor in agent.parts.tensors.values():
        if isinstance(tensor, torch.Tensor) and tensor.requires_grad:
            tensor.register_hook(_averaged)


def _averaged(grad: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    grad = grad.clone()
    dist.all_reduce(grad)
    return grad / world()


def host_group():
    """The group host values travel in: the default one when it has gloo (``gloo``, or :func:`init`'s
    ``cpu:gloo,cuda:nccl``); a gloo group beside a pure NCCL group someone else initialised."""
    import torch.distributed as dist

    global _HOST_GROUP
    if dist.get_backend() != "nccl":
        return None
    if _HOST_GROUP is None:
        _HOST_GROUP = dist.new_group(backend="gloo")
    return _HOST_GROUP


def local_device(device: torch.device) -> torch.device:
    """``cuda`` means this rank's GPU (``cuda:LOCAL_RANK``) when distributed."""
    if device.type == "cuda" and device.index is None and active():
        return torch.device("cuda", local_rank())
    return device


# --------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------


def rank_seed(seed: int) -> int:
    """This rank's seed for what is random per rank (sampler, agent generators, global RNGs): ``seed + rank``."""
    return seed + rank()


def env_seed(seed: int, num_envs: int) -> int:
    """This rank's env seed, ``seed + rank * num_envs``: sub-env ``e`` of rank ``r`` gets ``seed + r * num_envs + e``,
    the seeds of one run with ``world * num_envs`` envs."""
    return seed + rank() * num_envs


def reseed_rank(agent, seed: int) -> None:
    """Re-seed, on ranks > 0, what is random per rank once the (identical) agent is built: the agent's declared
    generators and the global torch, numpy and Python generators, all from :func:`rank_seed`. Rank 0 keeps the
    single-process streams."""
    if rank() == 0:
        return
    import random

    s = rank_seed(seed)
    for gen in agent.parts.generators.values():
        if isinstance(gen, np.random.Generator):
            gen.bit_generator.state = np.random.default_rng(s).bit_generator.state
        else:
            gen.manual_seed(s)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


# --------------------------------------------------------------------------------------
# Collectives the loops use (host values; never per update)
# --------------------------------------------------------------------------------------


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 and hand its result to every rank; an exception raised there is raised on every
    rank (rlkit's error types keep their type and message, so every rank exits 2 with the same line)."""
    import torch.distributed as dist

    if not active():
        return fn()
    payload: list[Any] = [None]
    failure: BaseException | None = None
    if is_main():
        try:
            payload[0] = ("ok", fn())
        except BaseException as exc:  # noqa: BLE001 — handed on below
            failure = exc
            payload[0] = ("error", type(exc).__name__, str(exc))
    dist.broadcast_object_list(payload, src=0, group=host_group())
    if failure is not None:
        failure._rlkit_agreed = True
        raise failure
    if payload[0][0] == "error":
        _, name, message = payload[0]
        cls = getattr(errors, name, None)
        exc = cls(message) if isinstance(cls, type) and issubclass(cls, Exception) else RuntimeError(
            f"rank 0 failed: {name}: {message}")
        exc._rlkit_agreed = True
        raise exc
    return payload[0][1]


def echo_of_main(exc: BaseException) -> bool:
    """Whether ``exc`` is rank 0's error raised again on this rank > 0 (:func:`on_main`, a refused resume): the CLI
    then exits 2 without printing the line rank 0 prints."""
    return bool(getattr(exc, "_rlkit_agreed", False)) and int(os.environ.get("RANK", "0")) > 0


def env_steps(real_steps: int, num_envs: int) -> int:
    """What one vector step adds to the online loop's env-step counter: its real transitions in a single process;
    under torchrun every rank's rows, ``world * num_envs``, the same on every rank without a sync."""
    return num_envs * world() if active() else real_steps


def agree(values: list[float]) -> list[float]:
    """The sums over ranks of a few host numbers (one small all-reduce): the stop flag every :data:`STOP_POLL`
    loop iterations, the metric means at log points."""
    import torch.distributed as dist

    if not active():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, group=host_group())
    return tensor.tolist()


def mean_over_ranks(means: dict[str, float], count: int) -> tuple[dict[str, float], int]:
    """A logging window's metric means averaged over ranks (each rank's window has ``count`` updates)."""
    if not active():
        return means, count
    keys = sorted(means)
    sums = agree([means[k] for k in keys])
    return {k: v / world() for k, v in zip(keys, sums)}, count


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. ``train.stop_at_solve`` reached at rank 0's evaluation)."""
    import torch.distributed as dist

    if not active():
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64)
    dist.broadcast(tensor, src=0, group=host_group())
    return bool(tensor.item())


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj``, in rank order, on rank 0 (None elsewhere)."""
    import torch.distributed as dist

    if not active():
        return [obj]
    out = [None] * world() if is_main() else None
    dist.gather_object(obj, out, dst=0, group=host_group())
    return out


def scatter_from_main(objs: list[Any] | None) -> Any:
    """Rank ``k`` receives ``objs[k]`` (given on rank 0 only)."""
    import torch.distributed as dist

    if not active():
        return objs[0]
    out: list[Any] = [None]
    dist.scatter_object_list(out, objs if is_main() else None, src=0, group=host_group())
    return out[0]


class NullLogger:
    """The logger of ranks > 0: they write nothing (rank 0's :class:`~rlkit.runfiles.logger.RunLogger` does)."""

    records = 0

    def log(self, *args: Any, **kwargs: Any) -> None: ...

    def advance(self, step: int) -> None: ...

    def progress(self, step: int) -> None: ...

    def evaluating(self, done: int, total: int) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...
