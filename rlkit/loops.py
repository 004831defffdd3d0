"""The training loops. ``train_online`` is one visible function: collect, store, update, and plain
``if`` blocks for logging, evaluation and checkpoints. No callbacks.

Conventions every environment follows (gymnasium's own, plus two optional info keys):
  - Vector envs use gymnasium's NEXT_STEP autoreset: after a step that returns ``terminated`` or
    ``truncated`` for env e, the next ``step`` resets e and its action is ignored. The loop passes
    ``autoreset`` to the replay buffer, which therefore holds each episode's true final observation
    and bootstraps through truncations from it (terminations cut the bootstrap; truncations don't).
  - ``info["raw_reward"]`` (optional): the unclipped reward, used for reported episode returns when
    the env clips the reward it trains on (Atari).
  - ``info["life_loss"]`` (optional): a life was lost on this step; stored as a termination for
    bootstrapping (Nature DQN's "terminal on life loss") while the episode — and its reported return —
    goes on to the end of the game.

Env steps count real transitions only (autoreset steps are not counted), like SB3's ``num_timesteps``.
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlkit.agent import metric_values
from rlkit.checkpoint import load_checkpoint, save_checkpoint
from rlkit.errors import CheckpointError, ConfigError, TrainingDiverged
from rlkit.config import EnvConfig, RunConfig, _closest, build_run_config, dump_yaml, read_yaml, to_dict
from rlkit.logger import CURVE_FILE, RunLogger, mean_std, plot_runs
from rlkit.schedules import linear_schedule
from rlkit.replay import ReplayBuffer
from rlkit.runs import (BEST, CONFIG_FILE, LATEST, RunLock, check_new_run_dir, check_run_dir, create_run_dir)

# --------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    import rlkit.envs  # noqa: F401  (registers rlkit/... ids)

    try:
        return gym.spec(env_id)
    except gym.error.Error:
        ids = list(gym.registry.keys())
        raise ConfigError(f"unknown environment id '{env_id}'." + _closest(env_id, ids).replace("keys", "ids")
                          + " `rlkit list` shows rlkit's environments") from None


def make_vector_env(env_cfg: EnvConfig, num_envs: int | None = None, **extra: Any) -> gym.vector.VectorEnv:
    """A vector env from the config: the env's native vector entry point when it has one (Atari)."""
    spec = env_spec(env_cfg.id)
    mode = env_cfg.vectorization
    if mode == "auto":
        native = spec.vector_entry_point is not None and env_cfg.id.startswith("rlkit/")
        mode = "native" if native else "sync"
    if mode == "native":
        if spec.vector_entry_point is None:
            raise ConfigError(f"env.vectorization=native, but '{env_cfg.id}' has no native vector env; use sync or auto")
        mode = "vector_entry_point"
    try:
        return gym.make_vec(env_cfg.id, num_envs=num_envs or env_cfg.num_envs, vectorization_mode=mode,
                            **{**env_cfg.kwargs, **extra})
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # unknown kwargs, or values the env's constructor rejects
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ConfigError(f"env.kwargs: '{env_cfg.id}' could not be built with kwargs {env_cfg.kwargs}: {text}"
                          ) from None


def build_agent(cfg: RunConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device):
    from rlkit.agents import AGENTS

    _, agent_cls = AGENTS[cfg.agent.name]
    try:
        return agent_cls(cfg.agent, observation_space, action_space, device=device, seed=cfg.seed)
    except ConfigError:
        raise
    except ValueError as exc:  # e.g. torch rejecting an optimizer setting the config did not range-check
        raise ConfigError(f"agent: '{cfg.agent.name}' could not be built with this config: "
                          f"{' '.join(str(exc).split())[:300]}") from None


def load_agent_weights(agent, path: Path, device: torch.device) -> dict[str, Any]:
    """Load a checkpoint's agent state into ``agent``; a file that is not a checkpoint of this agent is a
    one-line :class:`CheckpointError`. Returns the checkpoint."""
    state = load_checkpoint(path, map_location=device, required=("agent",))
    try:
        agent.load_state_dict(state["agent"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        text = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"'{path}' does not fit this run's agent ({type(exc).__name__}: {text}); it is not an "
                              "rlkit checkpoint of this run") from None
    return state


def seed_everything(seed: int, torch_threads: int = 0) -> None:
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------
# Episode statistics and exact env-state restore
# --------------------------------------------------------------------------------------


@dataclass
class EpisodeTracker:
    """Running return and length per sub-env; yields finished episodes (true game returns)."""

    num_envs: int
    returns: np.ndarray = field(init=False)
    lengths: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.returns = np.zeros(self.num_envs, dtype=np.float64)
        self.lengths = np.zeros(self.num_envs, dtype=np.int64)

    def step(self, rewards, terminated, truncated, infos, autoreset) -> list[tuple[float, int]]:
        raw = np.asarray(infos.get("raw_reward", rewards), dtype=np.float64)
        real = ~autoreset
        self.returns[real] += raw[real]
        self.lengths[real] += 1
        done = (terminated | truncated) & real
        finished = [(float(self.returns[e]), int(self.lengths[e])) for e in np.flatnonzero(done)]
        self.returns[done] = 0.0
        self.lengths[done] = 0
        return finished


class EnvReplay:
    """Exact resume for gymnasium's ``SyncVectorEnv``: for each sub-env, remember the RNG state just
    before its current episode's reset and the actions taken since. Restoring = set that RNG state,
    reset, replay the actions — the env is then in exactly the state it had at the checkpoint,
    without pickling any env object. Envs without Python-visible state (ALE's native vector env) are
    re-seeded instead, and the resumed run is statistically — not bitwise — the same."""

    def __init__(self, envs: gym.vector.VectorEnv) -> None:
        self.supported = isinstance(envs, gym.vector.SyncVectorEnv)
        self.envs = envs
        n = envs.num_envs
        self.start_rng: list[str | None] = [None] * n
        self.actions: list[list[Any]] = [[] for _ in range(n)]

    def before_step(self, actions: np.ndarray, autoreset: np.ndarray) -> None:
        if not self.supported:
            return
        for e in range(self.envs.num_envs):
            if autoreset[e]:  # this step resets env e: its next episode starts from this RNG state
                self.start_rng[e] = json.dumps(self.envs.envs[e].unwrapped.np_random.bit_generator.state)
                self.actions[e] = []
            else:
                self.actions[e].append(actions[e].tolist())

    def state_dict(self) -> dict[str, Any]:
        return {"supported": self.supported, "start_rng": json.dumps(self.start_rng), "actions": json.dumps(self.actions)}

    def restore(self, state: dict[str, Any], seed: int, autoreset: np.ndarray) -> np.ndarray | None:
        """Bring the envs back to the checkpoint; returns the current observations (None: not exact)."""
        if not (self.supported and state.get("supported")):
            return None
        self.start_rng = json.loads(state["start_rng"])
        self.actions = json.loads(state["actions"])
        obs_list = []
        for e, env in enumerate(self.envs.envs):
            if self.start_rng[e] is None:  # still in the first episode: reset(seed) started it
                obs, _ = env.reset(seed=seed + e)
            else:
                env.unwrapped.np_random = np.random.default_rng()
                env.unwrapped.np_random.bit_generator.state = json.loads(self.start_rng[e])
                obs, _ = env.reset()
            for action in self.actions[e]:
                obs, *_ = env.step(np.asarray(action, dtype=self.envs.single_action_space.dtype)
                                   if isinstance(action, list) else action)
            obs_list.append(obs)
        self.envs._autoreset_envs = autoreset.copy()  # SyncVectorEnv's NEXT_STEP bookkeeping
        return np.stack(obs_list)


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------


def evaluate(agent, env_cfg: EnvConfig, episodes: int, epsilon: float, seed: int,
             envs: gym.vector.VectorEnv | None = None, on_episode=None) -> dict[str, Any]:
    """Run ``episodes`` full episodes with ``epsilon``-greedy (0: deterministic) actions.

    Each sub-env runs a fixed quota of episodes so short episodes are not over-represented.
    ``on_episode(done, episodes)`` is called after each counted episode (progress display).
    """
    own_envs = envs is None
    if envs is None:
        envs = make_vector_env(env_cfg, num_envs=min(episodes, 8))
    n = envs.num_envs
    quota = np.array([episodes // n + (1 if e < episodes % n else 0) for e in range(n)])
    done_count = np.zeros(n, dtype=np.int64)
    tracker = EpisodeTracker(n)
    returns: list[float] = []
    lengths: list[int] = []
    obs, _ = envs.reset(seed=seed)
    autoreset = np.zeros(n, dtype=bool)
    episode_start = np.ones(n, dtype=bool)
    while (done_count < quota).any():
        actions = agent.act(obs, explore=False, episode_start=episode_start, epsilon=epsilon)
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        real = ~autoreset
        finished_mask = (terminated | truncated) & real
        for e, (ret, length) in zip(np.flatnonzero(finished_mask), tracker.step(rewards, terminated, truncated, infos, autoreset)):
            if done_count[e] < quota[e]:
                returns.append(ret)
                lengths.append(length)
                done_count[e] += 1
                if on_episode is not None:
                    on_episode(len(returns), episodes)
        episode_start = autoreset
        autoreset = terminated | truncated
    if own_envs:
        envs.close()
    mean, std = mean_std(returns)
    return {"return_mean": mean, "return_std": std, "length_mean": float(np.mean(lengths)), "returns": returns}


# --------------------------------------------------------------------------------------
# Online training
# --------------------------------------------------------------------------------------


class _StopRequest:
    """First Ctrl-C (or SIGTERM) asks the loop to checkpoint and stop at the end of the step."""

    def __init__(self) -> None:
        self.requested = False
        self.signum = 0  # the signal that asked (the CLI exits with 128 + signum: 130, 143)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _crossed(before: int, after: int, every: int) -> int:
    """How many multiples of ``every`` lie in (before, after]."""
    return 0 if every <= 0 else after // every - before // every


# What a resume may change. Everything else in the config is baked into the checkpoint (env state,
# networks, replay layout, seeds) or read only when a run starts, so changing it on resume would
# either break the load or be recorded in config.yaml without taking effect: both are refused.
RESUMABLE_KEYS = frozenset({
    "train.total_steps", "train.train_every", "train.gradient_steps", "train.batch_size", "train.eval_every",
    "train.eval_episodes", "train.eval_epsilon", "train.checkpoint_every", "train.save_buffer",
    "train.stop_at_solve", "train.replay.beta_start", "log.progress", "log.tensorboard", "log.log_every",
    "log.plot", "device", "torch_threads",
})
# Per agent: config fields the agent reads at use time (so a rebuilt agent honours a new value).
AGENT_RESUMABLE_KEYS: dict[str, frozenset[str]] = {
    "dqn": frozenset({"double", "target_update_every", "tau", "max_grad_norm", "huber_delta", "eps_start",
                      "eps_end", "eps_decay_steps", "lr_end", "lr_decay_steps"}),
    "mpo": frozenset({"epsilon", "epsilon_mean", "epsilon_stddev", "num_samples", "target_update_every",
                      "max_grad_norm", "action_penalization", "epsilon_penalty"}),
}
# Per agent: optimizer hyperparameters, which the checkpoint's optimizer state would otherwise restore
# to their old values; on resume a changed value is written into the optimizer's param groups.
AGENT_OPTIMIZER_KEYS: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "dqn": {"lr": (("optimizer", "lr"),), "adam_eps": (("optimizer", "eps"),)},
    "mpo": {"policy_lr": (("policy_optimizer", "lr"),), "critic_lr": (("critic_optimizer", "lr"),),
            "dual_lr": (("dual_optimizer", "lr"),)},
}


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and (tree or not prefix):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def resume_changes(old: RunConfig, new: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose value differs between the run's config and the resumed one, as (old, new).

    Raises :class:`ConfigError` naming every change a resume cannot honour."""
    before, after = _flatten(to_dict(old)), _flatten(to_dict(new))
    changes = {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k)}
    agent = old.agent.name
    allowed = set(RESUMABLE_KEYS)
    if new.agent.name == agent:
        allowed |= {f"agent.{k}" for k in AGENT_RESUMABLE_KEYS.get(agent, ())}
        allowed |= {f"agent.{k}" for k in AGENT_OPTIMIZER_KEYS.get(agent, {})}
    refused = [k for k in changes if k not in allowed]
    if refused:
        shown = "; ".join(f"{k} {changes[k][0]!r} -> {changes[k][1]!r}" for k in refused[:6])
        more = f" (and {len(refused) - 6} more)" if len(refused) > 6 else ""
        raise ConfigError(f"cannot change on resume: {shown}{more}. The checkpoint holds what they shape (env "
                          "state, networks, replay layout, seeds), or they are read only when a run starts; start "
                          "a new run instead (nothing was written)")
    return changes


def _apply_optimizer_changes(agent, agent_name: str, changes: dict[str, tuple[Any, Any]]) -> None:
    for key, targets in AGENT_OPTIMIZER_KEYS.get(agent_name, {}).items():
        if f"agent.{key}" not in changes:
            continue
        value = changes[f"agent.{key}"][1]
        for optimizer_name, group_key in targets:
            for group in getattr(agent, optimizer_name).param_groups:
                group[group_key] = value


def _nonfinite(state: Any, prefix: str = "") -> str | None:
    """The name of the first floating tensor in a state dict holding NaN or inf, else None."""
    if isinstance(state, torch.Tensor):
        return prefix if state.is_floating_point() and not bool(torch.isfinite(state).all()) else None
    if isinstance(state, dict):
        for key, value in state.items():
            found = _nonfinite(value, f"{prefix}.{key}" if prefix else str(key))
            if found is not None:
                return found
    return None


def train_online(cfg: RunConfig, run_dir: Path, resume: bool = False, source: str | None = None) -> dict[str, Any]:
    """Train an off-policy agent on vectorized envs. Returns a summary (final evaluation, steps, time).

    A new run's directory is created only once everything is built (a failed start leaves nothing);
    it must be absent or empty. The run holds an exclusive lock on its directory while it runs.
    On resume, config changes are checked (:func:`resume_changes`) before anything is built or
    written, and ``config.yaml`` is rewritten only once the checkpoint has loaded.
    ``source`` (the config file's stem) is recorded in ``source.txt`` for plot labels.
    """
    run_dir = Path(run_dir)
    lock = RunLock(run_dir)
    if resume:
        check_run_dir(run_dir)
        lock.acquire()
    else:
        check_new_run_dir(run_dir)
    try:
        return _train_online(cfg, run_dir, resume, source, lock)
    finally:
        lock.release()


def build_replay(cfg: RunConfig, obs_space: gym.Space, act_space: gym.Space, num_envs: int,
                 device: torch.device) -> ReplayBuffer:
    """The run's replay buffer; a layout the spaces do not allow is a one-line ConfigError."""
    replay_cfg = cfg.train.replay
    if replay_cfg.frame_stack > 1 and (len(obs_space.shape) < 2 or obs_space.shape[0] != replay_cfg.frame_stack):
        raise ConfigError(f"train.replay.frame_stack={replay_cfg.frame_stack} but observations have shape "
                          f"{obs_space.shape}; set it to the env's frame stack (axis 0) or 1")
    try:
        return ReplayBuffer.from_spaces(
            obs_space, act_space, capacity=replay_cfg.capacity, num_envs=num_envs, device=device,
            gamma=cfg.agent.gamma, n_step=replay_cfg.n_step, frame_stack=replay_cfg.frame_stack,
            prioritized=replay_cfg.prioritized, alpha=replay_cfg.alpha, seed=cfg.seed,
        )
    except ConfigError:
        raise
    except ValueError as exc:  # e.g. capacity < num_envs, a frame stack the observations do not have
        raise ConfigError(f"train.replay: {' '.join(str(exc).split())}") from None


def no_update_warning(train, updates_from: int, step: int) -> str | None:
    """A warning when the run ends before (or right at) the step its updates start at, else None."""
    if not (train.total_steps <= updates_from and step < train.total_steps):
        return None
    what = ("no update will happen" if train.total_steps < updates_from else
            f"only the updates of that last step ({train.gradient_steps}) will happen")
    return (f"rlkit: warning: train.total_steps ({train.total_steps}) <= the step updates start at "
            f"({updates_from}, train.learning_starts): {what} and the agent stays (almost) as "
            "initialised; raise train.total_steps or lower train.learning_starts")


def _train_online(cfg: RunConfig, run_dir: Path, resume: bool, source: str | None, lock: RunLock) -> dict[str, Any]:
    changes: dict[str, tuple[Any, Any]] = {}
    if resume:
        changes = resume_changes(build_run_config(read_yaml(run_dir / CONFIG_FILE), [],
                                                  source=str(run_dir / CONFIG_FILE)), cfg)
    seed_everything(cfg.seed, cfg.torch_threads)
    device = resolve_device(cfg.device)
    train = cfg.train

    envs = make_vector_env(cfg.env)
    eval_envs = make_vector_env(cfg.env, num_envs=min(train.eval_episodes, 8))
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    agent = build_agent(cfg, obs_space, act_space, device)
    replay_cfg = train.replay
    buffer = build_replay(cfg, obs_space, act_space, envs.num_envs, device)
    n = envs.num_envs
    tracker = EpisodeTracker(n)
    env_replay = EnvReplay(envs)

    # loop state (all of it goes into checkpoints)
    step = 0  # real env transitions
    updates_from = train.learning_starts  # a resume without a saved buffer refills before updating again
    elapsed = 0.0  # training wall time, cumulative over resumes
    best_eval, best_step = -np.inf, None
    train_sums: dict[str, float] = {}
    train_count = 0
    last_eval: dict[str, Any] | None = None
    obs, _ = envs.reset(seed=cfg.seed)
    autoreset = np.zeros(n, dtype=bool)
    episode_start = np.ones(n, dtype=bool)  # obs[e] is the first observation of an episode
    checkpoint_step: int | None = None  # step of the latest checkpoint on disk (None: none yet)

    if resume:
        latest = run_dir / LATEST
        state = load_checkpoint(latest, map_location=device, required=("agent", "loop", "rng", "env_replay"))
        try:
            agent.load_state_dict(state["agent"])
            loop = state["loop"]
            step, elapsed, best_eval = int(loop["step"]), float(loop["elapsed"]), float(loop["best_eval"])
            best_step = loop.get("best_step")
            train_sums, train_count = json.loads(loop["train_sums"]), int(loop["train_count"])
            autoreset = loop["autoreset"].numpy().astype(bool)
            episode_start = loop["episode_start"].numpy().astype(bool)
            tracker.returns[:] = loop["episode_returns"].numpy()
            tracker.lengths[:] = loop["episode_lengths"].numpy()
            updates_from = int(loop["updates_from"])
            if state.get("buffer") is not None:
                buffer.load_state_dict(state["buffer"])
            else:
                updates_from = step + train.learning_starts
            restored = env_replay.restore(state["env_replay"], cfg.seed, autoreset)
            rng_state = state["rng"]
            torch_rng = rng_state["torch"]
            np_rng, py_rng = _np_state_from_json(rng_state["numpy"]), _py_state_from_json(rng_state["python"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            text = " ".join(str(exc).split())[:200]
            raise CheckpointError(f"'{latest}' does not fit this run ({type(exc).__name__}: {text}); it is not an "
                                  "rlkit checkpoint of this run's agent, env and replay buffer") from None
        checkpoint_step = step
        if restored is None:
            obs, _ = envs.reset(seed=cfg.seed + step)
            autoreset[:] = False
            episode_start[:] = True
            tracker.returns[:] = 0.0
            tracker.lengths[:] = 0
        else:
            if not np.allclose(restored, loop["obs"].numpy()):  # e.g. an env that is not deterministic given its RNG
                print("rlkit: warning: env replay did not reproduce the checkpoint's observations; "
                      "continuing from the replayed state", flush=True)
            obs = restored
        torch.set_rng_state(torch_rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)
        _apply_optimizer_changes(agent, cfg.agent.name, changes)
        if changes:  # only now: every change is allowed and the checkpoint loaded
            dump_yaml(cfg, run_dir / CONFIG_FILE)
    else:
        # everything is built: only now does the run directory appear
        create_run_dir(run_dir)
        lock.acquire()
        check_new_run_dir(run_dir)  # again, under the lock: another process may have started here meanwhile
        dump_yaml(cfg, run_dir / CONFIG_FILE)
        if source is not None:
            (run_dir / "source.txt").write_text(source + "\n")

    logger = RunLogger(run_dir, train.total_steps, start_step=step, progress=cfg.log.progress,
                       tensorboard=cfg.log.tensorboard, description=f"{cfg.agent.name} {cfg.env.id}",
                       keep_records=int(state["loop"]["records"]) if resume else None)
    if resume:
        applied = f"; applied {', '.join(changes)}" if changes else ""
        logger.message(f"resumed {run_dir} at step {step}"
                       + ("" if env_replay.supported else " (envs re-seeded: this env cannot restore its exact state)")
                       + applied)
    else:
        logger.message(f"run directory: {run_dir}")
    warning = no_update_warning(train, updates_from, step)
    if warning:
        logger.message(warning)

    def checkpoint() -> None:
        nonlocal checkpoint_step
        agent_state = agent.state_dict()
        broken = _nonfinite(agent_state)
        if broken is not None:  # never overwrite the last good checkpoint with NaN weights
            raise TrainingDiverged(f"agent state '{broken}' is not finite")
        save_checkpoint(run_dir / LATEST, {
            "step": step,
            "agent": agent_state,
            "buffer": buffer.state_dict() if train.save_buffer else None,
            "env_replay": env_replay.state_dict(),
            "loop": {
                "step": step, "elapsed": elapsed, "best_eval": float(best_eval), "best_step": best_step,
                "records": logger.records, "updates_from": updates_from,
                "train_sums": json.dumps(metric_values(train_sums)), "train_count": train_count,
                "obs": torch.as_tensor(np.asarray(obs)),
                "autoreset": torch.as_tensor(autoreset), "episode_start": torch.as_tensor(episode_start), "episode_returns": torch.as_tensor(tracker.returns),
                "episode_lengths": torch.as_tensor(tracker.lengths),
            },
            "rng": {"torch": torch.get_rng_state(), "numpy": _np_state_to_json(np.random.get_state()),
                    "python": json.dumps(random.getstate())},
        })
        checkpoint_step = step

    def diverged(reason: str) -> TrainingDiverged:
        logger.close()
        envs.close()
        eval_envs.close()
        kept = (f"the last good checkpoint (step {checkpoint_step}) is kept in {run_dir / LATEST}"
                if checkpoint_step is not None else "no checkpoint had been written yet")
        return TrainingDiverged(f"training diverged at step {step}: {reason}; stopped without saving the broken "
                                f"state, {kept}. Lower the learning rate (agent.lr or its kin) and start again, or "
                                "resume with a lower one")

    solved = False
    started = time.perf_counter() - elapsed
    sps_mark = (step, time.perf_counter())
    with _StopRequest() as stop:
        while step < train.total_steps and not solved:
            # collect one vector step
            actions = agent.act(obs, explore=True, episode_start=episode_start)
            env_replay.before_step(actions, autoreset)
            next_obs, rewards, terminated, truncated, infos = envs.step(actions)
            life_loss = np.asarray(infos.get("life_loss", np.zeros(n, dtype=bool)), dtype=bool)
            buffer.add(obs, actions, rewards, terminated | life_loss, truncated, autoreset)
            for ret, length in tracker.step(rewards, terminated, truncated, infos, autoreset):
                logger.log("episode", step, time.perf_counter() - started, {"return": ret, "length": length})
            before = step
            step += int((~autoreset).sum())
            episode_start = autoreset
            autoreset = terminated | truncated
            obs = next_obs
            logger.advance(step)

            # update
            phases = _crossed(max(before, updates_from - 1), step, train.train_every) if step >= updates_from else 0
            if phases and buffer.num_sampleable() > 0:
                if checkpoint_step is None:  # a good state to fall back on if the very first updates diverge
                    elapsed = time.perf_counter() - started
                    checkpoint()
                for _ in range(phases * train.gradient_steps):
                    beta = linear_schedule(replay_cfg.beta_start, 1.0, train.total_steps, step)
                    batch = buffer.sample(train.batch_size, beta=beta)
                    metrics = (agent.update(batch, update_priorities=buffer.update_priorities)
                               if replay_cfg.prioritized else agent.update(batch))
                    for key, value in metrics.items():
                        train_sums[key] = train_sums.get(key, 0.0) + value
                    train_count += 1

            # log
            if _crossed(before, step, cfg.log.log_every):
                now = time.perf_counter()
                sps = (step - sps_mark[0]) / max(now - sps_mark[1], 1e-9)
                sps_mark = (step, now)
                values = {k: v / train_count for k, v in metric_values(train_sums).items()} if train_count else {}
                bad = [k for k, v in values.items() if not math.isfinite(v)]
                if bad:
                    raise diverged(f"{bad[0]} is {values[bad[0]]} (mean over the updates of the logging window "
                                   f"ending at step {step})")
                logger.log("train", step, now - started, {**values, "updates": train_count, "sps": sps})
                train_sums, train_count = {}, 0

            # evaluate
            if _crossed(before, step, train.eval_every) or (step >= train.total_steps):
                logger.evaluating(0, train.eval_episodes)
                last_eval = evaluate(agent, cfg.env, train.eval_episodes, train.eval_epsilon,
                                     seed=cfg.seed + 100_000 + step, envs=eval_envs, on_episode=logger.evaluating)
                logger.log("eval", step, time.perf_counter() - started, last_eval)
                if last_eval["return_mean"] > best_eval:
                    best_eval, best_step = last_eval["return_mean"], step
                    save_checkpoint(run_dir / BEST, {"step": step, "agent": agent.state_dict()})
                if train.stop_at_solve is not None and last_eval["return_mean"] >= train.stop_at_solve:
                    solved = True
                logger.progress(step)

            # checkpoint
            elapsed = time.perf_counter() - started
            if _crossed(before, step, train.checkpoint_every) or stop.requested:
                try:
                    checkpoint()
                except TrainingDiverged as exc:
                    raise diverged(str(exc)) from None
            if stop.requested:
                logger.message(f"stopped at step {step} by {signal.Signals(stop.signum).name}; checkpoint saved. "
                               f"Resume with: rlkit train --resume {run_dir}")
                break

    elapsed = time.perf_counter() - started
    if not stop.requested:
        try:
            checkpoint()
        except TrainingDiverged as exc:
            raise diverged(str(exc)) from None
    logger.progress(step)
    logger.close()
    envs.close()
    eval_envs.close()
    summary = {"run_dir": str(run_dir), "steps": step, "wall_time": elapsed,
               "interrupted": stop.signum if stop.requested else 0, "solved": solved, "final_eval": last_eval,
               "best_eval": float(best_eval) if best_step is not None else None, "best_step": best_step}
    if cfg.log.plot and not stop.requested:
        summary["plot"] = str(plot_runs([run_dir], run_dir / CURVE_FILE))
    return summary


def _np_state_to_json(state: tuple) -> str:
    name, keys, pos, has_gauss, cached = state
    return json.dumps([name, keys.tolist(), pos, has_gauss, cached])


def _np_state_from_json(text: str) -> tuple:
    name, keys, pos, has_gauss, cached = json.loads(text)
    return name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached


def _py_state_from_json(text: str) -> tuple:
    version, internal, gauss = json.loads(text)
    return version, tuple(internal), gauss
