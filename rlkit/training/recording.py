"""Recording datasets: episodes run by a policy, a run's replay buffer, motion-capture clips -> Minari.

The orchestration around dataset storage (:mod:`rlkit.experience.datasets` reads, writes and checks
Minari datasets and never imports training): these functions drive the collector, rebuild a run's
env and checkpoint, or an env's reference motions, and hand whole episodes to
:func:`~rlkit.experience.datasets.write_dataset`.

    record_episodes(envs, policy, episodes=10, seed=0)        # rlkit collect
    dataset_from_run("runs/x", "rlkit/x-replay-v0")           # rlkit dataset from-run
    write_mocap_dataset(build_mocap_dataset(["walk"]), "rlkit/walk-v0")   # rlkit dataset from-mocap
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from rlkit.contract.agent import FunctionPolicy
from rlkit.errors import DatasetError
from rlkit.experience.datasets import (Episode, check_dataset_id, dataset_path, episode_stats, episodes_from_replay,
                                       write_dataset)
from rlkit.runfiles.checkpoint import load_checkpoint
from rlkit.runfiles.runs import LATEST, open_run
from rlkit.training.build import make_vector_env
from rlkit.training.collector import Collector, to_host

__all__ = ["EpisodeRecorder", "record_episodes", "dataset_from_run", "write_mocap_dataset"]


def _one_line(text: Any, limit: int) -> str:
    return " ".join(str(text).split())[:limit]


# --------------------------------------------------------------------------------------
# A policy's episodes (``rlkit collect``)
# --------------------------------------------------------------------------------------


def _pick(obs: Any, e: int) -> Any:
    """Sub-env ``e``'s row of a batch (array, or dict of arrays; a device-resident env's tensors come to the host)."""
    if isinstance(obs, Mapping):
        return {k: to_host(v)[e] for k, v in obs.items()}
    return to_host(obs)[e]


def _new_episode(first_obs: Any) -> dict[str, list]:
    return {"obs": [first_obs], "act": [], "rew": [], "term": [], "trunc": []}


def _finish_episode(ep: dict[str, list]) -> Episode:
    first = ep["obs"][0]
    stacked = ({k: np.stack([o[k] for o in ep["obs"]]) for k in first} if isinstance(first, Mapping)
               else np.stack(ep["obs"]))
    return Episode(stacked, np.stack(ep["act"]), np.asarray(ep["rew"]), np.asarray(ep["term"]),
                   np.asarray(ep["trunc"]))


class EpisodeRecorder:
    """Whole episodes, with their true final observations, from a Collector's vector steps (gymnasium's NEXT_STEP
    autoreset: after a step that ends env ``e``'s episode, the next step resets ``e``, its action is ignored, and
    its observation starts the next episode)."""

    def __init__(self, collector: Collector) -> None:
        self.current = [_new_episode(_pick(collector.obs, e)) for e in range(collector.num_envs)]

    def record(self, step) -> list[tuple[int, Episode]]:
        """Add one vector step; returns the episodes it ended, with their sub-env index."""
        ended = []
        for e, ep in enumerate(self.current):
            if step.autoreset[e]:  # a reset step: its action was ignored, next_obs[e] starts a new episode
                self.current[e] = _new_episode(_pick(step.next_obs, e))
                continue
            ep["act"].append(np.asarray(step.actions[e]))
            ep["rew"].append(float(step.rewards[e]))
            ep["term"].append(bool(step.terminated[e]))
            ep["trunc"].append(bool(step.truncated[e]))
            ep["obs"].append(_pick(step.next_obs, e))
            if step.terminated[e] or step.truncated[e]:
                ended.append((e, _finish_episode(ep)))
        return ended


def record_episodes(envs: gym.vector.VectorEnv, policy, episodes: int, seed: int) -> list[Episode]:
    """Run ``episodes`` whole episodes on a vector env (gymnasium's NEXT_STEP autoreset) and record them
    with their true final observations. ``policy(obs, episode_start, prev_reward) -> actions`` for the batch.

    As in evaluation, each sub-env runs a fixed quota of episodes (short episodes are not
    over-represented)."""
    n = envs.num_envs
    quota = np.array([episodes // n + (1 if e < episodes % n else 0) for e in range(n)])
    done = np.zeros(n, dtype=np.int64)
    collector = Collector(envs, seed)
    agent = FunctionPolicy(policy)  # the policy seen through the step record, as the collector drives agents
    recorder = EpisodeRecorder(collector)
    finished: list[Episode] = []
    while (done < quota).any():
        for e, episode in recorder.record(collector.step(agent, explore=False)):
            if done[e] < quota[e]:
                finished.append(episode)
                done[e] += 1
    return finished


# --------------------------------------------------------------------------------------
# A run's replay buffer (``rlkit dataset from-run``)
# --------------------------------------------------------------------------------------


def _last_obs(checkpoint: Mapping[str, Any]) -> Any:
    """The loop's current observations in a checkpoint (``collector.obs``; older runs: ``loop.obs``)."""
    for section in ("collector", "loop"):
        part = checkpoint.get(section)
        if isinstance(part, Mapping) and part.get("obs") is not None:
            return part["obs"]
    return None


def dataset_from_run(run_dir: str | os.PathLike, dataset_id: str, overwrite: bool = False
                     ) -> tuple[Path, dict[str, Any]]:
    """Write the replay buffer saved in a run's latest checkpoint as a dataset (episodes rebuilt by
    :func:`~rlkit.experience.datasets.episodes_from_replay`). Returns the dataset directory and the
    counts (plus ``episodes`` and the return statistics)."""
    check_dataset_id(dataset_id)
    if dataset_path(dataset_id).exists() and not overwrite:
        raise DatasetError(f"dataset '{dataset_id}' already exists ({dataset_path(dataset_id)}); pick another id "
                           "(e.g. bump -vN) or pass --overwrite")
    run = open_run(run_dir, checkpoint="latest", exported=False)
    run_dir, cfg = run.run_dir, run.config
    if cfg.offline is not None:
        raise DatasetError(f"run '{run_dir}' trained offline: it has no replay buffer of its own, its data is the "
                           f"dataset '{cfg.offline.dataset}'")
    checkpoint = load_checkpoint(run_dir / LATEST, map_location="cpu", required=("agent",))
    if checkpoint.get("buffer") is None:
        raise DatasetError(f"run '{run_dir}' was saved without its replay buffer (train.save_buffer: false), so "
                           f"{LATEST} holds no experience; train with train.save_buffer=true, or record episodes "
                           f"with `rlkit collect {run_dir} --episodes N --out ID`")
    envs = make_vector_env(cfg.env, num_envs=1)
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    envs.close()
    try:
        episodes, counts = episodes_from_replay(checkpoint["buffer"], obs_space, _last_obs(checkpoint))
    except DatasetError as exc:
        raise DatasetError(f"run '{run_dir}': {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise DatasetError(f"run '{run_dir}': {LATEST} holds a replay buffer rlkit cannot read "
                           f"({type(exc).__name__}: {_one_line(exc, 120)})") from None
    if not episodes:
        raise DatasetError(f"run '{run_dir}': its replay buffer holds no whole episode yet "
                           f"({counts['transitions']} transitions); train longer first")
    step = checkpoint.get("step")
    path = write_dataset(dataset_id, episodes, obs_space, act_space, env_id=cfg.env.id, env_kwargs=cfg.env.kwargs,
                         algorithm_name=f"{cfg.agent.name} replay buffer",
                         description=f"The replay buffer of rlkit run {run_dir.name} at step {step}.",
                         metadata={"source": "replay", "run_dir": str(run_dir.resolve()), "step": step,
                                   "agent": cfg.agent.name, **counts}, overwrite=overwrite)
    return path, {**counts, **episode_stats(episodes)}


# --------------------------------------------------------------------------------------
# Motion-capture clips (``rlkit dataset from-mocap``)
# --------------------------------------------------------------------------------------


def write_mocap_dataset(data: dict[str, np.ndarray], dataset_id: str, overwrite: bool = False) -> Path:
    """Write :func:`rlkit.envs.humanoid_imitation.build_mocap_dataset`'s output as a Minari dataset: one
    episode per clip, ``T`` frames -> ``T`` steps with ``T + 1`` observations (the last from
    ``final_observations``). Actions are the env's ``action_mode="torque"`` actions (actuator force / gear),
    clipped to its ``[-1, 1]`` box; rewards are 0 (demonstrations, no reward); the last step is a
    truncation (the clip ends, the motion does not terminate). Per-step ``infos``: ``qpos``, ``qvel``,
    ``qacc``, ``actuator_forces`` [N m] (unclipped), ``actions_normalized`` (unclipped), ``root_residual``,
    ``frame``. Returns the dataset directory."""
    from rlkit.envs.humanoid_imitation import MOCAP_ENV_ID

    episodes = []
    for i, name in enumerate(data["clip_names"]):
        rows = np.flatnonzero(data["clip_index"] == i)
        T = len(rows)
        truncations = np.zeros(T, dtype=bool)
        truncations[-1] = True
        episodes.append(Episode(
            observations=np.concatenate([data["observations"][rows], data["final_observations"][i][None]]),
            actions=np.clip(data["actions_normalized"][rows], -1.0, 1.0).astype(np.float32),
            rewards=np.zeros(T, dtype=np.float32), terminations=np.zeros(T, dtype=bool), truncations=truncations,
            infos={"qpos": data["qpos"][rows], "qvel": data["qvel"][rows], "qacc": data["qacc"][rows],
                   "actuator_forces": data["actions"][rows], "actions_normalized": data["actions_normalized"][rows],
                   "root_residual": data["root_residual"][rows], "frame": data["frame"][rows]}))
    obs_dim, nu = data["observations"].shape[1], data["actions"].shape[1]
    clips = [str(c) for c in data["clip_names"]]
    return write_dataset(
        dataset_id, episodes, gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        gym.spaces.Box(-1.0, 1.0, (nu,), np.float32), env_id=MOCAP_ENV_ID,
        env_kwargs={"clips": clips, "action_mode": "torque"}, algorithm_name="inverse dynamics (mj_inverse)",
        description=f"Motion-capture clips {', '.join(clips)} as state-action pairs by MuJoCo inverse dynamics "
                    f"(contacts {'on' if bool(data['contacts']) else 'off'}); actions are torque-mode actions.",
        metadata={"source": "mocap", "clips": clips, "dt": float(data["dt"]), "contacts": bool(data["contacts"]),
                  "total_mass": float(data["total_mass"])}, overwrite=overwrite)
