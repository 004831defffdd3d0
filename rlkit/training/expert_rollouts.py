"""Expert rollouts for distilling a motor-skill module: clip-tracking experts, noisy actions, clean labels.

The data step of Catch & Carry (Merel et al. 2020, "Catch & Carry: Reusable Neural Controllers for
Vision-Guided Whole-Body Tasks") and MoCapAct (Wagener et al. 2022, "MoCapAct: A Multi-Task Dataset for
Simulated Humanoid Control"; ``mocapact/distillation/rollout_experts.py``): every clip expert is rolled out
on its own clip with Gaussian noise added to the actions it *executes*,

    a_exec = clip(mu_expert(s) + sigma * eps, -1, 1),      eps ~ N(0, I),   sigma = 0.1

(MoCapAct's ``--act_noise`` default, 0.1 in normalised action units: it fills the states around the
expert's trajectory), while the expert's clean mean action mu_expert(s) is recorded as the label a student
learns (``mean_actions`` in MoCapAct's HDF5). All experts' episodes go into one Minari dataset.

Actions in absolute PD targets. The shipped experts (``pretrained/mpo_humanoid_walk``, ``…_run``) act in
``action_mode="pd_residual"``: PD targets relative to the clip's next reference pose. A skill that a
high-level policy drives later has no reference to be relative to, so the dataset stores every action as
the ``action_mode="pd"`` action (absolute PD targets, Catch & Carry's and MoCapAct's action space) that
gives the same PD target: :func:`absolute_pd_action` = ``env.pd_action(env.pd_target(a))``. Executed in
``pd`` mode it is the same physics (the walk expert keeps 1.00, the run expert 0.97 normalised length
over 30 episodes when its converted actions are executed; the noise is added after the conversion).

Dataset layout (``rlkit dataset experts``, :func:`write_expert_dataset`), one episode per rollout:

* ``observations`` ``[T + 1, 116 + 77 k]``: the env's observation, proprioception (116) then the reference
  window of the ``k = len(ref_steps)`` next frames (``rlkit.envs.humanoid_imitation``'s layout);
* ``actions`` ``[T, 28]``: the executed noisy absolute-PD actions;
* ``infos/expert_actions`` ``[T, 28]``: the labels, the expert's clean action at ``observations[t]``
  (absolute PD); ``infos/expert_actions_raw``: the same in the expert's own action mode;
  ``infos/clip_index`` ``[T]``: the index of the episode's clip in ``metadata["rlkit"]["clips"]``;
  ``infos/frame`` ``[T]``: the reference frame of ``observations[t]``;
* rewards, terminations (the expert fell: termination error above 0.3) and truncations (the expert's
  ``max_episode_steps``) as the env gave them.

The metadata (``metadata["rlkit"]``) names the clips, the experts, the noise, the proprioception size and
per clip the noisy rollouts' normalised length (episode length / the expert's ``max_episode_steps``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from rlkit.errors import ConfigError, DatasetError
from rlkit.experience.datasets import Episode, check_dataset_id, dataset_path, load_dataset, write_dataset

IMITATION_ENV_ID = "rlkit/HumanoidImitation-v0"
SHIPPED_EXPERTS = ("mpo_humanoid_walk", "mpo_humanoid_run")
"""The clip experts shipped in ``pretrained/`` (walk: normalised length 1.00, run: 0.95)."""
ACT_NOISE = 0.1
"""MoCapAct's ``rollout_experts.py --act_noise`` default: the std of the noise on executed actions."""
PROPRIO_DIM = 116
"""Proprioception entries at the start of a HumanoidImitation observation (then 77 per reference frame)."""
REF_FRAME_DIM = 77
LABEL_KEY = "expert_actions"
"""The infos key of the clean expert actions (the labels a student learns)."""
_SHARED_KWARGS_IGNORED = ("clips", "max_episode_steps", "min_steps", "action_mode", "residual_scale")
"""Env kwargs that may differ between experts: which clip, how long an episode runs and from which start frames
(``min_steps``), and the action mode (converted to absolute PD); the rest shape the observations."""


@dataclass
class Expert:
    """A loaded clip expert: its agent (evaluation policy = the mean action), its clip and its env."""

    path: Path
    agent: Any
    clip: str
    env_kwargs: dict[str, Any]
    max_episode_steps: int

    def make_env(self) -> gym.Env:
        return gym.make(IMITATION_ENV_ID, **self.env_kwargs)


def default_experts() -> list[Path]:
    """The shipped experts' directories (the repository's ``pretrained/``, or the installed package's)."""
    from rlkit.training.reference import pretrained_dir

    return [pretrained_dir() / name for name in SHIPPED_EXPERTS]



def _run_agent(run, device: str):
    """The agent of an opened run or export (:func:`rlkit.runfiles.runs.open_run`) with its weights loaded."""
    from rlkit.runfiles.export import load_exported
    from rlkit.training.build import build_agent, load_agent_weights, resolve_device, run_spaces

    device = resolve_device(device)
    cfg = run.config
    observation_space, action_space = run_spaces(cfg, run.run_dir)
    agent = build_agent(cfg, observation_space, action_space, device)
    if run.exported:
        load_exported(agent, run.run_dir, cfg.agent.name, device)
    else:
        load_agent_weights(agent, run.weights, device)
    return agent

def load_expert(path: str | Path, device: str = "cpu", checkpoint: str = "best") -> Expert:
    """An exported (``rlkit export``) or trained run of one HumanoidImitation clip, in ``pd`` or
    ``pd_residual`` mode (a torque-mode expert has no PD target to convert); a run's ``checkpoint``: ``best``
    (its best evaluation's weights) or ``latest``."""
    from rlkit.runfiles.runs import open_run

    run = open_run(path, checkpoint)
    cfg = run.config
    where = f"expert '{path}'"
    if cfg.env.id != IMITATION_ENV_ID:
        raise ConfigError(f"{where} was trained on {cfg.env.id}, not {IMITATION_ENV_ID}; pass clip experts only")
    kwargs = dict(cfg.env.kwargs)
    clips = kwargs.get("clips", ["walk"])
    clips = [clips] if isinstance(clips, str) else list(clips)
    if len(clips) != 1 or not isinstance(clips[0], str):
        raise ConfigError(f"{where} tracks clips {clips}; an expert tracks exactly one named clip")
    if kwargs.get("action_mode", "pd") not in ("pd", "pd_residual"):
        raise ConfigError(f"{where} acts in action_mode={kwargs['action_mode']!r}; only 'pd' and 'pd_residual' "
                          "experts convert to absolute PD targets")
    steps = int(kwargs.get("max_episode_steps", 1000))
    return Expert(Path(path), _run_agent(run, device), clips[0], kwargs, steps)


def absolute_pd_action(env, action: np.ndarray) -> np.ndarray:
    """The ``action_mode="pd"`` action (absolute PD targets, in [-1, 1]) whose target is the one ``action``
    gives in ``env``'s own mode (``env``: the unwrapped HumanoidImitationEnv, in its current state);
    for ``pd_residual`` that is ``env.pd_action(env.pd_target(action))``."""
    if env.action_mode == "pd":
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
    if env.action_mode != "pd_residual":
        raise ConfigError(f"cannot express a {env.action_mode!r} action as a PD target")
    return env.pd_action(env.pd_target(np.clip(action, -1.0, 1.0)))


def _step_absolute(env: gym.Env, action: np.ndarray):
    """Step the wrapped env with an absolute PD action, whatever mode the env was built in."""
    inner = env.unwrapped
    mode = inner.action_mode
    inner.action_mode = "pd"
    try:
        return env.step(action)
    finally:
        inner.action_mode = mode


def rollout_expert(expert: Expert, episodes: int, noise_std: float, seed: int, clip_index: int
                   ) -> tuple[list[Episode], dict[str, float]]:
    """``episodes`` noisy rollouts of ``expert`` from random start frames (reference state initialisation).
    Returns the episodes and ``{episodes, steps, normalized_length, return_mean, label_saturation}``."""
    env = expert.make_env()
    inner = env.unwrapped
    rng = np.random.default_rng(seed)
    out, lengths, returns, saturated, total = [], [], [], 0, 0
    for e in range(episodes):
        obs, info = env.reset(seed=seed + e)
        observations, actions, labels, raw, frames, rewards = [obs], [], [], [], [info["frame"]], []
        while True:
            mean = expert.agent.predict(obs[None], deterministic=True)[0]               # the expert's own mode
            label = absolute_pd_action(inner, mean)                                     # [28] absolute PD
            executed = np.clip(label + noise_std * rng.standard_normal(label.shape), -1.0, 1.0).astype(np.float32)
            obs, reward, terminated, truncated, info = _step_absolute(env, executed)
            observations.append(obs), actions.append(executed), labels.append(label), raw.append(mean)
            rewards.append(reward), frames.append(info["frame"])
            if terminated or truncated:
                break
        T = len(actions)
        last = np.arange(T) == T - 1                                                    # only the last step ends it
        saturated += int(np.sum(np.abs(np.asarray(labels)) >= 1.0))
        total += T * len(labels[0])
        out.append(Episode(
            observations=np.asarray(observations, dtype=np.float32), actions=np.asarray(actions, dtype=np.float32),
            rewards=np.asarray(rewards, dtype=np.float32),
            terminations=last & bool(terminated), truncations=last & bool(truncated and not terminated),
            infos={LABEL_KEY: np.asarray(labels, dtype=np.float32),
                   "expert_actions_raw": np.asarray(raw, dtype=np.float32),
                   "clip_index": np.full(T, clip_index, dtype=np.int64),
                   "frame": np.asarray(frames[:-1], dtype=np.int64)}))
        lengths.append(T)
        returns.append(float(np.sum(rewards)))
    env.close()
    return out, {"episodes": episodes, "steps": int(sum(lengths)),
                 "normalized_length": float(np.mean(lengths) / expert.max_episode_steps),
                 "return_mean": float(np.mean(returns)), "label_saturation": saturated / max(total, 1)}


def _dataset_env_kwargs(experts: Sequence[Expert]) -> dict[str, Any]:
    """The env the dataset's actions belong to: every expert's clip, absolute PD actions, the longest
    expert episode; the experts must agree on every other setting (reference window, thresholds ...)."""
    first = {k: v for k, v in experts[0].env_kwargs.items() if k not in _SHARED_KWARGS_IGNORED}
    for expert in experts[1:]:
        other = {k: v for k, v in expert.env_kwargs.items() if k not in _SHARED_KWARGS_IGNORED}
        if other != first:
            raise ConfigError(f"experts '{experts[0].path}' and '{expert.path}' were trained with different env "
                              f"settings ({first} vs {other}); their observations would not mean the same")
    return {**first, "clips": [e.clip for e in experts], "action_mode": "pd",
            "max_episode_steps": max(e.max_episode_steps for e in experts)}


def write_expert_dataset(dataset_id: str, expert_paths: Sequence[str | Path] | None = None,
                         episodes: int = 1000, noise_std: float = ACT_NOISE, seed: int = 0, overwrite: bool = False,
                         log=print) -> tuple[Path, dict[str, dict[str, float]]]:
    """Roll out every expert (default: :func:`default_experts`) ``episodes`` times (:func:`rollout_expert`) and
    write one Minari dataset. Returns its directory and the per-clip statistics."""
    check_dataset_id(dataset_id)
    if dataset_path(dataset_id).exists() and not overwrite:  # before the rollouts, not after them
        raise DatasetError(f"dataset '{dataset_id}' already exists ({dataset_path(dataset_id)}); pick another id "
                           "(e.g. bump -vN) or pass --overwrite")
    if episodes < 1:
        raise ConfigError(f"episodes per expert must be >= 1, got {episodes}")
    if not (0.0 <= noise_std < np.inf):
        raise ConfigError(f"the action noise std must be a finite number >= 0, got {noise_std}")
    experts = [load_expert(p) for p in (expert_paths or default_experts())]
    clips = [e.clip for e in experts]
    if len(set(clips)) != len(clips):
        raise ConfigError(f"two experts track the same clip ({clips}); pass one expert per clip")
    env_kwargs = _dataset_env_kwargs(experts)
    all_episodes, stats = [], {}
    for i, expert in enumerate(experts):
        start = time.time()
        eps, stats[expert.clip] = rollout_expert(expert, episodes, noise_std, seed + 100_003 * i, i)
        all_episodes += eps
        log(f"  {expert.clip:<10} {stats[expert.clip]['steps']:>7} steps  normalised length "
            f"{stats[expert.clip]['normalized_length']:.3f} (noise {noise_std})  {time.time() - start:.0f} s")
    env = experts[0].make_env()
    obs_space = env.observation_space
    env.close()
    action_space = gym.spaces.Box(-1.0, 1.0, (all_episodes[0].actions.shape[1],), np.float32)
    ref_steps = list(env_kwargs.get("ref_steps", (1, 2, 3, 4, 5)))
    path = write_dataset(
        dataset_id, all_episodes, obs_space, action_space, env_id=IMITATION_ENV_ID, env_kwargs=env_kwargs,
        algorithm_name="clip experts with action noise (MoCapAct rollout_experts)",
        description=f"Noisy rollouts of the clip experts {', '.join(clips)} (action noise std {noise_std}, absolute "
                    f"PD actions); infos/{LABEL_KEY} holds the experts' clean actions (the labels).",
        metadata={"source": "expert_rollouts", "clips": clips, "experts": [str(e.path) for e in experts],
                  "max_episode_steps": {e.clip: e.max_episode_steps for e in experts},
                  "act_noise": noise_std, "label_key": LABEL_KEY, "proprio_dim": PROPRIO_DIM, "ref_steps": ref_steps,
                  "seed": seed, "per_clip": stats}, overwrite=overwrite)
    return path, stats


def check_expert_dataset(dataset: Any) -> dict[str, Any]:
    """Check a dataset written by :func:`write_expert_dataset` end to end (a loaded dataset or an id):
    observation size = proprioception + reference window, labels and actions ``[T, A]`` inside [-1, 1],
    every value finite, clip indices known and constant per episode, reference frames >= 0 and
    consecutive (one per step). Returns
    per-clip counts; any problem is a one-line :class:`DatasetError`."""
    data = load_dataset(dataset) if isinstance(dataset, (str, Path)) else dataset
    meta = data.metadata.get("rlkit") or {}
    name = f"dataset '{data.dataset_id}'"
    if meta.get("source") != "expert_rollouts":
        raise DatasetError(f"{name} was not written by `rlkit dataset experts` (metadata rlkit.source is "
                           f"{meta.get('source')!r})")
    clips, ref_steps = list(meta["clips"]), list(meta["ref_steps"])
    obs_dim = int(data.observation_space.shape[0])
    if obs_dim != PROPRIO_DIM + REF_FRAME_DIM * len(ref_steps):
        raise DatasetError(f"{name}: observations have {obs_dim} entries, expected {PROPRIO_DIM} + {REF_FRAME_DIM} x "
                           f"{len(ref_steps)} reference frames")
    A = int(data.action_space.shape[0])
    counts = {c: {"episodes": 0, "steps": 0} for c in clips}
    for i, ep in enumerate(data.episodes):
        where = f"{name}, episode {i}"
        T = len(ep)
        labels = ep.infos.get(LABEL_KEY)
        if labels is None or labels.shape != (T, A):
            raise DatasetError(f"{where}: infos/{LABEL_KEY} is missing or not [{T}, {A}]")
        for key, value in (("observations", ep.observations), ("actions", ep.actions), (LABEL_KEY, labels)):
            if not np.all(np.isfinite(value)):
                raise DatasetError(f"{where}: {key} holds NaN or inf")
        if np.abs(labels).max() > 1.0 or np.abs(ep.actions).max() > 1.0:
            raise DatasetError(f"{where}: actions or labels outside [-1, 1]")
        index = ep.infos.get("clip_index")
        if index is None or len(np.unique(index)) != 1 or not 0 <= int(index[0]) < len(clips):
            raise DatasetError(f"{where}: infos/clip_index is missing, mixed or not one of {len(clips)} clips")
        frame = ep.infos.get("frame")
        if frame is None or np.shape(frame) != (T,) or np.min(frame) < 0 or np.any(np.diff(frame) != 1):
            raise DatasetError(f"{where}: infos/frame is missing or not the consecutive reference frames (>= 0, one "
                               "per step) of its observations")
        counts[clips[int(index[0])]]["episodes"] += 1
        counts[clips[int(index[0])]]["steps"] += T
    missing = [c for c, n in counts.items() if n["episodes"] == 0]
    if missing:
        raise DatasetError(f"{name}: no episode of clip(s) {missing}")
    return {"obs_dim": obs_dim, "action_dim": A, "clips": counts}


# --------------------------------------------------------------------------------------
# Closed-loop comparison: a student (e.g. the NPMP module) against each clip's expert
# --------------------------------------------------------------------------------------


def evaluate_on_clip(agent, env_kwargs: dict[str, Any], episodes: int, seed: int) -> dict[str, float]:
    """Mean episode length and return of ``agent``'s evaluation policy on ``env_kwargs``'s env (rlkit's
    vectorised :func:`~rlkit.training.evaluation.evaluate`, ``episode_start`` resets agents with memory)."""
    from rlkit.config import EnvConfig
    from rlkit.training.evaluation import evaluate

    result = evaluate(agent, EnvConfig(id=IMITATION_ENV_ID, num_envs=1, kwargs=dict(env_kwargs)), episodes,
                      epsilon=0.0, seed=seed)
    return {"length_mean": float(result["length_mean"]), "return_mean": float(result["return_mean"])}


def compare_with_experts(student_path: str | Path, expert_paths: Sequence[str | Path] | None = None,
                         episodes: int = 100, seed: int = 12345, horizon: int = 1) -> list[dict[str, Any]]:
    """Per clip: the normalised length (mean episode length / the episode cap, ``horizon`` times the expert's
    ``max_episode_steps``: 1 is the experts' training episode, one cycle of a looping clip) of the student run
    or export at ``student_path`` in its own action mode, and of the expert in its own, both from random start
    frames, ``episodes`` each, the same seed."""
    if horizon < 1:
        raise ConfigError(f"horizon must be >= 1 (episode cap in expert episodes), got {horizon}")
    student = load_expert_like(student_path)
    rows = []
    for path in expert_paths or default_experts():
        expert = load_expert(path)
        kwargs = {**expert.env_kwargs, "action_mode": student.env_kwargs.get("action_mode", "pd")}
        cap = {"max_episode_steps": horizon * expert.max_episode_steps}
        mine = evaluate_on_clip(student.agent, {**kwargs, **cap}, episodes, seed)
        theirs = evaluate_on_clip(expert.agent, {**expert.env_kwargs, **cap}, episodes, seed)
        rows.append({"clip": expert.clip, "episode_steps": cap["max_episode_steps"],
                     "student": mine["length_mean"] / cap["max_episode_steps"],
                     "expert": theirs["length_mean"] / cap["max_episode_steps"],
                     "student_return": mine["return_mean"], "expert_return": theirs["return_mean"]})
    return rows


def heldout_action_error(student_path: str | Path, dataset: Any) -> list[dict[str, Any]]:
    """Per clip, on expert episodes the student never saw (another seed of :func:`write_expert_dataset`): the
    student acts along each recorded episode in closed loop with its own memory (``episode_start`` at the
    first step, its encoder filtering the recorded observations) and its action is compared with the expert's
    clean label: mean squared error and mean absolute error in action units, and the same for the zero action
    (what predicting nothing scores)."""
    student = load_expert_like(student_path)
    data = load_dataset(dataset) if isinstance(dataset, (str, Path)) else dataset
    clips = list((data.metadata.get("rlkit") or {}).get("clips", []))
    sq: dict[str, list[np.ndarray]] = {c: [] for c in clips}
    zero: dict[str, list[np.ndarray]] = {c: [] for c in clips}
    for ep in data.episodes:
        labels, T = ep.infos[LABEL_KEY], len(ep)
        starts = np.arange(T) == 0
        actions = np.stack([student.agent.predict(ep.observations[t][None], deterministic=True,
                                                  episode_start=starts[t:t + 1])[0] for t in range(T)])
        clip = clips[int(ep.infos["clip_index"][0])]
        sq[clip].append((actions - labels) ** 2)
        zero[clip].append(labels ** 2)
    rows = []
    for clip in clips:
        err, base = np.concatenate(sq[clip]), np.concatenate(zero[clip])
        rows.append({"clip": clip, "steps": len(err), "mse": float(err.mean()), "mae": float(np.sqrt(err).mean()),
                     "zero_action_mse": float(base.mean())})
    return rows


def load_expert_like(path: str | Path) -> Expert:
    """A run or export on HumanoidImitation with any clips (a multi-clip student): agent and env kwargs."""
    from rlkit.runfiles.runs import open_run

    run = open_run(path)
    cfg = run.config
    agent = _run_agent(run, "cpu")
    kwargs = dict(cfg.env.kwargs)
    return Expert(Path(path), agent, ",".join(kwargs.get("clips", [])), kwargs,
                  int(kwargs.get("max_episode_steps", 1000)))

