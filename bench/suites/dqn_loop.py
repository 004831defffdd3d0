"""Suite ``dqn-loop``: the DQN CartPole loop's env steps/s as a share of its compute limit, measured in the same run
(issue 22). The compute limit is ``DQN.update`` timed alone: at ``gradient_steps / train_every`` updates per env
step, the loop can never collect faster than ``alone updates/s * train_every / gradient_steps`` env steps/s, so
that rate is the limit and everything else the loop does per step (acting, env stepping, replay writes, replay
sampling, logging) is overhead.

Both sides are timed in one process, interleaved: the training run is cut at the first update of every
``chunk_phases``-th update phase (after learning starts, inside the window), and there the update is timed alone
for ``alone_updates`` calls — on a copy of the agent, on one batch the loop itself sampled (no generator of the run
is touched, so the run trains exactly as it would untimed) — and that slice's time is left out of the loop's
clock. Load drifting on a shared machine thus meets both sides alike, chunk by chunk."""

from __future__ import annotations

import copy
import gc
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlkit.bench.figures import Figure
from rlkit.config import configs_dir

QUIET = ["log.progress=false", "log.tensorboard=false", "log.plot=false", "train.save_buffer=false",
         "train.eval_every=0", "train.checkpoint_every=0"]


@dataclass
class LoopShare:
    """What :func:`measure_loop_share` measured: per chunk of the window, the loop's env steps/s and the update's
    rate alone in the slice that followed it."""

    updates_per_step: float
    chunks: list[tuple[int, float, float]] = field(default_factory=list)
    """(env step at the chunk's start, loop env steps/s over the chunk, update-alone updates/s right after it)."""
    steps: int = 0
    loop_seconds: float = 0.0
    alone_updates: int = 0
    alone_seconds: float = 0.0
    loop_cpu_seconds: float = 0.0
    """The process's CPU time over the chunks (``time.process_time``): what the loop cost with the waits for a core
    on a loaded machine left out."""
    alone_cpu_seconds: float = 0.0
    update_seconds: float = 0.0
    """Time inside the loop's own ``agent.update`` calls over the window's chunks."""
    updates_in_window: int = 0

    @property
    def loop_sps(self) -> float:
        return self.steps / max(self.loop_seconds, 1e-9)

    @property
    def limit_sps(self) -> float:
        return self.alone_updates / max(self.alone_seconds, 1e-9) / self.updates_per_step

    @property
    def share(self) -> float:
        return self.loop_sps / self.limit_sps

    @property
    def cpu_share(self) -> float:
        """The share by CPU time on both sides (robust to other processes taking the cores)."""
        return (self.steps / max(self.loop_cpu_seconds, 1e-9)) / (
            self.alone_updates / max(self.alone_cpu_seconds, 1e-9) / self.updates_per_step)

    def chunk_shares(self) -> list[float]:
        return [sps / (alone / self.updates_per_step) for _, sps, alone in self.chunks]

    def summary(self) -> dict[str, Any]:
        shares = self.chunk_shares()
        return {"loop_sps": self.loop_sps, "limit_sps": self.limit_sps, "share": self.share,
                "cpu_share": self.cpu_share,
                "update_ms_alone": 1e3 * self.alone_seconds / max(self.alone_updates, 1),
                "update_ms_in_loop": 1e3 * self.update_seconds / max(self.updates_in_window, 1),
                "chunk_share_median": float(np.median(shares)) if shares else None,
                "chunk_share_min": float(np.min(shares)) if shares else None,
                "chunk_share_max": float(np.max(shares)) if shares else None, "chunks": len(shares)}


def measure_loop_share(config: str, overrides: list[str], run_dir: Path, window: tuple[int, int],
                       chunk_phases: int = 4, alone_updates: int = 128) -> LoopShare:
    """Run ``config`` through ``train_online`` and measure its share of the compute limit (module docstring).
    ``window``: env steps [start, end] whose update phases are timed."""
    from rlkit.config import load_config
    from rlkit.training import loops

    cfg = load_config(config, [*QUIET, *overrides])
    train = cfg.train
    result = LoopShare(updates_per_step=train.gradient_steps / train.train_every)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    build_agent = loops.build_agent
    state: dict[str, Any] = {"phase": 0, "last_step": -1, "mark": None, "mark_phase": 0, "shadow": None,
                             "batch": None, "in_window": False}

    def timed_alone(agent, batch) -> tuple[int, float]:
        if state["shadow"] is None:  # a copy: the run's own agent and generators are never touched
            state["shadow"], state["batch"] = copy.deepcopy(agent), batch
        shadow, fixed = state["shadow"], state["batch"]
        update = type(shadow).update
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(alone_updates):
            update(shadow, fixed)
        result.alone_cpu_seconds += time.process_time() - cpu
        return alone_updates, time.perf_counter() - start

    def wrap(agent) -> None:
        update = agent.update

        def timed_update(batch):
            step = agent.env_steps
            if step != state["last_step"]:  # the first update of a phase
                state["last_step"] = step
                now, cpu = time.perf_counter(), time.process_time()
                if state["mark"] is not None and state["phase"] - state["mark_phase"] == chunk_phases:
                    # a chunk of chunk_phases whole phases ended: its rate, then the update alone right after
                    step0, t0, cpu0 = state["mark"]
                    result.loop_cpu_seconds += cpu - cpu0
                    sps = (step - step0) / max(now - t0, 1e-9)
                    result.steps += step - step0
                    result.loop_seconds += now - t0
                    n, seconds = timed_alone(agent, batch)
                    result.alone_updates += n
                    result.alone_seconds += seconds
                    result.chunks.append((step0, sps, n / seconds))
                    state["mark"] = None
                if state["mark"] is None and window[0] <= step \
                        and step + chunk_phases * train.train_every <= window[1]:
                    state["mark"] = (step, time.perf_counter(), time.process_time())
                    state["mark_phase"] = state["phase"]
                state["in_window"] = state["mark"] is not None
                state["phase"] += 1
            if not state["in_window"]:
                return update(batch)
            t0 = time.perf_counter()
            try:
                return update(batch)
            finally:
                result.update_seconds += time.perf_counter() - t0
                result.updates_in_window += 1

        agent.update = timed_update

    def capturing_build_agent(*args, **kwargs):
        agent = build_agent(*args, **kwargs)
        wrap(agent)
        return agent

    loops.build_agent = capturing_build_agent
    try:
        loops.train_online(cfg, run_dir)
    finally:
        loops.build_agent = build_agent
    return result


def suite_dqn_loop(seeds: list[int], out: Path, quick: bool, threads: int) -> list[Figure]:
    total = 4_000 if quick else 20_000
    window = (1_000, total) if quick else (2_000, total)
    fig = Figure("CartPole (zoo) training env steps/s vs the compute limit (DQN.update alone, 2 env steps per "
                 "update): share of the limit", "steps/s", goal=">= 0.9")
    for seed in seeds:
        measured = measure_loop_share(str(configs_dir() / "dqn_cartpole_zoo.yaml"),
                                      [f"train.total_steps={total}", f"seed={seed}", f"torch_threads={threads}"],
                                      out / "runs" / f"loop-cart-s{seed}", window)
        s = measured.summary()
        fig.rlkit.append(s["loop_sps"])
        fig.reference.append(s["limit_sps"])
        print(f"  seed {seed}: loop {s['loop_sps']:.0f} env steps/s, limit {s['limit_sps']:.0f} (update alone "
              f"{s['update_ms_alone']:.3f} ms, in the loop {s['update_ms_in_loop']:.3f} ms): share {s['share']:.3f} "
              f"(by CPU time {s['cpu_share']:.3f}), "
              f"per chunk median {s['chunk_share_median']:.3f} [{s['chunk_share_min']:.3f}..{s['chunk_share_max']:.3f}]"
              f" over {s['chunks']} chunks", flush=True)
        gc.collect()
    return [fig]


NOTES = (
    "rlkit's DQN loop (train_online, configs/dqn_cartpole_zoo.yaml: 128 updates every 256 env steps, batch 64, "
    "[256, 256]; no evaluations, checkpoints, progress bar or TensorBoard) over env steps 2,000-20,000. Reference "
    "column: the compute limit, DQN.update timed alone (on a copy of the agent, one batch the loop sampled) "
    "x 2 env steps per update, measured in the same process in slices of 128 updates after every 4 update "
    "phases (1,024 env steps) of the loop, whose clock leaves the slices out. The ratio is the loop's share of "
    "its compute limit; everything outside DQN.update (acting, env steps, replay writes and sampling, logging) "
    "is what keeps it below 1."
)


# --------------------------------------------------------------------------------------
# MPO: the update's parts, its compute limit and the loop's share of it (issue 22), SB3 SAC's update beside it
# --------------------------------------------------------------------------------------


def mpo_update_parts(agent, batch, repeats: int = 50) -> dict[str, float]:
    """Milliseconds per update of each part of ``MPO.update`` (agents/mpo.py), timed by running the update's own
    steps in order with a clock between them, on a copy of ``agent`` (the caller's agent is not touched)."""
    import torch

    from rlkit.agents.mpo import gaussian_kl, kl_penalty_and_dual_loss, temperature_dual

    agent = copy.deepcopy(agent)
    cfg, parts = agent.cfg, {}

    def once() -> None:
        marks = [time.perf_counter()]

        def mark(name: str) -> None:
            marks.append(time.perf_counter())
            parts[name] = parts.get(name, 0.0) + marks[-1] - marks[-2]

        obs, next_obs = agent.encoder(batch.obs), agent.encoder(batch.next_obs)
        actions = agent.actions.normalize(batch.actions)
        B, N = obs.shape[0], cfg.num_samples
        mark("encode observations")
        with torch.no_grad():
            target_mean, target_std = agent.target_policy(next_obs)
            noise = torch.randn((N, B, agent.act_dim), generator=agent.generator, device=agent.device)
            sampled = target_mean + target_std * noise
            mark(f"target policy + {N} action samples per state")
            sampled_q = agent.target_critic(next_obs, sampled)
            mark(f"target critic on the {N} x B samples")
        target = batch.rewards + batch.discounts * sampled_q.mean(dim=0)
        q = agent.critic(obs, actions)
        critic_loss = 0.5 * (batch.weights * (q - target) ** 2).mean()
        mark("critic forward + loss")
        agent._clip(agent.optimize("critic_optimizer", critic_loss, batch, cfg.max_grad_norm))
        mark("critic backward + clip + Adam")
        temperature, alpha_mean, alpha_stddev, penalty_temperature = agent._dual_values()
        weights, loss_temperature = temperature_dual(sampled_q, cfg.epsilon, temperature)
        policy_weights = weights
        if cfg.action_penalization:
            cost = -torch.linalg.vector_norm(sampled - sampled.clamp(-1.0, 1.0), dim=-1)
            penalty_weights, loss_penalty = temperature_dual(cost, cfg.epsilon_penalty, penalty_temperature)
            policy_weights = weights + penalty_weights
            loss_temperature = loss_temperature + loss_penalty
        mark("E-step (temperature duals, weights)")
        online_mean, online_std = agent.policy(next_obs.detach())
        log_prob_mean = torch.distributions.Normal(online_mean, target_std).log_prob(sampled).sum(-1)
        log_prob_std = torch.distributions.Normal(target_mean, online_std).log_prob(sampled).sum(-1)
        loss_policy = -(policy_weights * (log_prob_mean + log_prob_std)).sum(dim=0).mean()
        kl_mean = gaussian_kl(target_mean, target_std, online_mean, target_std)
        kl_stddev = gaussian_kl(target_mean, target_std, target_mean, online_std)
        if not cfg.per_dim_constraining:
            kl_mean, kl_stddev = kl_mean.sum(dim=-1), kl_stddev.sum(dim=-1)
        loss_kl_mean, loss_alpha_mean = kl_penalty_and_dual_loss(kl_mean, alpha_mean, cfg.epsilon_mean)
        loss_kl_stddev, loss_alpha_stddev = kl_penalty_and_dual_loss(kl_stddev, alpha_stddev, cfg.epsilon_stddev)
        mark(f"M-step forward (policy, log-probs of the {N} samples, KLs)")
        agent._clip(agent.optimize("policy_optimizer", loss_policy + loss_kl_mean + loss_kl_stddev, batch,
                                   cfg.max_grad_norm))
        mark("M-step backward + clip + Adam")
        agent.optimize("dual_optimizer", loss_temperature + loss_alpha_mean + loss_alpha_stddev)
        mark("dual variables backward + Adam")
        agent.updates += 1
        if agent.updates % cfg.target_update_every == 0:
            agent.update_target("target_policy", 1.0)
            agent.update_target("target_critic", 1.0)
        mark("target copies (every target_update_every)")

    for _ in range(5):
        once()
    parts.clear()
    for _ in range(repeats):
        once()
    return {name: 1e3 * seconds / repeats for name, seconds in parts.items()}


def mpo_report(config: str, overrides: list[str], run_dir: Path, total: int, window: tuple[int, int]) -> dict[str, Any]:
    """MPO's loop share of its compute limit (``measure_loop_share``: chunks of 200 updates, 50 alone after each),
    then the update's parts and, interleaved in 10 slices, MPO's update alone vs SB3 SAC's ``train(gradient_steps=1)``
    (batch 256, [256, 256], sampling its replay buffer) on the same env."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC as SB3SAC

    from rlkit.bench.timing import interleaved_rates

    seen: dict[str, Any] = {}
    from rlkit.training import loops

    build_agent = loops.build_agent

    def keep(*args, **kwargs):
        seen["agent"] = build_agent(*args, **kwargs)
        return seen["agent"]

    loops.build_agent = keep
    try:
        share = measure_loop_share(config, [f"train.total_steps={total}", *overrides], run_dir, window,
                                   chunk_phases=200, alone_updates=50)
    finally:
        loops.build_agent = build_agent
    agent = seen["agent"]
    from rlkit.config import load_config
    from rlkit.training.build import build_replay

    cfg = load_config(config, [*QUIET, *overrides])
    env = gym.make(cfg.env.id, **cfg.env.kwargs)
    replay = build_replay(cfg, env.observation_space, env.action_space, 1, torch.device("cpu"))
    obs, _ = env.reset(seed=0)
    autoreset = np.zeros(1, bool)
    for _ in range(2_000):  # a batch of real transitions for the timing
        action = env.action_space.sample()
        next_obs, reward, term, trunc, _ = env.step(action)
        replay.add(obs[None], action[None], np.array([reward]), np.array([term]), np.array([trunc]), autoreset)
        autoreset = np.array([term or trunc])
        obs = env.reset()[0] if term or trunc else next_obs
    batch = replay.sample(cfg.train.batch_size)
    parts = mpo_update_parts(agent, batch)
    shadow = copy.deepcopy(agent)
    mpo_update = type(shadow).update
    sac = SB3SAC("MlpPolicy", env, batch_size=256, learning_starts=0, seed=0, device="cpu", verbose=0)
    sac.learn(total_timesteps=600)  # fills its buffer; then its update step alone
    mpo_rate, sac_rate = interleaved_rates([lambda: mpo_update(shadow, batch),
                                            lambda: sac.train(gradient_steps=1, batch_size=256)], seconds=10.0)
    return {"loop": share.summary(), "loop_chunks": [(step, round(sps, 2), round(alone / share.updates_per_step, 2))
                                                     for step, sps, alone in share.chunks],
            "loop_cpu_seconds": share.loop_cpu_seconds, "loop_seconds": share.loop_seconds,
            "alone_cpu_seconds": share.alone_cpu_seconds, "alone_seconds": share.alone_seconds,
            "parts_ms": parts, "parts_total_ms": sum(parts.values()),
            "mpo_update_alone_per_s": mpo_rate, "sb3_sac_train_step_per_s": sac_rate,
            "mpo_over_sac": mpo_rate / sac_rate, "env": cfg.env.id}


if __name__ == "__main__":  # python -m rlkit.bench.suites.dqn_loop mpo CONFIG [overrides...]
    import json
    import sys

    if len(sys.argv) >= 3 and sys.argv[1] == "mpo":
        print(json.dumps(mpo_report(sys.argv[2], ["torch_threads=1", "device=cpu", *sys.argv[3:]],
                                    Path("bench_out/mpo_loop"), total=2_600, window=(400, 2_600)), indent=1))
