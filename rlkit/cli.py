"""``rlkit`` command line: train | eval | export | list | plot | bench | collect | dataset | pretrain.

User mistakes (missing file, bad YAML, unknown key or id, a directory that is not a run, a run in
use by another process, a checkpoint that is not one) and a full disk print one line — what, where,
how to fix — and exit with code 2, without a traceback. A run whose loss goes non-finite stops with
code 2 too (its last good checkpoint kept). A run stopped by SIGINT (Ctrl-C) or SIGTERM checkpoints
and exits with 130 or 143 (128 + the signal), as shells do; a second Ctrl-C stops at once with 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlkit.runfiles.checkpoint import disk_full_cause, disk_full_message
from rlkit.config import configs_dir, is_sb3_agent
from rlkit.errors import USER_ERRORS, ConfigError, RunDirError, TrainingDiverged

USAGE_ERROR = 2


def _split_config_and_overrides(args: list[str]) -> tuple[str | None, list[str]]:
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def cmd_train(ns: argparse.Namespace) -> int:
    from rlkit.training import distributed

    config_path, overrides = _split_config_and_overrides(ns.args)
    for text in overrides:
        if "=" not in text:
            raise ConfigError(f"'{text}' is neither a config file (it must come first) nor an override key.sub=value")
    if ns.seed is not None:
        overrides.append(f"seed={ns.seed}")
    if ns.device is not None:
        overrides.append(f"device={ns.device}")
    # --agent / --env: shortcuts for agent.name= / env.id= (before the other overrides, which may refine them);
    # --agent without a CONFIG starts from that agent's defaults, not from the default DQN file
    overrides[:0] = [f"{key}={value}" for key, value in (("agent.name", ns.agent), ("env.id", ns.env)) if value]
    config = config_path
    if config is None and ns.agent is not None and ns.resume is None:
        config = {}
    if ns.resume is not None:
        if config_path is not None:
            raise ConfigError("--resume takes the run's own config.yaml; pass overrides only (no CONFIG)")
        if ns.run_dir is not None:
            raise ConfigError("--resume continues the run in its own directory; --run-dir cannot be combined with "
                              "it (copy the run directory first to resume a copy)")
    # torchrun (WORLD_SIZE > 1): join the process group for the run, leave it cleanly (rlkit.training.distributed)
    try:
        return _train(ns, config, overrides)
    except USER_ERRORS as exc:
        if distributed.echo_of_main(exc):  # every rank raised rank 0's error: rank 0 alone prints its line
            return USAGE_ERROR
        raise


def _train(ns: argparse.Namespace, config, overrides: list[str]) -> int:
    from rlkit.api import prepare_train
    from rlkit.training import distributed
    from rlkit.training.loops import train

    with distributed.session():
        # the same preparation as rlkit.train(): config + overrides, run directory checked before anything is
        # built (on resume the config is read under the run's lock, and the loop checks the overrides against
        # the checkpoint before anything is written); under torchrun rank 0 prepares, every rank gets the result
        cfg, run_dir, source = distributed.on_main(
            lambda: prepare_train(config, overrides, run_dir=ns.run_dir, resume_dir=ns.resume))
        if is_sb3_agent(cfg.agent.name):  # agent.name sb3.PPO, sb3_contrib.MaskablePPO, ...: SB3's learn, rlkit's run
            if distributed.active():
                raise ConfigError(f"agent.name {cfg.agent.name}: SB3 runs are single-process; start it with "
                                  "`rlkit train`, not torchrun")
            from rlkit.training.sb3_runner import train_sb3 as train
        summary = train(cfg, run_dir, resume=ns.resume is not None, source=source)
        if distributed.is_main():
            _print_summary(summary)
    return 128 + summary["interrupted"] if summary.get("interrupted") else 0


def cmd_pretrain(ns: argparse.Namespace) -> int:
    """``rlkit pretrain CONFIG [key=value ...]``: an encoder from a dataset with auxiliary losses
    (:mod:`rlkit.training.pretrain`), written as RUN_DIR/encoder.safetensors for ``agent.encoder.init``."""
    from rlkit.training.pretrain import prepare_pretrain, pretrain

    config_path, overrides = _split_config_and_overrides(ns.args)
    for text in overrides:
        if "=" not in text:
            raise ConfigError(f"'{text}' is neither a config file (it must come first) nor an override key.sub=value")
    overrides += [f"{key}={value}" for key, value in (("seed", ns.seed), ("device", ns.device)) if value is not None]
    cfg, run_dir = prepare_pretrain(config_path, overrides, run_dir=ns.run_dir, resume_dir=ns.resume)
    summary = pretrain(cfg, run_dir, resume=ns.resume is not None)
    losses = "  ".join(f"{k} {v:.4f}" for k, v in summary["losses"].items() if k.startswith("aux/"))
    print(f"steps {summary['steps']}  wall time {summary['wall_time']:.1f}s  {losses}")
    if summary["encoder"]:
        print(f"encoder: {summary['encoder']}  (agent.encoder.init)")
    return 128 + summary["interrupted"] if summary["interrupted"] else 0


def _print_summary(summary: dict) -> None:
    final = summary.get("final_eval")
    line = (f"steps {summary['steps']}  wall time {summary['wall_time']:.1f}s  "
            f"({summary['steps'] / max(summary['wall_time'], 1e-9):.0f} {summary.get('step_unit', 'env steps')}/s "
            "incl. evaluation)")
    if final:
        line += f"  eval return {final['return_mean']:.1f} ± {final['return_std']:.1f} (last)"
        if "success_rate" in final:  # goal tasks: what the return hides
            line += f", success rate {final['success_rate']:.2f}"
    if summary.get("best_eval") is not None:
        line += f", best {summary['best_eval']:.1f} at step {summary['best_step']}"
    if summary.get("interrupted"):
        line += "  (stopped early; resume to finish)"
    print(line)
    if summary.get("plot"):
        print(f"learning curve: {summary['plot']}")
    print(f"run directory: {summary['run_dir']}")


def _set_opponents(envs, env_id: str, name: str, policy) -> None:
    """``rlkit eval --opponent``: every sub-env's games against ``random``, ``heuristic``, ``perfect`` or ``policy``
    (a loaded run)."""
    import numpy as np

    from rlkit.envs.board_games import random_legal

    games = [env.unwrapped for env in getattr(envs, "envs", [])]
    if not games or any(not hasattr(game, "set_opponent") for game in games):
        raise ConfigError(f"--opponent: {env_id} is not a two-player game (rlkit/ConnectFour-v0, rlkit/TicTacToe-v0, "
                          "rlkit/LeducHoldem-v0)")
    if policy is not None and (policy.observation_space != envs.single_observation_space
                               or policy.action_space != envs.single_action_space):
        raise ConfigError(f"--opponent {name}: that policy was trained on other spaces ({policy.observation_space}, "
                          f"{policy.action_space}) than {env_id}'s; pit runs of the same game")
    if name == "heuristic" and games[0]._heuristic is None:
        raise ConfigError(f"--opponent heuristic: {env_id} has no heuristic opponent; use random or a run")
    if name == "perfect" and games[0]._perfect is None:
        raise ConfigError(f"--opponent perfect: {env_id} has no perfect opponent (rlkit/TicTacToe-v0 has); use random, "
                          "heuristic or a run")
    for game in games:
        if name == "random":
            game.set_opponent(lambda obs, game=game: random_legal(obs, game.np_random))
        elif name == "heuristic":
            game.set_opponent(lambda obs, game=game: game._heuristic(obs, game.np_random))
        elif name == "perfect":
            game.set_opponent(lambda obs, game=game: game._perfect(obs, game.np_random))
        else:
            def play(obs, policy=policy):
                batch = {key: np.asarray(value)[None] for key, value in obs.items()}
                return int(np.asarray(policy.agent.predict(batch, deterministic=True))[0])

            game.set_opponent(play)


def cmd_eval(ns: argparse.Namespace) -> int:
    from rlkit.training.loops import build_agent, evaluate, load_agent_weights, make_vector_env, resolve_device
    from rlkit.runfiles.export import load_exported
    from rlkit.runfiles.runs import open_run

    # a run directory (checkpoints/) or an exported policy (model.safetensors + config.yaml, `rlkit export`)
    run = open_run(ns.run_dir, ns.checkpoint)
    if is_sb3_agent(run.config.agent.name):
        return _eval_sb3(ns, run)
    run_dir, cfg, ckpt_path = run.run_dir, run.config, run.weights
    if ns.device:
        cfg.device = ns.device
    if ns.target_return is not None:
        _set_target_return(cfg, ns.target_return)
    trained_spaces = None
    if ns.env is not None:
        from rlkit.training.build import run_spaces

        trained_spaces = run_spaces(cfg, run_dir)  # what the agent was built for, before the env id changes
        import dataclasses

        cfg.env = dataclasses.replace(cfg.env, id=ns.env)  # checked as in a config (module:Env-v0 ids import)
    if cfg.env.id is None:
        raise ConfigError(f"run '{run_dir}' names no env to evaluate in (env.id: null: an offline run trained "
                          "without evaluation); pass --env ID, e.g. the env its dataset was collected in")
    if ns.video:  # before any episode runs: pick MuJoCo's offscreen backend, render one frame (exit 2 if none)
        from rlkit.runfiles.rendering import prepare_video

        prepare_video(cfg.env.id, cfg.env.kwargs, seed=ns.seed)
    device = resolve_device(cfg.device)
    # the run's own evaluation task (train.eval_env_kwargs, e.g. a maze's far-end goal), unless --env names another
    extra = {} if ns.env else dict(cfg.train.eval_env_kwargs)
    opponent = None
    if ns.opponent is not None and ns.opponent not in ("random", "heuristic", "perfect"):  # two-player games: another run
        opponent = _load_opponent(ns.opponent, ns.checkpoint, cfg.device)
    envs = make_vector_env(cfg.env, num_envs=min(ns.episodes, 8), **extra)
    if ns.opponent is not None:
        try:
            _set_opponents(envs, cfg.env.id, ns.opponent, opponent)
        except ConfigError:
            envs.close()
            raise
    if trained_spaces is not None and (trained_spaces[0] != envs.single_observation_space
                                       or trained_spaces[1] != envs.single_action_space):
        envs.close()
        raise ConfigError(f"--env {ns.env}: its spaces ({envs.single_observation_space}, {envs.single_action_space}) "
                          f"are not the ones the agent was trained on ({trained_spaces[0]}, {trained_spaces[1]})")
    agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space, device)
    if run.exported:
        load_exported(agent, run_dir, cfg.agent.name, device)
    else:
        load_agent_weights(agent, ckpt_path, device)
    result = evaluate(agent, cfg.env, ns.episodes, ns.epsilon, seed=ns.seed, envs=envs)
    envs.close()
    print(f"{cfg.env.id} {cfg.agent.name} ({ckpt_path.name}): return {result['return_mean']:.2f} ± "
          f"{result['return_std']:.2f} over {ns.episodes} episodes (mean length {result['length_mean']:.1f})"
          + (f", success rate {result['success_rate']:.2f}" if "success_rate" in result else "")
          + (f", final goal distance {result['goal_distance_mean']:.2f}" if "goal_distance_mean" in result else "")
          + (f", win/draw/loss {result['win_rate']:.3f}/{result['draw_rate']:.3f}/{result['loss_rate']:.3f}"
             + (f" against {ns.opponent}" if ns.opponent else "") if "win_rate" in result else ""))
    if ns.video:
        path = record_video(agent, cfg, run_dir / "videos" / f"eval-{ckpt_path.stem}.mp4", ns.seed, ns.epsilon)
        print(f"video: {path}")
    conditioned = {"target_return": ns.target_return} if ns.target_return is not None else {}
    (run_dir / "eval.json").write_text(json.dumps({"checkpoint": str(ckpt_path), **conditioned, **result}, indent=1))
    return 0


def _load_opponent(path: str, checkpoint: str, device: str):
    """``--opponent RUN``: an rlkit run or export (:func:`rlkit.load`) or an SB3 run, as a policy to play."""
    from rlkit.api import load
    from rlkit.runfiles.runs import open_run

    run = open_run(path, checkpoint)  # a run or an export, checked (one line if it is neither)
    if is_sb3_agent(run.config.agent.name):
        from rlkit.training.sb3_runner import load_opponent

        return load_opponent(run, device="cpu")
    return load(path, checkpoint, device=device)


def _eval_sb3(ns: argparse.Namespace, run) -> int:
    """``rlkit eval`` of an SB3 run (``agent.name: sb3.PPO``, ...): its saved SB3 model in rlkit's evaluation."""
    from rlkit.training.sb3_runner import evaluate_run

    cfg, opponent = run.config, ns.opponent
    for flag, value in (("--env", ns.env), ("--target-return", ns.target_return)):
        if value is not None:
            raise ConfigError(f"{flag} is not supported for an SB3 run ({cfg.agent.name}); drop it")
    policy = None
    if opponent is not None and opponent not in ("random", "heuristic", "perfect"):  # another run: rlkit's or SB3's
        policy = _load_opponent(opponent, ns.checkpoint, ns.device or cfg.device)
    prepare = (lambda envs: _set_opponents(envs, cfg.env.id, opponent, policy)) if opponent else None
    result, agent = evaluate_run(run, ns.episodes, ns.epsilon, ns.seed, ns.device, prepare_envs=prepare)
    print(f"{cfg.env.id} {cfg.agent.name} ({run.weights.name}): return {result['return_mean']:.2f} ± "
          f"{result['return_std']:.2f} over {ns.episodes} episodes (mean length {result['length_mean']:.1f})"
          + (f", success rate {result['success_rate']:.2f}" if "success_rate" in result else "")
          + (f", win/draw/loss {result['win_rate']:.3f}/{result['draw_rate']:.3f}/{result['loss_rate']:.3f}"
             + (f" against {opponent}" if opponent else "") if "win_rate" in result else ""))
    if ns.video:
        from rlkit.runfiles.rendering import prepare_video

        prepare_video(cfg.env.id, cfg.env.kwargs, seed=ns.seed)
        path = run.run_dir / "videos" / f"eval-{run.weights.stem}.mp4"
        print(f"video: {record_video(agent, cfg, path, ns.seed, ns.epsilon)}")
    return 0


def _set_target_return(cfg, value: float) -> None:
    """``rlkit eval --target-return R``: the return a return-conditioned agent (the Decision Transformer) is asked
    for, instead of its config's ``agent.target_return``."""
    import dataclasses
    import math

    if "target_return" not in {f.name for f in dataclasses.fields(cfg.agent)}:
        raise ConfigError(f"--target-return: agent '{cfg.agent.name}' is not conditioned on a return (only the "
                          "Decision Transformer is); drop the flag")
    if not math.isfinite(value):
        raise ConfigError(f"--target-return must be a finite number, got {value}")
    cfg.agent.target_return = float(value)


def cmd_export(ns: argparse.Namespace) -> int:
    """Write a run's acting weights (safetensors) and resolved config into a new directory."""
    from rlkit.runfiles.export import export_agent
    from rlkit.training.build import SPACES_FILE, build_agent, load_agent_weights, run_spaces, save_run_spaces
    from rlkit.runfiles.runs import CONFIG_FILE, check_new_run_dir, open_run

    run = open_run(ns.run_dir, ns.checkpoint, exported=False)
    run_dir, cfg, ckpt_path = run.run_dir, run.config, run.weights
    if is_sb3_agent(cfg.agent.name):
        from rlkit.training.sb3_runner import refuse

        refuse(cfg, run_dir, "rlkit export")
    out_dir = check_new_run_dir(ns.out_dir, flag="OUT_DIR")
    config_text = (run_dir / CONFIG_FILE).read_text()
    agent = build_agent(cfg, *run_spaces(cfg, run_dir), torch_device("cpu"))  # saved, the env's, or the dataset's
    state = load_agent_weights(agent, ckpt_path, torch_device("cpu"))
    step = state.get("step", "")
    export_agent(agent, config_text, out_dir, {"agent": cfg.agent.name, "env": cfg.env.id,
                                               "checkpoint": ckpt_path.name, "step": step})
    if (run_dir / SPACES_FILE).is_file():  # an offline run's spaces: the export acts without the dataset
        save_run_spaces(out_dir, *run_spaces(cfg, run_dir))
    size = sum(f.stat().st_size for f in out_dir.iterdir()) / 2**20
    print(f"exported {cfg.agent.name} on {cfg.env.id} ({ckpt_path.name}) to {out_dir} ({size:.1f} MiB); "
          f"check it with `rlkit eval {out_dir} --episodes 100`")
    return 0


def torch_device(name: str):
    import torch

    return torch.device(name)


def record_video(agent, cfg, path: Path, seed: int, epsilon: float, max_steps: int = 10_000) -> Path:
    """One episode rendered to mp4 (rgb_array rendering, set up by rlkit.runfiles.rendering.prepare_video)."""
    import gymnasium as gym
    import imageio.v2 as imageio
    import numpy as np

    env = gym.make(cfg.env.id, render_mode="rgb_array", **cfg.env.kwargs)
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    reward = 0.0
    for t in range(max_steps):
        batch = {key: value[None] for key, value in obs.items()} if isinstance(obs, dict) else obs[None]  # Dict obs
        action = agent.predict(batch, episode_start=np.array([t == 0]), prev_reward=np.array([reward]),
                               epsilon=epsilon)[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        frames.append(env.render())
        if terminated or truncated:
            break
    env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    fps = env.metadata.get("render_fps") or 30
    imageio.mimwrite(path, [np.asarray(f) for f in frames], fps=fps, macro_block_size=1)
    return path


def cmd_list(ns: argparse.Namespace) -> int:
    import gymnasium as gym

    import rlkit.envs  # noqa: F401
    from rlkit.agents import AGENTS

    ids = sorted(k for k in gym.registry if k.startswith("rlkit/"))
    print(f"environments ({len(ids)}):")
    print("  " + "\n  ".join(ids) if ids else "  (none)")
    print(f"agents ({len(AGENTS)}):")
    for name, (cfg_cls, agent_cls) in AGENTS.items():
        doc = (sys.modules[agent_cls.__module__].__doc__ or "").strip().splitlines()
        print(f"  {name:<12} {doc[0] if doc else ''}")
    from rlkit.auxiliary import AUX_MODULES

    print(f"auxiliary modules ({len(AUX_MODULES)}; agent.aux: [{{name: ..., weight: ...}}]):")
    for name, aux_cls in AUX_MODULES.items():
        doc = (sys.modules[aux_cls.__module__].__doc__ or "").strip().splitlines()
        print(f"  {name:<18} {doc[0] if doc else ''}")
    configs = sorted(configs_dir().glob("*.yaml"))
    print(f"configs ({len(configs)}, in {configs_dir()}):")
    for path in configs:
        print(f"  {path.name}")
    return 0


def cmd_plot(ns: argparse.Namespace) -> int:
    from rlkit.runfiles.logger import METRICS_FILE, plot_runs
    from rlkit.runfiles.runs import check_run_dir

    runs = [check_run_dir(d, need_checkpoint=False) for d in ns.run_dirs]
    for run in runs:
        if not (run / METRICS_FILE).is_file():
            raise RunDirError(f"run '{run}' has no {METRICS_FILE} yet: nothing to plot")
    out = Path(ns.out) if ns.out else (runs[0] / "learning_curve.png" if len(runs) == 1 else Path("learning_curves.png"))
    print(f"wrote {plot_runs(runs, out, ns.labels)}")
    return 0


def cmd_collect(ns: argparse.Namespace) -> int:
    """``rlkit collect RUN_DIR|random``: record whole episodes of a trained policy (or uniform random
    actions) into a Minari dataset."""
    import numpy as np

    from rlkit.config import EnvConfig
    from rlkit.experience.datasets import check_dataset_id, dataset_path, episode_stats, write_dataset
    from rlkit.errors import DatasetError
    from rlkit.training.loops import make_vector_env
    from rlkit.training.recording import record_episodes

    if ns.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {ns.episodes}")
    if ns.num_envs < 1:
        raise ConfigError(f"--num-envs must be >= 1, got {ns.num_envs}")
    if not 0.0 <= ns.epsilon <= 1.0:  # also rejects nan
        raise ConfigError(f"--epsilon must lie in [0, 1] (a probability of acting at random), got {ns.epsilon}")
    if not 0.0 <= ns.noise < float("inf"):
        raise ConfigError(f"--noise must be a finite std >= 0 (relative to the action half-range), got {ns.noise}")
    check_dataset_id(ns.out)
    if dataset_path(ns.out).exists() and not ns.overwrite:  # before any episode runs
        raise DatasetError(f"dataset '{ns.out}' already exists ({dataset_path(ns.out)}); pick another --out (e.g. "
                           "bump -vN) or pass --overwrite")
    num_envs = min(ns.num_envs, ns.episodes)
    if ns.source == "random":
        if ns.env is None:
            raise ConfigError("rlkit collect random needs --env ID (e.g. --env CartPole-v1)")
        env_cfg = EnvConfig(id=ns.env, num_envs=num_envs)
        envs = make_vector_env(env_cfg, num_envs=num_envs)
        act_space = envs.single_action_space
        act_space.seed(ns.seed)

        def act(obs, episode_start, prev_reward):
            return np.stack([act_space.sample() for _ in range(envs.num_envs)])

        source = {"source": "random"}
        algorithm = "uniform random policy"
    else:
        env_cfg, envs, act, source = _collect_policy(ns, num_envs)
        algorithm = f"{source['agent']} ({source['checkpoint']})"
    act_space = envs.single_action_space
    if ns.noise > 0:
        if not hasattr(act_space, "low") or act_space.dtype.kind != "f":
            envs.close()
            raise ConfigError(f"--noise adds Gaussian noise to continuous (Box) actions; {env_cfg.id}'s action "
                              f"space is {act_space}: use --epsilon instead")
        rng = np.random.default_rng(ns.seed + 1)
        half = (act_space.high - act_space.low) / 2.0
        base_act = act

        def act(obs, episode_start, prev_reward):
            a = np.asarray(base_act(obs, episode_start, prev_reward), dtype=act_space.dtype)
            noisy = a + rng.normal(size=a.shape) * ns.noise * half
            return np.clip(noisy, act_space.low, act_space.high).astype(act_space.dtype)

    try:
        episodes = record_episodes(envs, act, ns.episodes, seed=ns.seed)
        obs_space = envs.single_observation_space
    finally:
        envs.close()
    meta = {**source, "epsilon": ns.epsilon, "noise": ns.noise, "seed": ns.seed, "num_envs": num_envs}
    path = write_dataset(ns.out, episodes, obs_space, act_space, env_id=env_cfg.id, env_kwargs=env_cfg.kwargs,
                         algorithm_name=algorithm, metadata=meta, overwrite=ns.overwrite,
                         description=f"{len(episodes)} episodes of {env_cfg.id} recorded by `rlkit collect` "
                                     f"({algorithm}, epsilon {ns.epsilon}, noise {ns.noise}, seed {ns.seed})")
    stats = episode_stats(episodes)
    print(f"wrote dataset {ns.out} ({path}): {stats['total_episodes']} episodes, {stats['total_steps']} steps, "
          f"return {stats['return_mean']:.2f} ± {stats['return_std']:.2f} on {env_cfg.id}")
    return 0


def _collect_policy(ns: argparse.Namespace, num_envs: int):
    """(env config, vector env, policy, metadata) for ``rlkit collect RUN_DIR``, loaded as `rlkit eval` does."""
    import dataclasses

    from rlkit.runfiles.export import load_exported
    from rlkit.training.loops import build_agent, load_agent_weights, make_vector_env, resolve_device
    from rlkit.runfiles.runs import open_run

    run = open_run(ns.source, ns.checkpoint)
    run_dir, cfg, ckpt_path = run.run_dir, run.config, run.weights
    if is_sb3_agent(cfg.agent.name):
        from rlkit.training.sb3_runner import refuse

        refuse(cfg, run_dir, "rlkit collect")
    if ns.device:
        cfg.device = ns.device
    if ns.env is None and cfg.env.id is None:
        raise ConfigError(f"run '{run_dir}' names no env (env.id); pass --env ID")
    env_cfg = dataclasses.replace(cfg.env, num_envs=num_envs)
    if ns.env is not None and ns.env != cfg.env.id:  # another env: the run's kwargs belong to its own env
        env_cfg = dataclasses.replace(env_cfg, id=ns.env, kwargs={})
    device = resolve_device(cfg.device)
    envs = make_vector_env(env_cfg, num_envs=num_envs)
    try:
        agent = build_agent(cfg, envs.single_observation_space, envs.single_action_space, device)
        if run.exported:
            load_exported(agent, run_dir, cfg.agent.name, device)
        else:
            load_agent_weights(agent, ckpt_path, device)
    except BaseException:
        envs.close()
        raise

    def act(obs, episode_start, prev_reward):
        return agent.predict(obs, episode_start=episode_start, prev_reward=prev_reward, epsilon=ns.epsilon)

    meta = {"source": "policy", "run_dir": str(run_dir.resolve()), "agent": cfg.agent.name,
            "checkpoint": ckpt_path.name, "run_env_id": cfg.env.id}
    return env_cfg, envs, act, meta


def cmd_dataset(ns: argparse.Namespace) -> int:
    """``rlkit dataset list | info ID | from-run RUN_DIR --out ID | from-mocap | import-hdf5 FILE --env ID |
    pseudo-label SOURCE --out ID | experts``."""
    return {"list": _dataset_list, "info": _dataset_info, "from-run": _dataset_from_run,
            "from-mocap": _dataset_from_mocap, "import-hdf5": _dataset_import_hdf5,
            "make-reference": _dataset_make_reference, "pseudo-label": _dataset_pseudo_label,
            "experts": _dataset_experts}[ns.source](ns)


def _dataset_list(ns: argparse.Namespace) -> int:
    from rlkit.experience.datasets import datasets_root, list_datasets

    rows = list_datasets()
    root = datasets_root()
    if not rows:
        print(f"no datasets under {root} (MINARI_DATASETS_PATH); `rlkit collect` or `rlkit dataset from-run` "
              "write one")
        return 0
    width = max(24, *(len(r["id"]) for r in rows)) + 2
    print(f"{'id':<{width}}{'episodes':>9}{'steps':>11}  {'env':<28}{'size':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['id']:<{width}}{'?':>9}{'?':>11}  {'(unreadable: see rlkit dataset info)':<28}"
                  f"{r['size_mb']:>8.1f}MB")
            continue
        print(f"{r['id']:<{width}}{r['episodes']:>9}{r['steps']:>11}  {str(r['env'] or '-'):<28}{r['size_mb']:>8.1f}MB")
    print(f"{len(rows)} dataset{'s' if len(rows) != 1 else ''} under {root}")
    return 0


def _dataset_info(ns: argparse.Namespace) -> int:
    from rlkit.experience.datasets import dataset_info

    info = dataset_info(ns.dataset)
    ret, length = info["return"], info["length"]
    print(f"dataset      {info['id']}")
    print(f"path         {info['path']}")
    print(f"env          {info['env_id'] or '-'}")
    print(f"observations {info['observation_space']}")
    print(f"actions      {info['action_space']}")
    print(f"episodes     {info['episodes']} ({info['terminated']} terminated, {info['truncated']} truncated)")
    print(f"steps        {info['steps']} (episode length mean {length['mean']:.1f}, min {length['min']}, "
          f"max {length['max']})")
    print(f"return       mean {ret['mean']:.3f}  std {ret['std']:.3f}  min {ret['min']:.3f}  max {ret['max']:.3f}")
    print(f"fingerprint  {info['fingerprint']} (every array, the spaces, the env; "
          f"{'per-array checksums verified' if info['checksums'] else 'no checksums stored: an older or foreign dataset'})")
    extra = {**info["minari"], **{f"rlkit.{k}": v for k, v in info["rlkit"].items()}}
    for key, value in extra.items():
        print(f"{key:<{max([12, *map(len, extra)])}} {json.dumps(value) if not isinstance(value, str) else value}")
    return 0


def _dataset_from_run(ns: argparse.Namespace) -> int:
    from rlkit.training.recording import dataset_from_run

    path, counts = dataset_from_run(ns.run_dir, ns.out, overwrite=ns.overwrite)
    print(f"wrote dataset {ns.out} ({path}): {counts['total_episodes']} episodes, {counts['total_steps']} steps of "
          f"the {counts['transitions']} transitions in the replay buffer (dropped: {counts['dropped_leading']} of "
          f"episodes whose start the ring overwrote, {counts['dropped_trailing']} unfinished), return "
          f"{counts['return_mean']:.2f} ± {counts['return_std']:.2f}")
    return 0


def _dataset_import_hdf5(ns: argparse.Namespace) -> int:
    from rlkit.experience.d4rl_import import import_hdf5

    path, c = import_hdf5(ns.file, ns.env, ns.out, overwrite=ns.overwrite, drop_trailing=ns.drop_trailing)
    print(f"wrote dataset {c['dataset_id']} ({path}): "
          f"{c['total_episodes']} episodes, {c['total_steps']} steps of the file's {c['rows']} rows (dropped: "
          f"{c['dropped_timeout_steps']} timeout steps without a next observation, {c['dropped_episodes']} episodes "
          f"left empty, {c['dropped_trailing']} unfinished), return {c['return_mean']:.2f} ± {c['return_std']:.2f} "
          f"on {ns.env}")
    return 0


def _dataset_make_reference(ns: argparse.Namespace) -> int:
    """``rlkit dataset make-reference [NAME...]``: D4RL-style reference datasets from committed policies."""
    from rlkit.training.reference import REFERENCES, make_reference, reference

    if ns.list or not ns.names and not ns.all:
        for name, ref in REFERENCES.items():
            how = (f"episodes of pretrained/reference/{ref.policy}, {ref.steps:,} steps" if ref.kind == "policy"
                   else f"replay of configs/{ref.config} (seed {ref.seed}) to step {ref.until_step:,}")
            print(f"{name:<28} {ref.env_id:<16} {how}")
        if not ns.list:
            print("name datasets to make them (or --all), e.g. `rlkit dataset make-reference hopper-medium-v0`")
        return 0
    names = list(REFERENCES) if ns.all else ns.names
    for name in names:  # unknown names fail before any work
        reference(name)
    if ns.steps is not None and ns.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {ns.steps}")
    for name in names:
        path, s = make_reference(name, steps=ns.steps, run_dir=ns.run, overwrite=ns.overwrite)
        print(f"wrote rlkit/{name} ({path}): {s['total_episodes']} episodes, {s['total_steps']:,} steps, return "
              f"{s['return_mean']:.1f} [{s['return_min']:.1f}..{s['return_max']:.1f}], normalised "
              f"{s['normalized_mean']:.1f}")
    return 0


def _dataset_pseudo_label(ns: argparse.Namespace) -> int:
    """``rlkit dataset pseudo-label SOURCE --out ID``: label action-free episodes with an inverse-dynamics model."""
    from rlkit.training.pseudo_label import pseudo_label

    path, s = pseudo_label(ns.dataset, ns.out, labelled_fraction=ns.labelled_fraction, threshold=ns.threshold,
                           steps=ns.steps, seed=ns.seed, ensemble=ns.ensemble, action_free=ns.action_free,
                           overwrite=ns.overwrite)
    model = s["inverse_model"]
    held = (f"held-out accuracy {model['held_out_accuracy']:.3f}" if "held_out_accuracy" in model else
            f"held-out MSE {model['held_out_mse']:.4f} (normalised actions)" if "held_out_mse" in model else
            "no held-out steps")
    print(f"wrote dataset {ns.out} ({path}): {s['labelled_episodes']} labelled episodes ({s['labelled_steps']} steps) "
          f"+ {s['pseudo_labelled_steps']} pseudo-labelled steps of {s['action_free_episodes']} action-free episodes "
          f"({s['dropped_steps']} dropped below the threshold); inverse model: {held}")
    return 0


def _dataset_from_mocap(ns: argparse.Namespace) -> int:
    """A state-action dataset of mocap clips by inverse dynamics, written as a Minari dataset."""
    from rlkit.experience.datasets import check_dataset_id, dataset_path
    from rlkit.envs.humanoid_imitation import build_mocap_dataset
    from rlkit.envs.mocap import DEEPMIMIC_CLIPS, residual_summary, resolve_clip_name
    from rlkit.errors import DatasetError
    from rlkit.training.recording import write_mocap_dataset

    check_dataset_id(ns.out)
    if dataset_path(ns.out).exists() and not ns.overwrite:  # before the computation, not after it
        raise DatasetError(f"dataset '{ns.out}' already exists ({dataset_path(ns.out)}); pick another --out (e.g. "
                           "bump -vN) or pass --overwrite")
    clips = ns.clips or list(DEEPMIMIC_CLIPS)
    for clip in clips:  # unknown names fail before any work, with the closest valid name
        if not str(clip).endswith((".txt", ".npz")):
            resolve_clip_name(clip)
    data = build_mocap_dataset(clips, contacts=not ns.no_contacts)
    path = write_mocap_dataset(data, ns.out, overwrite=ns.overwrite)
    print(f"root residual per clip (|qfrc_inverse[:6]|, contacts {'off' if ns.no_contacts else 'on'}):")
    print(f"  {'clip':<16}{'frames':>7}{'mean':>10}{'median':>10}{'max':>11}{'force/mg':>10}")
    for row in residual_summary(data):
        print(f"  {row['clip']:<16}{row['frames']:>7}{row['mean']:>10.1f}{row['median']:>10.1f}{row['max']:>11.1f}"
              f"{row.get('force_over_weight', float('nan')):>10.2f}")
    print(f"wrote dataset {ns.out} ({path}): {len(data['clip_names'])} episodes (one per clip), "
          f"{len(data['actions'])} transitions, observations {data['observations'].shape[1]}, "
          f"actions {data['actions'].shape[1]}")
    return 0


def _dataset_experts(ns: argparse.Namespace) -> int:
    """Noisy rollouts of clip experts with their clean actions as labels (rlkit.training.expert_rollouts)."""
    from rlkit.training.expert_rollouts import check_expert_dataset, write_expert_dataset

    print(f"rolling out {len(ns.experts) if ns.experts else 'the shipped'} experts, {ns.episodes} episodes each, "
          f"action noise std {ns.noise}:")
    path, _ = write_expert_dataset(ns.out, ns.experts, ns.episodes, ns.noise, ns.seed, ns.overwrite)
    summary = check_expert_dataset(ns.out)
    clips = ", ".join(f"{c} {n['episodes']} episodes / {n['steps']} steps" for c, n in summary["clips"].items())
    print(f"wrote dataset {ns.out} ({path}): {clips}; observations {summary['obs_dim']}, actions "
          f"{summary['action_dim']} (absolute PD), labels in infos/expert_actions; checked")
    return 0


def cmd_bench(ns: argparse.Namespace) -> int:
    from rlkit.bench.registry import LONG_SUITES, SUITES  # the bench package (bench/), its suites by name
    from rlkit.bench.runner import report, run_suite  # run_suite: one line and exit 2 without the bench extra

    if ns.seeds < 1 or ns.threads < 1:
        raise ConfigError("rlkit bench: --seeds and --threads must be >= 1")
    if ns.suite != "all" and ns.suite not in SUITES:
        from rlkit.config import _closest

        raise ConfigError(f"rlkit bench: unknown suite '{ns.suite}'."
                          + _closest(ns.suite, [*SUITES, "all"]).replace("keys", "suites"))
    names = [n for n in SUITES if n not in LONG_SUITES] if ns.suite == "all" else [ns.suite]
    docs = None if ns.no_docs else Path(ns.docs)
    for name in names:
        if ns.report:
            report(name, Path(ns.out), docs)
        else:
            run_suite(name, list(range(ns.seeds)), Path(ns.out), quick=ns.quick, threads=ns.threads, docs=docs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlkit", description="rlkit: train, evaluate and compare RL agents.")
    from rlkit import __version__

    parser.add_argument("--version", action="version", version=f"rlkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train an agent from a YAML config",
                           description="rlkit train [CONFIG] [key.sub=value ...]; no CONFIG trains configs/dqn_cartpole.yaml")
    train.add_argument("args", nargs="*", metavar="CONFIG|key=value", help="config file, then dotted overrides")
    train.add_argument("--seed", type=int, help="shortcut for seed=N")
    train.add_argument("--agent", metavar="NAME", help="shortcut for agent.name=NAME (`rlkit list` shows them); "
                                                       "without CONFIG the agent's defaults, no YAML needed")
    train.add_argument("--env", metavar="ID", help="shortcut for env.id=ID")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"])
    train.add_argument("--run-dir", help="write the run here instead of runs/<name>")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a trained run")
    ev.add_argument("run_dir", help="a run directory, or a directory written by `rlkit export`")
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--epsilon", type=float, default=0.0, help="exploration during evaluation (default greedy)")
    ev.add_argument("--checkpoint", choices=["best", "latest"], default="best")
    ev.add_argument("--seed", type=int, default=12345)
    ev.add_argument("--device", choices=["auto", "cpu", "cuda"])
    ev.add_argument("--video", action="store_true", help="also record one episode to RUN_DIR/videos/*.mp4")
    ev.add_argument("--env", help="evaluate in this env id instead of the run's (an offline run without one, "
                                  "or the same task under another id); its spaces must match the agent's")
    ev.add_argument("--target-return", type=float, metavar="R",
                    help="the return a return-conditioned agent (decision_transformer) is asked to collect, instead "
                         "of its config's agent.target_return")
    ev.add_argument("--opponent", metavar="OPPONENT",
                    help="two-player games: play against 'random', 'heuristic' (win if you can, block if you must), "
                         "'perfect' (tic-tac-toe: a game-tree search that never loses) or "
                         "another run / export directory; --episodes games, seats alternating at random")
    ev.add_argument("--games", type=int, dest="episodes", default=argparse.SUPPRESS, help="the same as --episodes (games of a two-player game)")
    ev.set_defaults(func=cmd_eval)

    export = sub.add_parser("export", help="a run's policy weights (safetensors) + config, for sharing",
                            description="Writes OUT_DIR/model.safetensors (only what the agent needs to act: no "
                                        "critic, optimizer or replay) and OUT_DIR/config.yaml; `rlkit eval OUT_DIR` "
                                        "evaluates it.")
    export.add_argument("run_dir")
    export.add_argument("out_dir", help="a new or empty directory")
    export.add_argument("--checkpoint", choices=["best", "latest"], default="best")
    export.set_defaults(func=cmd_export)

    ls = sub.add_parser("list", help="registered environments, agents and shipped configs")
    ls.set_defaults(func=cmd_list)

    plot = sub.add_parser("plot", help="learning curves of one or more runs into a PNG")
    plot.add_argument("run_dirs", nargs="+")
    plot.add_argument("--out", help="output PNG (default: RUN_DIR/learning_curve.png or ./learning_curves.png)")
    plot.add_argument("--labels", nargs="+", help="one label per run (runs with equal labels aggregate)")
    plot.set_defaults(func=cmd_plot)

    _add_data_commands(sub)
    _add_bench_command(sub)
    _add_pretrain_command(sub)
    return parser


def _add_pretrain_command(sub) -> None:
    """`rlkit pretrain CONFIG [key=value ...]`."""
    pre = sub.add_parser("pretrain", help="pretrain an encoder from a dataset with auxiliary losses",
                         description="Trains agent.encoder-style encoders from an offline dataset with the losses of "
                                     "rlkit.auxiliary (configs/pretrain_*.yaml) and writes RUN_DIR/encoder.safetensors, "
                                     "which agent.encoder.init loads (agent.encoder.freeze keeps it fixed).")
    pre.add_argument("args", nargs="*", metavar="CONFIG|key=value", help="config file, then dotted overrides")
    pre.add_argument("--seed", type=int, help="shortcut for seed=N")
    pre.add_argument("--device", choices=["auto", "cpu", "cuda"])
    pre.add_argument("--run-dir", help="write the run here instead of runs/<name>")
    pre.add_argument("--resume", metavar="RUN_DIR", help="continue a pretraining run from its latest checkpoint")
    pre.set_defaults(func=cmd_pretrain)


def _add_data_commands(sub) -> None:
    """`rlkit collect` and `rlkit dataset list | info | from-run | from-mocap | import-hdf5`."""
    collect = sub.add_parser(
        "collect", help="record episodes of a trained policy or random actions into a Minari dataset",
        description="Steps the env with the policy of RUN_DIR (a run, or an `rlkit export` directory) or uniform "
                    "random actions, and writes whole episodes (true final observations included) as the Minari "
                    "dataset --out under MINARI_DATASETS_PATH (default ~/.minari/datasets).")
    collect.add_argument("source", metavar="RUN_DIR|random")
    collect.add_argument("--env", help="env id (default: the run's; required for random)")
    collect.add_argument("--episodes", type=int, required=True)
    collect.add_argument("--out", required=True, metavar="ID", help="dataset id, namespace/name-v0")
    collect.add_argument("--epsilon", type=float, default=0.0, help="act uniformly at random with this probability")
    collect.add_argument("--noise", type=float, default=0.0,
                         help="Gaussian noise std on Box actions, relative to the half-range, clipped to the bounds")
    collect.add_argument("--seed", type=int, default=0)
    collect.add_argument("--checkpoint", choices=["best", "latest"], default="best")
    collect.add_argument("--num-envs", type=int, default=8, help="sub-envs stepped together (at most --episodes)")
    collect.add_argument("--device", choices=["auto", "cpu", "cuda"])
    collect.add_argument("--overwrite", action="store_true", help="replace an existing dataset --out")
    collect.set_defaults(func=cmd_collect)

    dataset = sub.add_parser("dataset", help="offline datasets (Minari format): list, inspect, build",
                             description="Datasets live under MINARI_DATASETS_PATH (default ~/.minari/datasets); "
                                         "`minari` reads them too.")
    dataset_sub = dataset.add_subparsers(dest="source", required=True)
    dataset_sub.add_parser("list", help="datasets: id, episodes, steps, env, size").set_defaults(func=cmd_dataset)
    info = dataset_sub.add_parser("info", help="spaces, counts, return statistics and metadata of a dataset")
    info.add_argument("dataset", metavar="ID|PATH")
    info.set_defaults(func=cmd_dataset)
    from_run = dataset_sub.add_parser(
        "from-run", help="a run's saved replay buffer as a dataset",
        description="Rebuilds whole episodes from the replay buffer in RUN_DIR's latest checkpoint: episodes whose "
                    "start the ring buffer overwrote are dropped, the unfinished one at the end is kept as truncated.")
    from_run.add_argument("run_dir")
    from_run.add_argument("--out", required=True, metavar="ID", help="dataset id, namespace/name-v0")
    from_run.add_argument("--overwrite", action="store_true", help="replace an existing dataset --out")
    from_run.set_defaults(func=cmd_dataset)
    mocap = dataset_sub.add_parser(
        "from-mocap", help="state-action dataset of motion-capture clips by inverse dynamics (mj_inverse)",
        description="Writes one episode per clip (observations, actions = actuator torques / gear for "
                    "action_mode=torque; qpos/qvel/qacc, forces and the root residual as infos) as a Minari "
                    "dataset and prints the root residual per clip.")
    mocap.add_argument("--clips", nargs="+", metavar="CLIP",
                       help="DeepMimic clip names or .txt/.npz clip files (default: all 15 DeepMimic clips)")
    mocap.add_argument("--out", default="rlkit/mocap-v0", metavar="ID", help="dataset id (default: rlkit/mocap-v0)")
    mocap.add_argument("--no-contacts", action="store_true",
                       help="inverse dynamics without floor contacts (residual includes gravity support)")
    mocap.add_argument("--overwrite", action="store_true", help="replace an existing dataset --out")
    mocap.set_defaults(func=cmd_dataset)
    hdf5 = dataset_sub.add_parser(
        "import-hdf5", help="a D4RL-style HDF5 file (flat observations, actions, rewards, terminals, timeouts)",
        description="Splits the rows into episodes at terminals and timeouts, checks them against --env's spaces and "
                    "writes a Minari dataset. Without next_observations a terminal episode repeats its last "
                    "observation as the final one and a timeout episode drops its last step (docs/datasets.md).")
    hdf5.add_argument("file", metavar="FILE")
    hdf5.add_argument("--env", required=True, metavar="ID", help="the Gymnasium env the data was recorded in")
    hdf5.add_argument("--out", "--name", dest="out", metavar="ID",
                      help="dataset id, namespace/name-v0 (default: imported/<file name>-v0)")
    hdf5.add_argument("--drop-trailing", action="store_true",
                      help="leave out rows after the last terminal or timeout (else they are refused)")
    hdf5.add_argument("--overwrite", action="store_true", help="replace an existing dataset --out")
    hdf5.set_defaults(func=cmd_dataset)
    ref = dataset_sub.add_parser(
        "make-reference", help="D4RL-style reference datasets (medium, medium-replay, expert) made here",
        description="Regenerates rlkit's reference datasets from the policies committed in pretrained/reference/ "
                    "(medium, expert) or by re-running the training whose replay they are (medium-replay); "
                    "docs/datasets.md lists them with their returns and normalised scores.")
    ref.add_argument("names", nargs="*", metavar="NAME", help="reference datasets to make (none: list them)")
    ref.add_argument("--all", action="store_true", help="make every reference dataset")
    ref.add_argument("--list", action="store_true", help="list the reference datasets and how each is made")
    ref.add_argument("--steps", type=int, help="env steps to record for policy datasets (default: the registry's)")
    ref.add_argument("--run", metavar="RUN_DIR", help="medium-replay: read this existing run of the reference "
                                                       "training instead of re-running it")
    ref.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    ref.set_defaults(func=cmd_dataset)
    _add_labelling_commands(dataset_sub)


def _add_labelling_commands(dataset_sub) -> None:
    """``rlkit dataset pseudo-label`` and ``rlkit dataset experts``: datasets whose action labels are made here."""
    pseudo = dataset_sub.add_parser(
        "pseudo-label", help="label action-free episodes with an inverse-dynamics model trained on the labelled ones",
        description="Trains an inverse-dynamics model a = g(s_t, s_t+1) on the episodes of SOURCE that have actions, "
                    "labels the action-free ones (metadata rlkit.action_free / action_free_episodes, the episodes "
                    "--labelled-fraction hides, or every episode of --action-free) and writes the union as --out; "
                    "Discrete labels below --threshold confidence are dropped (FixMatch), Box labels optionally by "
                    "ensemble disagreement (docs/datasets.md).")
    pseudo.add_argument("dataset", metavar="SOURCE", help="dataset id or path")
    pseudo.add_argument("--out", required=True, metavar="ID", help="the new dataset's id, namespace/name-v0")
    pseudo.add_argument("--labelled-fraction", type=float, metavar="F",
                        help="keep the actions of this share of the episodes (seeded) and hide the rest (experiments)")
    pseudo.add_argument("--threshold", type=float, metavar="T",
                        help="Discrete: the softmax confidence a label needs (default 0.95); Box: the most ensemble "
                             "disagreement (std in normalised units) a label may have (default: keep every label)")
    pseudo.add_argument("--steps", type=int, default=2000, metavar="N",
                        help="gradient steps of the inverse model per member (default 2000, early-stopped)")
    pseudo.add_argument("--ensemble", type=int, metavar="K", help="inverse models (default 5 with a Box --threshold, "
                                                                   "else 1)")
    pseudo.add_argument("--action-free", metavar="ID", help="a dataset of the same spaces whose every episode is "
                                                            "labelled too (e.g. state-only motion capture)")
    pseudo.add_argument("--seed", type=int, default=0, help="the labelled split, held-out episodes and model (default 0)")
    pseudo.add_argument("--overwrite", action="store_true", help="replace an existing dataset --out")
    pseudo.set_defaults(func=cmd_dataset)
    experts = dataset_sub.add_parser(
        "experts", help="noisy rollouts of HumanoidImitation clip experts, their clean actions as labels",
        description="Rolls out each clip expert (an `rlkit export` or run directory) from random start frames with "
                    "Gaussian noise on the executed actions (MoCapAct's 0.1), records the experts' clean actions as "
                    "infos/expert_actions, all as absolute PD actions, and writes one Minari dataset "
                    "(docs/humanoid_imitation.md, 'Distilled motor-skill module').")
    experts.add_argument("--experts", nargs="+", metavar="DIR",
                         help="clip experts, one per clip (default: the shipped pretrained/mpo_humanoid_walk and "
                              "pretrained/mpo_humanoid_run)")
    experts.add_argument("--episodes", type=int, default=1000, help="rollouts per expert (default 1000)")
    experts.add_argument("--noise", type=float, default=0.1, help="std of the action noise (default 0.1)")
    experts.add_argument("--seed", type=int, default=0)
    experts.add_argument("--out", default="rlkit/humanoid-experts-v0", metavar="ID",
                         help="dataset id (default: rlkit/humanoid-experts-v0)")
    experts.add_argument("--overwrite", action="store_true", help="replace an existing dataset --out")
    experts.set_defaults(func=cmd_dataset)


def _add_bench_command(sub) -> None:
    """`rlkit bench SUITE`."""
    bench = sub.add_parser("bench", help="rlkit vs the reference (SB3, raw ALE), side by side, as ratios",
                           description="Runs rlkit and the reference interleaved in one process with the same env, "
                                       "hyperparameters, budget and threads; writes OUT/<suite>.json and .png and "
                                       "regenerates the suite's section of docs/benchmarks.md. Needs the bench "
                                       "extra (Stable-Baselines3): pip install 'rlkit-toolkit[bench]'.")
    bench.add_argument("suite", help="a suite (dqn-cartpole, dqn-throughput, dqn-loop, atari-collect, replay, sac, "
                                      "sac-her, sac-her-fetch, ris-antmaze, ris-pointmaze, dt) or all (every suite but "
                                      "the last four: hours each, or, for dt, d3rlpy's own venv)")
    bench.add_argument("--seeds", type=int, default=3, help="repeats (seeds 0..N-1); ratios are per repeat")
    bench.add_argument("--out", default="bench_out")
    bench.add_argument("--threads", type=int, default=1, help="torch threads, the same for both sides")
    bench.add_argument("--quick", action="store_true", help="tiny budgets: checks the harness, measures nothing")
    bench.add_argument("--docs", default=str(Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"))
    bench.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    bench.add_argument("--report", action="store_true",
                       help="only re-render OUT/<suite>.json into the PNG and docs (no runs)")
    bench.set_defaults(func=cmd_bench)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns, extra = parser.parse_known_args(argv)
    # overrides may come after options (`rlkit train --seed 1 train.total_steps=5`)
    if extra and ns.command in ("train", "pretrain") and not any(e.startswith("-") for e in extra):
        ns.args = list(ns.args) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from rlkit.mujoco_gl import check_mujoco_gl

    try:
        bad_gl = check_mujoco_gl()  # else `import mujoco` raises from deep inside, whatever the command
        if bad_gl is not None:
            raise ConfigError(bad_gl)
        if getattr(ns, "seed", None) is not None:  # every command's --seed: numpy's range, before anything runs
            from rlkit.config import check_seed

            check_seed(ns.seed, "--seed")
        if ns.command == "eval":
            if ns.episodes < 1:
                raise ConfigError(f"--episodes must be >= 1, got {ns.episodes}")
            if not 0.0 <= ns.epsilon <= 1.0:  # also rejects nan
                raise ConfigError(f"--epsilon must lie in [0, 1] (a probability of acting at random), got {ns.epsilon}")
        return ns.func(ns)
    except (*USER_ERRORS, TrainingDiverged) as exc:
        return _error(exc)
    except KeyboardInterrupt:  # a second Ctrl-C: stop now, without a checkpoint
        print("rlkit: interrupted", file=sys.stderr)
        return 130
    except (OSError, RuntimeError) as exc:
        cause = disk_full_cause(exc)
        if cause is None:
            raise
        return _error(disk_full_message(Path(cause.filename) if cause.filename else None, cause)
                      + "; nothing checkpointed is lost: free some space, then `rlkit train --resume RUN` "
                      "continues from the last checkpoint")


def _error(exc: BaseException | str) -> int:
    print(f"rlkit: error: {' '.join(str(exc).split())}", file=sys.stderr)  # always one line
    return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
