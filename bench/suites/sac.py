"""Suite ``sac``: rlkit SAC vs SB3 SAC (zoo hyperparameters) on Pendulum-v1 and HalfCheetah-v5: learning outcome at
equal env steps, training updates/s (lockstep and separate runs), the update step alone, and the share of the
update's own rate that training reaches."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from rlkit.bench.figures import Figure
from rlkit.bench.rlkit_side import rlkit_run
from rlkit.bench.sb3_side import sb3_learn_timed
from rlkit.bench.timing import UpdateTimer, interleaved_rates, lockstep, window_rate
from rlkit.config import configs_dir


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


def _rlkit_sac_run(config: str, overrides: list[str], run_dir: Path, start_step: int
                   ) -> tuple[list[tuple[int, float]], float | None, float | None]:
    """rlkit's own loop: ([(step, eval mean)], training updates/s after ``start_step``, updates/s inside
    ``SAC.update`` during the run)."""
    from rlkit.agents import SAC

    eval_times: list[float] = []
    update = SAC.update
    timer = UpdateTimer(update)
    SAC.update = lambda self, *args, **kwargs: timer(self, *args, **kwargs)
    try:
        records = rlkit_run(config, overrides, run_dir, eval_times)
    finally:
        SAC.update = update
    marks, updates = [], 0
    for r in records:
        if r["kind"] == "train":
            updates += r.get("updates", 0)
            marks.append((r["step"], r["time"], updates))
    evals = [r for r in records if r["kind"] == "eval"]
    rate = window_rate(marks, [(r["time"], t) for r, t in zip(evals, eval_times)], start_step)
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
    timer = model.train = UpdateTimer(model.train)  # train(gradient_steps=1, ...) once per env step
    eval_env = Monitor(gym.make(env_id))
    eval_env.reset(seed=seed + 100_000)
    def evaluate_mean(step: int) -> float:
        return float(evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)[0])

    marks, evals, eval_times = sb3_learn_timed(model, total, log_every, eval_every, evaluate_mean,
                                               count=lambda step: model._n_updates)
    return evals, window_rate(marks, eval_times, start_step), timer.rate()


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


def _lockstep_sac_rates(env_id: str, seed: int, total: int, starts: int, threads: int, run_dir: Path,
                        skip: int = 100) -> tuple[float | None, float | None]:
    """Training updates/s of rlkit and SB3 (same zoo hyperparameters, no evaluations) trained side by side
    in lockstep (:class:`Baton`): rlkit's loop in this thread (it installs signal handlers), SB3's in a
    worker thread. Returns (rlkit, SB3) updates/s of own time after each side's first ``skip`` updates."""
    model = _sb3_sac(env_id, seed, starts)
    overrides = ["log.progress=false", "log.tensorboard=false", "log.plot=false", "train.save_buffer=false",
                 "train.checkpoint_every=0", f"torch_threads={threads}", "train.eval_every=0", "train.eval_episodes=1",
                 f"seed={seed}", f"train.total_steps={total}", f"train.learning_starts={starts}",
                 f"agent.random_steps={starts}"]
    from rlkit.agents import SAC

    return lockstep(SAC, model, total,
                    lambda: rlkit_run(str(configs_dir() / SAC_CONFIGS[env_id]), overrides, run_dir), skip)


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
            ours_limit, ours_step, theirs_limit = interleaved_rates(
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
            for figure, ours, theirs in ((train_rate, ours_rate, theirs_rate), (alone, ours_step, theirs_limit),
                                         (share, ours_rate, ours_limit), (sb3_share, theirs_rate, theirs_limit),
                                         (inside, ours_rate, ours_inside), (sb3_inside, theirs_rate, theirs_inside)):
                figure.rlkit.append(ours)
                figure.reference.append(theirs)
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


NOTES = (
    "rlkit SAC (configs/sac_pendulum.yaml, configs/sac_halfcheetah.yaml) vs SB3 SAC, both with "
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
    "update-alone timing (the machine is shared)."
)
