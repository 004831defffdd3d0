"""Stepping vector envs with an agent: the one collect step shared by training, evaluation, the
benchmark harness and ``rlkit collect``.

Conventions every environment follows (gymnasium's own, plus two optional info keys):
  - Vector envs use gymnasium's NEXT_STEP autoreset: after a step that returns ``terminated`` or
    ``truncated`` for env e, the next ``step`` resets e and its action is ignored. Such a step is an
    *autoreset* step: not a transition. Its input observation is the episode's true final observation,
    which is how the replay buffer bootstraps through truncations (terminations cut the bootstrap).
  - ``info["raw_reward"]`` (optional): the unclipped reward, used for reported episode returns when
    the env clips the reward it trains on (Atari).
  - ``info["life_loss"]`` (optional): a life was lost on this step; stored as a termination for
    bootstrapping (Nature DQN's "terminal on life loss") while the episode — and its reported return —
    goes on to the end of the game.

Env steps count real transitions only (autoreset steps are not counted), like SB3's ``num_timesteps``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch

from rlkit.contract.agent import StepRecord
from rlkit.training.selfplay import SelfPlayPool


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
        return [(ret, length) for _, ret, length in self.step_envs(rewards, terminated, truncated, infos, autoreset)]

    def step_envs(self, rewards, terminated, truncated, infos, autoreset) -> list[tuple[int, float, int]]:
        """:meth:`step` with each finished episode's sub-env: ``(env, return, length)``."""
        raw = np.asarray(infos.get("raw_reward", rewards), dtype=np.float64)
        real = ~autoreset
        self.returns[real] += raw[real]
        self.lengths[real] += 1
        done = (terminated | truncated) & real
        if not done.any():  # most steps: no episode ends
            return []
        finished = [(int(e), float(self.returns[e]), int(self.lengths[e])) for e in np.flatnonzero(done)]
        self.returns[done] = 0.0
        self.lengths[done] = 0
        return finished


@runtime_checkable
class ReplayableVectorEnv(Protocol):
    """A vector env that logs its own episodes for exact resume (rlkit.envs.multiagent's rows): ``replay_state()``
    is JSON text; ``restore_replay(text)`` rebuilds the games from it and returns the current observations."""

    def replay_state(self) -> str: ...

    def restore_replay(self, state: str) -> Any: ...


class EnvReplay:
    """Exact resume for gymnasium's ``SyncVectorEnv``: for each sub-env, remember the RNG state just
    before its current episode's reset and the actions taken since. Restoring = set that RNG state,
    reset, replay the actions — the env is then in exactly the state it had at the checkpoint,
    without pickling any env object. A vector env that keeps such a log itself (:class:`ReplayableVectorEnv`:
    the multi-agent rows) is asked for it instead. Envs without Python-visible state (ALE's native vector env)
    are re-seeded, and the resumed run is statistically — not bitwise — the same."""

    def __init__(self, envs: gym.vector.VectorEnv) -> None:
        self.own_log = isinstance(envs, ReplayableVectorEnv)
        self.supported = isinstance(envs, gym.vector.SyncVectorEnv) or self.own_log
        self.envs = envs
        n = envs.num_envs
        self.start_rng: list[str | None] = [None] * n
        self.actions: list[list[Any]] = [[] for _ in range(n)]

    def before_step(self, actions: np.ndarray, autoreset: np.ndarray) -> None:
        if not self.supported or self.own_log:
            return
        for e in range(self.envs.num_envs):
            if autoreset[e]:  # this step resets env e: its next episode starts from this RNG state
                self.start_rng[e] = json.dumps(self.envs.envs[e].unwrapped.np_random.bit_generator.state)
                self.actions[e] = []
            else:
                self.actions[e].append(actions[e].tolist())

    def state_dict(self) -> dict[str, Any]:
        if self.own_log:
            return {"supported": True, "own_log": self.envs.replay_state()}
        return {"supported": self.supported, "start_rng": json.dumps(self.start_rng), "actions": json.dumps(self.actions)}

    def restore(self, state: dict[str, Any], seed: int, autoreset: np.ndarray) -> np.ndarray | None:
        """Bring the envs back to the checkpoint; returns the current observations (None: not exact)."""
        if not (self.supported and state.get("supported")):
            return None
        if self.own_log:
            if not isinstance(state.get("own_log"), str):
                return None  # a checkpoint from before these envs logged themselves: re-seed
            return self.envs.restore_replay(state["own_log"])
        self.start_rng = json.loads(state["start_rng"])
        self.actions = json.loads(state["actions"])
        space = self.envs.single_action_space
        if len(self.actions) != self.envs.num_envs or len(self.start_rng) != self.envs.num_envs:
            raise ValueError(f"env replay holds {len(self.actions)} action lists for {self.envs.num_envs} envs")
        for e, actions in enumerate(self.actions):  # replay only what the env could have been given
            for action in actions:
                try:
                    value = np.asarray(action, dtype=space.dtype) if isinstance(action, list) else action
                    valid = space.contains(value)
                except (TypeError, ValueError, OverflowError):
                    valid = False
                if not valid:
                    raise ValueError(f"env replay action {action!r} of env {e} is not in the action space {space}")
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
        if isinstance(obs_list[0], dict):
            return {key: np.stack([o[key] for o in obs_list]) for key in obs_list[0]}
        return np.stack(obs_list)


@dataclass(frozen=True)
class VectorStep:
    """One step of all sub-envs, as the experience sources take it (``ReplayBuffer.add``'s arguments)."""

    obs: Any                  # [N, ...] (or a dict) the observations acted on
    actions: np.ndarray       # [N, ...]
    rewards: np.ndarray       # [N]
    next_obs: Any             # [N, ...] what the step returned (a reset observation where autoreset)
    terminated: np.ndarray    # [N] bool
    truncated: np.ndarray     # [N] bool
    life_loss: np.ndarray     # [N] bool, info["life_loss"]: stored as a termination for bootstrapping
    autoreset: np.ndarray     # [N] bool: this step reset env e and ignored its action
    infos: dict[str, Any]     # the vector env's infos of this step (e.g. "is_success" of goal envs)
    agent_id: np.ndarray | None  # [N] int64 whose row each of ``obs`` is (multi-agent rows), else None
    real_steps: int           # transitions in this step (N minus the autoreset steps)
    episodes: list[tuple[int, float, int]]  # (env, return, length) of episodes that ended on this step


class Collector:
    """Steps a vector env with ``agent.act`` and keeps what the next step needs: the current
    observations, which sub-envs autoreset next, which observations start an episode (``episode_start``
    for agents with memory), the reward that led to each observation (``prev_reward``: 0 at an episode's
    first) and the running episode returns; ``agent.act`` gets them as one :class:`StepRecord`. Its ``state_dict`` is the env side of a
    checkpoint; :meth:`load_state_dict` brings the envs back exactly where :class:`EnvReplay` can."""

    def __init__(self, envs: gym.vector.VectorEnv, seed: int) -> None:
        self.envs = envs
        self.num_envs = envs.num_envs
        self.tracker = EpisodeTracker(self.num_envs)
        self.env_replay = EnvReplay(envs)
        self._no_life_loss = np.zeros(self.num_envs, dtype=bool)  # a step's life_loss where the env reports none
        self._no_life_loss.flags.writeable = False  # shared by the steps: read only
        settings = SelfPlayPool.settings(envs)  # two-player seat envs playing the learner's past snapshots
        self.pool = SelfPlayPool(*settings) if settings is not None else None
        if self.pool is not None:
            self.pool.attach(envs)
        self.reset(seed)

    def reset(self, seed: int) -> None:
        self.obs, infos = self.envs.reset(seed=seed)
        self.rows = _row_info(infos)
        # rows with no agent yet (a multi-agent game's late joiners, rlkit.envs.multiagent) start as autoreset
        # rows: their first step returns their first observation and is not a transition
        self.autoreset = np.asarray(infos.get("inactive", np.zeros(self.num_envs, dtype=bool)), dtype=bool).copy()
        self.episode_start = np.ones(self.num_envs, dtype=bool)
        self.prev_reward = np.zeros(self.num_envs, dtype=np.float32)
        self.tracker.returns[:] = 0.0
        self.tracker.lengths[:] = 0

    def step(self, agent, explore: bool, epsilon: float | None = None) -> VectorStep:
        obs, autoreset, agent_id = self.obs, self.autoreset, self.rows.get("agent_id")
        record = StepRecord.from_arrays(obs, agent.device, prev_reward=self.prev_reward,
                                        episode_start=self.episode_start, **self.rows)
        actions = agent.act(record, explore=explore, epsilon=epsilon)
        self.env_replay.before_step(actions, autoreset)
        next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        life_loss = infos.get("life_loss")
        life_loss = self._no_life_loss if life_loss is None else np.asarray(life_loss, dtype=bool)
        step = VectorStep(obs=obs, actions=actions, rewards=rewards, next_obs=next_obs, terminated=terminated,
                          truncated=truncated, life_loss=life_loss, autoreset=autoreset, infos=infos,
                          agent_id=agent_id,
                          real_steps=self.num_envs - int(np.count_nonzero(autoreset)),
                          episodes=self.tracker.step_envs(rewards, terminated, truncated, infos, autoreset))
        if self.pool is not None and explore:  # training steps grow the pool (evaluation never does)
            self.pool.after_steps(agent, step.real_steps)
        self.episode_start = autoreset
        self.prev_reward = np.where(autoreset, 0.0, rewards).astype(np.float32)
        self.autoreset = terminated | truncated
        self.obs = next_obs
        self.rows = _row_info(infos)
        return step

    def state_dict(self) -> dict[str, Any]:
        return {
            "obs": _obs_to_state(self.obs),
            "autoreset": torch.as_tensor(self.autoreset), "episode_start": torch.as_tensor(self.episode_start),
            "prev_reward": torch.as_tensor(self.prev_reward),
            "episode_returns": torch.as_tensor(self.tracker.returns),
            "episode_lengths": torch.as_tensor(self.tracker.lengths),
            "env_replay": self.env_replay.state_dict(),
            # the current rows' agent ids / action masks (from the last step's infos): a resume acts on these
            "rows": {key: torch.as_tensor(value) for key, value in self.rows.items()},
            **({"selfplay": {**self.pool.state_dict(), "opponents": [
                game.opponent_state() for game in SelfPlayPool._selfplay_envs(self.envs)]}}
               if self.pool is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any], seed: int, reseed: int, agent=None) -> bool:
        """Restore the envs; returns True if exact. Envs that cannot replay are reset with ``reseed``
        (the resumed run is then statistically, not bitwise, the same). The self-play pool (``agent``: the loaded
        agent that plays its snapshots) comes back first, so the replayed games meet the same opponents."""
        if self.pool is not None:
            if not isinstance(state.get("selfplay"), dict) or agent is None:
                raise ValueError("the checkpoint has no self-play pool for this run's self-play envs")
            self.pool.load_state_dict(state["selfplay"], agent)
            games = SelfPlayPool._selfplay_envs(self.envs)
            opponents = state["selfplay"].get("opponents")
            if opponents is None:
                raise ValueError("the checkpoint's self-play state has no games' opponents (written before rlkit kept "
                                 "them, commit 8432419): it cannot resume exactly; start a new run from its weights")
            if not isinstance(opponents, list) or len(opponents) != len(games):
                raise ValueError("the checkpoint's self-play opponents do not match this run's envs")
            for game, opponent in zip(games, opponents):  # each game in progress meets its own opponents again
                game.force_next_opponent(opponent)
                for deal in opponent["deals"]:
                    if deal["kind"] == "pool":
                        self.pool.check_snapshot(deal["tensors"], agent, "opponent of a game in progress")
        self.autoreset = state["autoreset"].numpy().astype(bool)
        self.episode_start = state["episode_start"].numpy().astype(bool)
        prev_reward = state.get("prev_reward")  # absent in checkpoints from before the step record
        self.prev_reward = (np.zeros(self.num_envs, dtype=np.float32) if prev_reward is None
                            else prev_reward.numpy().astype(np.float32))
        for name in ("autoreset", "episode_start", "prev_reward"):
            if getattr(self, name).shape != (self.num_envs,):
                raise ValueError(f"collector.{name} has shape {getattr(self, name).shape}, expected ({self.num_envs},)")
        if not np.isfinite(self.prev_reward).all():
            raise ValueError("collector.prev_reward is not finite")
        self.tracker.returns[:] = state["episode_returns"].numpy()
        self.tracker.lengths[:] = state["episode_lengths"].numpy()
        restored = self.env_replay.restore(state["env_replay"], seed, self.autoreset)
        if restored is None:
            self.reset(reseed)
            return False
        if not _obs_close(restored, state["obs"]):  # e.g. an env that is not deterministic given its RNG
            print("rlkit: warning: env replay did not reproduce the checkpoint's observations; "
                  "continuing from the replayed state", flush=True)
        self.obs = restored
        rows = state.get("rows")  # absent in checkpoints from before it was kept: the reset's, as then
        if rows is not None:
            if set(rows) - {"agent_id", "action_mask"} or any(len(v) != self.num_envs for v in rows.values()):
                raise ValueError(f"collector.rows holds {sorted(rows)} for {self.num_envs} envs: not this run's")
            self.rows = {key: value.numpy() for key, value in rows.items()}
        return True


def _row_info(infos: Any) -> dict[str, Any]:
    """``agent_id`` and ``action_mask`` of the rows' current observations where the vector env reports them in its
    infos (multi-agent rows, rlkit.envs.multiagent), for the step record. A mask that travels this way constrains
    acting only; one that rides in a Dict observation's ``action_mask`` key (the board games) reaches the replay
    and the targets too."""
    if not isinstance(infos, dict):
        return {}
    return {key: np.asarray(infos[key]) for key in ("agent_id", "action_mask") if key in infos}


def to_host(value: Any) -> np.ndarray:
    """An observation batch on the host: numpy as it is, a (device-resident env's) tensor copied off its device."""
    return value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)


def _obs_to_state(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {key: torch.as_tensor(to_host(value)) for key, value in obs.items()}
    return torch.as_tensor(to_host(obs))


def _obs_close(restored: Any, saved: Any) -> bool:
    if isinstance(restored, dict):
        return all(np.allclose(to_host(restored[k]), saved[k].numpy()) for k in restored)
    return bool(np.allclose(to_host(restored), saved.numpy()))
