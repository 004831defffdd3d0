"""Suite ``dt``: rlkit's Decision Transformer raced against d3rlpy's (2.8.1) on the same dataset, with the same model,
on the same machine, interleaved in one run: training samples/s, the share of the machine's compute limit each
reaches, the normalised score at equal gradient steps, and the evaluation rollout's env steps/s.

The two sides. rlkit: its own offline loop (``rlkit.training.loops.train_offline``, agent
``decision_transformer``) in this process. d3rlpy: its own ``fit`` loop in a subprocess run by the Python of
d3rlpy's venv (d3rlpy pins gymnasium 1.0.0 and needs gym: it cannot live in rlkit's), driven by
``bench/d3rlpy_dt_driver.py``, which reads the same Minari HDF5 file. They take turns: rlkit trains a chunk of
gradient steps, then d3rlpy trains its chunk up to the same step, then this process times a slice of float32
matmuls; only one of the three runs at a time, so they never share the cores and meet the same drift of a
shared machine's load. Each side's time is its own training loop's (sampling windows, update, its logging),
evaluations and the other side's turns left out; the first chunk (warm-up) is left out of the rates.

The same model on both sides (the paper's MuJoCo setting): token width h = 128 (d3rlpy: its vector encoder
with one Linear(obs, 128) layer and no activation, which is both the token width and the paper's state
embedding; rlkit: ``encoder_hidden: []`` then Linear(obs, 128)), 3 pre-LN blocks of 1 head, MLP 4h with ReLU,
context K = 20 (3K = 60 tokens), learned timestep embedding (d3rlpy's SIMPLE position encoding), dropout 0.1,
batch 64, AdamW lr 1e-4 with weight decay 1e-4, linear warm-up over 10,000 steps, gradient norm clipped at
0.25, returns-to-go divided by 1000, states standardised by the dataset's mean and std, actions scaled to
[-1, 1] by the action space's bounds, tanh action head. Parameter counts of both are reported.

FLOPs of one update (matrix multiplications only, multiply-add = 2 FLOPs; LayerNorm, softmax, AdamW and
the like are left out). Per window of K steps, T = 3K tokens, width h, L blocks, observation size o, action
size a, the forward pass is
    F = 2Kh(o + 1 + a)                      state, return-to-go and action embeddings
      + L (24 T h² + 4 T² h)                per block: QKV 6Th², attention scores 2T²h, weighted values 2T²h,
                                            output projection 2Th², MLP 16Th²
      + 2Kha                                action head
and the backward pass costs twice the forward (gradients of activations and of weights), so an update of a
batch of B windows is 3 B F FLOPs (h 128, K 20, L 3, Hopper's o 11, a 3, B 64: 14.7 GFLOP; at h 256 it is the
≈55 GFLOP of issue 19). The attention matrices are counted whole (T², as both libraries compute them).
The compute limit is that count at the float32 matmul rate this process measures in the same run, in slices
between the chunks (a [3840, 128] @ [128, 512] matmul: the batch's B·T rows times the MLP's widest layer), so
share = samples/s × 3F / rate, each chunk taken at the mean of the slices before and after it.

Settings (the ``rlkit bench`` command line has no suite options; ``python -m rlkit.bench.dt_cli --help``
takes them as flags and sets these):
    RLKIT_D3RLPY_PYTHON               the Python of d3rlpy's venv (required; the error says how to make it)
    RLKIT_BENCH_DT_DATASET            dataset id (under MINARI_DATASETS_PATH) or directory; ``--quick`` writes
                                      a tiny Pendulum one of random actions when unset
    RLKIT_BENCH_DT_REF_RETURNS        "MIN,MAX": returns that score 0 and 100 (else the dataset metadata's
                                      ref_min_score / ref_max_score; else raw returns are compared)
    RLKIT_BENCH_DT_TARGET_RETURN      evaluation target return (default by env: Hopper 3600, HalfCheetah
                                      12000, Walker2d 5000, else the dataset's best episode return)
    RLKIT_BENCH_DT_STEPS, _CHUNK, _EVAL_EVERY, _EVAL_EPISODES   the budget (gradient steps per side)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from rlkit.bench.figures import Figure
from rlkit.errors import ConfigError

AGENT = "decision_transformer"
"""rlkit's agent raced (its config keys: see :func:`rlkit_config`)."""
DRIVER = Path(__file__).resolve().parents[1] / "d3rlpy_dt_driver.py"
PYTHON_ENV = "RLKIT_D3RLPY_PYTHON"
D3RLPY_VERSION = "2.8.1"
MAKE_VENV = (f"python3.11 -m venv /work/venvs/d3rlpy && /work/venvs/d3rlpy/bin/pip install torch==2.13.0 && "
             f"/work/venvs/d3rlpy/bin/pip install d3rlpy=={D3RLPY_VERSION} mujoco==4.0.1 imageio, then "
             f"{PYTHON_ENV}=/work/venvs/d3rlpy/bin/python")
MATMUL = (3840, 128, 512)
"""The compute limit's matmul [M, K] @ [K, N]: 64 windows x 60 tokens, width 128, the MLP's 512."""
TARGET_RETURNS = {"Hopper": 3600.0, "HalfCheetah": 12000.0, "Walker2d": 5000.0}
"""The paper's evaluation target returns (the reference code's), by env name."""


@dataclass(frozen=True)
class Settings:
    """One race: the dataset, the budget and the model (both sides)."""

    dataset: str
    steps: int
    chunk: int
    eval_every: int
    eval_episodes: int
    target_return: float | None = None
    ref_returns: tuple[float, float] | None = None
    batch: int = 64
    context: int = 20
    embed: int = 128
    layers: int = 3
    heads: int = 1
    dropout: float = 0.1
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup: int = 10_000
    clip: float = 0.25
    rtg_scale: float = 1000.0
    max_timestep: int = 1000
    matmul_seconds: float = 1.0
    """Length of each matmul slice between chunks."""

    def check(self) -> None:
        if min(self.steps, self.chunk, self.eval_every, self.eval_episodes) < 1:
            raise ConfigError("rlkit bench dt: steps, chunk, eval_every and eval_episodes must be >= 1")
        if self.steps % self.chunk or self.eval_every % self.chunk:
            raise ConfigError(f"rlkit bench dt: steps ({self.steps}) and eval_every ({self.eval_every}) must be "
                              f"multiples of the chunk ({self.chunk}): both sides evaluate at chunk ends")


PROFILES = {False: dict(steps=2000, chunk=100, eval_every=1000, eval_episodes=10),
            True: dict(steps=10, chunk=5, eval_every=10, eval_episodes=1, matmul_seconds=0.2)}
"""Budgets: full, ``--quick`` (checks the harness, measures nothing)."""


def update_flops(batch: int, context: int, embed: int, layers: int, obs_dim: int, act_dim: int,
                 state_queries_last: bool = False) -> float:
    """Matmul FLOPs of one update (forward + backward = 3 x forward); the formula is in the module docstring.
    ``state_queries_last``: the last block computes the K state tokens' outputs only (rlkit's model since the
    race above was run: keys and values 4Th², queries, projection and MLP 20Kh², attention 4KTh)."""
    T, h, K = 3 * context, embed, context
    block = 24 * T * h * h + 4 * T * T * h
    last = 4 * T * h * h + 20 * K * h * h + 4 * K * T * h if state_queries_last else block
    forward = 2 * K * h * (obs_dim + 1 + act_dim) + (layers - 1) * block + last + 2 * K * h * act_dim
    return 3.0 * batch * forward


def matmul_rate(seconds: float, m: int = MATMUL[0], k: int = MATMUL[1], n: int = MATMUL[2]) -> float:
    """GFLOP/s of a float32 ``[m, k] @ [k, n]`` matmul repeated for ``seconds`` (this process's threads)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    for _ in range(3):
        a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2.0 * m * k * n * count / (time.perf_counter() - started) / 1e9


def normalised(value: float, ref: tuple[float, float] | None) -> float:
    """D4RL's normalised score: 100 (R - R_min) / (R_max - R_min); the return itself without references."""
    return value if ref is None else 100.0 * (value - ref[0]) / (ref[1] - ref[0])


# --------------------------------------------------------------------------------------
# Settings from the environment; the dataset
# --------------------------------------------------------------------------------------


def d3rlpy_python() -> str:
    """The d3rlpy venv's Python (``RLKIT_D3RLPY_PYTHON``), checked to import d3rlpy; else a one-line ConfigError
    saying how to make it."""
    python = os.environ.get(PYTHON_ENV)
    if not python:
        raise ConfigError(f"rlkit bench dt races d3rlpy {D3RLPY_VERSION}, which needs its own venv; set {PYTHON_ENV} "
                          f"to its Python. Make it with: {MAKE_VENV}")
    try:
        done = subprocess.run([python, "-c", "import d3rlpy, h5py; print(d3rlpy.__version__)"], capture_output=True,
                              text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{PYTHON_ENV}={python} cannot run ({' '.join(str(exc).split())[:120]}); make the venv "
                          f"with: {MAKE_VENV}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise ConfigError(f"{PYTHON_ENV}={python} cannot import d3rlpy ({last}); make the venv with: {MAKE_VENV}")
    return python


def settings_from_env(quick: bool) -> Settings:
    env = os.environ
    budget = {**PROFILES[quick]}
    for key in ("steps", "chunk", "eval_every", "eval_episodes"):
        if env.get(f"RLKIT_BENCH_DT_{key.upper()}"):
            budget[key] = int(env[f"RLKIT_BENCH_DT_{key.upper()}"])
    ref = None
    if env.get("RLKIT_BENCH_DT_REF_RETURNS"):
        try:
            low, high = (float(v) for v in env["RLKIT_BENCH_DT_REF_RETURNS"].split(","))
        except ValueError:
            raise ConfigError("RLKIT_BENCH_DT_REF_RETURNS must be 'MIN,MAX' (the returns scoring 0 and 100), got "
                              f"{env['RLKIT_BENCH_DT_REF_RETURNS']!r}") from None
        ref = (low, high)
    target = float(env["RLKIT_BENCH_DT_TARGET_RETURN"]) if env.get("RLKIT_BENCH_DT_TARGET_RETURN") else None
    settings = Settings(dataset=env.get("RLKIT_BENCH_DT_DATASET", ""), target_return=target, ref_returns=ref,
                        **budget)
    settings.check()
    return settings


def tiny_dataset(out: Path) -> str:
    """The ``--quick`` dataset when none is set: 3 episodes of random Pendulum-v1 actions (600 steps), written
    under ``out/datasets``; returns its directory."""
    import gymnasium as gym

    from rlkit.experience.datasets import Episode, write_dataset

    root = out / "datasets"
    path = root / "rlkit" / "pendulum-random-v0"
    if (path / "data" / "main_data.hdf5").is_file():
        return str(path)
    env = gym.make("Pendulum-v1")
    env.action_space.seed(0)
    episodes = []
    for i in range(3):
        obs, _ = env.reset(seed=i)
        observations, actions, rewards = [obs], [], []
        terminated = truncated = False
        while not (terminated or truncated):
            action = env.action_space.sample()
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
        n = len(rewards)
        episodes.append(Episode(np.array(observations), np.array(actions), np.array(rewards, dtype=np.float64),
                                np.zeros(n, bool), np.eye(1, n, n - 1, dtype=bool)[0]))
    with _datasets_root(root):
        write_dataset("rlkit/pendulum-random-v0", episodes, env.observation_space, env.action_space,
                      env_id="Pendulum-v1", description="rlkit bench dt --quick: random actions", overwrite=True)
    env.close()
    return str(path)


@contextlib.contextmanager
def _datasets_root(root: Path):
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


@dataclass(frozen=True)
class DatasetInfo:
    """What the race needs to know of the dataset (read through rlkit, which checks it)."""

    name: str
    data_dir: Path
    env_id: str
    obs_dim: int
    act_dim: int
    episodes: int
    transitions: int
    best_return: float
    ref_returns: tuple[float, float] | None


def dataset_info(dataset: str) -> DatasetInfo:
    """The dataset (id under MINARI_DATASETS_PATH, or a directory) read and checked by rlkit; its env id from the
    metadata; reference returns from Minari's ``ref_min_score`` / ``ref_max_score`` when present."""
    from rlkit.experience.datasets import load_dataset

    data = load_dataset(dataset)
    if data.env_id is None:
        raise ConfigError(f"dataset '{dataset}' names no env (metadata env_id): the race evaluates in the env")
    meta = data.metadata
    rlkit_meta = meta.get("rlkit") if isinstance(meta.get("rlkit"), dict) else {}
    ref = None
    for source in (meta, rlkit_meta):
        if source.get("ref_min_score") is not None and source.get("ref_max_score") is not None:
            ref = (float(source["ref_min_score"]), float(source["ref_max_score"]))
            break
    obs, act = data.observation_space, data.action_space
    if len(getattr(obs, "shape", ()) or ()) != 1 or len(getattr(act, "shape", ()) or ()) != 1:
        raise ConfigError(f"dataset '{dataset}': the race needs vector observations and Box actions "
                          f"(got {obs} and {act})")
    data_dir = data.path / "data" if (data.path / "data").is_dir() else data.path
    return DatasetInfo(name=data.dataset_id, data_dir=data_dir, env_id=data.env_id, obs_dim=int(obs.shape[0]),
                       act_dim=int(act.shape[0]), episodes=len(data.episodes), transitions=data.total_steps,
                       best_return=max(ep.total_return for ep in data.episodes), ref_returns=ref)


def target_return(settings: Settings, info: DatasetInfo) -> float:
    if settings.target_return is not None:
        return settings.target_return
    name = info.env_id.split("/")[-1].split("-")[0]
    return TARGET_RETURNS.get(name, info.best_return)


# --------------------------------------------------------------------------------------
# The two sides
# --------------------------------------------------------------------------------------


class D3rlpySide:
    """d3rlpy's DT in its venv's Python (``bench/d3rlpy_dt_driver.py``), spoken to by JSON lines."""

    def __init__(self, python: str, settings: Settings, info: DatasetInfo, target: float, seed: int, threads: int,
                 log: Path) -> None:
        s = settings
        argv = [python, str(DRIVER), "--data", str(info.data_dir), "--env-id", info.env_id, "--steps", str(s.steps),
                "--target-return", repr(target), "--seed", str(seed), "--threads", str(threads),
                "--batch", str(s.batch), "--context", str(s.context), "--embed", str(s.embed), "--layers",
                str(s.layers), "--heads", str(s.heads), "--dropout", repr(s.dropout), "--lr", repr(s.lr),
                "--weight-decay", repr(s.weight_decay), "--warmup", str(s.warmup), "--clip", repr(s.clip),
                "--rtg-scale", repr(s.rtg_scale), "--max-timestep", str(s.max_timestep)]
        self.log = log
        self.stderr = open(log, "w")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                        text=True, bufsize=1, env=env)
        self.ready = self._read("ready")

    def _read(self, event: str) -> dict[str, Any]:
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if message.get("event") == event:
                return message
            if message.get("event") == "error":
                raise RuntimeError(f"d3rlpy driver: {message.get('message')}")
        self.process.wait(timeout=30)
        tail = " | ".join(self.log.read_text().strip().splitlines()[-3:])
        raise RuntimeError(f"the d3rlpy driver exited ({self.process.returncode}) waiting for '{event}': {tail[-600:]}"
                           f" (whole log: {self.log})")

    def _send(self, **command: Any) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def train_until(self, step: int) -> dict[str, Any]:
        self._send(cmd="train", until=step)
        return self._read("trained")

    def evaluate(self, episodes: int, seed: int) -> dict[str, Any]:
        self._send(cmd="eval", episodes=episodes, seed=seed)
        return self._read("evaluated")

    def matmul(self, seconds: float) -> float:
        self._send(cmd="matmul", seconds=seconds, m=MATMUL[0], k=MATMUL[1], n=MATMUL[2])
        return float(self._read("matmul")["gflops"])

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self._send(cmd="stop")
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stderr.close()


def rlkit_config(settings: Settings, info: DatasetInfo, target: float, seed: int, threads: int) -> dict[str, Any]:
    """rlkit's offline DT run with the race's model and budget (checkpoints only at the end; no TensorBoard,
    no plot)."""
    s = settings
    return {
        "seed": seed, "device": "cpu", "torch_threads": threads,
        "env": {"id": info.env_id, "num_envs": 1},
        "offline": {"dataset": str(info.data_dir.parent if info.data_dir.name == "data" else info.data_dir)},
        "agent": {"name": AGENT, "context_length": s.context, "embed_dim": s.embed, "n_layers": s.layers,
                  "n_heads": s.heads, "dropout": s.dropout, "lr": s.lr, "weight_decay": s.weight_decay,
                  "warmup_steps": s.warmup, "max_grad_norm": s.clip, "rtg_scale": s.rtg_scale,
                  "target_return": target, "max_timestep": s.max_timestep},
        "train": {"total_steps": s.steps, "batch_size": s.batch, "eval_every": s.eval_every,
                  "eval_episodes": s.eval_episodes, "checkpoint_every": 0},
        "log": {"log_every": s.chunk, "progress": False, "tensorboard": False, "plot": False},
    }


class Race:
    """The turns: rlkit's loop runs in this process with two hooks (the offline source's ``sample``, called once
    before each update, and the loop's ``evaluate``). At every chunk end (and before each evaluation) rlkit's
    clock stops, d3rlpy trains up to the same step, each process times a matmul slice, and rlkit's clock
    restarts. Evaluations run on both sides at the same gradient steps, timed apart from training."""

    def __init__(self, d3rlpy: D3rlpySide, settings: Settings, seed: int) -> None:
        self.d3rlpy, self.settings, self.seed = d3rlpy, settings, seed
        self.updates, self.handled = 0, -1
        self.running_since: float | None = None
        self.elapsed = 0.0
        self.chunks: dict[str, list[tuple[int, float]]] = {"rlkit": [], "d3rlpy": []}  # (step at end, seconds)
        self.evals: dict[str, list[dict[str, Any]]] = {"rlkit": [], "d3rlpy": []}
        self.matmul: list[float] = []
        self.matmul_d3rlpy: list[float] = []
        self.loss: list[tuple[int, float | None]] = []

    def _stop_clock(self) -> None:
        if self.running_since is not None:
            self.elapsed += time.perf_counter() - self.running_since
            self.running_since = None

    def _start_clock(self) -> None:
        self.running_since = time.perf_counter()

    def boundary(self, step: int) -> None:
        """rlkit has done ``step`` updates: close its chunk, let d3rlpy catch up, time a matmul slice."""
        if step == self.handled:
            return
        self.handled = step
        if step > 0:
            previous = self.chunks["rlkit"][-1][0] if self.chunks["rlkit"] else 0
            if step > previous:
                self.chunks["rlkit"].append((step, self.elapsed))
            self.elapsed = 0.0
            reply = self.d3rlpy.train_until(step)
            if reply["seconds"] > 0:
                self.chunks["d3rlpy"].append((step, float(reply["seconds"])))
            self.loss.append((step, reply.get("loss")))
        self.matmul.append(matmul_rate(self.settings.matmul_seconds))
        self.matmul_d3rlpy.append(self.d3rlpy.matmul(self.settings.matmul_seconds))  # its torch: the same rate?
        if step > 0:
            rates = {side: self.settings.batch * (c[-1][0] - (c[-2][0] if len(c) > 1 else 0)) / c[-1][1]
                     for side, c in self.chunks.items() if c and c[-1][0] == step}
            print(f"    step {step:,}: samples/s " + ", ".join(f"{side} {r:.0f}" for side, r in rates.items())
                  + f"; matmul {self.matmul[-1]:.0f} GFLOP/s", flush=True)

    def hooks(self, sample: Callable[..., Any], evaluate: Callable[..., Any]) -> tuple[Callable, Callable]:
        chunk = self.settings.chunk

        def sample_in_turn(source, *args, **kwargs):
            if self.updates % chunk == 0:
                self._stop_clock()
                self.boundary(self.updates)
                self._start_clock()
            batch = sample(source, *args, **kwargs)
            self.updates += 1
            return batch

        def evaluate_in_turn(*args, **kwargs):
            self._stop_clock()
            step = self.updates
            if step % chunk == 0:
                self.boundary(step)
            started = time.perf_counter()
            result = evaluate(*args, **kwargs)
            seconds = time.perf_counter() - started
            self.evals["rlkit"].append({"step": step, "returns": [float(r) for r in result["returns"]],
                                        "lengths": [int(n) for n in result.get("lengths", [])] or None,
                                        "length_mean": float(result["length_mean"]), "seconds": seconds})
            seed = kwargs.get("seed", self.seed)
            theirs = self.d3rlpy.evaluate(self.settings.eval_episodes, int(seed))
            self.evals["d3rlpy"].append({k: theirs[k] for k in ("step", "returns", "lengths", "seconds")})
            self._start_clock()
            return result

        return sample_in_turn, evaluate_in_turn


def rlkit_run(config: dict[str, Any], run_dir: Path, race: Race) -> int:
    """rlkit's offline loop with the race's hooks in place; returns the model's parameter count."""
    import shutil

    from rlkit.agents import AGENTS
    from rlkit.api import make_config
    from rlkit.experience.sources import DatasetSource
    from rlkit.training import loops

    cfg, _ = make_config(config)
    if run_dir.exists():  # a bench run owns its directory
        shutil.rmtree(run_dir)
    agent_class = AGENTS[AGENT][1]
    agents: list[Any] = []
    sample, evaluate, update = DatasetSource.sample, loops.evaluate, agent_class.update

    def update_seen(self, *args, **kwargs):
        if not agents:
            agents.append(self)
        return update(self, *args, **kwargs)

    DatasetSource.sample, loops.evaluate = race.hooks(sample, evaluate)
    agent_class.update = update_seen
    try:
        loops.train_offline(cfg, run_dir)
    finally:
        DatasetSource.sample, loops.evaluate, agent_class.update = sample, evaluate, update
    race._stop_clock()
    race.boundary(cfg.train.total_steps)  # a no-op when the final evaluation already closed the last chunk
    model = getattr(agents[0], "model", None) if agents else None
    return sum(p.numel() for p in model.parameters()) if model is not None else 0


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


def chunk_rate(chunks: list[tuple[int, float]], batch: int, skip_first: bool = True) -> float | None:
    """Samples/s over the chunks (step at end, seconds), the first one (warm-up) left out when others remain."""
    steps = np.diff([0] + [s for s, _ in chunks])
    seconds = np.array([t for _, t in chunks])
    if skip_first and len(chunks) > 1:
        steps, seconds = steps[1:], seconds[1:]
    total = float(seconds.sum())
    return batch * float(steps.sum()) / total if total > 0 else None


def eval_rate(evals: list[dict[str, Any]]) -> float | None:
    """Env steps/s of the evaluation rollouts (counted episodes' steps over the rollouts' wall time)."""
    steps = sum(sum(e["lengths"]) if e.get("lengths") else e["length_mean"] * len(e["returns"]) for e in evals)
    seconds = sum(e["seconds"] for e in evals)
    return steps / seconds if seconds > 0 else None


def limit_share(chunks: list[tuple[int, float]], slices: list[float], flops: float, skip_first: bool = True
                ) -> float | None:
    """Percent of the compute limit over the chunks: the FLOPs done over what the matmul rate allowed in the
    same seconds, each chunk at the mean of the matmul slices just before and just after it (``slices[j]`` is
    timed at the boundary before chunk ``j``, ``slices[j + 1]`` after it), so a machine load drifting during
    the run weighs on the limit as on the chunks. The first chunk (warm-up) is left out when others remain."""
    if not chunks or len(slices) < len(chunks) + 1:
        return None
    steps = np.diff([0] + [s for s, _ in chunks])
    seconds = np.array([t for _, t in chunks])
    rates = (np.array(slices[:len(chunks)]) + np.array(slices[1:len(chunks) + 1])) / 2 * 1e9
    if skip_first and len(chunks) > 1:
        steps, seconds, rates = steps[1:], seconds[1:], rates[1:]
    allowed = float((seconds * rates).sum())
    return 100.0 * float(steps.sum()) * flops / allowed if allowed > 0 else None


def race_summary(race: Race, settings: Settings, info: DatasetInfo, flops: float, params: dict[str, int]
                 ) -> dict[str, Any]:
    """One seed's figures (raw values), as saved in the JSON."""
    rate = {side: chunk_rate(race.chunks[side], settings.batch) for side in ("rlkit", "d3rlpy")}
    limit = float(np.median(race.matmul)) if race.matmul else None
    ref = settings.ref_returns or info.ref_returns
    scores = {side: {e["step"]: normalised(float(np.mean(e["returns"])), ref) for e in race.evals[side]}
              for side in ("rlkit", "d3rlpy")}
    return {
        "samples_per_s": rate, "matmul_gflops": limit,
        "matmul_gflops_d3rlpy_process": float(np.median(race.matmul_d3rlpy)) if race.matmul_d3rlpy else None,
        "update_gflop": flops / 1e9,
        "share_of_limit_percent": {side: limit_share(race.chunks[side], race.matmul, flops) for side in rate},
        "scores": scores, "score_kind": "normalised" if ref else "return", "ref_returns": ref,
        "eval_env_steps_per_s": {side: eval_rate([e for e in race.evals[side]]) for side in ("rlkit", "d3rlpy")},
        "parameters": params, "chunks": race.chunks, "evals": race.evals, "matmul_slices": race.matmul,
        "matmul_slices_d3rlpy_process": race.matmul_d3rlpy,
        "loss_d3rlpy": race.loss,
    }


def figures_from(summaries: list[dict[str, Any]], settings: Settings, info: DatasetInfo, threads: int
                 ) -> list[Figure]:
    """The table's rows from each seed's summary (seeds in order)."""
    first = summaries[0]
    what = (f"{info.name} ({info.episodes} episodes, {info.transitions:,} steps of {info.env_id}), "
            f"{settings.steps:,} gradient steps per side, h {settings.embed}, {settings.layers} "
            f"layers, K {settings.context}, batch {settings.batch}, {threads} thread(s)")
    loads = [v for s in summaries for v in s.get("load_average", [])]
    if loads:  # a shared machine: what else ran shows in the 1-minute load average (start and end of each seed)
        what += f"; machine load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores"
    score_unit = "score" if first["score_kind"] == "normalised" else "return"
    eval_steps = sorted(s for s in first["scores"]["rlkit"] if s > 0)
    ref = first.get("ref_returns")
    scored = (f"normalised score 100 (R - R_min) / (R_max - R_min), R_min {ref[0]:g}, R_max {ref[1]:g},"
              if ref else "evaluation return")
    rows = [
        Figure(f"training samples/s (batch x gradient steps/s of each library's training loop; {what})",
               "samples/s", goal=">= 2.0"),
        Figure(f"share of the compute limit: samples/s x {first['update_gflop'] / settings.batch * 1e3:.0f} MFLOP "
               f"per sample / float32 matmul rate measured in the same run", "%", target=">= 90"),
        Figure("the ceiling: the compute limit in samples/s while d3rlpy trained (matmul rate / FLOPs per sample; "
               "rlkit's column) vs d3rlpy's samples/s: the largest ratio any library could reach", "samples/s",
               goal=">= 2.0"),
        *[Figure(f"{scored} after "
                 f"{step:,} gradient steps ({settings.eval_episodes} episodes, target return "
                 f"{first.get('target_return', 0):g})", score_unit, paired=False) for step in eval_steps],
        Figure("evaluation rollout env steps/s (rlkit: its vector-env evaluation, one forward for all envs; "
               "d3rlpy: its stateful wrapper, one env)", "env steps/s"),
        Figure(f"model parameters (rlkit {AGENT} vs d3rlpy {D3RLPY_VERSION} DecisionTransformer)", "parameters"),
        Figure("float32 matmul [3840,128]@[128,512] rate in each process, median of the slices between chunks "
               "(the compute limit: rlkit's column)", "GFLOP/s"),
    ]
    samples, share, ceiling, *score_rows = rows[:3 + len(eval_steps)]
    evals_rate, params, matmul = rows[3 + len(eval_steps):]
    for s in summaries:
        samples.rlkit.append(s["samples_per_s"]["rlkit"])
        samples.reference.append(s["samples_per_s"]["d3rlpy"])
        share.rlkit.append(s["share_of_limit_percent"]["rlkit"])
        share.reference.append(s["share_of_limit_percent"]["d3rlpy"])
        theirs, their_share = s["samples_per_s"]["d3rlpy"], s["share_of_limit_percent"]["d3rlpy"]
        ceiling.rlkit.append(100.0 * theirs / their_share if theirs and their_share else None)
        ceiling.reference.append(s["samples_per_s"]["d3rlpy"])
        for row, step in zip(score_rows, eval_steps):
            row.rlkit.append(s["scores"]["rlkit"].get(step))
            row.reference.append(s["scores"]["d3rlpy"].get(step))
        evals_rate.rlkit.append(s["eval_env_steps_per_s"]["rlkit"])
        evals_rate.reference.append(s["eval_env_steps_per_s"]["d3rlpy"])
        params.rlkit.append(float(s["parameters"]["rlkit"]))
        params.reference.append(float(s["parameters"]["d3rlpy"]))
        matmul.rlkit.append(s["matmul_gflops"])
        matmul.reference.append(s["matmul_gflops_d3rlpy_process"])
    return rows


# --------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------


def suite_dt(seeds: list[int], out: Path, quick: bool, threads: int,
             settings: Settings | None = None) -> tuple[list[Figure], dict[str, Any]]:
    python = d3rlpy_python()
    settings = settings or settings_from_env(quick)
    if not settings.dataset:
        if not quick:
            raise ConfigError("rlkit bench dt: set RLKIT_BENCH_DT_DATASET to the dataset to race on (an id under "
                              "MINARI_DATASETS_PATH, e.g. rlkit/hopper-medium-v0, or its directory)")
        settings = replace(settings, dataset=tiny_dataset(out))
    info = dataset_info(settings.dataset)
    target = target_return(settings, info)
    flops = update_flops(settings.batch, settings.context, settings.embed, settings.layers, info.obs_dim,
                         info.act_dim)
    print(f"  dataset {info.name} ({info.env_id}, {info.episodes} episodes, {info.transitions:,} steps), target "
          f"return {target:g}, update {flops / 1e9:.2f} GFLOP (batch {settings.batch})", flush=True)
    summaries = []
    for seed in seeds:
        log = out / f"dt-d3rlpy-s{seed}.log"
        out.mkdir(parents=True, exist_ok=True)
        load_start = os.getloadavg()[0]
        d3rlpy = D3rlpySide(python, settings, info, target, seed, threads, log)
        try:
            race = Race(d3rlpy, settings, seed)
            ours = rlkit_run(rlkit_config(settings, info, target, seed, threads), out / "runs" / f"dt-rlkit-s{seed}",
                             race)
        finally:
            d3rlpy.close()
        summary = race_summary(race, settings, info, flops, {"rlkit": ours, "d3rlpy": int(d3rlpy.ready["parameters"])})
        summary["target_return"] = target
        summary["load_average"] = [load_start, os.getloadavg()[0]]
        summaries.append(summary)
        rate, share = summary["samples_per_s"], summary["share_of_limit_percent"]
        print(f"  seed {seed}: samples/s rlkit {rate['rlkit'] or 0:.0f} vs d3rlpy {rate['d3rlpy'] or 0:.0f}; matmul "
              f"{summary['matmul_gflops']:.0f} GFLOP/s, share of the limit rlkit {share['rlkit'] or 0:.0f}% vs d3rlpy "
              f"{share['d3rlpy'] or 0:.0f}%; scores rlkit {_rounded(summary['scores']['rlkit'])} vs d3rlpy "
              f"{_rounded(summary['scores']['d3rlpy'])}; eval env steps/s rlkit "
              f"{summary['eval_env_steps_per_s']['rlkit'] or 0:.0f} vs d3rlpy "
              f"{summary['eval_env_steps_per_s']['d3rlpy'] or 0:.0f}", flush=True)
        (out / "dt.partial.json").write_text(json.dumps({"suite": "dt", "seeds_done": seeds[: seeds.index(seed) + 1],
                                                         "summaries": summaries}, indent=1))
    status = {"settings": {**asdict(settings), "target_return": target, "dataset_name": info.name,
                           "env_id": info.env_id, "d3rlpy": D3RLPY_VERSION, "d3rlpy_torch": d3rlpy.ready.get("torch")},
              "per_seed": summaries}
    return figures_from(summaries, settings, info, threads), status


def _rounded(scores: dict[int, float]) -> str:
    return "{" + ", ".join(f"{step}: {value:.1f}" for step, value in scores.items()) + "}"


NOTES = (
    "rlkit's Decision Transformer (agents/decision_transformer.py, its own offline loop) vs d3rlpy 2.8.1's "
    "DecisionTransformer (its own fit loop, in its own venv: bench/d3rlpy_dt_driver.py) on the same Minari "
    "dataset with the same model: the paper's MuJoCo setting, token width 128 (d3rlpy: a one-layer linear "
    "encoder of width 128, no activation), 3 blocks, 1 head, context 20, dropout 0.1, batch 64, AdamW lr 1e-4, "
    "weight decay 1e-4, 10,000 warm-up steps, clip 0.25, returns-to-go / 1000, standardised states. The two "
    "take turns in chunks of gradient steps (rlkit, then d3rlpy up to the same step, then a slice of float32 "
    "matmuls), never at once; each side's samples/s is its training loop's own time (sampling, update, "
    "logging), evaluations and the first chunk left out. Compute limit: the update's matmul FLOPs "
    "(3 x forward; formula in bench/suites/dt.py) at the [3840,128]@[128,512] float32 matmul rate measured in "
    "the same run. Scores: mean evaluation return of each side at the same gradient steps, normalised "
    "100 (R - R_min)/(R_max - R_min) with the reference returns given; seeds do not correspond across "
    "libraries. Settings (dataset, budget, references): RLKIT_BENCH_DT_* environment variables or "
    "`python -m rlkit.bench.dt_cli --help`."
)
