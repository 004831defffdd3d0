"""Building a run's parts from its config: device, vector envs, agent, experience source.

Every failure a user can cause (an unknown env id, kwargs the env rejects, an agent that cannot take
the env's spaces, a replay layout the observations do not allow) is a one-line ConfigError here, before
any run directory exists.
"""

from __future__ import annotations

import difflib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlkit.runfiles.checkpoint import load_checkpoint
from rlkit.config import EnvConfig, RunConfig
from rlkit.errors import CheckpointError, ConfigError
from rlkit.experience.replay import ReplayBuffer


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def env_spec(env_id: str | None) -> gym.envs.registration.EnvSpec:
    import rlkit.envs  # noqa: F401  (registers rlkit/... ids)

    if env_id is None:
        raise ConfigError("env.id is null: this run names no environment (an offline run without evaluation); "
                          "set env.id to evaluate or act in one")
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        match = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=1, cutoff=0.5)
        hint = f" Did you mean '{match[0]}'?" if match else ""  # never all of gymnasium's hundreds of ids
        raise ConfigError(f"unknown environment id '{env_id}'.{hint} `rlkit list` shows rlkit's environments; "
                          "register your own in a package named in env.imports") from None


def make_vector_env(env_cfg: EnvConfig, num_envs: int | None = None, **extra: Any) -> gym.vector.VectorEnv:
    """A vector env from the config: the env's native vector entry point when it has one (Atari)."""
    spec = env_spec(env_cfg.id)
    mode = env_cfg.vectorization
    vector_only = spec.entry_point is None and spec.vector_entry_point is not None  # e.g. rlkit/Pistonball-v0
    if mode == "auto":
        native = spec.vector_entry_point is not None and (env_cfg.id.startswith("rlkit/") or vector_only)
        mode = "native" if native else "sync"
    if vector_only and mode != "native":
        raise ConfigError(f"env.vectorization={env_cfg.vectorization}: '{env_cfg.id}' is a vector-only env (a "
                          "multi-agent game's rows, env.num_envs copies of it); use env.vectorization: native or auto")
    if mode == "native":
        if spec.vector_entry_point is None:
            raise ConfigError(f"env.vectorization=native, but '{env_cfg.id}' has no native vector env; use sync or auto")
        mode = "vector_entry_point"
    try:
        if env_cfg.backend == "warp":  # all worlds in one mujoco-warp batch (rlkit.config.WARP_BACKENDS)
            return _warp_vector_env(env_cfg, num_envs or env_cfg.num_envs, {**spec.kwargs, **env_cfg.kwargs, **extra})
        return gym.make_vec(env_cfg.id, num_envs=num_envs or env_cfg.num_envs, vectorization_mode=mode,
                            **{**env_cfg.kwargs, **extra})
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # unknown kwargs, or values the env's constructor rejects
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        where = "env.kwargs" + (" / train.eval_env_kwargs" if extra else "")
        raise ConfigError(f"{where}: '{env_cfg.id}' could not be built with kwargs {dict(env_cfg.kwargs, **extra)}: {text}"
                          ) from None


def _warp_vector_env(env_cfg: EnvConfig, num_envs: int, kwargs: dict[str, Any]) -> gym.vector.VectorEnv:
    """``env.backend: warp``: the env's batched mujoco-warp vector env, built with its kwargs."""
    import importlib

    from rlkit.config import WARP_BACKENDS, check_warp_backend

    check_warp_backend(env_cfg)  # again: a config edited in Python after it was built
    module, name = WARP_BACKENDS[env_cfg.id].split(":")
    return getattr(importlib.import_module(module), name)(num_envs=num_envs, **kwargs)


def env_agent_names(envs: gym.vector.VectorEnv) -> list[str] | None:
    """A multi-agent vector env's agent names (``metadata["agents"]``, index = the rows' ``agent_id``), else None."""
    names = envs.metadata.get("agents") if isinstance(envs.metadata, dict) else None
    return list(names) if names else None


SPACES_FILE = "spaces.json"
"""The spaces an offline run's agent was built for, as JSON (Minari's space serialisation, never pickle):
written into the run directory when the run starts and copied into exports, so ``rlkit eval``, ``rlkit
export`` and ``rlkit.load`` need no dataset."""


def save_run_spaces(run_dir: Path, observation_space: gym.Space, action_space: gym.Space) -> Path:
    """Write ``run_dir/spaces.json`` atomically (``{"observation_space": ..., "action_space": ...}``)."""
    import os

    from minari.serialization import serialize_space

    path = Path(run_dir) / SPACES_FILE
    tmp = path.with_name(f".{SPACES_FILE}.tmp-{os.getpid()}")
    text = json.dumps({"observation_space": serialize_space(observation_space),
                       "action_space": serialize_space(action_space)})
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _saved_spaces(path: Path) -> tuple[gym.Space, gym.Space]:
    from minari.serialization import deserialize_space

    try:
        data = json.loads(path.read_text())
        return deserialize_space(data["observation_space"]), deserialize_space(data["action_space"])
    except Exception as exc:  # JSON only: bad JSON, unknown space type, bad bounds
        raise ConfigError(f"{path} cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); "
                          "it holds the spaces the run's agent was built for — restore it from the run") from None


def run_spaces(cfg: RunConfig, run_dir: Path | None = None) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) the run's agent was built for: those saved in ``run_dir`` (an
    offline run, or its export: ``spaces.json``), else the env's, or for an offline run without an env
    (``env.id: null``) the dataset's (runs from before ``spaces.json``)."""
    if run_dir is not None and (Path(run_dir) / SPACES_FILE).is_file():
        return _saved_spaces(Path(run_dir) / SPACES_FILE)
    if cfg.env.id is None and cfg.offline is not None:
        from rlkit.experience.datasets import dataset_spaces

        return dataset_spaces(cfg.offline.dataset)
    envs = make_vector_env(cfg.env, num_envs=1)
    try:
        return envs.single_observation_space, envs.single_action_space
    finally:
        envs.close()


def build_agent(cfg: RunConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device,
                agent_names: list[str] | None = None, init_encoder: bool = False):
    """The config's agent for these spaces. ``agent_names``: a multi-agent env's agents (its
    ``metadata["agents"]``, index = the rows' agent id), which the agent config resolves names against
    (:meth:`AgentConfig.bind_agents`); None where the env has one agent or is not at hand (a saved config is
    already resolved). Encoders are built with ``agent.encoder``'s settings; ``agent.encoder.freeze`` freezes
    them; ``init_encoder`` (a new run, not a resume or a reload: the checkpoint holds the weights then) loads
    ``agent.encoder.init`` into them (:func:`load_encoder_init`)."""
    from rlkit.agents import AGENTS

    _, agent_cls = AGENTS[cfg.agent.name]
    caps, name = agent_cls.capabilities, cfg.agent.name
    where = cfg.env.id or f"offline.dataset '{cfg.offline.dataset}'"
    if isinstance(action_space, gym.spaces.Discrete) and not caps.discrete_actions:
        raise ConfigError(f"agent '{name}' takes continuous (Box) actions, but {where} has {action_space}; use an "
                          "agent for discrete actions (dqn, bc)")
    if isinstance(action_space, gym.spaces.Box) and not caps.continuous_actions:
        raise ConfigError(f"agent '{name}' takes discrete actions, but {where} has {action_space}; use an agent for "
                          "continuous actions (sac, mpo, bc)")
    cfg.agent.bind_agents(agent_names)
    encoder_cfg = cfg.agent.encoder
    try:
        agent = agent_cls(cfg.agent, observation_space, action_space, device=device, seed=cfg.seed)
    except ConfigError:
        raise
    except ValueError as exc:  # e.g. torch rejecting an optimizer setting the config did not range-check
        raise ConfigError(f"agent: '{cfg.agent.name}' could not be built with this config: "
                          f"{' '.join(str(exc).split())[:300]}") from None
    if encoder_cfg.init is not None or encoder_cfg.freeze:
        copies = encoder_copies(agent)
        if init_encoder and encoder_cfg.init is not None:
            load_encoder_init(agent, copies, cfg.agent, observation_space)
        if encoder_cfg.freeze:
            for name, role in copies:
                if role in ("acts", "trains"):
                    agent.freeze(name)
    return agent


# --------------------------------------------------------------------------------------
# Pretrained encoders (agent.encoder.init / freeze)
# --------------------------------------------------------------------------------------


def encoder_copies(agent) -> list[tuple[str, str]]:
    """(dotted name, role) of the agent's encoder and every copy of it, the modules ``agent.encoder.init``
    loads and ``agent.encoder.freeze`` freezes:

    - the declared ``encoder`` part (e.g. ``q_net.encoder``, SAC's ``critic.encoder``), or inside it the module
      :func:`rlkit.contract.networks.make_encoder` built (the Decision Transformer's ``model.state_encoder.base``;
      its linear map to the token width is not part of the encoder file);
    - the same path in every other declared module part where a module of the same class sits there: target
      copies (DQN's ``target_net.encoder``, SAC's ``target_critic.encoder``) and other networks' own encoders
      of the same kind (SAC's actor ``policy.encoder``), so acting and learning both start from the pretrained
      features;
    - momentum copies declared with the encoder as their source (a key encoder).

    Auxiliary heads are not included. An agent that declares no encoder is a one-line ConfigError."""
    parts = agent.parts
    name = parts.encoder
    if name is None:
        raise ConfigError(f"agent.encoder.init / freeze: {type(agent).__name__} declares no encoder part (a DQN with "
                          "per-agent or team policies has one per group); remove them")
    root = _encoder_root(parts.module_at(name))
    if root:
        name = f"{name}.{root}"
    head, _, rest = name.partition(".")
    cls = type(parts.module_at(name))
    found = [(name, parts.roles[head])]
    for other in parts.module_names():
        candidate = f"{other}.{rest}" if rest else other
        if other != head and parts.has(candidate) and type(parts.module_at(candidate)) is cls:
            found.append((candidate, parts.roles[other]))
    for other, source in parts.sources.items():
        if source in (name, parts.encoder) and not any(n == other for n, _ in found):
            found.append((other, parts.roles[other]))
    return found


def _encoder_root(module: torch.nn.Module) -> str:
    """The dotted path inside a declared encoder part of the network ``make_encoder`` built ('' for itself)."""
    from rlkit.contract.networks import DictEncoder, FlatEncoder, MLPEncoder, NatureCNN, BoardCNN
    from rlkit.contract.encoders import ImpalaCNN, VisionTransformer

    kinds = (NatureCNN, ImpalaCNN, VisionTransformer, BoardCNN, FlatEncoder, DictEncoder, MLPEncoder)
    if isinstance(module, kinds):
        return ""
    for path, sub in module.named_modules():
        if isinstance(sub, kinds):
            return path
    return ""


def load_encoder_init(agent, copies: list[tuple[str, str]], agent_cfg, observation_space: gym.Space) -> None:
    """Load ``agent.encoder.init`` (an ``encoder.safetensors`` of ``rlkit pretrain``) into every module of
    ``copies`` (:func:`encoder_copies`). The file's kind, settings, ``encoder_hidden`` and observation shape
    must be this run's, and every tensor must be there with its shape: else a one-line ConfigError naming what
    differs (the tensor, expected vs found). Safetensors only: nothing is unpickled."""
    from rlkit.contract.networks import resolved_kind
    from rlkit.runfiles.encoder_file import check_encoder_metadata, check_tensors, read_encoder_file

    encoder_cfg = agent_cfg.encoder
    path = encoder_cfg.init
    tensors, metadata = read_encoder_file(path)
    check_encoder_metadata(metadata, path, resolved_kind(observation_space, encoder_cfg.kind), encoder_cfg.settings(),
                           list(agent_cfg.encoder_hidden), observation_space)
    parts = agent.parts
    first = parts.module_at(copies[0][0])
    check_tensors(tensors, first, path)
    with torch.no_grad():
        for name, _ in copies:
            module = parts.module_at(name)
            device = next(iter(module.state_dict().values())).device if module.state_dict() else agent.device
            module.load_state_dict({k: v.to(device) for k, v in tensors.items()})


def load_agent_weights(agent, path: Path, device: torch.device) -> dict[str, Any]:
    """Load a checkpoint's agent state into ``agent``; a file that is not a checkpoint of this agent is a
    one-line :class:`CheckpointError`. Returns the checkpoint."""
    state = load_checkpoint(path, map_location=device, required=("agent",))
    try:
        agent.load_state_dict(state["agent"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        text = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"'{path}' does not fit this run's agent ({type(exc).__name__}: {text}); it is not an "
                              "rlkit checkpoint of this run") from None
    return state


def seed_everything(seed: int, torch_threads: int = 0) -> None:
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_replay(cfg: RunConfig, obs_space: gym.Space, act_space: gym.Space, num_envs: int,
                 device: torch.device, compute_reward: Callable[..., Any] | None = None,
                 agent_hook: Callable[..., Any] | None = None,
                 compute_terminated: Callable[..., Any] | None = None,
                 symmetries: list | None = None) -> ReplayBuffer:
    """The run's replay buffer; a layout the spaces do not allow is a one-line ConfigError.
    ``compute_reward`` (the env's, :func:`rlkit.experience.her.env_compute_reward`) is needed by ``train.replay.her``;
    ``compute_terminated`` (the env's, if it has one) makes it recompute relabelled terminations.
    ``agent_hook``: the agent's own sample hook (``agent.make_sample_hook()``, e.g. RIS's candidate subgoals), run
    after HER's relabelling, so it sees the goals the agent trains on. ``symmetries``: the env's symmetry group
    (:func:`rlkit.experience.symmetries.env_symmetries`), applied to each sample when ``train.replay.symmetries``."""
    from rlkit.experience.symmetries import build_augmenter

    replay_cfg = cfg.train.replay
    if (replay_cfg.frame_stack > 1 and not isinstance(obs_space, gym.spaces.Dict)
            and (len(obs_space.shape) < 2 or obs_space.shape[0] != replay_cfg.frame_stack)):
        raise ConfigError(f"train.replay.frame_stack={replay_cfg.frame_stack} but observations have shape "
                          f"{obs_space.shape}; set it to the env's frame stack (axis 0) or 1")
    relabeler = None
    if replay_cfg.her is not None:
        from rlkit.experience.her import build_relabeler

        relabeler = build_relabeler(replay_cfg.her, obs_space, compute_reward, compute_terminated)
    if replay_cfg.symmetries and replay_cfg.frame_stack > 1:
        raise ConfigError("train.replay.symmetries: symmetries map single observations, not frame stacks; set "
                          "train.replay.frame_stack=1 (board games have no frame stack)")
    augmenter = build_augmenter(replay_cfg.symmetries, symmetries, obs_space, act_space, cfg.env.id)
    hook = _chain_hooks(relabeler, augmenter, agent_hook)
    try:
        buffer = ReplayBuffer.from_spaces(
            obs_space, act_space, capacity=replay_cfg.capacity, num_envs=num_envs, device=device,
            gamma=cfg.agent.gamma, n_step=replay_cfg.n_step, frame_stack=replay_cfg.frame_stack,
            prioritized=replay_cfg.prioritized, alpha=replay_cfg.alpha, seed=cfg.seed, sample_hook=hook,
        )
    except ConfigError:
        raise
    except ValueError as exc:  # e.g. capacity < num_envs, a frame stack the observations do not have
        raise ConfigError(f"train.replay: {' '.join(str(exc).split())}") from None
    if relabeler is not None and {relabeler.achieved_key, relabeler.desired_key} & buffer.stacked_keys:
        raise ConfigError("train.replay.her: goal keys stored as frame stacks cannot be relabelled; set "
                          "train.replay.frame_stack=1")
    return buffer


def _chain_hooks(*hooks: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """One sample hook running ``hooks`` in order (None entries skipped); None if there are none."""
    present = [h for h in hooks if h is not None]
    if len(present) <= 1:
        return present[0] if present else None

    def chained(batch, ctx):
        for hook in present:
            batch = hook(batch, ctx)
        return batch

    return chained


def build_experience(cfg: RunConfig, obs_space: gym.Space, act_space: gym.Space, num_envs: int,
                     device: torch.device, compute_reward: Callable[..., Any] | None = None,
                     agent_hook: Callable[..., Any] | None = None,
                     compute_terminated: Callable[..., Any] | None = None, symmetries: list | None = None):
    """The online experience source the agent's config asks for (``capabilities.experience``):
    the transition replay buffer, or fixed-length sequences (``agent.sequence_length`` steps).
    ``compute_reward``: the env's, for hindsight relabelling (``train.replay.her``); ``agent_hook``: the
    agent's sample hook for transition batches (run after HER's)."""
    from rlkit.agents import AGENTS

    if AGENTS[cfg.agent.name][1].capabilities.experience == "sequences":  # HER was refused by check_capabilities
        if cfg.train.replay.symmetries:
            raise ConfigError(f"train.replay.symmetries: agent {cfg.agent.name} learns from sequences; symmetry "
                              "augmentation applies to transition replay (DQN); set it to false")
        from rlkit.experience.sequences import SequenceBuffer

        try:
            return SequenceBuffer(obs_space, act_space, capacity=cfg.train.replay.capacity,
                                  length=cfg.agent.sequence_length, num_envs=num_envs, device=device, seed=cfg.seed,
                                  frame_stack=cfg.train.replay.frame_stack)
        except ValueError as exc:
            raise ConfigError(f"train.replay: {' '.join(str(exc).split())}") from None
    return build_replay(cfg, obs_space, act_space, num_envs, device, compute_reward, agent_hook, compute_terminated,
                        symmetries)
