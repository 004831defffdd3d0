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
A sample-time hook (``sample_hook``, see rlkit.experience.replay) may rewrite a batch before the agent sees it.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from rlkit.config import RunConfig
from rlkit.errors import ConfigError, DatasetError


@runtime_checkable
class ExperienceSource(Protocol):
    def add(self, obs: Any, actions: Any, rewards: Any, terminated: Any, truncated: Any, autoreset: Any,
            agent_id: Any = None) -> None:
        """Store one vector step (NEXT_STEP autoreset convention: ``autoreset`` rows carry final observations);
        ``agent_id``: whose row each observation is, for multi-agent rows (None otherwise)."""

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
        # checkpoints before the content fingerprint carry only the counts and the rewards' CRC: compared as before
        keys = [k for k in self.fingerprint if k in state or k != "dataset_fingerprint"]
        saved = {k: state.get(k) for k in keys}
        if saved != {k: self.fingerprint[k] for k in keys}:
            def text(fp: dict[str, Any]) -> str:
                content = fp.get("dataset_fingerprint") or f"rewards crc {fp.get('dataset_rewards_crc32')}"
                return f"{str(content)[:12]}: {fp.get('dataset_episodes')} episodes, {fp.get('dataset_steps')} steps"

            raise DatasetError(f"trained on another dataset ({text(saved)}) than offline.dataset ({text(self.fingerprint)}); "
                               "resume with the dataset it was trained on")
        self.store._generator.set_state(state["rng_state"])


def episode_rows(episode) -> int:
    """Rows an episode takes in a replay stream: its T steps plus the final-observation row."""
    return len(episode.actions) + 1


def fill_replay(buffer, episodes, padding: int = 0) -> None:
    """Write whole episodes into a one-stream ``ReplayBuffer`` in the online loop's layout
    (:func:`rlkit.experience.datasets.replay_stream`: each step's row, then the final observation as an autoreset
    row, so truncated episodes bootstrap from it; an episode that ends with neither flag is stored as
    truncated). ``padding`` more autoreset rows follow, never sampled and never read (n-step windows
    stop at an episode's last step)."""
    from rlkit.experience.datasets import replay_stream

    if not episodes:
        return
    stream = replay_stream(list(episodes))
    rows = len(stream.rewards)
    is_dict = isinstance(stream.obs, dict)
    for t in range(rows + padding):
        r = min(t, rows - 1)  # padding repeats the last final-observation row
        obs = {k: v[r:r + 1] for k, v in stream.obs.items()} if is_dict else stream.obs[r:r + 1]
        buffer.add(obs, stream.actions[r:r + 1], stream.rewards[r:r + 1], stream.terminated[r:r + 1],
                   stream.truncated[r:r + 1], stream.autoreset[r:r + 1])


def _sequence_store(cfg: RunConfig, dataset, episodes: list, device: torch.device):
    """``episodes`` in a ``SequenceBuffer``, written one at a time. With ``train.replay.frame_stack > 1`` the
    buffer keeps each step's newest frame only, and the dataset's episodes then read their stacks from those
    frames (:class:`~rlkit.experience.sequences.StackedFrames`), so the stacked arrays loaded from the file are
    freed: one copy of each frame stays in memory, not the stacks twice (docs/datasets.md, "In memory")."""
    from rlkit.experience.sequences import SequenceBuffer

    try:
        store = SequenceBuffer.from_episodes(episodes, dataset.observation_space, dataset.action_space,
                                             length=cfg.agent.sequence_length, device=device, seed=cfg.seed,
                                             frame_stack=cfg.train.replay.frame_stack)
    except ValueError as exc:
        raise DatasetError(f"offline.dataset '{cfg.offline.dataset}' with train.replay.frame_stack="
                           f"{cfg.train.replay.frame_stack}: {' '.join(str(exc).split())}") from None
    if store.frame_stack > 1:
        stored = [e for e in episodes if len(e.actions)]  # the buffer's episodes, in its order
        finals = [{k: v[-1] for k, v in e.observations.items()} if isinstance(e.observations, Mapping)
                  else e.observations[-1] for e in stored]
        shared = dict(zip(map(id, stored), store.episode_observations(finals)))
        del finals
        for j, episode in enumerate(dataset.episodes):  # episodes not selected for training keep their arrays
            if shared.get(id(episode)) is not None:
                dataset.episodes[j] = dataclasses.replace(episode, observations=shared[id(episode)])
    return store


def dataset_source(cfg: RunConfig, device: torch.device):
    """(dataset, read-only source) for an offline run: the dataset named by ``offline.dataset``, in the
    store the agent's experience asks for."""
    from rlkit.agents import AGENTS
    from rlkit.experience.datasets import action_free_mask, check_dataset_env, load_dataset
    from rlkit.experience.replay import ReplayBuffer

    dataset = load_dataset(cfg.offline.dataset)
    episodes = list(dataset.episodes)
    if not episodes:
        raise DatasetError(f"offline.dataset '{cfg.offline.dataset}' holds no episodes")
    action_free = action_free_mask(dataset)
    if action_free.any():  # their actions are placeholders: an agent would learn them as if they were data
        raise DatasetError(f"offline.dataset '{cfg.offline.dataset}': {int(action_free.sum())} of {len(episodes)} "
                           f"episodes are action-free (placeholder actions, metadata rlkit.action_free); label them "
                           f"first: rlkit dataset pseudo-label {cfg.offline.dataset} --out <new id>")
    if cfg.env.id is not None and not cfg.offline.allow_env_mismatch:  # an env-bound run: that env's data only
        check_dataset_env(dataset, cfg.env.id, cfg.env.kwargs,
                          where=f"offline.dataset '{cfg.offline.dataset}' vs env.id '{cfg.env.id}'")
    experience = AGENTS[cfg.agent.name][1].capabilities.experience
    episodes = cfg.agent.select_episodes(episodes)  # e.g. filtered BC: the top share by return
    checksum = 0
    for episode in episodes:  # the rewards' bytes: a resume against another dataset of the same size is refused
        checksum = zlib.crc32(np.ascontiguousarray(episode.rewards, dtype=np.float32).tobytes(), checksum)
    fingerprint = {"dataset_episodes": len(episodes), "dataset_steps": int(sum(len(e.actions) for e in episodes)),
                   "dataset_rewards_crc32": int(checksum),
                   # every array, the spaces and the env spec (rlkit.experience.datasets._fingerprint)
                   "dataset_fingerprint": str(dataset.metadata["fingerprint"])}
    replay = cfg.train.replay
    space = dataset.observation_space
    if replay.frame_stack > 1 and (not hasattr(space, "shape") or space.shape is None or len(space.shape) < 2
                                   or space.shape[0] != replay.frame_stack):
        raise ConfigError(f"train.replay.frame_stack={replay.frame_stack} but the dataset's observations are {space}; "
                          "set it to the dataset's frame stack (axis 0) or 1")
    if experience == "sequences":
        labels = (dataset.metadata.get("rlkit") or {}).get("pseudo_label") if isinstance(
            dataset.metadata.get("rlkit"), dict) else None
        if isinstance(labels, dict) and labels.get("dropped_steps", 0) > 0:  # episodes cut at dropped labels
            raise DatasetError(f"offline.dataset '{cfg.offline.dataset}': its pseudo-labelling dropped "
                               f"{labels['dropped_steps']} unconfident steps and cut their episodes there, so a "
                               f"sequence agent's returns-to-go and timesteps would be wrong; re-label keeping every "
                               f"label (--threshold 0) for '{cfg.agent.name}', or train a transition agent (bc) on it")
        return dataset, DatasetSource(_sequence_store(cfg, dataset, episodes, device), fingerprint)
    if replay.prioritized:
        raise ConfigError("train.replay.prioritized is not supported offline (a dataset source is read-only)")
    # the whole dataset, plus n - 1 padding rows: a ring excludes its newest n rows from sampling (their
    # windows may still be open online), and the padding keeps the last episode's last steps sampleable
    rows = sum(episode_rows(e) for e in episodes) + replay.n_step - 1
    try:
        # frame stacks: S - 1 spare rows keep the ring from wrapping (a wrapped ring drops its oldest S - 1 rows)
        store = ReplayBuffer.from_spaces(space, dataset.action_space,
                                         capacity=max(rows + replay.frame_stack - 1, replay.n_step + replay.frame_stack),
                                         num_envs=1, device=device, gamma=cfg.agent.gamma, n_step=replay.n_step,
                                         frame_stack=replay.frame_stack, seed=cfg.seed)
    except ValueError as exc:
        raise DatasetError(f"offline.dataset '{cfg.offline.dataset}': {' '.join(str(exc).split())}") from None
    fill_replay(store, episodes, padding=replay.n_step - 1)
    if store.num_sampleable() == 0:
        raise DatasetError(f"offline.dataset '{cfg.offline.dataset}' has no transition to sample (its episodes hold "
                           f"{fingerprint['dataset_steps']} steps)")
    return dataset, DatasetSource(store, fingerprint)
