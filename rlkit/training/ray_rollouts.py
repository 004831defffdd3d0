"""Rollouts on Ray actors (``train.rollouts: {backend: ray, actors: N, steps_per_call: K}``; the ``ray`` extra).

Each actor (:class:`RolloutWorker`) builds its own ``env.num_envs`` vector envs and a copy of the agent from the
run's config, and steps them with rlkit's :class:`~rlkit.training.collector.Collector` (``explore=True``) for K
vector steps per call, acting with the latest weights the learner sent: the agent's acting tensors
(``agent.acting_tensors()``, as self-play snapshots them), through Ray's object store — no files.

The learner side, :class:`RayRollouts`, has the collector's interface (``step(agent, explore)`` -> one
:class:`VectorStep`, ``num_envs``, ``state_dict``, ``load_state_dict``, ``close``), so ``train_online`` keeps one
loop body: each ``step`` returns one row of all actors' columns.

Decisions (documented here, tested in tests/test_ray_rollouts.py):
  - **One replay of ``actors * env.num_envs`` columns**: actor i owns columns ``[i * num_envs, (i + 1) * num_envs)``.
    Every experience source works unchanged (n-step, PER, HER, sequences: they all add one row of every column at
    a time), so the actors run in *rounds*: a round is one call per actor; the learner takes round r once every
    actor's K steps are in, and has already sent round r + 1 (weights as they were then), so the actors collect
    while the learner updates. Actors wait for the slowest in each round.
  - **Seeds**: the k-th actor started in a run (k = 0, 1, ...; a replacement takes the next k) seeds its sub-env e
    with ``base + 1000 * (k + 1) + e`` and its agent's generators with ``base + 1000 * (k + 1)``; ``base`` is
    ``seed`` in a new run and ``seed + step`` on resume, so no two actors, and no resumed actor, share a stream.
  - **A killed actor** (``RayActorError``, e.g. ``ray.kill``) is replaced by a new one with a fresh seed, logged
    once per replacement, and the run goes on; one that dies before returning its first batch (it could not build
    its envs, say) stops the run with its error instead, since a replacement would fail the same way. So that a
    killed actor's cut episodes leave no false transitions in the replay, the learner holds back each actor's last
    step of a call until the next round: a dead actor's held step is stored as truncated (it bootstraps from its
    true next observation) and its columns get non-transition (autoreset) rows for the rest of that round; the
    replacement's first step starts a new episode.
  - **Env steps** count the real transitions stored (held steps count when stored), as in a single process.
  - **Resume** is statistical, not exact: the actors are re-seeded (``base = seed + step``) and their episodes in
    progress at the checkpoint are lost; the learner's checkpoint (agent, replay, counters) is as usual.
  - ``sync_every``: the acting weights are put in the object store again once the agent has made ``sync_every``
    more updates; every call carries a reference to the latest ones (an actor loads them only when they changed).

Ray is imported only when this backend is used; without it the run fails at start with one line naming the extra.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import deque
from typing import Any

import numpy as np
import torch

from rlkit.errors import ConfigError
from rlkit.training.collector import Collector, VectorStep, to_host

RAY_HINT = "pip install 'rlkit-toolkit[ray]'"
SEED_STRIDE = 1000  # the k-th actor's envs are seeded from base + SEED_STRIDE * (k + 1)


def import_ray():
    """Ray, or a one-line :class:`ConfigError` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"train.rollouts.backend 'ray' needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


def actor_seed(base: int, number: int) -> int:
    """The seed of the ``number``-th actor started in a run (its sub-env e gets this + e)."""
    return base + SEED_STRIDE * (number + 1)


class RolloutWorker:
    """One actor's envs, collector and acting copy of the agent (run as a Ray actor by :class:`RayRollouts`)."""

    def __init__(self, cfg, seed: int) -> None:
        from rlkit.training.build import build_agent, env_agent_names, make_vector_env, seed_everything

        cfg = dataclasses.replace(cfg, seed=seed, device="cpu")  # actors act on CPU with their own generators
        seed_everything(seed, cfg.torch_threads)
        self.envs = make_vector_env(cfg.env)
        self.agent = build_agent(cfg, self.envs.single_observation_space, self.envs.single_action_space,
                                 torch.device("cpu"), agent_names=env_agent_names(self.envs))
        self.collector = Collector(self.envs, seed)
        self.weights_version = -1

    def collect(self, weights: tuple[int, dict[str, torch.Tensor]], env_steps: int, steps: int) -> list[VectorStep]:
        """``steps`` vector steps with ``explore=True`` acting with ``weights`` (version, acting tensors);
        ``env_steps``: the run's env-step clock (exploration schedules), advanced here by this actor's rows."""
        version, tensors = weights
        if version != self.weights_version:
            self.agent.load_acting_tensors(tensors)
            self.weights_version = version
        out = []
        for i in range(steps):
            self.agent.set_env_steps(env_steps + i * self.collector.num_envs)
            step = self.collector.step(self.agent, explore=True)
            out.append(step if i == steps - 1 else dataclasses.replace(step, next_obs=None))  # only the last's is used
        return out

    def acting_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.agent.acting_tensors().items()}

    def close(self) -> None:
        self.envs.close()


class RayRollouts:
    """The learner's side: N actors kept busy, their batches handed out one row (all columns) at a time."""

    def __init__(self, cfg, num_envs_per_actor: int, message=None) -> None:
        self.ray = import_ray()
        self.cfg, self.settings = cfg, cfg.train.rollouts
        self.per_actor = num_envs_per_actor
        self.num_envs = self.settings.actors * num_envs_per_actor
        self.base_seed = cfg.seed
        self.message = message or (lambda text: print(text, file=sys.stderr, flush=True))
        self.actors: list[Any] = []
        self.calls: list[Any] = []
        self.held: list[VectorStep | None] = []
        self.started_ray = False
        self.numbers = 0  # actors started so far (the next one's seed number)
        self.replaced = 0
        self.rows: deque[VectorStep] = deque()
        self._weights_ref = None
        self._version = -1
        self._synced_at = 0

    # ------------------------------------------------------------------ the collector's interface
    def step(self, agent, explore: bool = True, epsilon: float | None = None) -> VectorStep:
        """The next row of all actors' columns (``explore`` is always True on actors: this is training)."""
        while not self.rows:
            self._round(agent)
        return self.rows.popleft()

    def state_dict(self) -> dict[str, Any]:
        return {"ray_rollouts": {"actors": self.settings.actors}}  # nothing to restore exactly: actors re-seed

    def load_state_dict(self, state: dict[str, Any], seed: int, reseed: int, agent=None) -> bool:
        """Resume: the actors (started at the first step) are seeded from ``reseed``; never exact."""
        self.base_seed = reseed
        return False

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # already dead
                pass
        self.actors, self.calls = [], []
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False

    # ------------------------------------------------------------------ rounds
    def _start(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            ray.init(address=self.settings.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            self.started_ray = True
        self._remote = ray.remote(RolloutWorker).options(num_cpus=self.settings.cpus_per_actor, max_restarts=0)
        self.actors = [self._new_actor() for _ in range(self.settings.actors)]
        self.held = [None] * self.settings.actors
        self.returned = [False] * self.settings.actors  # whether slot i's current actor has returned a batch yet

    def _new_actor(self):
        actor = self._remote.remote(self.cfg, actor_seed(self.base_seed, self.numbers))
        self.numbers += 1
        return actor

    def _weights(self, agent):
        """A reference to the latest acting weights in the object store, refreshed every ``sync_every`` updates."""
        if self._weights_ref is None or agent.updates - self._synced_at >= self.settings.sync_every:
            tensors = {k: v.detach().to("cpu", copy=True) for k, v in agent.acting_tensors().items()}
            self._version += 1
            self._weights_ref = self.ray.put((self._version, tensors))
            self._synced_at = agent.updates
        return self._weights_ref

    def _call(self, actor, agent):
        return actor.collect.remote(self._weights(agent), int(agent.env_steps), self.settings.steps_per_call)

    def _round(self, agent) -> None:
        ray = self.ray
        if not self.actors:
            self._start()
            self.calls = [self._call(actor, agent) for actor in self.actors]
        results: list[list[VectorStep] | None] = []
        for i, call in enumerate(self.calls):
            try:
                results.append(ray.get(call))
                self.returned[i] = True
            except ray.exceptions.RayActorError as exc:
                if not self.returned[i]:  # e.g. it could not build its envs: a replacement would fail the same way
                    raise RuntimeError(f"rollout actor {i} died before returning its first batch: {exc}") from None
                self.returned[i] = False
                self.replaced += 1
                self.message(f"rlkit: warning: rollout actor {i} died ({type(exc).__name__}); replaced by a new one "
                             f"with a fresh seed (replacement {self.replaced}), the run goes on")
                self.actors[i] = self._new_actor()
                results.append(None)
        self.calls = [self._call(actor, agent) for actor in self.actors]  # the next round runs while we learn
        k = self.settings.steps_per_call
        columns = [self._columns(i, steps, k) for i, steps in enumerate(results)]
        for row in range(len(columns[0])):
            self.rows.append(_concat([col[row] for col in columns], self.per_actor))

    def _columns(self, i: int, steps: list[VectorStep] | None, k: int) -> list[VectorStep]:
        """Actor i's rows of this round: its held step and all but the last of its new steps (held in turn; none is
        held before the first round); for a dead actor (which had returned before), its held step cut as truncated,
        then non-transition rows (see the module docstring)."""
        held = self.held[i]
        if steps is not None:
            self.held[i] = steps[-1]
            return ([held] if held is not None else []) + steps[:-1]
        cut = dataclasses.replace(held, truncated=held.truncated | ~held.autoreset)
        blank = _blank(held)
        self.held[i] = blank
        return [cut] + [blank] * (k - 1)


def _blank(held: VectorStep) -> VectorStep:
    """A row that stores no transition (autoreset) holding the true next observation of ``held``."""
    n = len(held.rewards)
    false = np.zeros(n, dtype=bool)
    return VectorStep(obs=held.next_obs, actions=held.actions, rewards=np.zeros_like(held.rewards),
                      next_obs=held.next_obs,
                      terminated=false, truncated=false, life_loss=false, autoreset=np.ones(n, dtype=bool), infos={},
                      agent_id=held.agent_id, real_steps=0, episodes=[])


def _cat(parts: list[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {key: np.concatenate([to_host(p[key]) for p in parts]) for key in parts[0]}
    return np.concatenate([to_host(p) for p in parts])


def _concat(steps: list[VectorStep], per_actor: int) -> VectorStep:
    """One row of all actors' columns; actor i's env e is column ``i * per_actor + e``."""
    keys = set.intersection(*(set(s.infos) for s in steps))
    infos = {key: _cat([s.infos[key] for s in steps]) for key in keys
             if all(isinstance(s.infos[key], np.ndarray) and s.infos[key].shape[:1] == (per_actor,) for s in steps)}
    return VectorStep(obs=_cat([s.obs for s in steps]), actions=_cat([s.actions for s in steps]),
                      rewards=_cat([s.rewards for s in steps]), next_obs=None,
                      terminated=_cat([s.terminated for s in steps]), truncated=_cat([s.truncated for s in steps]),
                      life_loss=_cat([s.life_loss for s in steps]), autoreset=_cat([s.autoreset for s in steps]),
                      infos=infos, agent_id=None if steps[0].agent_id is None else _cat([s.agent_id for s in steps]),
                      real_steps=sum(s.real_steps for s in steps),
                      episodes=[(i * per_actor + e, ret, length) for i, s in enumerate(steps)
                                for e, ret, length in s.episodes])
