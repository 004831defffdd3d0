"""Reference datasets anyone can rebuild on one machine: D4RL's MuJoCo definitions, made by rlkit's own agents.

D4RL and Minari's remote datasets cannot be downloaded everywhere (and their D4RL policies are not ours), so
rlkit ships the *policies* (small safetensors exports under ``pretrained/reference/``) and regenerates the data
(``rlkit dataset make-reference [NAME...]``), in Minari's format, following D4RL's definitions (Fu et al. 2020,
"D4RL: Datasets for Deep Data-Driven Reinforcement Learning", section 5 and appendix C):

- **expert**: episodes of a fully trained SAC policy (ours: the best snapshot of ``configs/sac_<env>.yaml``
  within the training budget a 2-core machine allowed; see docs/datasets.md for its return);
- **medium**: episodes of a policy "trained to approximately 1/3 the performance of the expert" (ours: the
  snapshot of the same run whose return is closest to a third of the expert's; HalfCheetah's is the 35k snapshot
  at 53%, since the rule's pick at 30k returned 13% and no step between was saved — docs/datasets.md);
- **medium-replay**: "all samples in the replay buffer observed during training until the policy reaches the
  medium level": the replay of the same run, seed and config up to the medium snapshot's step. Regenerating
  it re-runs that training (``--run DIR`` reads an existing run of it instead).

D4RL samples actions from its SAC policies' Gaussians while recording; so do we (``explore=True``: the
tanh-Gaussian sample). D4RL's medium and expert sets hold 1M steps; ours default to 100k (``--steps``), a size
a 2-core machine writes in minutes and the Decision Transformer trains on unchanged.

Normalised scores follow D4RL: ``100 * (R - R_random) / (R_expert - R_random)`` with ``R_random`` the mean
return of the uniform random policy (100 episodes) and ``R_expert`` our expert policy's evaluation return
(deterministic, 20 episodes; scripts/pick_reference_policies.py), recorded below and in each dataset's metadata
(Minari's ``ref_min_score`` / ``ref_max_score``).
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rlkit.errors import ConfigError, DatasetError
from rlkit.experience.datasets import (Episode, check_dataset_id, dataset_path, episode_stats, episodes_from_replay,
                                       write_dataset)



def pretrained_dir() -> Path:
    """Shipped policies: ``rlkit/pretrained/`` in an installed package, else the repository's ``pretrained/``."""
    here = Path(__file__).resolve().parents[1]
    installed = here / "pretrained"
    return installed if installed.is_dir() else here.parent / "pretrained"


@dataclass(frozen=True)
class Reference:
    """One reference dataset: how it is made, and the returns its scores are normalised by."""

    env_id: str
    kind: str                  # "policy" (episodes of a committed policy) | "replay" (a training run's replay)
    level: str                 # expert | medium | medium-replay
    policy: str | None = None  # pretrained/reference/<policy>/ (kind "policy")
    config: str | None = None  # configs/<config> trained to ``until_step`` (kind "replay")
    until_step: int = 0        # the medium snapshot's step (kind "replay")
    seed: int = 0
    steps: int = 100_000       # env steps recorded (kind "policy")
    random_return: float = 0.0  # mean return of the uniform random policy (100 episodes)
    expert_return: float = 1.0  # our expert policy's deterministic evaluation return (20 episodes)

    def normalized(self, ret: float) -> float:
        """D4RL's normalised score: 0 = uniform random, 100 = our expert."""
        return 100.0 * (ret - self.random_return) / (self.expert_return - self.random_return)


REFERENCES: dict[str, Reference] = {}


def register(name: str, ref: Reference) -> None:
    REFERENCES[name] = ref


# The shipped references. The policies are snapshots of configs/sac_<env>.yaml (seed 0, train.snapshot_every=5000)
# picked by scripts/pick_reference_policies.py; docs/datasets.md has how each was chosen and what it returns.
_RANDOM = {"Hopper-v5": 19.26, "HalfCheetah-v5": -278.79, "Walker2d-v5": 1.49}  # uniform random, 100 episodes


def _register_env(stem: str, env_id: str, expert_return: float, medium_step: int) -> None:
    scores = dict(env_id=env_id, random_return=_RANDOM[env_id], expert_return=expert_return)
    register(f"{stem}-expert-v0", Reference(kind="policy", level="expert", policy=f"{stem}-expert", **scores))
    register(f"{stem}-medium-v0", Reference(kind="policy", level="medium", policy=f"{stem}-medium", **scores))
    register(f"{stem}-medium-replay-v0", Reference(kind="replay", level="medium-replay", config=f"sac_{stem}.yaml",
                                                   until_step=medium_step, **scores))


_register_env("halfcheetah", "HalfCheetah-v5", expert_return=4436.19, medium_step=35_000)
_register_env("hopper", "Hopper-v5", expert_return=1076.21, medium_step=60_000)
# Walker2d's "expert" had not learnt to walk in the 100k steps the session allowed: its normalised scores are
# against a 489 return, not comparable with D4RL's (4592)
_register_env("walker2d", "Walker2d-v5", expert_return=489.35, medium_step=30_000)


def reference(name: str) -> Reference:
    if name not in REFERENCES:
        known = ", ".join(sorted(REFERENCES)) or "none registered"
        raise ConfigError(f"no reference dataset named '{name}'; known: {known}")
    return REFERENCES[name]


# --------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------


def load_policy(export_dir: Path, num_envs: int, device: str = "cpu"):
    """(agent, vector env, config) for an exported policy directory."""
    from rlkit.runfiles.export import load_exported
    from rlkit.runfiles.runs import open_run
    from rlkit.training.build import build_agent, make_vector_env

    run = open_run(export_dir, "best")
    cfg = run.config
    env_cfg = dataclasses.replace(cfg.env, num_envs=num_envs)
    envs = make_vector_env(env_cfg, num_envs=num_envs)
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space, device)
    load_exported(agent, export_dir, cfg.agent.name, device)
    return agent, envs, cfg


def record_steps(envs, agent, steps: int, seed: int, progress=None) -> list[Episode]:
    """Whole episodes of ``agent`` (acting as in training: ``explore=True``) on a vector env until they hold at least ``steps``
    transitions (episodes still running then are dropped: every recorded episode is whole)."""
    from rlkit.training.collector import Collector
    from rlkit.training.recording import EpisodeRecorder

    collector = Collector(envs, seed)
    recorder = EpisodeRecorder(collector)
    finished: list[Episode] = []
    total = 0
    while total < steps:
        for _, episode in recorder.record(collector.step(agent, explore=True)):
            finished.append(episode)
            total += len(episode.actions)
            if progress is not None:
                progress(min(total, steps))
    return finished


def replay_episodes(run_dir: Path, until_step: int) -> tuple[list[Episode], Any, Any, Any]:
    """The whole episodes a run's replay holds that ended by env step ``until_step`` (the run's first
    ``until_step`` steps: a single-env run's replay rows are in step order), with the run's spaces and config."""
    from rlkit.runfiles.checkpoint import load_checkpoint
    from rlkit.runfiles.runs import LATEST, open_run
    from rlkit.training.build import make_vector_env
    from rlkit.training.recording import _last_obs

    run = open_run(run_dir, checkpoint="latest", exported=False)
    cfg = run.config
    if cfg.env.num_envs != 1:
        raise DatasetError(f"run '{run_dir}' steps {cfg.env.num_envs} envs; a medium-replay set is cut from a "
                           "single-env run's replay (rows in step order)")
    checkpoint = load_checkpoint(run.run_dir / LATEST, map_location="cpu", required=("agent",))
    if checkpoint.get("buffer") is None:
        raise DatasetError(f"run '{run_dir}' was saved without its replay buffer (train.save_buffer: false)")
    if int(checkpoint.get("step", 0)) < until_step:
        raise DatasetError(f"run '{run_dir}' stopped at step {checkpoint.get('step')}, before step {until_step}: "
                           f"resume it to at least {until_step} first")
    envs = make_vector_env(cfg.env, num_envs=1)
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    envs.close()
    episodes, _ = episodes_from_replay(checkpoint["buffer"], obs_space, _last_obs(checkpoint))
    kept, total = [], 0
    for episode in episodes:
        if total + len(episode.actions) > until_step:
            break
        kept.append(episode)
        total += len(episode.actions)
    return kept, obs_space, act_space, cfg


def make_reference(name: str, steps: int | None = None, run_dir: str | Path | None = None, overwrite: bool = False,
                   show_progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Write the reference dataset ``name`` (``rlkit/<name>``); returns its directory and its statistics."""
    from tqdm import tqdm

    ref = reference(name)
    dataset_id = f"rlkit/{name}"
    check_dataset_id(dataset_id)
    if dataset_path(dataset_id).exists() and not overwrite:
        raise DatasetError(f"dataset '{dataset_id}' already exists ({dataset_path(dataset_id)}); pass --overwrite "
                           "to make it again")
    meta: dict[str, Any] = {"reference": name, "level": ref.level, "random_return": ref.random_return,
                            "expert_return": ref.expert_return}
    if ref.kind == "policy":
        export_dir = pretrained_dir() / "reference" / ref.policy
        agent, envs, cfg = load_policy(export_dir, num_envs=8)
        # acting as at the end of training: every warm-up schedule over env steps (SAC's uniform random_steps, an
        # epsilon decay) is over, so explore=True samples the trained policy's own distribution
        agent.set_env_steps(2**62)
        budget = steps or ref.steps
        bar = tqdm(total=budget, desc=name, unit="step", disable=not show_progress, leave=False)
        last = [0]

        def advance(done: int) -> None:
            bar.update(done - last[0])
            last[0] = done

        try:
            episodes = record_steps(envs, agent, budget, seed=ref.seed, progress=advance)
            obs_space, act_space = envs.single_observation_space, envs.single_action_space
        finally:
            bar.close()
            envs.close()
        meta.update(source="policy", policy=f"pretrained/reference/{ref.policy}", sampled_actions=True)
        description = f"{ref.level} policy episodes ({ref.env_id}), D4RL's definition; rlkit reference dataset"
    elif ref.kind == "replay":
        if run_dir is None:
            run_dir = _train_for_replay(ref, name, show_progress)
        episodes, obs_space, act_space, cfg = replay_episodes(Path(run_dir), ref.until_step)
        meta.update(source="replay", config=f"configs/{ref.config}", seed=ref.seed, until_step=ref.until_step)
        description = (f"the replay of {ref.config} (seed {ref.seed}) up to step {ref.until_step}, where its policy "
                       f"reached the medium level ({ref.env_id}); D4RL's medium-replay definition")
    else:  # pragma: no cover - the registry holds only the kinds above
        raise ConfigError(f"reference '{name}': unknown kind {ref.kind!r}")
    if not episodes:
        raise DatasetError(f"reference '{name}': no whole episode was recorded")
    path = write_dataset(dataset_id, episodes, obs_space, act_space, env_id=ref.env_id, env_kwargs=cfg.env.kwargs,
                         algorithm_name=f"rlkit reference ({ref.level})", description=description, metadata=meta,
                         overwrite=overwrite, ref_scores=(ref.random_return, ref.expert_return))
    stats = episode_stats(episodes)
    stats["normalized_mean"] = ref.normalized(stats["return_mean"])
    return path, stats


def _train_for_replay(ref: Reference, name: str, show_progress: bool) -> Path:
    """Re-run the reference training to the medium step, keeping its replay (minutes to an hour on a CPU)."""
    from rlkit.config import build_run_config, configs_dir, read_yaml
    from rlkit.training.loops import train

    raw = read_yaml(configs_dir() / ref.config)
    raw["seed"] = ref.seed
    raw.setdefault("train", {}).update(total_steps=ref.until_step, checkpoint_every=ref.until_step, eval_every=0,
                                       save_buffer=True)
    raw.setdefault("log", {}).update(progress=show_progress, tensorboard=False, plot=False)
    cfg = build_run_config(raw)
    run_dir = Path(tempfile.mkdtemp(prefix=f"rlkit-{name}-"))
    train(cfg, run_dir / "run")
    return run_dir / "run"


def describe(names: Sequence[str]) -> str:
    """A markdown table of the reference datasets present under the datasets root (docs/datasets.md)."""
    from rlkit.experience.datasets import load_dataset

    rows = ["| dataset | env | steps | episodes | size (MB) | return mean [min..max] | normalised mean |",
            "|---|---|---|---|---|---|---|"]
    for name in names:
        ref = reference(name)
        path = dataset_path(f"rlkit/{name}")
        if not path.exists():
            rows.append(f"| rlkit/{name} | {ref.env_id} | (not made) | | | | |")
            continue
        data = load_dataset(f"rlkit/{name}")
        stats = episode_stats(list(data.episodes))
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
        rows.append(f"| rlkit/{name} | {ref.env_id} | {stats['total_steps']:,} | {stats['total_episodes']} | {size:.1f} | "
                    f"{stats['return_mean']:.1f} [{stats['return_min']:.1f}..{stats['return_max']:.1f}] | "
                    f"{ref.normalized(stats['return_mean']):.1f} |")
    return "\n".join(rows)
