"""rlkit.envs.wrappers: the Gymnasium wrappers rlkit users import (Gymnasium 1.x wrapper API).

Atari preprocessing on any ALE id
    :func:`atari_wrappers` applies to ``gymnasium.make("ALE/{Game}-v5", frameskip=1)`` the stack
    behind rlkit's own ``rlkit/{Game}-v0`` ids (:mod:`rlkit.envs.atari`), with the same named
    protocols: ``"nature"`` (Mnih et al. 2015, "Human-level control through deep reinforcement
    learning": 1..30 no-op starts, no sticky actions) and ``"machado"`` (Machado et al. 2018,
    "Revisiting the Arcade Learning Environment", JAIR 61: sticky actions with
    ``repeat_action_probability=0.25``, no no-ops).  Both: frame skip 4 with a max-pool over the
    last two frames, 84x84 grayscale (``cv2.INTER_AREA``), 4 stacked frames as ``uint8``
    ``[4, 84, 84]`` (oldest first, padded by repeating the reset frame), rewards clipped to
    their sign with the raw reward in ``info["raw_reward"]``, and ``info["life_loss"]`` (True on
    the steps where a life was lost when ``terminal_on_life_loss=True``; the episode does *not*
    end: rlkit's loop cuts the bootstrap with ``terminated | info["life_loss"]``).  Optional FIRE
    on reset for the games that have FIRE.  Same seed and actions give the same frames as the
    matching ``rlkit/{Game}-v0`` id (tested).

``ToTorch``
    Observations (``Box``, ``Dict``, ``Tuple``) become ``torch.Tensor``\\ s on a device, actions
    given as tensors go back to NumPy; rewards, flags and infos are left as they are.  Its
    spaces stay the NumPy spaces of the wrapped env: Gymnasium's and SB3's ``check_env`` and SB3
    itself work on the NumPy side, i.e. on the env *under* ``ToTorch`` (SB3 converts on its own).
    For whole-I/O conversion (rewards and infos as tensors too) see Gymnasium's ``NumpyToTorch``.

``NormalizeObservation`` / ``NormalizeReward`` and their vector versions
    Running mean and variance (Welford 1962, "Note on a method for calculating corrected sums of
    squares and products", merged across a batch with Chan, Golub & LeVeque 1979's parallel
    formula, so a vector env's sub-envs update one statistic per step).  Observations become
    ``clip((obs - mean) / sqrt(var + epsilon))`` as ``float32``; rewards are divided by the
    running std of the discounted return ``R_t = gamma * R_{t-1} + r_t`` (reset at episode end),
    as SB3's ``VecNormalize`` and Gymnasium's ``NormalizeReward`` do, then clipped; the unscaled
    reward goes to ``info["raw_reward"]`` unless a wrapper below already put it there (Atari).
    ``state_dict()`` holds plain tensors and floats (loadable with ``torch.load(weights_only=True)``);
    ``update_stats=False`` freezes the statistics for evaluation.  ``VecNormalizeObservation`` /
    ``VecNormalizeReward`` wrap a ``gymnasium.vector.VectorEnv``; with NEXT_STEP autoreset the
    reset steps (reward 0, not part of an episode) are left out of the return statistics.

``FlattenGoalObservation``
    A goal env's ``Dict`` observation ``{observation, achieved_goal, desired_goal}`` (or any
    ``keys=``) becomes one flat ``Box``, the keys concatenated in the order of ``keys``
    (default :data:`GOAL_KEYS`: observation, achieved_goal, desired_goal), each flattened in C
    order; :meth:`FlattenGoalObservation.unflatten` inverts it (NumPy or torch, any batch dims).
    ``VecFlattenGoalObservation`` does the same for a vector env.  Over a goal env with
    ``compute_reward`` (``gymnasium.make("rlkit/PointMazeU-v0")``) it passes Gymnasium's checker and
    trains with SB3; SB3's ``check_env`` refuses every flat view of such an env by its rule (a base
    env with ``compute_reward`` must have a Dict observation space; the Dict env under it passes).

Every wrapper passes ``gymnasium.utils.env_checker.check_env`` and SB3's ``check_env`` and
trains with SB3 (``tests/test_wrappers.py``).  Gymnasium's checker resets and steps twice with
the same seed and asks for equal outputs, which live statistics cannot give: the normalisers are
checked frozen (``update_stats=False``), as used in evaluation, and live under SB3's checker.

Usage::

    import ale_py, gymnasium as gym
    from rlkit.envs.wrappers import (FlattenGoalObservation, NormalizeObservation, NormalizeReward,
                                     ToTorch, atari_wrappers)

    gym.register_envs(ale_py)
    env = atari_wrappers(gym.make("ALE/Breakout-v5", frameskip=1, full_action_space=True),
                         protocol="machado")          # sticky actions 0.25, 18 actions
    obs, info = env.reset(seed=0)                     # uint8 [4, 84, 84]
    obs, reward, terminated, truncated, info = env.step(1)  # reward = sign(info["raw_reward"])

    obs_norm = NormalizeObservation(gym.make("Pendulum-v1"))
    env = NormalizeReward(obs_norm, gamma=0.99)
    ...                                               # train
    torch.save({"obs": obs_norm.state_dict(), "reward": env.state_dict()}, "norm.pt")
    state = torch.load("norm.pt", weights_only=True)  # plain tensors and floats
    obs_norm.load_state_dict(state["obs"])
    obs_norm.update_stats = False                     # evaluate with frozen statistics

    env = ToTorch(gym.make("CartPole-v1"), device="cpu")   # obs: torch.Tensor
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from ale_py.env import AtariEnv
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv, VectorObservationWrapper, VectorWrapper
from gymnasium.vector.utils import batch_space

from rlkit.envs.atari import (
    INFO_KEYS,
    STICKY_ACTION_PROBABILITY,
    AtariInfo,
    FireOnReset,
    NoopStart,
    _check_kwargs,
    preprocess,
    resolve_protocol,
)

__all__ = [
    "GOAL_KEYS",
    "INFO_KEYS",
    "AtariInfo",
    "FireOnReset",
    "FlattenGoalObservation",
    "NoopStart",
    "NormalizeObservation",
    "NormalizeReward",
    "RunningMeanStd",
    "StickyActions",
    "ToTorch",
    "VecFlattenGoalObservation",
    "VecNormalizeObservation",
    "VecNormalizeReward",
    "atari_wrappers",
]

#: Default key order of :class:`FlattenGoalObservation` (the goal-env convention's three keys).
GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")


# --------------------------------------------------------------------------- Atari


def atari_wrappers(
    env: gym.Env,
    *,
    protocol: str = "nature",
    noop_max: int | None = None,
    sticky_actions: bool | float | None = None,
    terminal_on_life_loss: bool | None = None,
    use_fire_reset: bool | None = None,
    frame_skip: int = 4,
    screen_size: int = 84,
    frame_stack: int = 4,
    clip_rewards: bool = True,
    max_episode_steps: int | None = None,
) -> gym.Env:
    """rlkit's Atari preprocessing over any ALE env made with ``frameskip=1``.

    ``env``: ``gymnasium.make("ALE/{Game}-v5", frameskip=1)`` (or an ``ale_py.env.AtariEnv``);
    ``obs_type="grayscale"`` is the cheapest, the wrappers read the screen themselves.
    ``protocol``: ``"nature"`` (default, as ``rlkit/{Game}-v0``) or ``"machado"``; keywords left
    at None take the protocol's value (:data:`rlkit.envs.atari.PROTOCOLS`), explicit ones win.
    ``sticky_actions``: True = 0.25 (Machado et al.), False = 0.0, or a probability; it is set on
    the env's ALE, overriding the ``repeat_action_probability`` the env was made with (ALE's
    v5 ids default to 0.25, the Nature protocol has none).  The protocol's
    ``full_action_space`` cannot be applied by a wrapper: pass ``full_action_space=True`` to
    ``gymnasium.make`` for Machado's 18 actions.  ``max_episode_steps``: a ``TimeLimit`` in agent
    steps on top (None: only the env's own cap; ALE's v5 ids end at 108,000 frames, which counts
    the no-op frames too, so up to ``noop_max / frame_skip`` agent steps earlier than
    ``rlkit/{Game}-v0``'s 27,000-step ``TimeLimit``).

    The stack: :class:`StickyActions`, then the one ``make_atari_env`` builds
    (:func:`rlkit.envs.atari.preprocess`): ``FireOnReset`` (optional) -> :class:`NoopStart` ->
    Gymnasium's ``AtariPreprocessing`` (frame skip, max-pool, resize, grayscale) ->
    ``FrameStackObservation`` (``padding_type="reset"``) -> :class:`AtariInfo` (reward
    clipping, ``raw_reward``, ``life_loss``) -> ``TimeLimit`` (optional).
    """
    atari = env.unwrapped
    if not isinstance(atari, AtariEnv):
        raise TypeError(f"atari_wrappers needs an ALE env (ale_py.env.AtariEnv), got {type(atari).__name__}; "
                        "make one with gymnasium.make('ALE/Pong-v5', frameskip=1) after gymnasium.register_envs(ale_py)")
    if atari._frameskip != 1:
        raise ValueError(f"atari_wrappers skips frames itself (frame_skip={frame_skip}); make the env with "
                         f"frameskip=1, e.g. gymnasium.make('ALE/Pong-v5', frameskip=1) (it has frameskip={atari._frameskip!r})")
    p = resolve_protocol(protocol, noop_max=noop_max, sticky_actions=sticky_actions,
                         terminal_on_life_loss=terminal_on_life_loss, use_fire_reset=use_fire_reset)
    _check_kwargs(noop_max=p["noop_max"], frame_skip=frame_skip, screen_size=screen_size,
                  frame_stack=frame_stack, max_episode_steps=max_episode_steps)
    sticky = p["sticky_actions"]
    probability = (STICKY_ACTION_PROBABILITY if sticky else 0.0) if isinstance(sticky, (bool, np.bool_)) else sticky
    return preprocess(StickyActions(env, probability), noop_max=p["noop_max"], use_fire_reset=p["use_fire_reset"],
                      terminal_on_life_loss=p["terminal_on_life_loss"], frame_skip=frame_skip,
                      screen_size=screen_size, frame_stack=frame_stack, clip_rewards=clip_rewards,
                      max_episode_steps=max_episode_steps)


class StickyActions(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Set the ALE's ``repeat_action_probability`` (Machado et al. 2018's sticky actions: each
    emulator frame repeats the previous action with this probability, inside ALE, seeded by
    ``reset(seed=...)``), overriding the value the env was made with.  A wrapper rather than a
    one-off setting so that ``env.spec`` rebuilds the same env."""

    def __init__(self, env: gym.Env, repeat_action_probability: float):
        if isinstance(repeat_action_probability, bool) or not 0.0 <= repeat_action_probability <= 1.0:
            raise ValueError(f"sticky_actions must be a bool or a probability in [0, 1], got {repeat_action_probability!r}")
        gym.utils.RecordConstructorArgs.__init__(self, repeat_action_probability=repeat_action_probability)
        super().__init__(env)
        self.repeat_action_probability = float(repeat_action_probability)
        atari = env.unwrapped
        atari.ale.setFloat("repeat_action_probability", self.repeat_action_probability)
        atari.load_game()  # ALE applies settings when it loads the ROM (reset(seed=...) reloads it too)


# --------------------------------------------------------------------------- torch


def _resolve_device(device: str | torch.device) -> torch.device:
    if device == "auto":  # rlkit's convention (rlkit.training.loops.resolve_device): CUDA when there is one
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _to_torch(value: Any, device: torch.device) -> Any:
    if isinstance(value, dict):
        return {key: _to_torch(v, device) for key, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_to_torch(v, device) for v in value)
    return torch.tensor(np.asarray(value), device=device)  # a copy: envs may reuse their buffers


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {key: _to_numpy(v) for key, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_to_numpy(v) for v in value)
    return value


class ToTorch(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Observations as ``torch.Tensor``\\ s on ``device``; tensor actions back to NumPy.

    ``Box`` observations become one tensor (dtype kept: Atari frames stay ``uint8``), ``Dict``
    a dict and ``Tuple`` a tuple of tensors.  Actions may be tensors (any device) or anything
    the wrapped env accepts; a 0-d integer tensor for a ``Discrete`` space becomes an ``int``.
    Rewards, ``terminated``/``truncated`` and ``info`` pass through unchanged.
    ``device="auto"``: CUDA when torch sees one, else CPU (rlkit's convention).
    ``observation_space``/``action_space`` are the wrapped env's NumPy spaces: the checkers and
    SB3 apply to the env under this wrapper (``env.env``).
    """

    def __init__(self, env: gym.Env, device: str | torch.device = "auto"):
        gym.utils.RecordConstructorArgs.__init__(self, device=str(device))
        super().__init__(env)
        self.device = _resolve_device(device)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return _to_torch(obs, self.device), info

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        action = _to_numpy(action)
        if isinstance(self.action_space, spaces.Discrete) and isinstance(action, np.ndarray) and action.ndim == 0:
            action = int(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        return _to_torch(obs, self.device), reward, terminated, truncated, info


# --------------------------------------------------------------------------- normalisation


class RunningMeanStd:
    """Running mean and (population) variance of arrays of a fixed ``shape``, in float64.

    ``update(batch)`` merges a batch (leading axis) into the statistics with Chan et al.'s
    parallel form of Welford's algorithm: exact whatever the batch sizes, so ``update`` of the
    whole data or of any split of it gives the same result (up to rounding).  Before the first
    update ``mean = 0`` and ``var = 1``.
    """

    def __init__(self, shape: Sequence[int] = ()):
        self.shape = tuple(shape)
        self.mean = np.zeros(self.shape, dtype=np.float64)
        self.var = np.ones(self.shape, dtype=np.float64)
        self.count = 0.0

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, dtype=np.float64).reshape(-1, *self.shape)
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean, batch_var = batch.mean(axis=0), batch.var(axis=0)
        if self.count == 0:
            self.mean, self.var, self.count = batch_mean, batch_var, float(n)
            return
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        """``{"mean": tensor, "var": tensor, "count": float}`` (float64 tensors; ``weights_only``-safe)."""
        return {"mean": torch.tensor(self.mean), "var": torch.tensor(self.var), "count": float(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore saved statistics, checked first (a ValueError names what is wrong; nothing changes): shapes
        that fit, a finite mean, a finite variance >= 0 and a finite count >= 0."""
        try:
            mean = np.asarray(torch.as_tensor(state["mean"]).cpu().numpy(), dtype=np.float64)
            var = np.asarray(torch.as_tensor(state["var"]).cpu().numpy(), dtype=np.float64)
            count = float(state["count"])
        except KeyError as exc:
            raise ValueError(f"normalisation statistics lack {exc}; expected mean, var and count") from None
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"normalisation statistics are not numbers ({' '.join(str(exc).split())[:120]})") \
                from None
        if mean.shape != self.shape or var.shape != self.shape:
            raise ValueError(f"normalisation statistics of shape {mean.shape} do not fit this env's {self.shape}")
        if not np.isfinite(mean).all():
            raise ValueError("normalisation statistics: the mean holds NaN or inf")
        if not np.isfinite(var).all() or (var < 0).any():
            raise ValueError(f"normalisation statistics: the variance must be finite and >= 0, got min "
                             f"{np.nanmin(var) if np.isfinite(var).any() else var.flat[0]}")
        if not 0.0 <= count < np.inf:
            raise ValueError(f"normalisation statistics: the count must be finite and >= 0, got {count}")
        self.mean, self.var, self.count = mean.copy(), var.copy(), count


def _normalized_box(space: gym.Space, clip: float, who: str) -> spaces.Box:
    if not isinstance(space, spaces.Box):
        raise TypeError(f"{who} normalises Box observations, got {space}; flatten a Dict first "
                        "(FlattenGoalObservation)")
    return spaces.Box(-clip, clip, shape=space.shape, dtype=np.float32)


def _check_normalizer_args(clip: float, epsilon: float, gamma: float | None = None) -> None:
    if gamma is not None and not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
    if not clip > 0:
        raise ValueError(f"clip must be > 0 (np.inf for none), got {clip!r}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")


class NormalizeObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """``clip((obs - mean) / sqrt(var + epsilon), -clip, clip)`` as float32, with running statistics.

    Each observation (reset and step) updates the statistics first while ``update_stats``.
    ``state_dict()`` / ``load_state_dict()`` save and restore them (:class:`RunningMeanStd`).
    """

    def __init__(self, env: gym.Env, *, clip: float = 10.0, epsilon: float = 1e-8, update_stats: bool = True):
        gym.utils.RecordConstructorArgs.__init__(self, clip=clip, epsilon=epsilon, update_stats=update_stats)
        super().__init__(env)
        _check_normalizer_args(clip, epsilon)
        self.observation_space = _normalized_box(env.observation_space, clip, "NormalizeObservation")
        self.clip, self.epsilon, self.update_stats = float(clip), float(epsilon), update_stats
        self.obs_rms = RunningMeanStd(env.observation_space.shape)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        if self.update_stats:
            self.obs_rms.update(observation[None])
        return _normalize_obs(observation, self.obs_rms, self.clip, self.epsilon)

    def state_dict(self) -> dict[str, Any]:
        return self.obs_rms.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.obs_rms.load_state_dict(state)


def _normalize_obs(obs: np.ndarray, rms: RunningMeanStd, clip: float, epsilon: float) -> np.ndarray:
    return np.clip((obs - rms.mean) / np.sqrt(rms.var + epsilon), -clip, clip).astype(np.float32)


class NormalizeReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Rewards divided by the running std of the discounted return, then clipped.

    ``R = gamma * R + reward`` per step (``R = 0`` at reset and after the episode ends);
    ``R`` updates a :class:`RunningMeanStd` while ``update_stats``; the reward returned is
    ``clip(reward / sqrt(var(R) + epsilon))``.  ``info["raw_reward"]`` keeps the reward as given
    (set only if absent, so Atari's unclipped score survives).  ``state_dict()`` holds the
    statistics and the in-flight return.
    """

    def __init__(self, env: gym.Env, *, gamma: float = 0.99, clip: float = 10.0, epsilon: float = 1e-8,
                 update_stats: bool = True):
        gym.utils.RecordConstructorArgs.__init__(self, gamma=gamma, clip=clip, epsilon=epsilon,
                                                 update_stats=update_stats)
        super().__init__(env)
        _check_normalizer_args(clip, epsilon, gamma)
        self.gamma, self.clip, self.epsilon, self.update_stats = float(gamma), float(clip), float(epsilon), update_stats
        self.return_rms = RunningMeanStd(())
        self.discounted_return = 0.0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.discounted_return = 0.0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        reward = float(reward)
        self.discounted_return = self.gamma * self.discounted_return + reward
        if self.update_stats:
            self.return_rms.update(np.array([self.discounted_return]))
        if terminated or truncated:
            self.discounted_return = 0.0
        info.setdefault("raw_reward", reward)
        scaled = float(np.clip(reward / np.sqrt(self.return_rms.var + self.epsilon), -self.clip, self.clip))
        return obs, scaled, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        return {**self.return_rms.state_dict(), "return": float(self.discounted_return)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        discounted = float(state.get("return", 0.0))
        if not np.isfinite(discounted):
            raise ValueError(f"normalisation statistics: the running return must be finite, got {discounted}")
        self.return_rms.load_state_dict(state)
        self.discounted_return = discounted


class VecNormalizeObservation(VectorObservationWrapper):
    """:class:`NormalizeObservation` for a ``VectorEnv``: one statistic, updated with all
    sub-envs' observations of a step at once (parallel Welford merge)."""

    def __init__(self, env: VectorEnv, *, clip: float = 10.0, epsilon: float = 1e-8, update_stats: bool = True):
        super().__init__(env)
        _check_normalizer_args(clip, epsilon)
        self.single_observation_space = _normalized_box(env.single_observation_space, clip, "VecNormalizeObservation")
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)
        self.clip, self.epsilon, self.update_stats = float(clip), float(epsilon), update_stats
        self.obs_rms = RunningMeanStd(env.single_observation_space.shape)

    def observations(self, observations: np.ndarray) -> np.ndarray:
        if self.update_stats:
            self.obs_rms.update(observations)
        return _normalize_obs(observations, self.obs_rms, self.clip, self.epsilon)

    def state_dict(self) -> dict[str, Any]:
        return self.obs_rms.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.obs_rms.load_state_dict(state)


class VecNormalizeReward(VectorWrapper):
    """:class:`NormalizeReward` for a ``VectorEnv``: one return per sub-env, one statistic.

    With NEXT_STEP autoreset (Gymnasium's default, ALE's native vector env) the step after a
    sub-env's episode end is its reset step (reward 0): it is left out of the statistics.
    ``info["raw_reward"]`` (an array) keeps the rewards as given, unless already present.
    """

    def __init__(self, env: VectorEnv, *, gamma: float = 0.99, clip: float = 10.0, epsilon: float = 1e-8,
                 update_stats: bool = True):
        super().__init__(env)
        _check_normalizer_args(clip, epsilon, gamma)
        self.gamma, self.clip, self.epsilon, self.update_stats = float(gamma), float(clip), float(epsilon), update_stats
        self.return_rms = RunningMeanStd(())
        self.discounted_return = np.zeros(env.num_envs, dtype=np.float64)
        self._next_step_autoreset = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP) == AutoresetMode.NEXT_STEP
        self._resetting = np.zeros(env.num_envs, dtype=bool)

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        mask = slice(None) if not options or "reset_mask" not in options else np.asarray(options["reset_mask"])
        self.discounted_return[mask] = 0.0
        self._resetting[mask] = False
        return self.env.reset(seed=seed, options=options)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        raw = np.asarray(rewards)
        live = ~self._resetting
        self.discounted_return = np.where(live, self.gamma * self.discounted_return + raw, 0.0)
        if self.update_stats:
            self.return_rms.update(self.discounted_return[live])
        done = np.asarray(terminated) | np.asarray(truncated)
        self.discounted_return[done] = 0.0
        if self._next_step_autoreset:
            self._resetting = done
        if "raw_reward" not in info:
            info = {**info, "raw_reward": raw}
        dtype = raw.dtype if np.issubdtype(raw.dtype, np.floating) else np.float64
        scaled = np.clip(raw / np.sqrt(self.return_rms.var + self.epsilon), -self.clip, self.clip).astype(dtype)
        return obs, scaled, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        return {**self.return_rms.state_dict(), "return": torch.tensor(self.discounted_return),
                "resetting": torch.as_tensor(self._resetting)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        returns = None
        if "return" in state:
            returns = torch.as_tensor(state["return"]).cpu().numpy().astype(np.float64)
            if returns.shape != self.discounted_return.shape:
                raise ValueError(f"saved returns for {returns.shape[0]} sub-envs, this env has {self.num_envs}")
            if not np.isfinite(returns).all():
                raise ValueError("normalisation statistics: the running returns hold NaN or inf")
        self.return_rms.load_state_dict(state)
        if returns is not None:
            self.discounted_return = returns.copy()
        if "resetting" in state:  # sub-envs whose next step is an autoreset step (left out of the statistics)
            self._resetting = torch.as_tensor(state["resetting"]).cpu().numpy().astype(bool).copy()


# --------------------------------------------------------------------------- goal observations


def _goal_layout(space: gym.Space, keys: Sequence[str] | None) -> tuple[tuple[str, ...], spaces.Box,
                                                                          dict[str, slice], dict[str, tuple[int, ...]]]:
    if not isinstance(space, spaces.Dict):
        raise TypeError(f"FlattenGoalObservation needs a Dict observation space, got {space}")
    if keys is None:
        missing = [k for k in GOAL_KEYS if k not in space.spaces]
        if missing:
            raise ValueError(f"the observation space has keys {list(space.spaces)}, not the goal-env keys "
                             f"{list(GOAL_KEYS)} (missing {missing}); pass keys=[...] in the order you want")
        keys = GOAL_KEYS
    keys = tuple(keys)
    if not keys or len(set(keys)) != len(keys) or any(k not in space.spaces for k in keys):
        raise ValueError(f"keys must be distinct keys of the observation space {list(space.spaces)}, got {list(keys)}")
    boxes = [space.spaces[k] for k in keys]
    for key, box in zip(keys, boxes):
        if not isinstance(box, spaces.Box):
            raise TypeError(f"FlattenGoalObservation flattens Box entries; {key!r} is {box}")
    dtype = np.result_type(*[box.dtype for box in boxes])
    low = np.concatenate([box.low.reshape(-1) for box in boxes]).astype(dtype)
    high = np.concatenate([box.high.reshape(-1) for box in boxes]).astype(dtype)
    slices, shapes, start = {}, {}, 0
    for key, box in zip(keys, boxes):
        size = int(np.prod(box.shape))
        slices[key], shapes[key], start = slice(start, start + size), box.shape, start + size
    return keys, spaces.Box(low, high, dtype=dtype), slices, shapes


def _unflatten(flat: Any, slices: dict[str, slice], shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    lead = tuple(flat.shape[:-1])
    return {key: flat[..., s].reshape(*lead, *shapes[key]) for key, s in slices.items()}


class FlattenGoalObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """A ``Dict`` observation of ``Box`` entries as one flat ``Box``, for agents without Dict support.

    ``keys``: which entries, in which order (default :data:`GOAL_KEYS`, i.e.
    ``[observation | achieved_goal | desired_goal]``); each entry is flattened in C order.
    ``slices[key]`` is where an entry lies in the flat vector; :meth:`unflatten` inverts the
    flattening for NumPy arrays or torch tensors with any leading batch dimensions.
    """

    def __init__(self, env: gym.Env, keys: Sequence[str] | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, keys=None if keys is None else list(keys))
        super().__init__(env)
        self.keys, self.observation_space, self.slices, self.shapes = _goal_layout(env.observation_space, keys)

    def observation(self, observation: dict[str, Any]) -> np.ndarray:
        dtype = self.observation_space.dtype
        return np.concatenate([np.asarray(observation[k], dtype=dtype).reshape(-1) for k in self.keys])

    def unflatten(self, flat: Any) -> dict[str, Any]:
        """``{key: entry}`` from flat observations of shape ``(..., n)`` (NumPy or torch)."""
        return _unflatten(flat, self.slices, self.shapes)


class VecFlattenGoalObservation(VectorObservationWrapper):
    """:class:`FlattenGoalObservation` for a ``VectorEnv``: observations of shape ``(num_envs, n)``."""

    def __init__(self, env: VectorEnv, keys: Sequence[str] | None = None):
        super().__init__(env)
        self.keys, self.single_observation_space, self.slices, self.shapes = _goal_layout(
            env.single_observation_space, keys)
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)

    def observations(self, observations: dict[str, Any]) -> np.ndarray:
        dtype = self.single_observation_space.dtype
        n = self.num_envs
        return np.concatenate([np.asarray(observations[k], dtype=dtype).reshape(n, -1) for k in self.keys], axis=1)

    def unflatten(self, flat: Any) -> dict[str, Any]:
        return _unflatten(flat, self.slices, self.shapes)


# --------------------------------------------------------------------------- PettingZoo parallel games (lazy)

_LAZY = {"ParallelEnvRows": "rlkit.envs.multiagent", "make_parallel_rows": "rlkit.envs.multiagent",
         "PixelObservation": "rlkit.envs.pixels"}


def __getattr__(name: str) -> Any:
    """``from rlkit.envs.wrappers import ParallelEnvRows``: a PettingZoo parallel game as agent-major rows of a
    vector env (:mod:`rlkit.envs.multiagent`), imported on first use so importing rlkit never imports PettingZoo."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
