"""Suite ``dqn-throughput``: training env steps/s after learning starts, rlkit DQN vs SB3 DQN, CartPole (zoo
hyperparameters) and Pong (equal hyperparameters and updates per transition)."""

from __future__ import annotations

import gc
import time
from pathlib import Path

from rlkit.bench.figures import Figure
from rlkit.bench.rlkit_side import rlkit_run
from rlkit.bench.suites.dqn_cartpole import ZOO_CARTPOLE
from rlkit.config import configs_dir


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
    records = [r for r in rlkit_run(config, [*overrides, f"log.log_every={log_every}"], run_dir)
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


NOTES = (
    "Env steps/s over a window after learning starts (CartPole: steps 2,000-20,000; Pong: "
    "3,000-6,000 with learning from 2,000), equal hyperparameters and updates per transition. Pong: "
    "rlkit's native ALE vector env (1 ALE thread) vs SB3's make_atari_env (DummyVecEnv) + "
    "VecFrameStack, both without terminal-on-life-loss, clipped rewards, buffer 50k."
)
