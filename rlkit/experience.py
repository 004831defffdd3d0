"""Experience sources: where an agent's batches come from, behind one small protocol.

An agent's config names the experience it learns from (``AgentConfig.experience``; Acme's adder
choice), and both loops build it the same way (d3rlpy's dataset/online symmetry):

==============  ===================================  ==========================================
experience      online (``train_online``)            offline (``train_offline``)
==============  ===================================  ==========================================
transitions     ``ReplayBuffer``: n-step, PER         the same ``ReplayBuffer``, filled once from
                                                      the dataset, behind :class:`DatasetSource`
sequences       ``SequenceBuffer``: windows + masks   the same ``SequenceBuffer`` filled from the
                                                      dataset, behind :class:`DatasetSource`
==============  ===================================  ==========================================

The protocol (:class:`ExperienceSource`): ``add(obs, actions, rewards, terminated, truncated,
autoreset)`` for one vector step (online), ``sample(batch_size) -> batch`` (a frozen dataclass of
tensors: ``Transitions`` or ``Sequences``), ``state_dict()`` / ``load_state_dict()`` for exact resume.
A sample-time hook (``sample_hook``, see rlkit.replay) may rewrite a batch before the agent sees it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from rlkit.config import RunConfig
from rlkit.errors import ConfigError, DatasetError


@runtime_checkable
class ExperienceSource(Protocol):
    def add(self, obs: Any, actions: Any, rewards: Any, terminated: Any, truncated: Any, autoreset: Any) -> None:
        """Store one vector step (NEXT_STEP autoreset convention: ``autoreset`` rows carry final observations)."""

    def sample(self, batch_size: int, **kwargs: Any) -> Any:
        """A batch (frozen dataclass of tensors on the source's device)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class DatasetSource:
    """A read-only experience source over a dataset: the same store the online loop uses, filled once
    from the file. ``add`` is refused; checkpoints hold only the sampling RNG (and a fingerprint of the
    dataset, so a resume against a different dataset is refused), not the data."""

    def __init__(self, store, fingerprint: dict[str, Any]) -> None:
        self.store = store
        self.fingerprint = fingerprint

    def add(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a dataset source is read-only: offline runs do not add experience")

    def sample(self, batch_size: int, **kwargs: Any):
        return self.store.sample(batch_size, **kwargs)

    def num_sampleable(self) -> int:
        return self.store.num_sampleable()

    def state_dict(self) -> dict[str, Any]:
        return {"rng_state": self.store._generator.get_state(), **self.fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = {k: state.get(k) for k in self.fingerprint}
        if saved != self.fingerprint:
            raise ValueError(f"the checkpoint was trained on another dataset ({saved}), this run has {self.fingerprint}")
        self.store._generator.set_state(state["rng_state"])


def episode_rows(episode) -> int:
    """Rows an episode takes in a replay stream: its T steps plus the final-observation row."""
    return len(episode.actions) + 1


def fill_replay(buffer, episodes) -> None:
    """Write whole episodes into a one-stream ``ReplayBuffer`` in the online loop's layout: each step's
    row, then the final observation as an autoreset row (so truncated episodes bootstrap from it).
    An episode that ends with neither flag (cut by the dataset) is stored as truncated."""
    for episode in episodes:
        observations, actions = episode.observations, episode.actions
        steps = len(actions)
        terminations = np.asarray(episode.terminations, dtype=bool).copy()
        truncations = np.asarray(episode.truncations, dtype=bool).copy()
        if steps and not (terminations[-1] or truncations[-1]):
            truncations[-1] = True
        no = np.zeros(1, dtype=bool)
        for t in range(steps):
            buffer.add(_obs_rows(observations, t), np.asarray(actions[t:t + 1]),
                       np.asarray(episode.rewards[t:t + 1], dtype=np.float32),
                       terminations[t:t + 1], truncations[t:t + 1], no)
        buffer.add(_obs_rows(observations, steps), np.asarray(actions[:1]) if steps else _zero_action(buffer),
                   np.zeros(1, dtype=np.float32), no, no, np.ones(1, dtype=bool))


def _obs_rows(observations: Any, t: int) -> Any:
    if isinstance(observations, dict):
        return {key: np.asarray(value[t:t + 1]) for key, value in observations.items()}
    return np.asarray(observations[t:t + 1])


def _zero_action(buffer) -> np.ndarray:
    return np.zeros((1, *buffer.action_shape), dtype=buffer._actions.numpy().dtype)


def dataset_source(cfg: RunConfig, device: torch.device):
    """(dataset, read-only source) for an offline run: the dataset named by ``offline.dataset``, in the
    store the agent's experience asks for."""
    from rlkit.agents import AGENTS
    from rlkit.datasets import load_dataset
    from rlkit.replay import ReplayBuffer

    dataset = load_dataset(cfg.offline.dataset)
    episodes = list(dataset.episodes)
    if not episodes:
        raise DatasetError(f"offline.dataset '{cfg.offline.dataset}' holds no episodes")
    experience = getattr(AGENTS[cfg.agent.name][0], "experience", "transitions")
    fingerprint = {"dataset_episodes": len(episodes), "dataset_steps": int(sum(len(e.actions) for e in episodes))}
    if experience == "sequences":
        from rlkit.sequences import SequenceBuffer

        store = SequenceBuffer.from_episodes(episodes, dataset.observation_space, dataset.action_space,
                                             length=cfg.agent.sequence_length, device=device, seed=cfg.seed)
        return dataset, DatasetSource(store, fingerprint)
    if cfg.train.replay.prioritized:
        raise ConfigError("train.replay.prioritized is not supported offline (a dataset source is read-only)")
    rows = sum(episode_rows(e) for e in episodes)
    try:
        store = ReplayBuffer.from_spaces(dataset.observation_space, dataset.action_space,
                                         capacity=max(rows, cfg.train.replay.n_step + 1), num_envs=1, device=device,
                                         gamma=cfg.agent.gamma, n_step=cfg.train.replay.n_step, seed=cfg.seed)
    except ValueError as exc:
        raise DatasetError(f"offline.dataset '{cfg.offline.dataset}': {' '.join(str(exc).split())}") from None
    fill_replay(store, episodes)
    return dataset, DatasetSource(store, fingerprint)
