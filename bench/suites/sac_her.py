"""Suites ``sac-her`` and ``sac-her-fetch``: rlkit SAC + HER vs SB3's SAC + ``HerReplayBuffer`` with every
hyperparameter read from the rlkit config for both sides; success rate at equal env steps and training env
steps/s (lockstep and separate runs). ``sac-her-fetch`` is the Fetch Push comparison alone at a longer budget,
each seed in its own process."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkit.bench.figures import Figure
from rlkit.bench.rlkit_side import rlkit_run
from rlkit.bench.sb3_side import sb3_learn_timed
from rlkit.bench.timing import lockstep, window_rate
from rlkit.config import configs_dir


SAC_HER_CONFIGS = {"rlkit/PointMazeU-v0": "sac_her_pointmaze_sb3.yaml", "rlkit/FetchPush-v0": "sac_her_fetch_push.yaml"}
# env steps (total, eval_every, eval_episodes, learning_starts) per env: full runs, --quick. The env's kwargs and
# every hyperparameter come from the config, for both sides (learning_starts too: None keeps the config's).
SAC_HER_BUDGETS = {False: {"rlkit/PointMazeU-v0": (20_000, 2_000, 20, None),
                           "rlkit/FetchPush-v0": (10_000, 2_000, 20, None)},
                   True: {"rlkit/PointMazeU-v0": (600, 600, 1, 400), "rlkit/FetchPush-v0": (300, 300, 1, 100)}}
SAC_HER_LOCKSTEP_UPDATES = {False: 2_000, True: 60}
"""Updates per side of the lockstep throughput runs (after the config's learning_starts)."""
SAC_HER_SOLVED = 0.9
"""Success rate that counts as solved (steps to first success >= this)."""


def _sb3_her_hyper(cfg: Any) -> dict[str, Any]:
    """SB3 ``SAC`` keyword arguments equal to an rlkit SAC+HER config's (refuses what SB3 cannot express)."""
    agent, train = cfg.agent, cfg.train
    her = train.replay.her
    lrs = {agent.actor_lr, agent.critic_lr, agent.alpha_lr}
    if len(lrs) != 1 or agent.actor_hidden != agent.critic_hidden or train.replay.n_step != 1 or her is None \
            or her.replay_goal_fraction:
        raise ValueError("sac-her compares configs SB3 can express: one learning rate, equal actor/critic widths, "
                         "n_step 1, train.replay.her set with goals from the episode only (replay_goal_fraction 0)")
    if agent.random_steps != train.learning_starts or cfg.env.num_envs != 1 or agent.target_update_every != 1:
        raise ValueError("sac-her: random_steps must equal learning_starts (SB3's random phase), num_envs 1, "
                         "target_update_every 1")
    k = her.relabel_ratio / (1.0 - her.relabel_ratio)
    if abs(k - round(k)) > 1e-6:
        raise ValueError(f"sac-her: relabel_ratio {her.relabel_ratio} is no SB3 n_sampled_goal k/(k+1)")
    ent = f"auto_{agent.init_alpha}" if agent.autotune_alpha else agent.init_alpha
    return dict(learning_rate=agent.actor_lr, buffer_size=train.replay.capacity, learning_starts=train.learning_starts,
                batch_size=train.batch_size, tau=agent.tau, gamma=agent.gamma, train_freq=train.train_every,
                gradient_steps=train.gradient_steps, ent_coef=ent,
                target_entropy="auto" if agent.target_entropy is None else agent.target_entropy,
                replay_buffer_kwargs=dict(n_sampled_goal=int(round(k)), goal_selection_strategy=her.strategy),
                policy_kwargs=dict(net_arch=list(agent.actor_hidden)))


def _sb3_her_model(cfg: Any):
    """SB3's SAC + HerReplayBuffer with the config's hyperparameters on ``gym.make(env.id, **env.kwargs)``."""
    import gymnasium as gym
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3 import HerReplayBuffer

    import rlkit.envs  # noqa: F401  (registers the rlkit/... ids)

    return SB3SAC("MultiInputPolicy", gym.make(cfg.env.id, **cfg.env.kwargs), replay_buffer_class=HerReplayBuffer,
                  seed=cfg.seed, device="cpu", verbose=0, **_sb3_her_hyper(cfg))


def _lockstep_her_rates(config: str, overrides: list[str], total: int, run_dir: Path, skip: int
                        ) -> tuple[float | None, float | None]:
    """Training env steps/s (= updates/s: one update per env step after learning starts) of rlkit and SB3 trained
    side by side, taking turns at every update (:class:`rlkit.bench.timing.Baton`, as the sac suite's
    ``_lockstep_sac_rates``), no evaluations: (rlkit, SB3) of each side's own time after its first ``skip``
    updates."""
    from rlkit.agents import SAC
    from rlkit.config import load_config

    overrides = [*overrides, f"train.total_steps={total}", "train.eval_every=0", "train.eval_episodes=1"]
    model = _sb3_her_model(load_config(config, overrides))
    try:
        return lockstep(SAC, model, total, lambda: rlkit_run(config, overrides, run_dir), skip)
    finally:
        model.env.close()


class _SB3Actor:
    """An SB3 model as an rlkit agent for :func:`rlkit.training.evaluation.evaluate` (deterministic actions), so both
    sides are evaluated on the very same vector envs, seeds and episode quotas. It takes the agent contract's step
    record (built on ``device``) and gives SB3's ``predict`` its observations as host arrays."""

    device = torch.device("cpu")

    def __init__(self, model: Any) -> None:
        self.model = model

    def act(self, step: Any, explore: bool, epsilon: float | None = None) -> np.ndarray:
        obs = step.obs
        obs = {k: v.cpu().numpy() for k, v in obs.items()} if isinstance(obs, dict) else obs.cpu().numpy()
        return self.model.predict(obs, deterministic=not explore)[0]


def success_evals(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(r["step"], r["success_rate"]) for r in records if r["kind"] == "eval"]


def _rlkit_her_run(config: str, overrides: list[str], run_dir: Path, start_step: int
                   ) -> tuple[list[tuple[int, float]], float | None]:
    """rlkit's own loop: ([(step, success rate)], training env steps/s after ``start_step``, evaluations excluded)."""
    eval_times: list[float] = []
    records = rlkit_run(config, overrides, run_dir, eval_times)
    marks = [(r["step"], r["time"], r["step"]) for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    rate = window_rate(marks, [(r["time"], t) for r, t in zip(evals, eval_times)], start_step)
    return success_evals(records), rate


def _sb3_her_run(cfg: Any, total: int, eval_every: int, episodes: int, log_every: int, start_step: int
                 ) -> tuple[list[tuple[int, float]], float | None]:
    """SB3's SAC + HerReplayBuffer with the config's hyperparameters on ``gym.make(id, **env.kwargs)``, evaluated
    like rlkit's loop does (same vector envs, episodes and seeds): ([(step, success rate)], training env steps/s
    after ``start_step``, evaluations excluded)."""
    from rlkit.training.build import make_vector_env
    from rlkit.training.evaluation import evaluate, evaluation_seed

    model = _sb3_her_model(cfg)
    eval_envs = make_vector_env(cfg.env, num_envs=min(episodes, 8))
    actor = _SB3Actor(model)
    def success_rate(step: int) -> float:
        return evaluate(actor, cfg.env, episodes, 0.0, seed=evaluation_seed(cfg.seed, step), envs=eval_envs)["success_rate"]

    try:
        marks, evals, eval_times = sb3_learn_timed(model, total, log_every, eval_every, success_rate,
                                                   count=lambda step: step)
    finally:
        eval_envs.close()
        model.env.close()
    return evals, window_rate(marks, eval_times, start_step)


def success_at(evals: list[tuple[int, float]], step: int) -> float | None:
    """Success rate in percent at the evaluation after ``step`` env steps."""
    return next((100.0 * s for at, s in evals if at == step), None)


def _first_solve(evals: list[tuple[int, float]]) -> float | None:
    return next((float(at) for at, s in evals if s >= SAC_HER_SOLVED), None)


SAC_HER_FETCH_BUDGET = {False: (80_000, 5_000, 20, None), True: SAC_HER_BUDGETS[True]["rlkit/FetchPush-v0"]}
"""The long Fetch Push comparison (``sac-her-fetch``): env steps per side, evaluation every, episodes, learning
starts; what one session of the 2-core machine gives with the seeds trained at once (about an hour)."""


def suite_sac_her(seeds: list[int], out: Path, quick: bool, threads: int, env_ids: list[str] | None = None,
                  budgets: dict[str, tuple[int, int, int, int | None]] | None = None) -> list[Figure]:
    from rlkit.config import load_config

    if budgets is None:
        budgets = {k: v for k, v in SAC_HER_BUDGETS[quick].items() if env_ids is None or k in env_ids}
    log_every = 100 if quick else 1_000
    log = ["log.progress=false", "log.tensorboard=false", "log.plot=false", "train.save_buffer=false",
           "train.checkpoint_every=0", f"torch_threads={threads}", f"log.log_every={log_every}"]
    figures: dict[str, tuple[list[Figure], Figure, Figure, Figure]] = {}
    for env_id, (total, eval_every, _, _) in budgets.items():
        short = env_id.split("/")[1].split("-")[0]
        checkpoints = list(range(eval_every, total + 1, eval_every))
        at = [Figure(f"{short}: success rate at {step:,} env steps", "%", paired=False,
                     target=f">= {100 * SAC_HER_SOLVED:g}" if step == total and short == "PointMazeU" else "")
              for step in checkpoints]
        solve = Figure(f"{short}: env steps to the first success rate >= {SAC_HER_SOLVED} (evaluations every "
                       f"{eval_every:,})", "steps", higher_is_better=False, paired=False)
        lockstep = Figure(f"{short}: training env steps/s in lockstep (both trained side by side, turns at every "
                          "update)", "steps/s", goal=">= 2.0")
        rate = Figure(f"{short}: training env steps/s of the learning runs above (one after the other), evaluations "
                      "excluded", "steps/s")
        figures[env_id] = (at, solve, lockstep, rate)
    for seed in seeds:
        for env_id, (total, eval_every, episodes, starts) in budgets.items():
            at, solve, lockstep, rate = figures[env_id]
            config = str(configs_dir() / SAC_HER_CONFIGS[env_id])
            overrides = [*log, f"seed={seed}", f"train.total_steps={total}", f"train.eval_every={eval_every}",
                         f"train.eval_episodes={episodes}"]
            if starts is not None:
                overrides += [f"train.learning_starts={starts}", f"agent.random_steps={starts}"]
            cfg = load_config(config, overrides)
            start_step = cfg.train.learning_starts + log_every  # the first full logging window of updates
            run_dir = out / "runs" / f"sac-her-{env_id.replace('/', '_')}-rlkit-s{seed}"
            ours, ours_rate = _rlkit_her_run(config, overrides, run_dir, start_step)
            gc.collect()
            theirs, theirs_rate = _sb3_her_run(cfg, total, eval_every, episodes, log_every, start_step)
            gc.collect()
            updates = SAC_HER_LOCKSTEP_UPDATES[quick]
            ours_lock, theirs_lock = _lockstep_her_rates(config, overrides, cfg.train.learning_starts + updates,
                                                         run_dir.with_name(run_dir.name + "-lockstep"), updates // 20)
            lockstep.rlkit.append(ours_lock)
            lockstep.reference.append(theirs_lock)
            gc.collect()
            for figure in at:
                step = int(figure.name.split(" at ")[1].split()[0].replace(",", ""))
                figure.rlkit.append(success_at(ours, step))
                figure.reference.append(success_at(theirs, step))
            solve.rlkit.append(_first_solve(ours))
            solve.reference.append(_first_solve(theirs))
            rate.rlkit.append(ours_rate)
            rate.reference.append(theirs_rate)
            print(f"  seed {seed} {env_id}: success rlkit {[round(s, 2) for _, s in ours]}, SB3 "
                  f"{[round(s, 2) for _, s in theirs]}; training env steps/s rlkit {ours_rate or 0:.1f} vs SB3 "
                  f"{theirs_rate or 0:.1f}; in lockstep rlkit {ours_lock or 0:.1f} vs SB3 {theirs_lock or 0:.1f}",
                  flush=True)
        partial = {"suite": "sac-her", "seeds_done": seeds[: seeds.index(seed) + 1],
                   "figures": [f.summary() for at, *rest in figures.values() for f in (*at, *rest)]}
        (out / "sac-her.partial.json").write_text(json.dumps(partial, indent=1))
    return [f for at, *rest in figures.values() for f in (*at, *rest)]


def _sac_her_fetch_seed(seed: int, out: Path, quick: bool, threads: int) -> list[dict[str, Any]]:
    """One seed of ``sac-her-fetch`` in its own process (the figures as summaries, which pickle)."""
    torch.set_num_threads(threads)
    budgets = {"rlkit/FetchPush-v0": SAC_HER_FETCH_BUDGET[quick]}
    return [f.summary() for f in suite_sac_her([seed], out / f"seed{seed}", quick, threads, budgets=budgets)]


def suite_sac_her_fetch(seeds: list[int], out: Path, quick: bool, threads: int) -> list[Figure]:
    """rlkit SAC + HER vs SB3's on Fetch Push at the longer budget of ``SAC_HER_FETCH_BUDGET``: the ``sac-her``
    comparison for that env alone, each seed in its own process (all at once, one core each on the 2-core
    machine), the figures merged seed by seed."""
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork of a process whose torch threads already started
    with concurrent.futures.ProcessPoolExecutor(max_workers=len(seeds), mp_context=context) as pool:
        per_seed = list(pool.map(_sac_her_fetch_seed, seeds, [out] * len(seeds), [quick] * len(seeds),
                                 [threads] * len(seeds)))
    merged = [Figure.from_summary({**f, "rlkit": [], "reference": []}) for f in per_seed[0]]
    for figures in per_seed:
        for figure, summary in zip(merged, figures, strict=True):
            figure.rlkit += summary["rlkit"]
            figure.reference += summary["reference"]
    return merged


NOTES = (
    "rlkit SAC + HER (configs/sac_her_pointmaze_sb3.yaml, configs/sac_her_fetch_push.yaml) vs SB3's SAC "
    "('MultiInputPolicy') + HerReplayBuffer, every hyperparameter read from the rlkit config for both sides "
    "(batch, learning rate, gamma, tau, network widths, learning_starts = uniform random steps, one update per "
    "env step, buffer size, 'future' goals with n_sampled_goal 4 = relabel_ratio 0.8, auto entropy from 1.0), "
    "one env each, the same env id and kwargs (PointMaze: terminate_on_success false, 300-step episodes; "
    "Fetch Push: 50-step episodes, never terminates), seeds interleaved in one process (rlkit s0, SB3 s0, "
    "rlkit s1, ...). Success rate: the share of evaluation episodes whose last step reports "
    "info['is_success'], deterministic actions, both sides through rlkit.training.evaluation.evaluate on the same "
    "vector envs, episodes and seeds (SB3's model.predict as the actor). Training env steps/s: from the end "
    "of the first 1,000-step logging window after learning starts to the end of the run, each side's "
    "evaluation time subtracted (includes acting, env steps, replay writes, HER sampling and the updates); "
    "runs minutes apart on a shared machine meet different loads, so the throughput goal is read from the "
    "lockstep runs: both trained side by side in one process (two threads taking turns at every update, no "
    f"evaluations, {SAC_HER_LOCKSTEP_UPDATES[False]:,} updates each after learning_starts), each side's "
    "own time only. "
    "Learning outcomes are unpaired (seeds do not correspond across libraries)."
)

FETCH_NOTES = (
    "rlkit SAC + HER (configs/sac_her_fetch_push.yaml) vs SB3's SAC + HerReplayBuffer on "
    "rlkit/FetchPush-v0, the sac-her comparison for that env alone at a longer budget (80,000 env "
    "steps per side, evaluation every 5,000 env steps, 20 episodes): every hyperparameter read from "
    "the rlkit config for both sides, one env each, 50-step episodes. Each seed runs in its own process, all at once; within "
    "a process rlkit's run, then SB3's, then the lockstep throughput run (both trained side by side, "
    "turns at every update). Success rate: the share of evaluation episodes whose last step reports "
    "info['is_success'], deterministic actions, both sides through rlkit.training.evaluation.evaluate on the "
    "same episodes (evaluation_seed). Fetch Push's chance level: the episodes whose object starts "
    "within 0.05 m of the goal (about 5-15% of 20 episodes)."
)
