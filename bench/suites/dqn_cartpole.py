"""Suite ``dqn-cartpole`` (learning): rlkit DQN vs SB3 DQN on CartPole-v1, time and env steps to solve with the same
(rl-baselines3-zoo) hyperparameters, and rlkit's tuned config against the same SB3 runs; stability figures."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlkit.bench.figures import Figure
from rlkit.bench.rlkit_side import rlkit_evals, rlkit_run
from rlkit.config import configs_dir


# rl-baselines3-zoo's CartPole-v1 DQN hyperparameters
ZOO_CARTPOLE = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
                    target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                    exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))
SOLVED = 475.0


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


def suite_dqn_cartpole(seeds: list[int], out: Path, quick: bool, threads: int = 1) -> list[Figure]:
    """``threads``: unused (the runner sets this process's torch threads for both sides)."""
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
        records = rlkit_run(str(configs_dir() / "dqn_cartpole_zoo.yaml"), [*common, *stop, f"seed={seed}"],
                            out / "runs" / f"rlkit-zoo-s{seed}", times)
        zoo = Outcome(rlkit_evals(records, times))
        sb3_evals, sb3_times = _sb3_dqn_cartpole(seed, total, eval_every, episodes, stop=False)
        sb3 = Outcome(sb3_evals)
        tuned_times: list[float] = []
        records = rlkit_run(str(configs_dir() / "dqn_cartpole.yaml"), [*common, f"seed={seed}"],
                            out / "runs" / f"rlkit-tuned-s{seed}", tuned_times)
        tuned = Outcome(rlkit_evals(records, tuned_times))
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


NOTES = (
    "rlkit DQN vs SB3 DQN, both with rl-baselines3-zoo's CartPole-v1 hyperparameters, and rlkit's "
    "tuned config (configs/dqn_cartpole.yaml) against the same SB3 runs. Evaluation every 2,500 env "
    "steps, 10 deterministic episodes; 'solved' = first evaluation mean >= 475. rlkit's zoo run stops "
    "at the solve; SB3 and rlkit's tuned config train the full 50,000 steps, so their runs also give "
    "the stability figures: the final evaluation, and the share of evaluations >= 475 from the first "
    "solve on. Times are training only: each side's evaluation time is measured and subtracted "
    "(rlkit evaluates on 8 vectorized envs, SB3's EvalCallback steps one env with a predict per "
    "step; the last row shows what one evaluation costs each). No checkpoints in rlkit's runs."
)
