"""Suite ``replay``: sampling rate and memory of rlkit's replay buffer vs SB3's ``ReplayBuffer`` on Atari frames."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rlkit.bench.figures import Figure


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


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


NOTES = (
    "A buffer of 84x84x4 uint8 Atari observations filled by 8 envs, then sampled; memory is the resident-set "
    "growth while filling. SB3's default buffer stores obs and next_obs; optimize_memory_usage stores each "
    "stacked obs once; rlkit stores each 84x84 frame once and rebuilds stacks when sampling."
)
