"""Side-by-side benchmarks: rlkit vs the reference implementation (Stable-Baselines3, raw ALE), one run.

Why this shape: absolute times on shared machines are noise, so every figure is a **ratio** of rlkit to
the reference measured in the same process, on the same machine, with the same env, hyperparameters,
budget and thread settings, and the two sides **interleaved** (A B A B ...) so that drifting load hits
both. Each suite returns per-repeat values for both sides; the ratio is taken per repeat (seed) and
reported as median with min..max spread.

    rlkit bench SUITE [--seeds N] [--out DIR] [--threads T] [--quick]

Suites: ``dqn-cartpole`` (learning: time and env steps to solve), ``dqn-throughput`` (training env
steps/s after learning starts, CartPole and Pong), ``atari-collect`` (collection path vs raw ALE vector
env), ``replay`` (sampling rate and memory vs SB3's ReplayBuffer), ``sac`` (SAC learning outcome and
update throughput vs SB3's SAC, Pendulum and HalfCheetah), ``sac-her`` (SAC + HER success rate at equal env
steps and training env steps/s vs SB3's SAC + HerReplayBuffer, PointMaze U and Fetch Push), ``ris-antmaze``
(RIS vs SAC + HER, both rlkit, success on the Ant U-maze at equal env steps; resumable), ``ris-pointmaze``
(the same comparison on the point mass in D4RL's medium maze, corner to corner). ``all`` runs every suite but
the long ones (``LONG_SUITES``: the two RIS suites).
Results: ``DIR/<suite>.json``, ``DIR/<suite>.png`` and the suite's section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import gc
import io
import json
import os
import platform
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from rlkit.config import configs_dir

# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One compared quantity: per-repeat values of both sides, and how to read their ratio."""

    name: str
    unit: str
    rlkit: list[float | None] = field(default_factory=list)
    reference: list[float | None] = field(default_factory=list)
    higher_is_better: bool = True
    goal: str = ""
    """E.g. ">= 2.0" (ratio rlkit/reference); empty when the figure only informs."""
    paired: bool = True
    """Paired: repeat i of both sides ran back to back (throughput), so the ratio is taken per repeat.
    Unpaired: the sides' seeds do not correspond (learning outcomes: rlkit's seed 0 has nothing to do
    with SB3's seed 0), so the ratio is median(rlkit) / median(reference) and the spread is the
    extreme ratios min/max and max/min."""
    target: str = ""
    """An absolute requirement on every repeat's value, e.g. ">= 475" (learning stability); a repeat
    with no value (None) misses it. Reported for both sides."""

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> "Figure":
        """The figure back from :meth:`summary` (a saved JSON, or a worker process's result)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in summary.items() if k in names})

    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.rlkit, self.reference) if a is not None and b not in (None, 0)]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "unit": self.unit, "rlkit": self.rlkit, "reference": self.reference,
                               "higher_is_better": self.higher_is_better, "goal": self.goal, "paired": self.paired,
                               "target": self.target}
        if self.target:
            op, value = self.target.split()
            meets = (lambda v: v >= float(value)) if op == ">=" else (lambda v: v <= float(value))
            for side in ("rlkit", "reference"):
                values = getattr(self, side)
                out[f"target_met_{side}"] = bool(values) and all(v is not None and meets(v) for v in values)
        ours = [v for v in self.rlkit if v is not None]
        theirs = [v for v in self.reference if v not in (None, 0)]
        if self.paired and self.ratios():
            ratios = self.ratios()
            out.update(ratio_median=float(np.median(ratios)), ratio_min=float(np.min(ratios)),
                       ratio_max=float(np.max(ratios)))
        elif not self.paired and ours and theirs:
            out.update(ratio_median=float(np.median(ours) / np.median(theirs)),
                       ratio_min=float(min(ours) / max(theirs)), ratio_max=float(max(ours) / min(theirs)))
        if "ratio_median" in out:
            if self.goal:
                op, value = self.goal.split()
                median = out["ratio_median"]
                out["goal_met"] = bool(median >= float(value) if op == ">=" else median <= float(value))
        return out


def machine_info(threads: int) -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import stable_baselines3

    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "sb3": stable_baselines3.__version__, "torch_threads": threads,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M")}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


# --------------------------------------------------------------------------------------
# Suite: dqn-cartpole (learning)
# --------------------------------------------------------------------------------------

# rl-baselines3-zoo's CartPole-v1 DQN hyperparameters
ZOO_CARTPOLE = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
                    target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                    exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))
SOLVED = 475.0


def _rlkit_run(config: str, overrides: list[str], run_dir: Path, eval_times: list[float] | None = None
               ) -> list[dict[str, Any]]:
    """Train with rlkit's own loop; returns its metrics records. ``eval_times`` receives the wall time of
    each evaluation, in order (so that callers can time training alone)."""
    from rlkit.training import loops
    from rlkit.config import load_config
    from rlkit.runfiles.logger import read_metrics

    cfg = load_config(config, overrides)
    if run_dir.exists():  # a bench run owns its directory: never read records of an earlier run
        shutil.rmtree(run_dir)
    evaluate = loops.evaluate

    def timed_evaluate(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return evaluate(*args, **kwargs)
        finally:
            if eval_times is not None:
                eval_times.append(time.perf_counter() - t0)

    loops.evaluate = timed_evaluate
    try:
        loops.train_online(cfg, run_dir)
    finally:
        loops.evaluate = evaluate
    return read_metrics(run_dir)


def _rlkit_evals(records: list[dict[str, Any]], eval_times: list[float]) -> list[tuple[int, float, float]]:
    """(step, training time, mean) per evaluation: the record's time less all evaluation time up to it
    (an eval record is written right after its evaluation returns)."""
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(evals) == len(eval_times), (len(evals), len(eval_times))
    spent = np.cumsum(eval_times)
    return [(r["step"], r["time"] - float(t), r["return_mean"]) for r, t in zip(evals, spent)]


@dataclass
class Outcome:
    """One learning run, summarised from its evaluations (step, training time, mean)."""

    evals: list[tuple[int, float, float]]

    @property
    def first_solve(self) -> tuple[int, float] | tuple[None, None]:
        """(env steps, training seconds) at the first evaluation with mean >= SOLVED."""
        return next(((step, t) for step, t, mean in self.evals if mean >= SOLVED), (None, None))

    @property
    def best(self) -> float | None:
        return max((mean for _, _, mean in self.evals), default=None)

    @property
    def final(self) -> float | None:
        return self.evals[-1][2] if self.evals else None

    @property
    def held(self) -> float | None:
        """Percentage of the evaluations from the first solve on (inclusive) with mean >= SOLVED."""
        step, _ = self.first_solve
        after = [mean for s, _, mean in self.evals if step is not None and s >= step]
        return 100.0 * sum(mean >= SOLVED for mean in after) / len(after) if after else None


def _sb3_dqn_cartpole(seed: int, total_steps: int, eval_every: int, eval_episodes: int, stop: bool
                      ) -> tuple[list[tuple[int, float, float]], list[float]]:
    """SB3 DQN with the zoo hyperparameters; returns ([(step, training time, eval mean)], eval times)."""
    import gymnasium as gym
    from stable_baselines3 import DQN as SB3DQN
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.monitor import Monitor

    evals: list[tuple[int, float, float]] = []
    eval_times: list[float] = []
    start = time.perf_counter()

    class TimedEval(EvalCallback):
        """EvalCallback that keeps its own time out of the training time."""

        def _on_step(self) -> bool:
            if not (self.eval_freq > 0 and self.n_calls % self.eval_freq == 0):
                return super()._on_step()
            t0 = time.perf_counter()
            keep_going = super()._on_step()
            evals.append((self.num_timesteps, t0 - start - sum(eval_times), float(self.last_mean_reward)))
            eval_times.append(time.perf_counter() - t0)
            return keep_going and not (stop and self.last_mean_reward >= SOLVED)

    model = SB3DQN("MlpPolicy", gym.make("CartPole-v1"), seed=seed, device="cpu", verbose=0, **ZOO_CARTPOLE,
                   exploration_initial_eps=1.0)
    eval_env = Monitor(gym.make("CartPole-v1"))
    eval_env.reset(seed=seed + 100_000)
    callback = TimedEval(eval_env, n_eval_episodes=eval_episodes, eval_freq=eval_every, deterministic=True, verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=total_steps, callback=callback)
    return evals, eval_times


def suite_dqn_cartpole(seeds: list[int], out: Path, quick: bool) -> list[Figure]:
    total = 3_000 if quick else 50_000
    eval_every = 1_000 if quick else 2_500
    episodes = 2 if quick else 10
    common = [f"train.total_steps={total}", f"train.eval_every={eval_every}", f"train.eval_episodes={episodes}",
              "log.progress=false", "log.tensorboard=false", "log.plot=false", "train.save_buffer=false",
              "train.checkpoint_every=0"]
    if quick:
        common += ["train.learning_starts=500", "train.train_every=100", "train.gradient_steps=10"]
    stop = [f"train.stop_at_solve={SOLVED}"]
    figures = {key: Figure(name, unit, higher_is_better=False, goal=goal, paired=False) for key, name, unit, goal in [
        ("zoo_time", "training time to solve, same hyperparameters (zoo)", "s", "<= 0.5"),
        ("zoo_steps", "env steps to solve, same hyperparameters (zoo)", "steps", "<= 1.0"),
        ("tuned_time", "training time to solve, rlkit tuned config vs SB3 zoo", "s", "<= 0.5"),
        ("tuned_steps", "env steps to solve, rlkit tuned config vs SB3 zoo", "steps", "<= 1.0"),
    ]}
    best = Figure("best evaluation return within the budget, same hyperparameters (zoo)", "return", paired=False)
    final = Figure(f"final evaluation after {total:,} steps, rlkit tuned config vs SB3 zoo", "return", paired=False,
                   target=f">= {SOLVED:g}")
    held = Figure(f"evaluations >= {SOLVED:g} from the first solve on, rlkit tuned config vs SB3 zoo", "%",
                  paired=False, target=">= 90")
    eval_cost = Figure(f"wall time of one {episodes}-episode evaluation (not in the times above)", "s",
                       higher_is_better=False, paired=False)
    for seed in seeds:
        # interleaved: rlkit (zoo, stops at the solve) | SB3 (zoo, full budget) | rlkit (tuned, full budget)
        times: list[float] = []
        records = _rlkit_run(str(configs_dir() / "dqn_cartpole_zoo.yaml"), [*common, *stop, f"seed={seed}"],
                             out / "runs" / f"rlkit-zoo-s{seed}", times)
        zoo = Outcome(_rlkit_evals(records, times))
        sb3_evals, sb3_times = _sb3_dqn_cartpole(seed, total, eval_every, episodes, stop=False)
        sb3 = Outcome(sb3_evals)
        tuned_times: list[float] = []
        records = _rlkit_run(str(configs_dir() / "dqn_cartpole.yaml"), [*common, f"seed={seed}"],
                             out / "runs" / f"rlkit-tuned-s{seed}", tuned_times)
        tuned = Outcome(_rlkit_evals(records, tuned_times))
        for key, ours in (("zoo", zoo), ("tuned", tuned)):
            figures[f"{key}_steps"].rlkit.append(ours.first_solve[0])
            figures[f"{key}_time"].rlkit.append(ours.first_solve[1])
            figures[f"{key}_steps"].reference.append(sb3.first_solve[0])
            figures[f"{key}_time"].reference.append(sb3.first_solve[1])
        best.rlkit.append(zoo.best)
        best.reference.append(sb3.best)
        final.rlkit.append(tuned.final)
        final.reference.append(sb3.final)
        held.rlkit.append(tuned.held)
        held.reference.append(sb3.held)
        eval_cost.rlkit.append(float(np.median(tuned_times)) if tuned_times else None)
        eval_cost.reference.append(float(np.median(sb3_times)) if sb3_times else None)
        print(f"  seed {seed}: first solve (steps, training s): rlkit zoo {zoo.first_solve}, SB3 zoo "
              f"{sb3.first_solve}, rlkit tuned {tuned.first_solve}", flush=True)
        print(f"  seed {seed}: evaluations, rlkit tuned: {[round(m) for *_, m in tuned.evals]}", flush=True)
        print(f"  seed {seed}: evaluations, SB3 zoo:     {[round(m) for *_, m in sb3.evals]}", flush=True)
    return [*figures.values(), best, final, held, eval_cost]


# --------------------------------------------------------------------------------------
# Suite: dqn-throughput (training env steps/s after learning starts)
# --------------------------------------------------------------------------------------


class _StepClock:
    """Wall time at which a step counter first crosses two marks: sps over the window between them."""

    def __init__(self, start_mark: int, end_mark: int) -> None:
        self.marks = (start_mark, end_mark)
        self.times: dict[int, tuple[int, float]] = {}

    def see(self, step: int) -> None:
        for mark in self.marks:
            if mark not in self.times and step >= mark:
                self.times[mark] = (step, time.perf_counter())

    def sps(self) -> float | None:
        if len(self.times) < 2:
            return None
        (s0, t0), (s1, t1) = self.times[self.marks[0]], self.times[self.marks[1]]
        return (s1 - s0) / max(t1 - t0, 1e-9)


def _rlkit_throughput(config: str, overrides: list[str], run_dir: Path, window: tuple[int, int],
                      log_every: int = 500) -> float | None:
    """rlkit's own loop, timed from its ``metrics.jsonl`` train records (written every ``log_every`` env steps:
    the window must hold at least two of them, or the rate is None)."""
    records = [r for r in _rlkit_run(config, [*overrides, f"log.log_every={log_every}"], run_dir)
               if r["kind"] == "train"]
    inside = [r for r in records if window[0] <= r["step"] <= window[1] + log_every]
    if len(inside) < 2:
        return None
    first, last = inside[0], inside[-1]
    return (last["step"] - first["step"]) / max(last["time"] - first["time"], 1e-9)


def _sb3_throughput(model, total: int, window: tuple[int, int]) -> float | None:
    from stable_baselines3.common.callbacks import BaseCallback

    clock = _StepClock(*window)

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            clock.see(self.num_timesteps)
            return True

    model.learn(total_timesteps=total, callback=Clock())
    return clock.sps()


def suite_dqn_throughput(seeds: list[int], out: Path, quick: bool, threads: int) -> list[Figure]:
    import gymnasium as gym
    from stable_baselines3 import DQN as SB3DQN

    log = ["log.progress=false", "log.tensorboard=false", "log.plot=false", "train.save_buffer=false",
           "train.eval_every=0", "train.eval_episodes=1", "train.checkpoint_every=0", f"torch_threads={threads}"]
    cart_total = 4_000 if quick else 20_000
    cart_window = (1_500, cart_total) if quick else (2_000, cart_total)
    pong_total = 700 if quick else 6_000
    pong_ls = 300 if quick else 2_000
    pong_window = (400, pong_total) if quick else (3_000, pong_total)
    pong_envs = 4 if quick else 8
    log_every = 100 if quick else 500  # quick windows are a few hundred steps: two train records must fall inside
    cart = Figure("CartPole training env steps/s (zoo hyperparameters)", "steps/s", goal=">= 2.0")
    pong = Figure(f"Pong training env steps/s ({pong_envs} envs, CnnPolicy)", "steps/s", goal=">= 2.0")
    for seed in seeds:
        cart.rlkit.append(_rlkit_throughput(str(configs_dir() / "dqn_cartpole_zoo.yaml"),
                                            [*log, f"train.total_steps={cart_total}", f"seed={seed}"],
                                            out / "runs" / f"tp-cart-rlkit-s{seed}", cart_window, log_every))
        model = SB3DQN("MlpPolicy", gym.make("CartPole-v1"), seed=seed, device="cpu", **ZOO_CARTPOLE)
        cart.reference.append(_sb3_throughput(model, cart_total, cart_window))
        del model
        # Pong: equal updates per transition: one update every 4 env steps (= 2 per step of 8 envs)
        per_vec_step = pong_envs // 4
        pong.rlkit.append(_rlkit_throughput(str(configs_dir() / "dqn_pong.yaml"), [
            *log, f"env.num_envs={pong_envs}", f"train.total_steps={pong_total}", f"train.learning_starts={pong_ls}",
            "train.replay.capacity=50000", f"train.train_every={pong_envs}", f"train.gradient_steps={per_vec_step}",
            f"seed={seed}", "env.kwargs.num_threads=1"], out / "runs" / f"tp-pong-rlkit-s{seed}", pong_window,
            log_every))
        model = _sb3_pong_model(seed, pong_envs, pong_ls, per_vec_step)
        pong.reference.append(_sb3_throughput(model, pong_total, pong_window))
        del model
        gc.collect()
        print(f"  seed {seed}: CartPole rlkit {cart.rlkit[-1] or 0:.0f} vs SB3 {cart.reference[-1] or 0:.0f} steps/s; "
              f"Pong rlkit {pong.rlkit[-1] or 0:.0f} vs SB3 {pong.reference[-1] or 0:.0f} steps/s", flush=True)
    return [cart, pong]


def _sb3_pong_model(seed: int, n_envs: int, learning_starts: int, gradient_steps: int):
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import DQN as SB3DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    # SB3's Atari wrappers with rlkit's protocol: no terminal on life loss, clipped rewards, no sticky actions
    envs = make_atari_env("PongNoFrameskip-v4", n_envs=n_envs, seed=seed,
                          wrapper_kwargs=dict(terminal_on_life_loss=False, clip_reward=True))
    envs = VecFrameStack(envs, n_stack=4)
    return SB3DQN("CnnPolicy", envs, learning_rate=1e-4, buffer_size=50_000, learning_starts=learning_starts,
                  batch_size=32, gamma=0.99, train_freq=1, gradient_steps=gradient_steps,
                  target_update_interval=1000, exploration_fraction=0.1, exploration_final_eps=0.01,
                  optimize_memory_usage=False, seed=seed, device="cpu", verbose=0)


# --------------------------------------------------------------------------------------
# Suite: atari-collect (collection path vs the raw ALE vector env)
# --------------------------------------------------------------------------------------


def suite_atari_collect(seeds: list[int], out: Path, quick: bool, threads: int) -> list[Figure]:
    import gymnasium as gym
    from ale_py.vector_env import AtariVectorEnv

    import rlkit.envs  # noqa: F401
    from rlkit.agents.dqn import DQN, DQNConfig
    from rlkit.training.collector import Collector
    from rlkit.experience.replay import ReplayBuffer

    n_envs, steps = 8, (150 if quick else 1_500)
    env_threads = min(os.cpu_count() or 1, n_envs)
    figure = Figure(f"Atari collection env steps/s, epsilon 0.01 ({n_envs} envs, {env_threads} ALE threads)",
                    "steps/s", goal=">= 0.9")
    no_forward = Figure("same path, epsilon 1 (random actions: no network forward): rlkit's own overhead",
                        "steps/s", goal=">= 0.9")
    for seed in seeds:
        # raw: ALE's native vector env, random actions, the settings rlkit uses
        raw = AtariVectorEnv("pong", num_envs=n_envs, num_threads=env_threads, reward_clipping=False,
                             use_fire_reset=False)
        raw.reset(seed=seed)
        rng = np.random.default_rng(seed)
        actions = rng.integers(raw.single_action_space.n, size=(steps, n_envs))
        start = time.perf_counter()
        for t in range(steps):
            raw.step(actions[t])
        figure.reference.append(steps * n_envs / (time.perf_counter() - start))
        no_forward.reference.append(figure.reference[-1])
        raw.close()
        # rlkit: preprocessing wrapper + policy forward + replay write, as in train_online
        for fig, epsilon in ((figure, 0.01), (no_forward, 1.0)):
            envs = gym.make_vec("rlkit/Pong-v0", num_envs=n_envs, vectorization_mode="vector_entry_point",
                                num_threads=env_threads)
            agent = DQN(DQNConfig(eps_start=epsilon, eps_end=epsilon), envs.single_observation_space,
                        envs.single_action_space, seed=seed)
            buffer = ReplayBuffer.from_spaces(envs.single_observation_space, envs.single_action_space,
                                              capacity=n_envs * (steps + 8), num_envs=n_envs, frame_stack=4)
            collector = Collector(envs, seed)  # train_online's own collect step
            start = time.perf_counter()
            for _ in range(steps):
                step = collector.step(agent, explore=True)
                buffer.add(step.obs, step.actions, step.rewards, step.terminated | step.life_loss, step.truncated,
                           step.autoreset)
            fig.rlkit.append(steps * n_envs / (time.perf_counter() - start))
            envs.close()
        print(f"  seed {seed}: raw {figure.reference[-1]:.0f}, rlkit eps=0.01 {figure.rlkit[-1]:.0f}, "
              f"eps=1 {no_forward.rlkit[-1]:.0f} steps/s", flush=True)
    return [figure, no_forward]


# --------------------------------------------------------------------------------------
# Suite: replay (sampling rate and memory vs SB3's ReplayBuffer)
# --------------------------------------------------------------------------------------


def suite_replay(seeds: list[int], out: Path, quick: bool, threads: int) -> list[Figure]:
    import gymnasium as gym
    from stable_baselines3.common.buffers import ReplayBuffer as SB3Buffer

    from rlkit.experience.replay import ReplayBuffer

    capacity = 20_000 if quick else 100_000
    big = 20_000 if quick else 1_000_000
    n_envs = 8
    obs_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    act_space = gym.spaces.Discrete(6)
    frames = np.random.default_rng(0).integers(0, 255, size=(64, n_envs, 4, 84, 84), dtype=np.uint8)
    acts = np.zeros(n_envs, dtype=np.int64)
    rew = np.zeros(n_envs, dtype=np.float32)
    done = np.zeros(n_envs, dtype=bool)

    def fill_rlkit(cap: int) -> tuple[Any, int]:
        before = _rss_bytes()
        buf = ReplayBuffer.from_spaces(obs_space, act_space, capacity=cap, num_envs=n_envs, frame_stack=4, seed=0)
        for t in range(cap // n_envs):
            buf.add(frames[t % 64], acts, rew, done, done, done)
        return buf, _rss_bytes() - before

    def fill_sb3(cap: int, optimize: bool) -> tuple[Any, int]:
        before = _rss_bytes()
        buf = SB3Buffer(cap, obs_space, act_space, device="cpu", n_envs=n_envs, optimize_memory_usage=optimize,
                        handle_timeout_termination=not optimize)
        for t in range(cap // n_envs):
            buf.add(frames[t % 64], frames[(t + 1) % 64], acts, rew, done, [{}] * n_envs)
        return buf, _rss_bytes() - before

    def rate(sample: Callable[[], Any], batch: int) -> float:
        for _ in range(3):
            sample()
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < (0.3 if quick else 2.0):
            sample()
            reps += 1
        return reps * batch / (time.perf_counter() - start)

    figures = []
    for optimize in (False, True):
        label = "SB3 optimize_memory_usage=True" if optimize else "SB3 default"
        mem = Figure(f"memory per transition, {capacity // 1000}k Atari buffer vs {label}", "bytes",
                     higher_is_better=False, goal="<= 0.5" if not optimize else "")
        s32 = Figure(f"sampling, batch 32 vs {label}", "transitions/s", goal=">= 2.0")
        s256 = Figure(f"sampling, batch 256 vs {label}", "transitions/s", goal=">= 2.0")
        for seed in seeds:
            ours, ours_mem = fill_rlkit(capacity)
            theirs, theirs_mem = fill_sb3(capacity, optimize)
            mem.rlkit.append(ours_mem / capacity)
            mem.reference.append(theirs_mem / capacity)
            for fig, batch in ((s32, 32), (s256, 256)):  # interleaved per batch size
                fig.rlkit.append(rate(lambda: ours.sample(batch), batch))
                fig.reference.append(rate(lambda: theirs.sample(batch), batch))
            print(f"  seed {seed} vs {label}: bytes/transition {mem.rlkit[-1]:.0f} vs {mem.reference[-1]:.0f}; "
                  f"batch 32 {s32.rlkit[-1]:.0f} vs {s32.reference[-1]:.0f}/s; "
                  f"batch 256 {s256.rlkit[-1]:.0f} vs {s256.reference[-1]:.0f}/s", flush=True)
            del ours, theirs
            gc.collect()
        figures += [mem, s32, s256]
    # the absolute requirement: a 1M-transition buffer in about 7 GB
    ours, ours_mem = fill_rlkit(big)
    figures.append(Figure(f"rlkit {big // 1000}k-transition Atari buffer, resident memory", "GB",
                          rlkit=[ours_mem / 1e9], reference=[None], higher_is_better=False))
    del ours
    gc.collect()
    return figures


# --------------------------------------------------------------------------------------
# Suite: sac (learning outcome and update throughput vs SB3's SAC)
# --------------------------------------------------------------------------------------

# rl-baselines3-zoo's SAC hyperparameters (hyperparams/sac.yml); everything else is SB3's SAC default
# (batch 256, buffer 1e6, tau 0.005, gamma 0.99, train_freq 1, gradient_steps 1, ent_coef auto, 256x256)
ZOO_SAC = {"Pendulum-v1": dict(learning_rate=1e-3, learning_starts=100),
           "HalfCheetah-v5": dict(learning_rate=3e-4, learning_starts=10_000)}
SAC_CONFIGS = {"Pendulum-v1": "sac_pendulum.yaml", "HalfCheetah-v5": "sac_halfcheetah.yaml"}
# env steps (total, learning_starts, eval_every, eval_episodes) per env: full runs, --quick
SAC_BUDGETS = {False: {"Pendulum-v1": (8_000, 100, 2_000, 10), "HalfCheetah-v5": (25_000, 10_000, 5_000, 10)},
               True: {"Pendulum-v1": (600, 100, 300, 1), "HalfCheetah-v5": (600, 300, 300, 1)}}
SAC_LOCKSTEP_UPDATES = {False: 3_000, True: 150}
"""Updates per side of the lockstep throughput runs (after the same learning_starts as the learning runs)."""


def _window_rate(marks: list[tuple[int, float, int]], evals: list[tuple[float, float]], start_step: int
                 ) -> float | None:
    """Updates/s between the first mark at or after ``start_step`` and the last mark, less the time of the
    evaluations that ended inside. ``marks``: (env step, time, updates so far); ``evals``: (end time, duration)."""
    inside = [m for m in marks if m[0] >= start_step]
    if len(inside) < 2:
        return None
    (_, t0, u0), (_, t1, u1) = inside[0], inside[-1]
    spent = sum(duration for end, duration in evals if t0 < end <= t1)
    return (u1 - u0) / max(t1 - t0 - spent, 1e-9)


class _UpdateTimer:
    """Wraps an update method and sums the wall time spent inside it (measured during training, so it
    shares the load of that moment: the share of training time spent updating is robust to load drift)."""

    def __init__(self, update: Callable[..., Any]) -> None:
        self.update, self.seconds, self.calls = update, 0.0, 0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.update(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1

    def rate(self) -> float | None:
        return self.calls / self.seconds if self.calls else None


def _rlkit_sac_run(config: str, overrides: list[str], run_dir: Path, start_step: int
                   ) -> tuple[list[tuple[int, float]], float | None, float | None]:
    """rlkit's own loop: ([(step, eval mean)], training updates/s after ``start_step``, updates/s inside
    ``SAC.update`` during the run)."""
    from rlkit.agents import SAC

    eval_times: list[float] = []
    update = SAC.update
    timer = _UpdateTimer(update)
    SAC.update = lambda self, *args, **kwargs: timer(self, *args, **kwargs)
    try:
        records = _rlkit_run(config, overrides, run_dir, eval_times)
    finally:
        SAC.update = update
    marks, updates = [], 0
    for r in records:
        if r["kind"] == "train":
            updates += r.get("updates", 0)
            marks.append((r["step"], r["time"], updates))
    evals = [r for r in records if r["kind"] == "eval"]
    rate = _window_rate(marks, [(r["time"], t) for r, t in zip(evals, eval_times)], start_step)
    return [(r["step"], r["return_mean"]) for r in evals], rate, timer.rate()


def _sb3_sac(env_id: str, seed: int, learning_starts: int):
    import gymnasium as gym
    from stable_baselines3 import SAC as SB3SAC

    hyper = {**ZOO_SAC[env_id], "learning_starts": learning_starts}
    return SB3SAC("MlpPolicy", gym.make(env_id), seed=seed, device="cpu", verbose=0, **hyper)


def _sb3_sac_run(env_id: str, seed: int, total: int, learning_starts: int, eval_every: int, episodes: int,
                 log_every: int, start_step: int) -> tuple[list[tuple[int, float]], float | None, float | None]:
    """SB3's SAC with the zoo hyperparameters, deterministic evaluations every ``eval_every`` env steps
    (timed and left out of the rate): ([(step, eval mean)], training updates/s after ``start_step``,
    updates/s inside its ``train`` during the run)."""
    import gymnasium as gym
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    model = _sb3_sac(env_id, seed, learning_starts)
    timer = model.train = _UpdateTimer(model.train)  # train(gradient_steps=1, ...) once per env step
    eval_env = Monitor(gym.make(env_id))
    eval_env.reset(seed=seed + 100_000)
    def evaluate_mean(step: int) -> float:
        return float(evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)[0])

    marks, evals, eval_times = _sb3_learn_timed(model, total, log_every, eval_every, evaluate_mean,
                                                count=lambda step: model._n_updates)
    return evals, _window_rate(marks, eval_times, start_step), timer.rate()


def _sb3_learn_timed(model: Any, total: int, log_every: int, eval_every: int, evaluate_at: Callable[[int], float],
                     count: Callable[[int], int]) -> tuple[list[tuple[int, float, int]], list[tuple[int, float]],
                                                           list[tuple[float, float]]]:
    """``model.learn(total)`` with a clock: (step, time, ``count(step)``) every ``log_every`` env steps, and
    ``evaluate_at(step)`` every ``eval_every`` and at the end (as rlkit's loop), each evaluation timed so
    rates can leave it out. Returns (marks, [(step, evaluation)], [(end time, evaluation seconds)])."""
    from stable_baselines3.common.callbacks import BaseCallback

    marks: list[tuple[int, float, int]] = []
    evals: list[tuple[int, float]] = []
    eval_times: list[tuple[float, float]] = []

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            step = self.num_timesteps
            if step % log_every == 0:
                marks.append((step, time.perf_counter(), count(step)))
            if step % eval_every == 0 or step == total:
                t0 = time.perf_counter()
                evals.append((step, evaluate_at(step)))
                eval_times.append((time.perf_counter(), time.perf_counter() - t0))
            return True

    model.learn(total_timesteps=total, callback=Clock())
    return marks, evals, eval_times


def _interleaved_rates(calls: list[Callable[[], Any]], seconds: float, rounds: int = 10) -> list[float]:
    """Calls per second of each function, timed in ``rounds`` alternating slices of ``seconds / rounds``
    each (A B A B ...) after a warm-up, so that load drifting on a shared machine hits all of them alike."""
    for call in calls:
        for _ in range(10):
            call()
    counts, spent = [0] * len(calls), [0.0] * len(calls)
    for _ in range(rounds):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            while time.perf_counter() - start < seconds / rounds:
                call()
                counts[i] += 1
            spent[i] += time.perf_counter() - start
    return [n / t for n, t in zip(counts, spent)]


def _rlkit_sac_limit(config: str, env_id: str, seed: int, batch_size: int, sample: bool) -> Callable[[], Any]:
    """rlkit's ``SAC.update`` alone on a fixed synthetic batch (the compute limit of training), or with
    ``sample`` its replay sampling + update (SB3's train step samples too), as a call."""
    import gymnasium as gym

    from rlkit.agents import SAC
    from rlkit.config import load_config
    from rlkit.experience.replay import ReplayBuffer, Transitions

    cfg = load_config(config, [f"seed={seed}"])
    env = gym.make(env_id)
    agent = SAC(cfg.agent, env.observation_space, env.action_space, seed=seed)
    g = torch.Generator().manual_seed(seed)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = torch.as_tensor(env.action_space.low), torch.as_tensor(env.action_space.high)
    if sample:
        buffer = ReplayBuffer.from_spaces(env.observation_space, env.action_space, capacity=10_000, num_envs=1,
                                          gamma=cfg.agent.gamma, seed=seed)
        no = np.zeros(1, dtype=bool)
        for _ in range(1_000):
            buffer.add(torch.randn(1, obs_dim, generator=g).numpy(),
                       (low + (high - low) * torch.rand(1, act_dim, generator=g)).numpy(),
                       torch.randn(1, generator=g).numpy(), no, no, no)
        env.close()
        return lambda: agent.update(buffer.sample(batch_size))
    batch = Transitions(obs=torch.randn(batch_size, obs_dim, generator=g),
                        actions=low + (high - low) * torch.rand(batch_size, act_dim, generator=g),
                        rewards=torch.randn(batch_size, generator=g),
                        next_obs=torch.randn(batch_size, obs_dim, generator=g),
                        discounts=torch.full((batch_size,), cfg.agent.gamma), weights=torch.ones(batch_size),
                        indices=torch.arange(batch_size))
    env.close()
    return lambda: agent.update(batch)


def _sb3_sac_limit(env_id: str, seed: int) -> Callable[[], Any]:
    """SB3's ``SAC.train(gradient_steps=1)`` alone (its train step: replay sample + update) on a buffer of
    random transitions, as a call."""
    from stable_baselines3.common.logger import configure

    model = _sb3_sac(env_id, seed, learning_starts=0)
    model.set_logger(configure(None, []))
    rng = np.random.default_rng(seed)
    obs_space, act_space = model.observation_space, model.action_space
    for _ in range(1_000):
        obs = rng.standard_normal((1, *obs_space.shape)).astype(np.float32)
        action = rng.uniform(act_space.low, act_space.high, size=(1, *act_space.shape)).astype(np.float32)
        model.replay_buffer.add(obs, obs + 0.1, action, rng.standard_normal(1).astype(np.float32),
                                np.zeros(1, dtype=bool), [{}])
    return lambda: model.train(gradient_steps=1, batch_size=model.batch_size)


class _Baton:
    """Two training runs in one process (two threads) taking turns at every update: a side hands the turn
    over at the start of each of its updates and goes on once it gets it back. Only one side runs at a time
    and both see the same machine load at the same moments (on a shared machine, a minutes-long run A and
    then a run B do not). Each side's own time is its wall time less its waits."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.turn = 0
        self.done = [False, False]
        self.waited = [0.0, 0.0]
        self.starts: list[list[tuple[float, float]]] = [[], []]  # per side: (update start, total waited so far)

    def handover(self, side: int) -> None:
        t0 = time.perf_counter()
        with self.cond:
            self.turn = 1 - side
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.turn == side or self.done[1 - side])
        t1 = time.perf_counter()
        self.waited[side] += t1 - t0
        self.starts[side].append((t1, self.waited[side]))

    def finish(self, side: int) -> None:
        with self.cond:
            self.done[side] = True
            self.turn = 1 - side
            self.cond.notify_all()

    def rate(self, side: int, skip: int) -> float | None:
        """Updates/s of ``side``'s own time between its update ``skip`` and its last update."""
        starts = self.starts[side]
        if len(starts) < skip + 2:
            return None
        (t0, w0), (t1, w1) = starts[skip], starts[-1]
        return (len(starts) - 1 - skip) / max((t1 - t0) - (w1 - w0), 1e-9)


def _lockstep_sac_rates(env_id: str, seed: int, total: int, starts: int, threads: int, run_dir: Path,
                        skip: int = 100) -> tuple[float | None, float | None]:
    """Training updates/s of rlkit and SB3 (same zoo hyperparameters, no evaluations) trained side by side
    in lockstep (:class:`_Baton`): rlkit's loop in this thread (it installs signal handlers), SB3's in a
    worker thread. Returns (rlkit, SB3) updates/s of own time after each side's first ``skip`` updates."""
    model = _sb3_sac(env_id, seed, starts)
    overrides = ["log.progress=false", "log.tensorboard=false", "log.plot=false", "train.save_buffer=false",
                 "train.checkpoint_every=0", f"torch_threads={threads}", "train.eval_every=0", "train.eval_episodes=1",
                 f"seed={seed}", f"train.total_steps={total}", f"train.learning_starts={starts}",
                 f"agent.random_steps={starts}"]
    return _lockstep(model, total, lambda: _rlkit_run(str(configs_dir() / SAC_CONFIGS[env_id]), overrides, run_dir),
                     skip)


def _lockstep(model: Any, total: int, run_rlkit: Callable[[], Any], skip: int) -> tuple[float | None, float | None]:
    """Train rlkit (``run_rlkit``, in this thread: its loop installs signal handlers) and the SB3 ``model`` for
    ``total`` env steps (in a worker thread) side by side, taking turns at every update (:class:`_Baton`):
    (rlkit, SB3) updates/s of each side's own time after its first ``skip`` updates."""
    from rlkit.agents import SAC

    baton = _Baton()
    sb3_train = model.train

    def train_in_turn(*args, **kwargs):
        baton.handover(1)
        return sb3_train(*args, **kwargs)

    model.train = train_in_turn
    errors: list[BaseException] = []

    def sb3_side() -> None:
        try:
            model.learn(total_timesteps=total)
        except BaseException as exc:  # reported from the main thread
            errors.append(exc)
        finally:
            baton.finish(1)

    worker = threading.Thread(target=sb3_side, daemon=True)
    update = SAC.update

    def update_in_turn(self, *args, **kwargs):
        baton.handover(0)
        return update(self, *args, **kwargs)

    SAC.update = update_in_turn
    worker.start()
    try:
        run_rlkit()
    finally:
        SAC.update = update
        baton.finish(0)
        worker.join()
    if errors:
        raise errors[0]
    return baton.rate(0, skip), baton.rate(1, skip)


def suite_sac(seeds: list[int], out: Path, quick: bool, threads: int) -> list[Figure]:
    budgets = SAC_BUDGETS[quick]
    log_every = 100 if quick else 1_000
    limit_seconds = 0.5 if quick else 10.0  # per side, in 10 alternating slices
    log = ["log.progress=false", "log.tensorboard=false", "log.plot=false", "train.save_buffer=false",
           "train.checkpoint_every=0", f"torch_threads={threads}", f"log.log_every={log_every}"]
    figures: dict[str, list[Figure]] = {}
    for env_id, (total, starts, _, _) in budgets.items():
        short = env_id.split("-")[0]
        # Pendulum's returns are negative: compare its cost (-return), lower is better
        final = (Figure(f"{short}: final evaluation cost (-return) after {total:,} env steps", "cost",
                        higher_is_better=False, paired=False) if short == "Pendulum" else
                 Figure(f"{short}: final evaluation return after {total:,} env steps", "return", paired=False))
        figures[env_id] = [
            final,
            Figure(f"{short}: training updates/s in lockstep (both trained side by side, turns at every update)",
                   "updates/s", goal=">= 1.0"),
            Figure(f"{short}: training updates/s of the learning runs above (one after the other), evaluations "
                   "excluded", "updates/s"),
            Figure(f"{short}: update step alone, replay sampling included (sample + SAC.update vs SB3 train)",
                   "updates/s"),
            Figure(f"{short}: rlkit training updates/s / rlkit update alone (share of the compute limit)",
                   "updates/s", goal=">= 0.9"),
            Figure(f"{short}: rlkit training updates/s / rate inside SAC.update during training (share of "
                   "training time spent updating)", "updates/s", goal=">= 0.9"),
            Figure(f"{short}: SB3 training updates/s / SB3 train step alone (columns: SB3, SB3)", "updates/s"),
            Figure(f"{short}: SB3 training updates/s / rate inside SB3 train during training (columns: SB3, SB3)",
                   "updates/s"),
        ]
    for seed in seeds:
        for env_id, (total, starts, eval_every, episodes) in budgets.items():
            final, lockstep, train_rate, alone, share, inside, sb3_share, sb3_inside = figures[env_id]
            start_step = starts + log_every  # the first full logging window of updates
            overrides = [*log, f"seed={seed}", f"train.total_steps={total}", f"train.learning_starts={starts}",
                         f"agent.random_steps={starts}", f"train.eval_every={eval_every}",
                         f"train.eval_episodes={episodes}"]
            config = str(configs_dir() / SAC_CONFIGS[env_id])
            run_dir = out / "runs" / f"sac-{env_id}-rlkit-s{seed}"
            ours_evals, ours_rate, ours_inside = _rlkit_sac_run(config, overrides, run_dir, start_step)
            theirs_evals, theirs_rate, theirs_inside = _sb3_sac_run(env_id, seed, total, starts, eval_every, episodes,
                                                                    log_every, start_step)
            ours_limit, ours_step, theirs_limit = _interleaved_rates(
                [_rlkit_sac_limit(config, env_id, seed, 256, sample=False),
                 _rlkit_sac_limit(config, env_id, seed, 256, sample=True), _sb3_sac_limit(env_id, seed)], limit_seconds)
            ours_lock, theirs_lock = _lockstep_sac_rates(env_id, seed, starts + SAC_LOCKSTEP_UPDATES[quick], starts,
                                                         threads, out / "runs" / f"sac-{env_id}-lockstep-s{seed}",
                                                         skip=SAC_LOCKSTEP_UPDATES[quick] // 30)
            lockstep.rlkit.append(ours_lock)
            lockstep.reference.append(theirs_lock)
            sign = -1.0 if final.unit == "cost" else 1.0
            final.rlkit.append(sign * ours_evals[-1][1] if ours_evals else None)
            final.reference.append(sign * theirs_evals[-1][1] if theirs_evals else None)
            train_rate.rlkit.append(ours_rate)
            train_rate.reference.append(theirs_rate)
            alone.rlkit.append(ours_step)
            alone.reference.append(theirs_limit)
            share.rlkit.append(ours_rate)
            share.reference.append(ours_limit)
            sb3_share.rlkit.append(theirs_rate)
            sb3_share.reference.append(theirs_limit)
            inside.rlkit.append(ours_rate)
            inside.reference.append(ours_inside)
            sb3_inside.rlkit.append(theirs_rate)
            sb3_inside.reference.append(theirs_inside)
            print(f"  seed {seed} {env_id}: evaluations rlkit {[round(m) for _, m in ours_evals]}, "
                  f"SB3 {[round(m) for _, m in theirs_evals]}; training updates/s rlkit {ours_rate or 0:.1f} vs SB3 "
                  f"{theirs_rate or 0:.1f}; sample + update alone rlkit {ours_step:.1f} vs SB3 {theirs_limit:.1f}; "
                  f"SAC.update alone {ours_limit:.1f}; inside the update during training rlkit "
                  f"{ours_inside or 0:.1f} vs SB3 {theirs_inside or 0:.1f}; lockstep training rlkit "
                  f"{ours_lock or 0:.1f} vs SB3 {theirs_lock or 0:.1f}", flush=True)
            gc.collect()
        partial = {"suite": "sac", "seeds_done": seeds[: seeds.index(seed) + 1],
                   "figures": [f.summary() for figs in figures.values() for f in figs]}
        (out / "sac.partial.json").write_text(json.dumps(partial, indent=1))
    return [f for figs in figures.values() for f in figs]


# --------------------------------------------------------------------------------------
# Suite: sac-her (SAC + hindsight experience replay on goal envs, vs SB3's SAC + HerReplayBuffer)
# --------------------------------------------------------------------------------------

SAC_HER_CONFIGS = {"rlkit/PointMazeU-v0": "sac_her_pointmaze.yaml", "rlkit/FetchPush-v0": "sac_her_fetch_push.yaml"}
# env steps (total, eval_every, eval_episodes, learning_starts) per env: full runs, --quick. The env's kwargs and
# every hyperparameter come from the config, for both sides (learning_starts too: None keeps the config's).
SAC_HER_BUDGETS = {False: {"rlkit/PointMazeU-v0": (20_000, 2_000, 20, None),
                           "rlkit/FetchPush-v0": (10_000, 2_000, 20, None)},
                   True: {"rlkit/PointMazeU-v0": (600, 600, 1, 400), "rlkit/FetchPush-v0": (300, 300, 1, 100)}}
SAC_HER_LOCKSTEP_UPDATES = {False: 2_000, True: 60}
"""Updates per side of the lockstep throughput runs (after the config's learning_starts)."""
SAC_HER_SOLVED = 0.9
"""Success rate that counts as solved (steps to first success >= this)."""


def _sb3_her_hyper(cfg: Any) -> dict[str, Any]:
    """SB3 ``SAC`` keyword arguments equal to an rlkit SAC+HER config's (refuses what SB3 cannot express)."""
    agent, train = cfg.agent, cfg.train
    her = train.replay.her
    lrs = {agent.actor_lr, agent.critic_lr, agent.alpha_lr}
    if len(lrs) != 1 or agent.actor_hidden != agent.critic_hidden or train.replay.n_step != 1 or her is None:
        raise ValueError("sac-her compares configs SB3 can express: one learning rate, equal actor/critic widths, "
                         "n_step 1, train.replay.her set")
    if agent.random_steps != train.learning_starts or cfg.env.num_envs != 1 or agent.target_update_every != 1:
        raise ValueError("sac-her: random_steps must equal learning_starts (SB3's random phase), num_envs 1, "
                         "target_update_every 1")
    k = her.relabel_ratio / (1.0 - her.relabel_ratio)
    if abs(k - round(k)) > 1e-6:
        raise ValueError(f"sac-her: relabel_ratio {her.relabel_ratio} is no SB3 n_sampled_goal k/(k+1)")
    ent = f"auto_{agent.init_alpha}" if agent.autotune_alpha else agent.init_alpha
    return dict(learning_rate=agent.actor_lr, buffer_size=train.replay.capacity, learning_starts=train.learning_starts,
                batch_size=train.batch_size, tau=agent.tau, gamma=agent.gamma, train_freq=train.train_every,
                gradient_steps=train.gradient_steps, ent_coef=ent,
                target_entropy="auto" if agent.target_entropy is None else agent.target_entropy,
                replay_buffer_kwargs=dict(n_sampled_goal=int(round(k)), goal_selection_strategy=her.strategy),
                policy_kwargs=dict(net_arch=list(agent.actor_hidden)))


def _sb3_her_model(cfg: Any):
    """SB3's SAC + HerReplayBuffer with the config's hyperparameters on ``gym.make(env.id, **env.kwargs)``."""
    import gymnasium as gym
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3 import HerReplayBuffer

    import rlkit.envs  # noqa: F401  (registers the rlkit/... ids)

    return SB3SAC("MultiInputPolicy", gym.make(cfg.env.id, **cfg.env.kwargs), replay_buffer_class=HerReplayBuffer,
                  seed=cfg.seed, device="cpu", verbose=0, **_sb3_her_hyper(cfg))


def _lockstep_her_rates(config: str, overrides: list[str], total: int, run_dir: Path, skip: int
                        ) -> tuple[float | None, float | None]:
    """Training env steps/s (= updates/s: one update per env step after learning starts) of rlkit and SB3 trained
    side by side, taking turns at every update (:class:`_Baton`, as :func:`_lockstep_sac_rates`), no evaluations:
    (rlkit, SB3) of each side's own time after its first ``skip`` updates."""
    from rlkit.config import load_config

    overrides = [*overrides, f"train.total_steps={total}", "train.eval_every=0", "train.eval_episodes=1"]
    model = _sb3_her_model(load_config(config, overrides))
    try:
        return _lockstep(model, total, lambda: _rlkit_run(config, overrides, run_dir), skip)
    finally:
        model.env.close()


class _SB3Actor:
    """An SB3 model as an rlkit agent for :func:`rlkit.training.evaluation.evaluate` (deterministic actions), so both
    sides are evaluated on the very same vector envs, seeds and episode quotas."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def act(self, obs, explore: bool, episode_start=None, epsilon=None) -> np.ndarray:
        return self.model.predict(obs, deterministic=not explore)[0]


def _success_evals(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(r["step"], r["success_rate"]) for r in records if r["kind"] == "eval"]


def _rlkit_her_run(config: str, overrides: list[str], run_dir: Path, start_step: int
                   ) -> tuple[list[tuple[int, float]], float | None]:
    """rlkit's own loop: ([(step, success rate)], training env steps/s after ``start_step``, evaluations excluded)."""
    eval_times: list[float] = []
    records = _rlkit_run(config, overrides, run_dir, eval_times)
    marks = [(r["step"], r["time"], r["step"]) for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    rate = _window_rate(marks, [(r["time"], t) for r, t in zip(evals, eval_times)], start_step)
    return _success_evals(records), rate


def _sb3_her_run(cfg: Any, total: int, eval_every: int, episodes: int, log_every: int, start_step: int
                 ) -> tuple[list[tuple[int, float]], float | None]:
    """SB3's SAC + HerReplayBuffer with the config's hyperparameters on ``gym.make(id, **env.kwargs)``, evaluated
    like rlkit's loop does (same vector envs, episodes and seeds): ([(step, success rate)], training env steps/s
    after ``start_step``, evaluations excluded)."""
    from rlkit.training.build import make_vector_env
    from rlkit.training.evaluation import evaluate, evaluation_seed

    model = _sb3_her_model(cfg)
    eval_envs = make_vector_env(cfg.env, num_envs=min(episodes, 8))
    actor = _SB3Actor(model)
    def success_rate(step: int) -> float:
        return evaluate(actor, cfg.env, episodes, 0.0, seed=evaluation_seed(cfg.seed, step), envs=eval_envs)["success_rate"]

    try:
        marks, evals, eval_times = _sb3_learn_timed(model, total, log_every, eval_every, success_rate,
                                                    count=lambda step: step)
    finally:
        eval_envs.close()
        model.env.close()
    return evals, _window_rate(marks, eval_times, start_step)


def _success_at(evals: list[tuple[int, float]], step: int) -> float | None:
    """Success rate in percent at the evaluation after ``step`` env steps."""
    return next((100.0 * s for at, s in evals if at == step), None)


def _first_solve(evals: list[tuple[int, float]]) -> float | None:
    return next((float(at) for at, s in evals if s >= SAC_HER_SOLVED), None)


SAC_HER_FETCH_BUDGET = {False: (80_000, 5_000, 20, None), True: SAC_HER_BUDGETS[True]["rlkit/FetchPush-v0"]}
"""The long Fetch Push comparison (``sac-her-fetch``): env steps per side, evaluation every, episodes, learning
starts; what one session of the 2-core machine gives with the seeds trained at once (about an hour)."""


def suite_sac_her(seeds: list[int], out: Path, quick: bool, threads: int, env_ids: list[str] | None = None,
                  budgets: dict[str, tuple[int, int, int, int | None]] | None = None) -> list[Figure]:
    from rlkit.config import load_config

    if budgets is None:
        budgets = {k: v for k, v in SAC_HER_BUDGETS[quick].items() if env_ids is None or k in env_ids}
    log_every = 100 if quick else 1_000
    log = ["log.progress=false", "log.tensorboard=false", "log.plot=false", "train.save_buffer=false",
           "train.checkpoint_every=0", f"torch_threads={threads}", f"log.log_every={log_every}"]
    figures: dict[str, tuple[list[Figure], Figure, Figure, Figure]] = {}
    for env_id, (total, eval_every, _, _) in budgets.items():
        short = env_id.split("/")[1].split("-")[0]
        checkpoints = list(range(eval_every, total + 1, eval_every))
        at = [Figure(f"{short}: success rate at {step:,} env steps", "%", paired=False,
                     target=f">= {100 * SAC_HER_SOLVED:g}" if step == total and short == "PointMazeU" else "")
              for step in checkpoints]
        solve = Figure(f"{short}: env steps to the first success rate >= {SAC_HER_SOLVED} (evaluations every "
                       f"{eval_every:,})", "steps", higher_is_better=False, paired=False)
        lockstep = Figure(f"{short}: training env steps/s in lockstep (both trained side by side, turns at every "
                          "update)", "steps/s", goal=">= 2.0")
        rate = Figure(f"{short}: training env steps/s of the learning runs above (one after the other), evaluations "
                      "excluded", "steps/s")
        figures[env_id] = (at, solve, lockstep, rate)
    for seed in seeds:
        for env_id, (total, eval_every, episodes, starts) in budgets.items():
            at, solve, lockstep, rate = figures[env_id]
            config = str(configs_dir() / SAC_HER_CONFIGS[env_id])
            overrides = [*log, f"seed={seed}", f"train.total_steps={total}", f"train.eval_every={eval_every}",
                         f"train.eval_episodes={episodes}"]
            if starts is not None:
                overrides += [f"train.learning_starts={starts}", f"agent.random_steps={starts}"]
            cfg = load_config(config, overrides)
            start_step = cfg.train.learning_starts + log_every  # the first full logging window of updates
            run_dir = out / "runs" / f"sac-her-{env_id.replace('/', '_')}-rlkit-s{seed}"
            ours, ours_rate = _rlkit_her_run(config, overrides, run_dir, start_step)
            gc.collect()
            theirs, theirs_rate = _sb3_her_run(cfg, total, eval_every, episodes, log_every, start_step)
            gc.collect()
            updates = SAC_HER_LOCKSTEP_UPDATES[quick]
            ours_lock, theirs_lock = _lockstep_her_rates(config, overrides, cfg.train.learning_starts + updates,
                                                         run_dir.with_name(run_dir.name + "-lockstep"), updates // 20)
            lockstep.rlkit.append(ours_lock)
            lockstep.reference.append(theirs_lock)
            gc.collect()
            for figure in at:
                step = int(figure.name.split(" at ")[1].split()[0].replace(",", ""))
                figure.rlkit.append(_success_at(ours, step))
                figure.reference.append(_success_at(theirs, step))
            solve.rlkit.append(_first_solve(ours))
            solve.reference.append(_first_solve(theirs))
            rate.rlkit.append(ours_rate)
            rate.reference.append(theirs_rate)
            print(f"  seed {seed} {env_id}: success rlkit {[round(s, 2) for _, s in ours]}, SB3 "
                  f"{[round(s, 2) for _, s in theirs]}; training env steps/s rlkit {ours_rate or 0:.1f} vs SB3 "
                  f"{theirs_rate or 0:.1f}; in lockstep rlkit {ours_lock or 0:.1f} vs SB3 {theirs_lock or 0:.1f}",
                  flush=True)
        partial = {"suite": "sac-her", "seeds_done": seeds[: seeds.index(seed) + 1],
                   "figures": [f.summary() for at, *rest in figures.values() for f in (*at, *rest)]}
        (out / "sac-her.partial.json").write_text(json.dumps(partial, indent=1))
    return [f for at, *rest in figures.values() for f in (*at, *rest)]


def _sac_her_fetch_seed(seed: int, out: Path, quick: bool, threads: int) -> list[dict[str, Any]]:
    """One seed of ``sac-her-fetch`` in its own process (the figures as summaries, which pickle)."""
    torch.set_num_threads(threads)
    budgets = {"rlkit/FetchPush-v0": SAC_HER_FETCH_BUDGET[quick]}
    return [f.summary() for f in suite_sac_her([seed], out / f"seed{seed}", quick, threads, budgets=budgets)]


def suite_sac_her_fetch(seeds: list[int], out: Path, quick: bool, threads: int) -> list[Figure]:
    """rlkit SAC + HER vs SB3's on Fetch Push at the longer budget of ``SAC_HER_FETCH_BUDGET``: the ``sac-her``
    comparison for that env alone, each seed in its own process (all at once, one core each on the 2-core
    machine), the figures merged seed by seed."""
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork of a process whose torch threads already started
    with concurrent.futures.ProcessPoolExecutor(max_workers=len(seeds), mp_context=context) as pool:
        per_seed = list(pool.map(_sac_her_fetch_seed, seeds, [out] * len(seeds), [quick] * len(seeds),
                                 [threads] * len(seeds)))
    merged = [Figure.from_summary({**f, "rlkit": [], "reference": []}) for f in per_seed[0]]
    for figures in per_seed:
        for figure, summary in zip(merged, figures, strict=True):
            figure.rlkit += summary["rlkit"]
            figure.reference += summary["reference"]
    return merged


# --------------------------------------------------------------------------------------
# RIS vs SAC + HER on the Ant U-maze (both rlkit, same budget and replay)
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RISTask:
    """One RIS vs SAC + HER comparison: its two configs (both rlkit) and, per mode (quick?), (env steps per
    run, evaluation every, overrides that shrink the run)."""

    label: str
    configs: dict[str, str]
    budgets: dict[bool, tuple[int, int, list[str]]]


_RIS_QUICK = (1_200, 600, ["train.learning_starts=600", "agent.random_steps=600", "train.eval_episodes=1",
                           "train.batch_size=32", "train.replay.capacity=5000", "train.checkpoint_every=600",
                           "log.log_every=300"])
RIS_TASKS: dict[str, RISTask] = {
    "ris-antmaze": RISTask("AntMazeU", {"ris": "ris_antmaze_u.yaml", "sac_her": "sac_her_antmaze_u.yaml"},
                           {False: (100_000, 10_000, []), True: _RIS_QUICK}),
    "ris-pointmaze": RISTask("PointMazeMedium",
                             {"ris": "ris_pointmaze_medium.yaml", "sac_her": "sac_her_pointmaze_medium.yaml"},
                             {False: (30_000, 2_000, []), True: _RIS_QUICK}),
}
RIS_SOLVED = 0.5


def _train_to(config: str, seed: int, run_dir: Path, overrides: list[str]) -> list[str]:
    """The CLI command that brings ``run_dir`` to the budget in ``overrides``: a fresh run, or the run resumed
    from its latest checkpoint (so the suite continues across sessions: run it again to go on). A run that
    stopped before its first checkpoint cannot resume: it is moved aside (kept for its log) and started anew."""
    command = [sys.executable, "-m", "rlkit.cli", "train"]
    if (run_dir / "checkpoints" / "latest.pt").is_file():
        return [*command, "--resume", str(run_dir), *overrides]
    if run_dir.exists():
        aside = run_dir.with_name(f"{run_dir.name}.no-checkpoint-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(aside)
        print(f"  {run_dir} has no checkpoint to resume from: moved to {aside.name}, starting it anew", flush=True)
    return [*command, config, "--seed", str(seed), "--run-dir", str(run_dir), *overrides]


def _run_parallel(commands: list[tuple[str, list[str], Path]], jobs: int) -> tuple[bool, list[str]]:
    """Run the CLI commands, ``jobs`` at a time, each logging to its own file. Returns (finished, the names of
    the runs that exited with an error). Ctrl-C or SIGTERM reaches only this process (the runs have their own
    sessions) and is passed on once as SIGINT, on which a run saves a checkpoint and stops; ``finished`` is
    then False (the suite reports what the runs reached; running it again resumes them)."""
    import signal
    import subprocess

    pending, running, failed = list(commands), [], []

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name, command, log = pending.pop(0)
                print(f"  start {name}: {' '.join(command[2:])}", flush=True)
                handle = open(log, "a")
                process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
                running.append((name, process, handle))
            time.sleep(1.0)
            for entry in list(running):
                name, process, handle = entry
                if process.poll() is not None:
                    running.remove(entry)
                    handle.close()
                    if process.returncode != 0:
                        failed.append(name)
                    print(f"  {name}: exit {process.returncode}" + ("" if process.returncode == 0 else
                                                                      " (see its log)"), flush=True)
    except KeyboardInterrupt:
        print("  interrupted: the runs save a checkpoint and stop; run the suite again to resume them", flush=True)
        for _, process, _ in running:
            process.send_signal(signal.SIGINT)
        for _, process, handle in running:
            process.wait()
            handle.close()
        return False, failed
    finally:
        signal.signal(signal.SIGTERM, previous)
    return True, failed


def _training_success(records: list[dict[str, Any]], lo: int, hi: int) -> float | None:
    """Success rate in percent of the training episodes that ended in env steps ``(lo, hi]`` (goals uniform over
    the maze, the training distribution). An episode record's step counts the env steps before its last one."""
    ended = [r["success"] for r in records if r["kind"] == "episode" and lo <= r["step"] < hi and "success" in r]
    return 100.0 * float(np.mean(ended)) if ended else None


def suite_ris(task: RISTask, seeds: list[int], out: Path, quick: bool, threads: int
              ) -> tuple[list[Figure], dict[str, Any]]:
    """RIS vs SAC + HER (both rlkit) at equal env steps: every run at once as its own process, resumed from its
    checkpoint when the suite runs again; test-task success per evaluation, training-goal success per window."""
    total, eval_every, shrink = task.budgets[quick]
    label = task.label
    jobs = len(task.configs) * len(seeds)  # all at once, each with an equal share of the cores
    commands, run_dirs = [], {}
    for seed in seeds:
        for algo, config in task.configs.items():
            run_dir = out / ("runs-quick" if quick else "runs") / f"{algo}_s{seed}"  # never resume across modes
            run_dirs[algo, seed] = run_dir
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            overrides = [f"train.total_steps={total}", f"train.eval_every={eval_every}", f"torch_threads={threads}",
                         "log.progress=false", *shrink]
            commands.append((f"{algo} seed {seed}", _train_to(str(configs_dir() / config), seed, run_dir, overrides),
                             run_dir.with_suffix(".log")))
    finished, failed = _run_parallel(commands, jobs)
    if not finished:
        print("  reporting the steps the runs reached (the suite is not finished)", flush=True)

    steps = list(range(eval_every, total + 1, eval_every))
    at = [Figure(f"{label} test task: success rate at {step:,} env steps", "%", paired=False) for step in steps]
    train_at = [Figure(f"{label} training goals: success of the episodes ended in ({step - eval_every:,}, {step:,}]",
                       "%", paired=False) for step in steps]
    solve = Figure(f"{label} test task: env steps to the first success rate >= {RIS_SOLVED}", "steps",
                   higher_is_better=False, paired=False)
    rate = Figure(f"{label}: training env steps/s (run wall time over steps; both ran at once, sharing the cores)",
                  "steps/s", paired=False)
    reached: dict[str, int] = {}
    for seed in seeds:
        for algo in task.configs:
            path = run_dirs[algo, seed] / "metrics.jsonl"
            records = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
            evals = _success_evals(records)
            side = "rlkit" if algo == "ris" else "reference"
            for figure, step in zip(at, steps):
                getattr(figure, side).append(_success_at(evals, step))
            for figure, step in zip(train_at, steps):
                getattr(figure, side).append(_training_success(records, step - eval_every, step))
            getattr(solve, side).append(next((float(s) for s, v in evals if v >= RIS_SOLVED), None))
            last = records[-1] if records else None  # time: training wall seconds, summed over resumes
            getattr(rate, side).append(last["step"] / last["time"] if last and last.get("time") else None)
            reached[f"{algo} seed {seed}"] = max((r["step"] for r in records), default=0)
            print(f"  {algo} seed {seed}: test success {[(s, round(v, 2)) for s, v in evals]}", flush=True)
    figures = [*at, *train_at, solve, rate]
    if failed:
        return figures, {"complete": False, "failed": failed,
                         "status": f"runs failed: {', '.join(failed)} (see their logs under {out})"}
    behind = {name: step for name, step in reached.items() if step < total}
    if not finished or behind:
        where = ", ".join(f"{name} {step:,}" for name, step in reached.items())
        return figures, {"complete": False, "status": f"partial: the runs reached {where} of {total:,} env steps "
                                                      "(figures past that are empty); repeating the command "
                                                      "continues them"}
    return figures, {"complete": True}


# --------------------------------------------------------------------------------------
# Running, reporting
# --------------------------------------------------------------------------------------

SUITES: dict[str, Callable[..., list[Figure]]] = {
    "dqn-cartpole": lambda seeds, out, quick, threads: suite_dqn_cartpole(seeds, out, quick),
    "dqn-throughput": suite_dqn_throughput,
    "atari-collect": suite_atari_collect,
    "replay": suite_replay,
    "sac": suite_sac,
    "sac-her": suite_sac_her,
    "sac-her-fetch": suite_sac_her_fetch,
    "ris-antmaze": functools.partial(suite_ris, RIS_TASKS["ris-antmaze"]),
    "ris-pointmaze": functools.partial(suite_ris, RIS_TASKS["ris-pointmaze"]),
}
LONG_SUITES = frozenset({"sac-her-fetch", "ris-antmaze", "ris-pointmaze"})
"""Left out of ``rlkit bench all``: an hour or more of training each on a CPU (run on their own; the RIS suites
resume their runs when repeated, ``sac-her-fetch`` starts over)."""

DOC_NOTES = {
    "sac": "rlkit SAC (configs/sac_pendulum.yaml, configs/sac_halfcheetah.yaml) vs SB3 SAC, both with "
           "rl-baselines3-zoo's hyperparameters (Pendulum-v1: lr 1e-3; HalfCheetah-v5: learning_starts 10,000; the "
           "rest SB3's defaults: batch 256, 256x256 nets, tau 0.005, auto entropy, one update per env step, uniform "
           "random actions until learning starts) at the same env-step budget, seeds interleaved in one process. Final "
           "return: the last deterministic evaluation (10 episodes; Pendulum as cost = -return, lower is better). "
           "Training updates/s: over the run after the first logging window of updates, each side's evaluation "
           "time subtracted (includes acting, env steps, replay writes and sampling); runs minutes apart on a shared "
           "machine meet different loads, so the throughput goal is read from the lockstep runs: rlkit and SB3 "
           "trained side by side in one process (two threads taking turns at every update, no evaluations, "
           f"{SAC_LOCKSTEP_UPDATES[False]:,} updates each after the same learning_starts), each side's own time "
           "only. Update step alone: rlkit's "
           "replay sampling + SAC.update (batch 256) vs SB3's train(gradient_steps=1), which also samples its replay "
           "buffer; the compute limit is SAC.update alone on a fixed synthetic batch of 256; all three timed in the "
           "same process right after the runs, 10 s each in 10 alternating 1-s slices; the share of the compute "
           "limit is training updates/s over update-alone updates/s. Inside the update during training: each "
           "side's update call (SAC.update; SB3's train) wrapped in a timer during the run itself, so the share "
           "of training time spent updating does not depend on the load drifting between the run and the "
           "update-alone timing (the machine is shared).",
    "sac-her-fetch": "rlkit SAC + HER (configs/sac_her_fetch_push.yaml) vs SB3's SAC + HerReplayBuffer on "
                     "rlkit/FetchPush-v0, the sac-her comparison for that env alone at a longer budget (80,000 env "
                     "steps per side, evaluation every 5,000 env steps, 20 episodes): every hyperparameter read from "
                     "the rlkit config for both sides, one env each, 50-step episodes. Each seed runs in its own process, all at once; within "
                     "a process rlkit's run, then SB3's, then the lockstep throughput run (both trained side by side, "
                     "turns at every update). Success rate: the share of evaluation episodes whose last step reports "
                     "info['is_success'], deterministic actions, both sides through rlkit.training.evaluation.evaluate on the "
                     "same episodes (evaluation_seed). Fetch Push's chance level: the episodes whose object starts "
                     "within 0.05 m of the goal (about 5-15% of 20 episodes).",
    "sac-her": "rlkit SAC + HER (configs/sac_her_pointmaze.yaml, configs/sac_her_fetch_push.yaml) vs SB3's SAC "
               "('MultiInputPolicy') + HerReplayBuffer, every hyperparameter read from the rlkit config for both sides "
               "(batch, learning rate, gamma, tau, network widths, learning_starts = uniform random steps, one update per "
               "env step, buffer size, 'future' goals with n_sampled_goal 4 = relabel_ratio 0.8, auto entropy from 1.0), "
               "one env each, the same env id and kwargs (PointMaze: terminate_on_success false, 300-step episodes; "
               "Fetch Push: 50-step episodes, never terminates), seeds interleaved in one process (rlkit s0, SB3 s0, "
               "rlkit s1, ...). Success rate: the share of evaluation episodes whose last step reports "
               "info['is_success'], deterministic actions, both sides through rlkit.training.evaluation.evaluate on the same "
               "vector envs, episodes and seeds (SB3's model.predict as the actor). Training env steps/s: from the end "
               "of the first 1,000-step logging window after learning starts to the end of the run, each side's "
               "evaluation time subtracted (includes acting, env steps, replay writes, HER sampling and the updates); "
               "runs minutes apart on a shared machine meet different loads, so the throughput goal is read from the "
               "lockstep runs: both trained side by side in one process (two threads taking turns at every update, no "
               f"evaluations, {SAC_HER_LOCKSTEP_UPDATES[False]:,} updates each after learning_starts), each side's "
               "own time only. "
               "Learning outcomes are unpaired (seeds do not correspond across libraries).",
    "ris-antmaze": "RIS (the 'rlkit' column: configs/ris_antmaze_u.yaml) vs SAC + HER (the 'reference' column: "
                   "configs/sac_her_antmaze_u.yaml), both rlkit, on rlkit/AntMazeU-v0 (gymnasium-robotics' Ant in D4RL's "
                   "U maze, RIS's protocol: success and episode end at xy distance < 0.5, 600-step episodes) at the same "
                   "env-step budget, batch 256 (RIS's paper: 2048), replay as RIS's reference (80% relabelled: half "
                   "future states, half states from the whole buffer; terminations recomputed for the new goal), "
                   "gamma 0.99, lr 1e-3 for critic and actor, 10,000 uniform random steps first, one update per env "
                   "step. Test task: RIS's (start at the end of one arm of the U, goal at the end of the other), 10 "
                   "deterministic episodes every 10,000 env steps. Training goals: the training episodes' own "
                   "success (goals uniform over the maze). All runs train at once as separate processes sharing the "
                   "cores; the suite resumes runs from their checkpoints, so repeating the command continues them.",
    "ris-pointmaze": "RIS (the 'rlkit' column: configs/ris_pointmaze_medium.yaml) vs SAC + HER (the 'reference' "
                     "column: configs/sac_her_pointmaze_medium.yaml), both rlkit, on rlkit/PointMazeMedium-v0 (the "
                     "2-D point mass in D4RL's medium maze, 8x8 cells of 1 m; success and episode end at xy < 0.45, "
                     "600-step episodes) at the same env-step budget: batch 256, gamma 0.99, lr 1e-3, 1,000 random "
                     "steps, replay as RIS's reference (80% relabelled: half future states, half states from the whole "
                     "buffer; terminations recomputed). Test task: from one far corner of the maze to the other "
                     "(cells (1,1) -> (6,6)), 20 deterministic episodes every 2,000 env steps. All runs train at once "
                     "as separate processes sharing the cores; repeating the command resumes them.",
    "dqn-cartpole": "rlkit DQN vs SB3 DQN, both with rl-baselines3-zoo's CartPole-v1 hyperparameters, and rlkit's "
                    "tuned config (configs/dqn_cartpole.yaml) against the same SB3 runs. Evaluation every 2,500 env "
                    "steps, 10 deterministic episodes; 'solved' = first evaluation mean >= 475. rlkit's zoo run stops "
                    "at the solve; SB3 and rlkit's tuned config train the full 50,000 steps, so their runs also give "
                    "the stability figures: the final evaluation, and the share of evaluations >= 475 from the first "
                    "solve on. Times are training only: each side's evaluation time is measured and subtracted "
                    "(rlkit evaluates on 8 vectorized envs, SB3's EvalCallback steps one env with a predict per "
                    "step; the last row shows what one evaluation costs each). No checkpoints in rlkit's runs.",
    "dqn-throughput": "Env steps/s over a window after learning starts (CartPole: steps 2,000-20,000; Pong: "
                      "3,000-6,000 with learning from 2,000), equal hyperparameters and updates per transition. Pong: "
                      "rlkit's native ALE vector env (1 ALE thread) vs SB3's make_atari_env (DummyVecEnv) + "
                      "VecFrameStack, both without terminal-on-life-loss, clipped rewards, buffer 50k.",
    "atari-collect": "rlkit's collection path (ALE vector env + rlkit wrapper, Nature-CNN epsilon-greedy policy, "
                     "replay writes) vs ALE's raw AtariVectorEnv stepping random actions, same envs and ALE threads. "
                     "The policy network runs only for the envs that act greedily, so epsilon 1 measures the path "
                     "without any forward pass.",
    "replay": "A buffer of 84x84x4 uint8 Atari observations filled by 8 envs, then sampled; memory is the resident-set "
              "growth while filling. SB3's default buffer stores obs and next_obs; optimize_memory_usage stores each "
              "stacked obs once; rlkit stores each 84x84 frame once and rebuilds stacks when sampling.",
}


SMOKE = "SMOKE RUN (--quick: tiny budgets, checks the harness, measures nothing)"


class _LinePrefix(io.TextIOBase):
    """A stdout that starts every line with a label (``--quick`` output must never read as results)."""

    def __init__(self, stream: Any, label: str) -> None:
        self.stream, self.label, self.at_line_start = stream, label, True

    def write(self, text: str) -> int:
        pieces = []
        for piece in text.splitlines(keepends=True):
            if self.at_line_start:
                pieces.append(self.label)
            pieces.append(piece)
            self.at_line_start = piece.endswith("\n")
        self.stream.write("".join(pieces))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _labelled(quick: bool):
    return contextlib.redirect_stdout(_LinePrefix(sys.stdout, f"[{SMOKE}] ")) if quick else contextlib.nullcontext()


def run_suite(name: str, seeds: list[int], out: Path, quick: bool = False, threads: int = 1,
              docs: Path | None = None) -> dict[str, Any]:
    with _labelled(quick):
        return _run_suite(name, seeds, out, quick, threads, docs)


def _run_suite(name: str, seeds: list[int], out: Path, quick: bool, threads: int, docs: Path | None) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)  # the same for both sides: they run in this process
    print(f"[{name}] seeds {seeds}, torch threads {threads} for rlkit and the reference, out {out}", flush=True)
    started = time.perf_counter()
    figures = SUITES[name](seeds, out, quick, threads)
    status: dict[str, Any] = {}
    if isinstance(figures, tuple):  # a suite that can end unfinished says how (e.g. ris-antmaze)
        figures, status = figures
    result = {"suite": name, "seeds": seeds, "quick": quick, "machine": machine_info(threads), **status,
              "command": f"rlkit bench {name} --seeds {len(seeds)} --threads {threads}" + (" --quick" if quick else ""),
              "duration_s": round(time.perf_counter() - started, 1), "figures": [f.summary() for f in figures],
              "notes": DOC_NOTES[name]}
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    plot_ratios(result, out / f"{name}.png")
    print(markdown_section(result), flush=True)
    if docs is not None and not quick and not status.get("failed"):
        update_docs(docs, result)
    return result


def report(name: str, out: Path, docs: Path | None) -> dict[str, Any]:
    """Re-render a suite's PNG and docs section from its saved JSON (raw values), without running it."""
    path = Path(out) / f"{name}.json"
    if not path.is_file():
        from rlkit.errors import ConfigError

        raise ConfigError(f"no results at '{path}': run `rlkit bench {name}` first")
    result = json.loads(path.read_text())
    with _labelled(result.get("quick", False)):
        return _report(name, out, docs, path, result)


def _report(name: str, out: Path, docs: Path | None, path: Path, result: dict[str, Any]) -> dict[str, Any]:
    result["figures"] = [Figure.from_summary(f).summary() for f in result["figures"]]
    result["notes"] = DOC_NOTES[name]
    path.write_text(json.dumps(result, indent=1))
    plot_ratios(result, Path(out) / f"{name}.png")
    print(markdown_section(result), flush=True)
    if docs is not None and not result["quick"] and not result.get("failed"):
        update_docs(docs, result)
    return result


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("s", "GB"):
        return f"{value:.1f}" if unit == "s" and value >= 10 else f"{value:.2f}"
    return f"{value:,.0f}"


def markdown_section(result: dict[str, Any]) -> str:
    m = result["machine"]
    title = f"### `{result['suite']}`" + (f" — {SMOKE}" if result.get("quick") else "")
    lines = [title, "",
             f"Command: `{result['command']}` — {m['date']}, {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
             f"({m['torch_threads']} thread(s) for both sides), SB3 {m['sb3']}, Python {m['python']}, {m['device']}.",
             "", result["notes"], "",
             *([f"**Not complete — {result['status']}.**", ""] if result.get("status") else []),
             "| figure | rlkit (median) | reference (median) | ratio rlkit/ref: median [min..max] | goal | met |",
             "|---|---|---|---|---|---|"]
    for f in result["figures"]:
        ratio = (f"{f['ratio_median']:.2f} [{f['ratio_min']:.2f}..{f['ratio_max']:.2f}]"
                 + ("" if f.get("paired", True) else " †") if "ratio_median" in f else "—")
        goal, met = f["goal"] or "", {True: "yes", False: "**miss**"}.get(f.get("goal_met"), "")
        if f.get("target"):  # an absolute requirement on every seed, shown for both sides
            goal = f"every seed {f['target']}"
            met = ({True: "yes", False: "**miss**"}[f["target_met_rlkit"]]
                   + f" (reference: {'yes' if f['target_met_reference'] else 'no'})")
        lines.append(f"| {f['name']} ({f['unit']}) | {_fmt(_median(f['rlkit']), f['unit'])} | "
                     f"{_fmt(_median(f['reference']), f['unit'])} | {ratio} | {goal} | {met} |")
    if any(not f.get("paired", True) for f in result["figures"]):
        lines += ["", "† unpaired (learning outcomes; seeds do not correspond across libraries): "
                      "median(rlkit) / median(reference), spread = extreme ratios."]
    per_seed = [f for f in result["figures"] if len(f["rlkit"]) > 1]
    if per_seed:
        lines += ["", "Per seed (rlkit / reference): " + "; ".join(
            f"{f['name']}: " + ", ".join(f"{_fmt(a, f['unit'])}/{_fmt(b, f['unit'])}" for a, b in zip(f["rlkit"], f["reference"]))
            for f in per_seed)]
    return "\n".join(lines) + "\n"


def update_docs(path: Path, result: dict[str, Any]) -> None:
    """Replace this suite's section between its markers in docs/benchmarks.md (append if absent)."""
    start, end = f"<!-- bench:{result['suite']}:start -->", f"<!-- bench:{result['suite']}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{markdown_section(result)}{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def plot_ratios(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figures = [f for f in result["figures"] if "ratio_median" in f]
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.5 * max(len(figures), 1)))
    for i, f in enumerate(figures):
        ax.plot([f["ratio_min"], f["ratio_max"]], [i, i], color="0.6", linewidth=3)
        ax.plot(f["ratio_median"], i, "o", color="tab:blue" if f.get("goal_met", True) else "tab:red")
        if f["goal"]:
            ax.plot(float(f["goal"].split()[1]), i, "|", color="tab:green", markersize=14)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(figures)), [f["name"] for f in figures], fontsize=7)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labelled ticks at powers of 2 only
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("ratio rlkit / reference (green: goal)")
    ax.set_title(f"rlkit bench {result['suite']}" + (f"\n{SMOKE}" if result.get("quick") else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
