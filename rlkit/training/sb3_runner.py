"""Stable-Baselines3 and sb3-contrib algorithms trained through ``rlkit train``: the trainer path for an
``agent.name`` of the form ``sb3.PPO`` / ``sb3_contrib.MaskablePPO`` (:class:`rlkit.config.SB3AgentConfig`).

    agent: {name: sb3.PPO, policy: MlpPolicy, kwargs: {n_steps: 256, learning_rate: 3.0e-4}}

SB3's ``learn`` owns the update loop; everything around it is rlkit's, so an SB3 run and an rlkit run of the same
env read the same: the run directory, lock and ``config.yaml`` (:class:`rlkit.training.loops._Run`), ``metrics.jsonl``
and TensorBoard through :class:`~rlkit.runfiles.logger.RunLogger` (``episode`` records ``return``/``length``;
``eval`` records from rlkit's own :func:`~rlkit.training.evaluation.evaluate` on rlkit's evaluation envs and seeds;
``train`` records with SB3's ``train/*`` values under rlkit's names, ``updates`` and ``sps``), the progress bar,
``train.eval_every`` / ``checkpoint_every`` / ``stop_at_solve``, Ctrl-C and ``rlkit train --resume``.

Checkpoints: ``checkpoints/latest.pt`` (and ``best.pt``) are rlkit checkpoints (atomic, read with
``weights_only=True``) holding the run's counters and the SB3 model's own zip as bytes (with the replay buffer of
an off-policy algorithm when ``train.save_buffer``), so the model, buffer and step counter are one atomic write;
``checkpoints/latest.zip`` / ``best.zip`` are the same models as SB3 files (temp file + ``os.replace``) for
``PPO.load(...)`` outside rlkit. A resume loads the model (``load`` + ``learn(reset_num_timesteps=False)``): the
step counter, metrics file and best checkpoint continue; PPO's unfinished rollout and the envs' episodes restart
(not an exact resume, unlike rlkit's agents). SB3's files hold pickled objects (its model's ``data`` entries,
the replay buffer): resume only runs you trust, as with any SB3 file.

Training envs: an SB3 ``DummyVecEnv`` of ``gymnasium.make(env.id, **env.kwargs)`` per sub-env (what rlkit's
``sync`` vector env makes), seeded ``seed + i`` as rlkit seeds its vector envs. MaskablePPO reads masks from an
env's ``action_masks()`` or from a Dict observation's ``"action_mask"`` key.

SB3 is an optional extra: it is imported inside functions only, and its absence is one line naming
``pip install 'rlkit-toolkit[sb3]'``.
"""

from __future__ import annotations

import difflib
import inspect
import io
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlkit.config import RunConfig
from rlkit.errors import CheckpointError, ConfigError
from rlkit.runfiles.checkpoint import load_checkpoint
from rlkit.runfiles.runs import BEST, LATEST
from rlkit.training.build import env_spec, make_vector_env, resolve_device, seed_everything
from rlkit.training.evaluation import evaluate
from rlkit.training.loops import _crossed, _Run, _StopRequest

INSTALL = "pip install 'rlkit-toolkit[sb3]'"
RESERVED_KWARGS = {"policy": "agent.policy", "env": "env.id", "seed": "the config's seed (or --seed)",
                   "device": "the config's device (or --device)",
                   "tensorboard_log": "log.tensorboard (rlkit writes the run's TensorBoard)",
                   "_init_setup_model": "nothing (SB3-internal)"}
SCHEDULED_KWARGS = ("learning_rate", "clip_range", "clip_range_vf")
"""Kwargs that take a schedule: ``lin_<x>`` (rl-baselines3-zoo's notation) anneals x linearly to 0."""
METRIC_NAMES = {"learning_rate": "lr", "exploration_rate": "epsilon"}  # SB3's name -> rlkit's agents' name
"""SB3 values logged under rlkit's agents' names; every other ``train/<key>`` keeps its key."""


# --------------------------------------------------------------------------------------
# The algorithm, its envs and the model, checked before anything is written
# --------------------------------------------------------------------------------------


def algorithm_class(name: str) -> type:
    """The SB3 / sb3-contrib class ``agent.name`` names; an absent package or unknown algorithm is one line."""
    import importlib

    package, _, algo = name.partition(".")
    try:
        module = importlib.import_module({"sb3": "stable_baselines3"}.get(package, package))
        from stable_baselines3.common.base_class import BaseAlgorithm
    except ImportError as exc:
        raise ConfigError(f"agent '{name}' needs {'sb3-contrib' if package == 'sb3_contrib' else 'Stable-Baselines3'}"
                          f", which cannot be imported ({exc}); install the sb3 extra: {INSTALL}") from None
    algos = {key: value for key, value in vars(module).items()
             if isinstance(value, type) and issubclass(value, BaseAlgorithm)}
    if algo not in algos:
        match = difflib.get_close_matches(algo, list(algos), n=1, cutoff=0.5)
        hint = f" Did you mean '{package}.{match[0]}'?" if match else ""
        raise ConfigError(f"agent.name '{name}': {package} has no algorithm '{algo}'.{hint} It has: "
                          f"{', '.join(f'{package}.{a}' for a in sorted(algos))}")
    return algos[algo]


def _is_masked(algo_cls: type) -> bool:
    return algo_cls.__name__.startswith("Maskable")


def _check_kwargs(name: str, algo_cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``agent.kwargs`` checked against the constructor's parameters (not those rlkit sets), with the few classes
    a YAML file can only name resolved (``policy_kwargs.activation_fn: ReLU``,
    ``replay_buffer_class: HerReplayBuffer``, ``learning_rate: lin_1e-3``)."""
    params = inspect.signature(algo_cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key in kwargs:
        if key in RESERVED_KWARGS:
            raise ConfigError(f"agent.kwargs.{key}: rlkit sets it for '{name}'; use {RESERVED_KWARGS[key]} instead")
        if key not in params and not takes_any:
            options = [p for p in params if p not in RESERVED_KWARGS and p != "self"]
            match = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
            hint = f" Did you mean '{match[0]}'?" if match else f" It takes: {', '.join(options)}."
            raise ConfigError(f"agent.kwargs.{key}: '{name}' has no such argument.{hint}")
    kwargs = dict(kwargs)
    for key in SCHEDULED_KWARGS:
        if isinstance(kwargs.get(key), str) and kwargs[key].startswith("lin_"):  # rl-zoo's linear schedules
            kwargs[key] = _linear_schedule(kwargs[key], f"agent.kwargs.{key}")
    if not isinstance(kwargs.get("policy_kwargs") or {}, dict):
        raise ConfigError(f"agent.kwargs.policy_kwargs must be a mapping (e.g. {{net_arch: [64, 64]}}), got "
                          f"{kwargs['policy_kwargs']!r}")
    policy_kwargs = dict(kwargs.get("policy_kwargs") or {})
    for key, module in (("activation_fn", torch.nn), ("optimizer_class", torch.optim)):
        if isinstance(policy_kwargs.get(key), str):
            policy_kwargs[key] = _named_class(module, policy_kwargs[key], f"agent.kwargs.policy_kwargs.{key}")
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    if isinstance(kwargs.get("replay_buffer_class"), str):
        import stable_baselines3.common.buffers as buffers
        from stable_baselines3 import HerReplayBuffer

        kwargs["replay_buffer_class"] = _named_class(
            {**vars(buffers), "HerReplayBuffer": HerReplayBuffer}, kwargs["replay_buffer_class"],
            "agent.kwargs.replay_buffer_class")
    return kwargs


class _Linear:
    """rl-zoo's ``lin_<x>``: a value annealed linearly from x to 0 over the run (SB3 passes the progress remaining,
    1 -> 0). A class, not a lambda, so that SB3's zip stores it as plain data."""

    def __init__(self, start: float) -> None:
        self.start = start

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.start


def _linear_schedule(text: str, where: str) -> _Linear:
    try:
        start = float(text[len("lin_"):])
    except ValueError:
        raise ConfigError(f"{where}: '{text}' is not a linear schedule lin_<number> (e.g. lin_2.5e-3)") from None
    if not np.isfinite(start):
        raise ConfigError(f"{where}: '{text}' must start at a finite number")
    return _Linear(start)


def _named_class(namespace: Any, name: str, where: str) -> type:
    names = namespace if isinstance(namespace, dict) else vars(namespace)
    found = names.get(name)
    if not isinstance(found, type):
        options = {k.lower(): k for k, v in names.items() if isinstance(v, type) and not k.startswith("_")}
        match = difflib.get_close_matches(name.lower(), list(options), n=1, cutoff=0.5)  # Relu -> ReLU
        raise ConfigError(f"{where}: unknown class '{name}'."
                          + (f" Did you mean '{options[match[0]]}'?" if match else ""))
    return found


class _EpisodeReport(gym.Wrapper):
    """Reports each finished episode of one training sub-env (return from ``info["raw_reward"]`` where the env
    clips rewards, as rlkit's collector does; ``success`` from goal envs' ``info["is_success"]``) into ``sink``;
    for Dict observations with an ``"action_mask"`` key it offers ``action_masks()`` (MaskablePPO reads that)."""

    def __init__(self, env: gym.Env, sink: list[dict[str, float]]) -> None:
        super().__init__(env)
        self.sink, self.episode_return, self.episode_length, self.last_obs = sink, 0.0, 0, None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.episode_return, self.episode_length, self.last_obs = 0.0, 0, obs
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episode_return += float(info.get("raw_reward", reward))
        self.episode_length += 1
        self.last_obs = obs
        if terminated or truncated:
            record = {"return": self.episode_return, "length": self.episode_length}
            if "is_success" in info:
                record["success"] = float(bool(info["is_success"]))
            self.sink.append(record)
        return obs, reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """The env's own ``action_masks()`` where it has one, else the last observation's ``"action_mask"``."""
        try:
            own = self.env.get_wrapper_attr("action_masks")
        except AttributeError:
            return np.asarray(self.last_obs["action_mask"], dtype=bool)
        return np.asarray(own(), dtype=bool)


def make_sb3_env(cfg: RunConfig, algo_cls: type, sink: list[dict[str, float]]):
    """The training envs as SB3's ``DummyVecEnv``: ``env.num_envs`` × ``gymnasium.make(env.id, **env.kwargs)``."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    spec = env_spec(cfg.env.id)
    if spec.entry_point is None:
        raise ConfigError(f"env.id '{cfg.env.id}' is a vector-only env (a multi-agent game's rows); SB3 agents train "
                          "on single-agent envs (use rlkit's agents for it, or its turn-based single-agent id)")

    def make() -> gym.Env:
        env = gym.make(cfg.env.id, **cfg.env.kwargs)
        return _EpisodeReport(env, sink)

    envs = DummyVecEnv([make] * cfg.env.num_envs)
    pooled = [env.unwrapped for env in envs.envs if getattr(env.unwrapped, "wants_selfplay_pool", False)
              and env.unwrapped.opponent_kind == "selfplay" and env.unwrapped.opponent_mix.get("pool", 0) > 0]
    if pooled:  # the snapshot pool lives in rlkit's collector, which SB3's learn does not use
        envs.close()
        raise ConfigError(f"env.kwargs: '{cfg.env.id}' plays self-play with a snapshot pool (opponent_mix "
                          f"{pooled[0].opponent_mix}), which SB3 runs do not keep; give opponent_mix without 'pool' "
                          "(e.g. {random: 0.4, heuristic: 0.6}) or train rlkit's DQN for self-play against snapshots")
    if _is_masked(algo_cls):
        space = envs.observation_space
        in_obs = isinstance(space, gym.spaces.Dict) and "action_mask" in space.spaces
        try:
            own = callable(envs.envs[0].env.get_wrapper_attr("action_masks"))  # under _EpisodeReport
        except AttributeError:
            own = False
        if not (own or in_obs):
            envs.close()
            raise ConfigError(f"agent '{cfg.agent.name}' needs action masks, and '{cfg.env.id}' offers none: give the "
                              "env an action_masks() method or a Dict observation with an 'action_mask' key")
    return envs


def _learning_starts(cfg: RunConfig, algo_cls: type, kwargs: dict[str, Any]) -> None:
    """``train.learning_starts``, when the config sets it (not rlkit's default), is SB3's ``learning_starts`` for
    the algorithms that have one (DQN, SAC, TD3, ...); PPO and A2C update from their first rollout on."""
    from rlkit.config import TrainConfig

    given = cfg.train.learning_starts
    if given == TrainConfig().learning_starts or "learning_starts" not in inspect.signature(algo_cls).parameters:
        return
    if kwargs.get("learning_starts", given) != given:
        raise ConfigError(f"train.learning_starts ({given}) and agent.kwargs.learning_starts "
                          f"({kwargs['learning_starts']}) disagree; set one of them")
    kwargs["learning_starts"] = given


def _policy_name(cfg: RunConfig, algo_cls: type, observation_space: gym.Space) -> str:
    from stable_baselines3.common.preprocessing import is_image_space

    policy = cfg.agent.policy
    aliases = list(getattr(algo_cls, "policy_aliases", {}))
    if policy == "auto":  # MultiInputPolicy / CnnPolicy / MlpPolicy (RecurrentPPO's: MultiInputLstmPolicy, ...)
        base = ("MultiInput" if isinstance(observation_space, gym.spaces.Dict)
                else "Cnn" if is_image_space(observation_space) else "Mlp")
        return next((alias for alias in aliases if alias.startswith(base)), f"{base}Policy")
    if policy not in aliases:
        match = difflib.get_close_matches(policy, aliases, n=1, cutoff=0.5)
        raise ConfigError(f"agent.policy '{policy}': '{cfg.agent.name}' has no such policy."
                          + (f" Did you mean '{match[0]}'?" if match else "") + f" It has: {', '.join(aliases)}")
    return policy


def build_model(cfg: RunConfig, algo_cls: type, envs, device: torch.device):
    """The SB3 model, built from the checked kwargs; whatever SB3 rejects is one line naming agent.kwargs."""
    from stable_baselines3.common.logger import Logger

    kwargs = _check_kwargs(cfg.agent.name, algo_cls, cfg.agent.kwargs)
    kwargs.setdefault("verbose", 0)
    _learning_starts(cfg, algo_cls, kwargs)
    policy = _policy_name(cfg, algo_cls, envs.observation_space)
    try:
        model = algo_cls(policy, envs, seed=cfg.seed, device=str(device), **kwargs)
    except (TypeError, ValueError, AssertionError, KeyError, AttributeError, RuntimeError, IndexError,
            OverflowError) as exc:
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ConfigError(f"agent: '{cfg.agent.name}' (policy {policy}) could not be built with agent.kwargs "
                          f"{cfg.agent.kwargs}: {text}") from None
    model.set_logger(Logger(folder=None, output_formats=[]))  # values only: rlkit's logger writes the records
    return model


# --------------------------------------------------------------------------------------
# The model as rlkit's loops see an agent: act (evaluation), state_dict (checkpoints)
# --------------------------------------------------------------------------------------


class SB3Agent:
    """An SB3 model behind the part of rlkit's agent interface that the run machinery uses: ``act`` for
    :func:`~rlkit.training.evaluation.evaluate` (the deterministic policy; ``epsilon`` mixes in uniform actions),
    ``state_dict`` / ``load_state_dict`` for checkpoints (the model's zip as bytes, its policy's tensors so that
    non-finite weights are refused, and the replay buffer when ``include_buffer``)."""

    def __init__(self, model, algo_cls: type, envs, seed: int) -> None:
        self.model, self.algo_cls, self.envs = model, algo_cls, envs
        self.device = torch.device("cpu")  # act() takes host arrays: the step record stays on the CPU
        self.include_buffer = False
        self.mask_envs = None  # evaluation envs whose action_masks() MaskablePPO reads, when the obs has none
        self._rng = np.random.default_rng(seed)
        self._states = None  # a recurrent policy's memory (RecurrentPPO)

    # ---------------------------------------------------------------- acting
    def act(self, step, explore: bool = False, epsilon: float | None = None) -> np.ndarray:
        obs = ({k: v.cpu().numpy() for k, v in step.obs.items()} if isinstance(step.obs, dict)
               else step.obs.cpu().numpy())
        starts = step.episode_start.cpu().numpy()
        mask = self._masks(step)
        kwargs = {"action_masks": mask} if _is_masked(self.algo_cls) else {}
        if hasattr(self.model.policy, "lstm_actor"):  # sb3_contrib.RecurrentPPO: memory per row, reset at starts
            actions, self._states = self.model.predict(obs, state=self._states, episode_start=starts,
                                                       deterministic=not explore)
        else:
            actions, _ = self.model.predict(obs, deterministic=not explore, **kwargs)
        if epsilon:
            space = self.model.action_space
            for row in np.flatnonzero(self._rng.random(len(starts)) < epsilon):
                if mask is not None:
                    actions[row] = self._rng.choice(np.flatnonzero(mask[row]))
                else:
                    space.seed(int(self._rng.integers(2**31)))
                    actions[row] = space.sample()
        return actions

    def predict(self, obs, deterministic: bool = True, epsilon: float = 0.0, episode_start=None,
                prev_reward=None) -> np.ndarray:
        """A batch of observations -> actions, as rlkit's agents' ``predict`` (``rlkit eval --video``, and an SB3
        run playing ``--opponent``)."""
        from rlkit.contract.agent import StepRecord

        record = StepRecord.from_arrays(obs, self.device, prev_reward=prev_reward, episode_start=episode_start)
        return self.act(record, explore=not deterministic, epsilon=epsilon)

    def _masks(self, step) -> np.ndarray | None:
        if not _is_masked(self.algo_cls):
            return None
        if step.action_mask is not None:
            mask = step.action_mask.cpu().numpy().astype(bool)
        elif self.mask_envs is not None:
            mask = np.stack([np.asarray(m, dtype=bool) for m in self.mask_envs.call("action_masks")])
        else:
            return None
        mask[~mask.any(axis=1)] = True  # a finished row (its action is ignored) may allow nothing
        return mask

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        zipped = io.BytesIO()
        self.model.save(zipped)
        state = {"sb3_zip": _bytes_tensor(zipped.getvalue()),
                 "policy": {k: v.detach().cpu() for k, v in self.model.policy.state_dict().items()}}
        if self.include_buffer and getattr(self.model, "replay_buffer", None) is not None:
            buffer = io.BytesIO()
            self.model.save_replay_buffer(buffer)
            state["replay_buffer"] = _bytes_tensor(buffer.getvalue())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from stable_baselines3.common.logger import Logger

        self.model = load_model(self.algo_cls, state, env=self.envs, device=self.model.device)
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        if state.get("replay_buffer") is not None and hasattr(self.model, "load_replay_buffer"):
            try:
                self.model.load_replay_buffer(io.BytesIO(state["replay_buffer"].cpu().numpy().tobytes()))
            except Exception as exc:  # a damaged pickle
                raise CheckpointError(f"the checkpoint's SB3 replay buffer cannot be loaded ({type(exc).__name__}: "
                                      f"{' '.join(str(exc).split())[:200]}); resume with train.save_buffer=false "
                                      "from a checkpoint without it, or start a new run") from None

    def apply_optimizer_settings(self, settings: dict[str, Any]) -> None:
        """Nothing of an SB3 agent changes on resume (``SB3AgentConfig.resumable`` is empty)."""

    def write_zip(self, path: Path) -> None:
        """The model as SB3's own zip at ``path``: a temporary file, then ``os.replace`` (atomic)."""
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                self.model.save(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def load_model(algo_cls: type, state: dict[str, Any], env=None, device: Any = "cpu"):
    """The SB3 model held in a checkpoint's agent state (``sb3_zip``)."""
    data = state.get("sb3_zip") if isinstance(state, dict) else None
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8:
        raise CheckpointError("the checkpoint holds no SB3 model (it is not from an SB3 run)")
    try:
        model = algo_cls.load(io.BytesIO(data.cpu().numpy().tobytes()), env=env, device=device)
    except Exception as exc:  # a damaged zip, another algorithm's, spaces that do not fit the env
        raise CheckpointError(f"the SB3 model in the checkpoint cannot be loaded as {algo_cls.__name__} "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    model._last_obs = None  # learn() then resets the envs (they restart their episodes on resume)
    return model


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


class _TrainWindow:
    """SB3's ``train/*`` values of the logging window, read from its logger after each of its ``train()`` calls
    (never from the loop's locals): their means, the gradient updates (SB3's ``_n_updates``) and steps/s."""

    def __init__(self, model, step: int) -> None:
        self.seen_updates = model._n_updates
        self.sums: dict[str, float] = {}
        self.count = 0
        self.updates = 0
        self.mark = (step, time.perf_counter())  # (step, time) of the window's start: steps/s

    def observe(self, model) -> None:
        if model._n_updates == self.seen_updates:
            return
        self.updates += model._n_updates - self.seen_updates
        self.seen_updates = model._n_updates
        self.count += 1
        for key, value in model.logger.name_to_value.items():
            group, _, name = key.partition("/")
            if (group == "train" and name != "n_updates") or key == "rollout/exploration_rate":
                if isinstance(value, (int, float, np.floating)):
                    name = METRIC_NAMES.get(name, name)
                    self.sums[name] = self.sums.get(name, 0.0) + float(value)

    def pop(self, step: int) -> dict[str, float]:
        now = time.perf_counter()
        sps = (step - self.mark[0]) / max(now - self.mark[1], 1e-9)
        record = {k: v / self.count for k, v in self.sums.items()} if self.count else {}
        record.update({"updates": self.updates, "sps": sps})
        self.sums, self.count, self.updates, self.mark = {}, 0, 0, (step, now)
        return record


def train_sb3(cfg: RunConfig, run_dir: Path, resume: bool = False, source: str | None = None) -> dict[str, Any]:
    """Train ``cfg.agent`` (an SB3 algorithm) with rlkit's run machinery; returns the summary ``rlkit train``
    prints (as :func:`rlkit.training.loops.train` does)."""
    algo_cls = algorithm_class(cfg.agent.name)
    with _Run(cfg, run_dir, resume, source) as run:
        seed_everything(cfg.seed, cfg.torch_threads)
        device = resolve_device(cfg.device)
        train = cfg.train
        eval_envs = run.own(make_vector_env(cfg.env, num_envs=min(train.eval_episodes, 8), **train.eval_env_kwargs))
        finished: list[dict[str, float]] = []  # training episodes, reported by the envs' _EpisodeReport
        envs = run.own(make_sb3_env(cfg, algo_cls, finished))
        agent = SB3Agent(build_model(cfg, algo_cls, envs, device), algo_cls, envs, cfg.seed)
        agent.mask_envs = eval_envs
        state = run.start(agent, device)  # a resume loads the model (and buffer) into the agent
        if resume:
            agent.model.num_timesteps = state.step
            agent.model.set_random_seed(cfg.seed + state.step)  # fresh episodes, as rlkit reseeds envs it cannot replay
        window = _TrainWindow(agent.model, state.step)

        with _StopRequest() as stop, _settings_errors(cfg, agent):
            if train.eval_every > 0 and not resume:  # the curve starts at the untrained policy
                run.evaluate_untrained(agent, eval_envs)
                _write_best_zip(run, agent)

            def after_env_step(_locals=None, _globals=None) -> bool:
                """SB3 calls this after each vector step (its ``num_timesteps`` already counts it): rlkit's
                records, evaluation and checkpoints, in the order of rlkit's loop. False stops ``learn``."""
                before, step = state.step, agent.model.num_timesteps
                for record in finished:
                    run.logger.log("episode", before, run.clock(), record)
                finished.clear()
                state.step = step
                run.logger.advance(step)
                window.observe(agent.model)
                if _crossed(before, step, cfg.log.log_every):
                    _log_train(run, window.pop(step))
                if _crossed(before, step, train.eval_every) or step >= train.total_steps:
                    run.evaluate(agent, eval_envs)
                    _write_best_zip(run, agent)
                if _crossed(before, step, train.checkpoint_every) or stop.requested:
                    _checkpoint(run, agent)
                if stop.requested:
                    run.stopped_by(stop.signum)
                return not (stop.requested or run.solved or step >= train.total_steps)

            if state.step < train.total_steps and not run.solved:
                from stable_baselines3.common.callbacks import ConvertCallback

                agent.model.learn(total_timesteps=train.total_steps - state.step,
                                  callback=ConvertCallback(after_env_step), reset_num_timesteps=not resume,
                                  progress_bar=False)
                state.step = agent.model.num_timesteps
            if not stop.requested:
                _checkpoint(run, agent)
        return run.finish(agent)


@contextmanager
def _settings_errors(cfg: RunConfig, agent: SB3Agent):
    """An error SB3 raises over its settings while it learns or acts (:func:`_raised_by_sb3`; many are only
    checked there, not by the constructor) as one line naming ``agent.kwargs``."""
    try:
        yield
    except (RuntimeError, ValueError, AssertionError, TypeError, KeyError, IndexError) as exc:
        if not _raised_by_sb3(exc):
            raise
        raise ConfigError(f"'{cfg.agent.name}' stopped at step {agent.model.num_timesteps}, SB3 raised "
                          f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}; change agent.kwargs "
                          "accordingly") from None


def _raised_by_sb3(exc: BaseException) -> bool:
    """Whether ``exc`` comes from SB3 acting on its settings: raised in SB3's own code (its check of a setting,
    e.g. HER's learning_starts shorter than an episode), or in torch / numpy called by it (a negative batch size).
    Not when the env's code, gymnasium's or rlkit's is between SB3 and the raise: that is no setting's fault."""
    def package(filename: str) -> str | None:
        parts = Path(filename).parts[:-1]  # numpy's Cython frames are named "numpy/random/mtrand.pyx"
        return next((name for name in ("stable_baselines3", "sb3_contrib", "torch", "numpy") if name in parts), None)

    tb, after_sb3 = exc.__traceback__, None  # the packages of the frames below SB3's innermost one
    while tb is not None:
        found = package(tb.tb_frame.f_code.co_filename)
        after_sb3 = [] if found in ("stable_baselines3", "sb3_contrib") else (
            None if after_sb3 is None else [*after_sb3, found])
        tb = tb.tb_next
    return after_sb3 is not None and all(found in ("torch", "numpy") for found in after_sb3)


def _log_train(run: _Run, record: dict[str, float]) -> None:
    bad = [k for k, v in record.items() if not np.isfinite(v)]
    if bad:
        raise run.diverged(f"{bad[0]} is {record[bad[0]]} (mean over the logging window ending at step "
                           f"{run.state.step})")
    run.logger.log("train", run.state.step, run.clock(), record)


def _checkpoint(run: _Run, agent: SB3Agent) -> None:
    """``latest.pt`` (counters + model + buffer: one atomic write), then ``latest.zip`` (SB3's file)."""
    agent.include_buffer = run.cfg.train.save_buffer
    try:
        run.checkpoint(agent)
    finally:
        agent.include_buffer = False
    agent.write_zip(run.run_dir / LATEST.with_suffix(".zip"))


def _write_best_zip(run: _Run, agent: SB3Agent) -> None:
    """After an evaluation that wrote ``best.pt``: the same model as ``best.zip``."""
    if run.state.best_step == run.state.step and (run.run_dir / BEST).is_file():
        agent.write_zip(run.run_dir / BEST.with_suffix(".zip"))


# --------------------------------------------------------------------------------------
# rlkit eval, and the commands that cannot take an SB3 run
# --------------------------------------------------------------------------------------


def evaluate_run(run, episodes: int, epsilon: float, seed: int, device: str | None = None,
                 prepare_envs=None) -> tuple[dict[str, Any], SB3Agent]:
    """``rlkit eval RUN`` for an SB3 run: the model of ``run.weights`` (best.pt or latest.pt) over ``episodes``
    episodes of the run's evaluation envs, with rlkit's :func:`evaluate`; writes ``eval.json``. Returns the result
    and the loaded agent. ``prepare_envs(envs)``: set up the envs first (``--opponent`` of two-player games)."""
    cfg = run.config
    algo_cls = algorithm_class(cfg.agent.name)
    state = load_checkpoint(run.weights, map_location="cpu", required=("agent",))
    envs = make_vector_env(cfg.env, num_envs=min(episodes, 8), **cfg.train.eval_env_kwargs)
    try:
        if prepare_envs is not None:
            prepare_envs(envs)
        try:
            model = load_model(algo_cls, state["agent"], device=str(resolve_device(device or cfg.device)))
        except CheckpointError as exc:
            raise CheckpointError(f"'{run.weights}': {exc}") from None
        if model.observation_space != envs.single_observation_space:
            raise ConfigError(f"'{run.weights}' holds a model for {model.observation_space}, but {cfg.env.id} has "
                              f"{envs.single_observation_space}")
        agent = SB3Agent(model, algo_cls, None, seed)
        agent.mask_envs = envs
        result = evaluate(agent, cfg.env, episodes, epsilon, seed=seed, envs=envs)
    finally:
        envs.close()
    (run.run_dir / "eval.json").write_text(json.dumps({"checkpoint": str(run.weights), **result}, indent=1))
    agent.mask_envs = None
    return result, agent


@dataclass
class SB3Opponent:
    """An SB3 run's model as ``rlkit eval --opponent RUN`` plays it: ``agent.predict`` (the deterministic policy;
    MaskablePPO reads the mask from the observation's ``action_mask``) and the model's spaces."""

    agent: SB3Agent
    observation_space: Any
    action_space: Any


def load_opponent(run, device: str = "cpu") -> SB3Opponent:
    """The policy of an opened SB3 run (``run.weights``: best or latest) to play against in a two-player game."""
    cfg = run.config
    state = load_checkpoint(run.weights, map_location="cpu", required=("agent",))
    try:
        model = load_model(algorithm_class(cfg.agent.name), state["agent"], device=device)
    except CheckpointError as exc:
        raise CheckpointError(f"'{run.weights}': {exc}") from None
    agent = SB3Agent(model, algorithm_class(cfg.agent.name), None, seed=0)
    return SB3Opponent(agent, model.observation_space, model.action_space)


def load_model_of_run(run_dir: Path, checkpoint: Path = LATEST, device: str = "cpu"):
    """The SB3 model of an SB3 run's checkpoint (``rlkit.train`` returns it as ``Run.agent``)."""
    from rlkit.config import build_run_config, read_yaml
    from rlkit.runfiles.runs import CONFIG_FILE

    cfg = build_run_config(read_yaml(Path(run_dir) / CONFIG_FILE), [], source=str(Path(run_dir) / CONFIG_FILE))
    state = load_checkpoint(Path(run_dir) / checkpoint, map_location="cpu", required=("agent",))
    return load_model(algorithm_class(cfg.agent.name), state["agent"], device=device)


def refuse(cfg: RunConfig, run_dir: Path, what: str) -> None:
    """A one-line ConfigError for commands that load rlkit agents (export, collect, ``rlkit.load``) given an SB3 run."""
    raise ConfigError(f"{what} loads rlkit's own agents, and run '{run_dir}' trained '{cfg.agent.name}' (SB3): "
                      f"`rlkit eval {run_dir}` evaluates it, and {cfg.agent.name.split('.', 1)[1]}.load("
                      f"'{run_dir / BEST.with_suffix('.zip')}') loads it in Python")
