"""The agent contract: what an agent declares, what it receives, what shared code does for it.

An agent owns its networks and optimizers only — never the env, the buffer or the logger — so the loops in
:mod:`rlkit.training.loops` drive any agent, online or offline (d3rlpy's ``fit`` / ``fit_online`` symmetry:
both loops call the same ``update(batch)``). The contract has four pieces (docs/design.md draws them):

1. **Declared parts** (:meth:`Agent.declare`, :mod:`rlkit.contract.parts`): the agent names its
   ``nn.Module``\\ s — which act (what ``rlkit export`` writes), which is the shared observation ``encoder``,
   which are target / momentum copies of which — its free tensors (SAC's log alpha, MPO's dual
   variables), its optimizers with the parts each trains, and its random generators. From that alone the
   base class writes the checkpoint state (weights, optimizers, counters, RNG), exports the acting parts,
   changes optimizer settings on resume, freezes parts, moves them to a device, wraps the trainable ones
   (DDP, ``torch.compile``) and attaches auxiliary losses.
2. **One step record into** ``act``: :class:`StepRecord` carries, for a batch of env rows, the
   observations, the previous reward, ``episode_start`` and optional agent ids and action masks, as
   tensors on the agent's device (one host-to-device copy per vector step). Agents with memory keep it per
   row and reset it where ``episode_start`` is set. :meth:`Agent.predict` is the plain-array front door.
3. **Declared capabilities** (:class:`Capabilities`, a class attribute): the experience kind, the
   sample-time batch hook, the env-step clock, priority feedback, the action kinds. Checked once when a run is
   built: a config asking for what the agent cannot do fails at start with one line
   (:func:`rlkit.config.check_capabilities`; the action kind in :func:`rlkit.training.build.build_agent`).
   The loops read the declaration; they never probe with ``getattr``.
4. **The auxiliary-loss hook**: every optimizer step goes through :meth:`Agent.optimize`, which adds the
   weighted losses of the auxiliary modules attached to the parts that optimizer trains (``agent.aux`` in
   the config; :mod:`rlkit.auxiliary`), in the same step, and reports them as ``aux/<name>``.

Adding an agent is one file, ``agents/<name>.py`` (config + agent), and one line in ``agents/__init__.py``'s
``AGENTS`` (docs/design.md has the recipe); it ships with ``configs/<name>_*.yaml`` and its tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlkit.contract.auxiliary import AuxConfig, AuxModule
from rlkit.contract.networks import EncoderConfig, obs_to_tensor
from rlkit.contract.parts import DeclarationError, OptimizerSpec, Part, Parts
from rlkit.errors import ConfigError

Experience = Literal["transitions", "sequences"]


# --------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------


@dataclass
class AgentConfig:
    """Fields and checks every agent shares. Subclasses add their own fields (with docstrings) and call
    ``super().__post_init__()`` from theirs."""

    name: str = ""
    """The registry name (``agent: {name: dqn}``); fixed per subclass."""
    gamma: float = 0.99
    """Discount factor; the transition source applies it to n-step sums, the agent to bootstraps
    (sequence sources return undiscounted returns-to-go, the Decision Transformer's convention)."""
    aux: list[Any] = field(default_factory=list)
    """Auxiliary losses attached to the agent's parts, each ``{name: <registered module>, weight: w, part:
    encoder, ...}`` (``rlkit.auxiliary.AUX_MODULES``); e.g. ``[{name: inverse_dynamics, weight: 0.1}]``.
    Their losses join the update of the optimizer that trains ``part``, logged as ``aux/<name>``."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The observation encoder: ``{kind: auto | nature | flat | board | ...}`` (``rlkit.contract.networks``);
    ``auto`` is the Nature CNN for images and flattening for vectors."""
    encoder_hidden: list[int] = field(default_factory=list)
    """Widths of a learned MLP after the observation encoder (flattening for vectors, the Nature CNN for
    images), shared where the agent shares its encoder; empty: none (the encoder of the papers' setups).
    A trainable encoder for vector observations is what auxiliary losses shape."""
    freeze: list[str] = field(default_factory=list)
    """Declared parts (or dotted sub-parts, e.g. ``q_net.encoder``) whose weights stay fixed: a pretrained
    encoder, say. Their optimizers skip them (no gradient is computed for them)."""

    resumable: ClassVar[frozenset[str]] = frozenset()
    """Config fields read at use time, so ``rlkit train --resume RUN agent.<field>=...`` takes effect."""
    optimizer_settings: ClassVar[Mapping[str, tuple[tuple[str, str], ...]]] = {}
    """Config fields that are optimizer settings: ``{field: ((optimizer name, param-group key), ...)}``;
    a resume writes the new value into those param groups."""

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"agent.gamma must lie in (0, 1], got {self.gamma}")
        self.check_widths("encoder_hidden", allow_empty=True)
        for i, entry in enumerate(self.aux):
            if not isinstance(entry, (dict, AuxConfig)):
                raise ConfigError(f"agent.aux[{i}] must be a mapping like {{name: inverse_dynamics, weight: 0.1}}, "
                                  f"got {entry!r}")

    def env_step_schedules(self) -> list[str]:
        """The fields of this config that are schedules over env steps and are active (e.g. DQN's
        ``lr_decay_steps`` with ``lr_end`` set): an offline run, which has no env steps, refuses them."""
        return []

    def select_episodes(self, episodes: list[Any]) -> list[Any]:
        """The episodes of an offline dataset this agent trains on (filtered behaviour cloning keeps the best
        ones by return); the offline source calls it once when the run starts. Default: all of them."""
        return episodes

    def bind_agents(self, agent_names: list[str] | None) -> None:
        """Called once when a run is built, with the env's agent names (a multi-agent game's rows: index = the
        rows' ``agent_id``; None for single-agent envs): a config that names agents (DQN's ``policies``) resolves
        them to ids here, before the agent is built and config.yaml written. Default: nothing to resolve."""

    def check_run(self, run: Any) -> None:
        """Checks this agent's needs against the rest of the run's config (a :class:`rlkit.config.RunConfig`:
        the replay, the env): :func:`rlkit.config.check_capabilities` calls it once, before anything is
        built, so a setting the agent would silently get wrong fails at start with one line. Default: none."""

    # shared checks, so every agent words the same mistake the same way
    def check_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if value is not None and not (0.0 < value < math.inf):  # also rejects NaN
                raise ConfigError(f"agent.{name} must be a finite number > 0, got {value}")

    def check_unit_interval(self, *names: str, open_low: bool = False) -> None:
        for name in names:
            value = getattr(self, name)
            low_ok = value > 0.0 if open_low else value >= 0.0
            if not (low_ok and value <= 1.0):
                raise ConfigError(f"agent.{name} must lie in {'(' if open_low else '['}0, 1], got {value}")

    def check_widths(self, *names: str, allow_empty: bool = False) -> None:
        for name in names:
            widths = getattr(self, name)
            if (not widths and not allow_empty) or any(w < 1 for w in widths):
                raise ConfigError(f"agent.{name} must be a {'' if allow_empty else 'non-empty '}list of widths >= 1, "
                                  f"got {widths}")

    def check_at_least(self, minimum: int, *names: str) -> None:
        for name in names:
            if getattr(self, name) < minimum:
                raise ConfigError(f"agent.{name} must be >= {minimum}, got {getattr(self, name)}")


# --------------------------------------------------------------------------------------
# Capabilities and the step record
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capabilities:
    """What an agent can do beyond ``act`` and ``update``; checked once when a run is built."""

    experience: Experience = "transitions"
    """The experience the update is written for (Acme's adder choice): ``transitions`` (one-step or n-step,
    :class:`rlkit.experience.replay.ReplayBuffer`) or ``sequences`` (fixed-length windows with masks)."""
    sample_hook: bool = False
    """:meth:`Agent.make_sample_hook` returns a hook that rewrites every sampled batch (RIS adds its
    candidate subgoals); the update needs it, so a source that cannot run it is refused."""
    env_step_clock: bool = False
    """The agent acts or learns on schedules over env steps (epsilon, random warm-up steps, a learning-rate
    decay) read from the loop's clock, :meth:`Agent.set_env_steps` (which every agent keeps, checkpointed).
    An agent whose config reports active ``env_step_schedules()`` must declare it; offline runs refuse those."""
    priority_feedback: bool = False
    """The update reports new priorities (|TD error|) through :meth:`Agent.report_priorities`, so
    prioritized replay is meaningful."""
    discrete_actions: bool = True
    continuous_actions: bool = True
    online: bool = True
    """The agent learns from its own interaction; False (behaviour cloning) needs an ``offline:`` dataset."""


@dataclass(frozen=True)
class StepRecord:
    """What ``act`` receives for a batch of ``N`` env rows, as tensors on the agent's device.

    ``obs`` ``[N, *obs_shape]`` (or a dict of such); ``prev_reward`` ``[N]`` float32, the reward of the step
    that led to ``obs`` (0 where an episode starts: the Decision Transformer's return-to-go reads it);
    ``episode_start`` ``[N]`` bool, where ``obs`` is the first observation of an episode (agents with memory
    reset that row); ``agent_id`` ``[N]`` int64 (multi-agent rows) and ``action_mask`` ``[N, n_actions]``
    bool (True = allowed), both optional.
    """

    obs: torch.Tensor | dict[str, torch.Tensor]
    prev_reward: torch.Tensor
    episode_start: torch.Tensor
    agent_id: torch.Tensor | None = None
    action_mask: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.episode_start.shape[0])

    @classmethod
    def from_arrays(cls, obs: Any, device: torch.device | str, prev_reward: Any = None, episode_start: Any = None,
                    agent_id: Any = None, action_mask: Any = None) -> "StepRecord":
        """One record from host arrays (what a vector env returns): one copy to ``device`` per field.
        Missing ``prev_reward`` is zeros, missing ``episode_start`` all False; a missing ``action_mask`` is read
        from a Dict observation's ``"action_mask"`` key where there is one (nonzero = allowed)."""
        device = torch.device(device)
        if action_mask is None and isinstance(obs, Mapping) and "action_mask" in obs:
            action_mask = obs["action_mask"]  # games with masks (PettingZoo's convention): the mask rides in obs
        obs = obs_to_tensor(obs, device)
        n = int(next(iter(obs.values())).shape[0] if isinstance(obs, dict) else obs.shape[0])
        prev = (torch.zeros(n, dtype=torch.float32, device=device) if prev_reward is None
                else torch.as_tensor(np.asarray(prev_reward, dtype=np.float32), device=device))
        start = (torch.zeros(n, dtype=torch.bool, device=device) if episode_start is None
                 else torch.as_tensor(np.asarray(episode_start, dtype=bool), device=device))
        ids = None if agent_id is None else torch.as_tensor(np.asarray(agent_id, dtype=np.int64), device=device)
        mask = None if action_mask is None else torch.as_tensor(np.asarray(action_mask, dtype=bool), device=device)
        if prev.shape != (n,) or start.shape != (n,) or (ids is not None and ids.shape != (n,)) \
                or (mask is not None and (mask.ndim != 2 or mask.shape[0] != n)):
            raise ValueError(f"step record of {n} rows: prev_reward {tuple(prev.shape)}, episode_start "
                             f"{tuple(start.shape)}, agent_id {None if ids is None else tuple(ids.shape)}, action_mask "
                             f"{None if mask is None else tuple(mask.shape)} do not match")
        return cls(obs=obs, prev_reward=prev, episode_start=start, agent_id=ids, action_mask=mask)


# --------------------------------------------------------------------------------------
# The base class: the declaration, and what shared code does with it
# --------------------------------------------------------------------------------------


class Agent:
    """The base of every agent: it holds the declaration and does from it what no agent writes by hand.

    A subclass is built as ``Agent(cfg, observation_space, action_space, device, seed)``; its ``__init__``
    calls ``super().__init__(cfg, observation_space, action_space, device)``, builds its networks and
    optimizers, and ends with one :meth:`declare` call. It implements:

    - ``act(step: StepRecord, explore: bool, epsilon: float | None) -> np.ndarray``: env-ready actions for
      the ``N`` rows; ``explore`` is the training-time behaviour (its exploration schedule) vs the
      evaluation policy; ``epsilon``: with this probability a uniform random action (the evaluation
      protocol of Atari papers; ``rlkit collect --epsilon``).
    - ``update(batch) -> metrics``: one gradient step; every optimizer step through :meth:`optimize`; the
      metrics are 0-dim tensors (or floats), read only at log time (no ``.item()`` per update), and include
      ``**self.aux_metrics``.

    Not a base that owns the loop: the loops call ``act`` and ``update``; this class only keeps the
    bookkeeping every agent shares (counters, checkpoint state, export, resume, freezing, devices).
    """

    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, cfg: AgentConfig, observation_space: gym.Space, action_space: gym.Space,
                 device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.observation_space, self.action_space = observation_space, action_space
        self.device = torch.device(device)
        self.env_steps = 0  # the loop's clock of real env transitions (set_env_steps)
        self.updates = 0    # gradient steps taken
        self.parts: Parts | None = None
        self.aux_modules: dict[str, AuxModule] = {}
        self.aux_metrics: dict[str, torch.Tensor] = {}
        self._aux_by_optimizer: dict[str, list[tuple[str, AuxModule]]] = {}
        self._priority_sink: Callable[[torch.Tensor, torch.Tensor], None] | None = None
        self._ddp = False  # wrap_ddp: auxiliary heads (outside the wrapped parts) average their gradients by hand

    # ------------------------------------------------------------------ the declaration
    def declare(self, parts: Mapping[str, Part], optimizers: Mapping[str, OptimizerSpec],
                generators: Mapping[str, np.random.Generator | torch.Generator] = (),
                encoder: str | None = None, encoder_inputs: Callable[[Any], Any] | None = None) -> None:
        """Declare the agent's parts (see :mod:`rlkit.contract.parts`), optimizers and random generators.

        ``encoder``: the dotted name of the shared observation encoder (``q_net.encoder``), where there is
        one; auxiliary modules attach to it by default. ``encoder_inputs`` maps a batch's observations to the
        encoder's input when that is not the observation itself (RIS: [state, goal]).
        Checks the declaration, then attaches ``cfg.aux`` and applies ``cfg.freeze``.
        """
        self.parts = Parts(dict(parts), dict(optimizers), dict(generators), encoder, encoder_inputs)
        self.parts.check(type(self).__name__, self.cfg.optimizer_settings)
        for name, generator in self.parts.generators.items():  # to() re-points these attributes
            if getattr(self, name, None) is not generator:
                raise DeclarationError(f"{type(self).__name__}.declare: generator '{name}' must be the agent's "
                                       f"attribute of that name")
        if self.cfg.env_step_schedules() and not self.capabilities.env_step_clock:
            raise DeclarationError(f"{type(self).__name__}: its config has env-step schedules "
                                   f"{self.cfg.env_step_schedules()} but capabilities.env_step_clock is False")
        overrides_hook = type(self).make_sample_hook is not Agent.make_sample_hook
        if overrides_hook != self.capabilities.sample_hook:
            raise DeclarationError(f"{type(self).__name__}: capabilities.sample_hook={self.capabilities.sample_hook} "
                                   f"but make_sample_hook is {'' if overrides_hook else 'not '}overridden")
        for i, aux_cfg in enumerate(self.cfg.aux):
            self._attach_aux(aux_cfg, f"agent.aux[{i}]")
        for name in self.cfg.freeze:
            self.freeze(name)

    # ------------------------------------------------------------------ acting
    def act(self, step: StepRecord, explore: bool, epsilon: float | None = None) -> np.ndarray:
        raise NotImplementedError

    def predict(self, obs: Any, deterministic: bool = True, epsilon: float | None = None, episode_start: Any = None,
                prev_reward: Any = None, agent_id: Any = None, action_mask: Any = None) -> np.ndarray:
        """Actions for a batch of host observations (``[N, *obs_shape]`` or a dict of such): the step record
        built for you. ``deterministic=False`` acts as in training (exploration included)."""
        step = StepRecord.from_arrays(obs, self.device, prev_reward=prev_reward, episode_start=episode_start,
                                      agent_id=agent_id, action_mask=action_mask)
        return self.act(step, explore=not deterministic, epsilon=epsilon)

    def observe_dataset(self, dataset: Any) -> None:
        """Called by the offline loop with the run's dataset (episodes with ``observations``, ``actions``,
        ``rewards``) once it is loaded, before the first update: an agent that standardises by the data's
        statistics (the Decision Transformer's state mean and std) computes them here into buffers of a declared
        part, so checkpoints and exports carry them and act without the dataset. A resume loads the saved
        values over them. Default: nothing."""

    def set_env_steps(self, env_steps: int) -> None:
        """The loop's count of real env transitions so far (SB3's ``num_timesteps``); the schedules of
        agents with ``capabilities.env_step_clock`` read it. A hand-written loop calls it after each step."""
        self.env_steps = int(env_steps)

    # ------------------------------------------------------------------ learning
    def update(self, batch: Any) -> dict[str, torch.Tensor | float]:
        raise NotImplementedError

    def optimize(self, optimizer: str, loss: torch.Tensor, batch: Any = None,
                 max_grad_norm: float | None = None) -> torch.Tensor | None:
        """One step of the declared optimizer ``optimizer`` on ``loss`` plus the weighted losses of the
        auxiliary modules attached to the parts it trains (computed on ``batch``; reported in
        ``self.aux_metrics`` as ``aux/<name>``). Clips the gradient norm of its parameters to
        ``max_grad_norm`` if given and returns the norm before clipping (else None). After the step, the
        momentum copies declared with a ``tau`` whose source this optimizer trains (CURL's key encoder, a Mean
        Teacher) move toward it: copy <- tau * source + (1 - tau) * copy."""
        spec = self.parts.optimizers[optimizer]
        if not self.parts.trains_anything(optimizer):  # everything it trains is frozen (agent.freeze)
            return None
        attached = self._aux_by_optimizer.get(optimizer, ())
        for name, module in attached:
            aux_loss = module.loss(batch, self)
            self.aux_metrics[f"aux/{name}"] = aux_loss.detach()
            loss = loss + module.cfg.weight * aux_loss
        spec.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self._ddp and attached:
            _average_gradients([p for _, module in attached for p in module.parameters()])
        norm = None
        if max_grad_norm is not None:
            norm = nn.utils.clip_grad_norm_(self.parts.optimizer_params(optimizer), max_grad_norm)
        spec.optimizer.step()
        if torch.is_autocast_enabled(self.device.type):  # train.precision bf16: autocast keeps a bf16 copy of each
            torch.clear_autocast_cache()                   # weight until its context ends; forwards later in this
                                                           # update (RIS's critic after its step) must see the new ones
        for copy, tau in self.parts.momentum_updates(optimizer):  # EMA copies (CURL's key encoder) follow their source
            self.parts.update_target(copy, tau)
        return norm

    def update_target(self, target: str, tau: float) -> None:
        """Polyak-average the declared target (or momentum) copy ``target`` toward its source (``tau = 1``: a
        hard copy), on the unwrapped modules, so it works the same under DDP and ``torch.compile``."""
        self.parts.update_target(target, tau)

    def without_weight_grads(self, part: str):
        """``with self.without_weight_grads("critic"):`` a loss backpropagates through ``part`` without
        computing its weight gradients (SAC's and RIS's policy losses through the critic); frozen stays frozen."""
        return self.parts.no_weight_grads(part)

    def encode(self, obs: Any, part: str | None = None) -> torch.Tensor:
        """Features of a batch of observations from the declared ``encoder`` (or another named part):
        what auxiliary modules learn on."""
        name = part or self.parts.encoder
        if name is None:
            raise ConfigError(f"{type(self).__name__} declares no encoder; name a part for the auxiliary module")
        of_encoder = self.parts.sources.get(name, name) == self.parts.encoder  # the encoder or a copy of it
        inputs = self.parts.encoder_inputs(obs) if (of_encoder and self.parts.encoder_inputs) else obs
        return self.parts.module_at(name)(inputs)

    def report_priorities(self, indices: torch.Tensor, priorities: torch.Tensor) -> None:
        """New priorities of a batch's rows (|TD error|) for prioritized replay: the only way information flows
        back to the experience source, since the agent never holds the buffer."""
        if self._priority_sink is not None:
            self._priority_sink(indices, priorities)

    def connect_priorities(self, sink: Callable[[torch.Tensor, torch.Tensor], None] | None) -> None:
        """Where :meth:`report_priorities` sends priorities (the replay's ``update_priorities``)."""
        if sink is not None and not self.capabilities.priority_feedback:
            raise ConfigError(f"{type(self).__name__} reports no priorities (capabilities.priority_feedback)")
        self._priority_sink = sink

    def make_sample_hook(self) -> Callable[[Any, Any], Any] | None:
        """The sample-time batch hook of agents with ``capabilities.sample_hook`` (run after HER)."""
        return None

    # ------------------------------------------------------------------ checkpoint state, export, resume
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizers, counters, RNG states — only tensors,
        scalars and strings, so checkpoints load with ``torch.load(weights_only=True)``."""
        return {**self.parts.state_dict(), "env_steps": self.env_steps, "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load :meth:`state_dict`'s entries. A tampered or corrupted entry raises KeyError, TypeError or ValueError —
        an out-of-range number too (a counter of inf, a generator state past its width: OverflowError inside) — which
        the loaders (resume, ``rlkit eval``/``export``/``collect``, ``rlkit.load``) report in one line."""
        env_steps = _count(state.get("env_steps", 0), "env_steps")  # BC checkpoints before the contract had no clock
        updates = _count(state["updates"], "updates")
        try:
            self.parts.load_state_dict(state, counters=("env_steps", "updates"))
        except OverflowError as exc:
            raise ValueError(f"a number out of range ({exc})") from None
        self.env_steps, self.updates = env_steps, updates

    def acting_tensors(self) -> dict[str, torch.Tensor]:
        """``{"<part>.<param>": tensor}`` of the acting parts: what ``rlkit export`` writes."""
        return self.parts.acting_tensors()

    def load_acting_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.parts.load_acting_tensors(tensors, self.device)

    def apply_optimizer_settings(self, changed: Mapping[str, Any]) -> None:
        """Write changed optimizer settings (``{config field: new value}``) into the declared optimizers'
        param groups (``cfg.optimizer_settings`` says which field goes where)."""
        for key, value in changed.items():
            for optimizer, group_key in self.cfg.optimizer_settings.get(key, ()):
                for group in self.parts.optimizers[optimizer].optimizer.param_groups:
                    group[group_key] = value

    # ------------------------------------------------------------------ freezing, devices, wrappers
    def freeze(self, name: str) -> None:
        """Stop training the part ``name`` (or a dotted sub-part): no gradients, so no optimizer step moves it."""
        if not self.parts.has(name):
            raise ConfigError(f"agent.freeze: {type(self).__name__} has no module part '{name}'; its module parts: "
                              f"{', '.join(self.parts.module_names())} (or dotted sub-parts, e.g. q_net.encoder)")
        self.parts.module_at(name).requires_grad_(False)

    def to(self, device: torch.device | str) -> "Agent":
        """Move every declared part, tensor, optimizer state and auxiliary module to ``device``."""
        self.device = torch.device(device)
        self.parts.to(self.device)
        for name, generator in self.parts.generators.items():  # torch generators are re-made on the device
            setattr(self, name, generator)
        for module in self.aux_modules.values():
            module.to(self.device)
        for value in vars(self).values():
            if isinstance(value, BoxActions):
                value.to(self.device)
        return self

    def wrap_trainable(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Replace every trained (non-target, non-momentum) module part by ``wrap(part)`` — DDP, or
        ``torch.compile`` — keeping checkpoints, export and targets on the unwrapped modules."""
        # wrap what the agent holds now, so wrappers stack (torch.compile over DDP), while parts.modules keeps the
        # plain modules that checkpoints, targets and exports read
        for name in self.parts.wrap_trainable(lambda module: module):
            setattr(self, name, wrap(getattr(self, name, self.parts.modules[name])))

    def compile(self, **kwargs: Any) -> None:
        """``torch.compile`` every trained module part (``kwargs`` go to ``torch.compile``)."""
        self.wrap_trainable(lambda module: torch.compile(module, **kwargs))

    def wrap_ddp(self, **kwargs: Any) -> None:
        """Wrap every trained module part with parameters in ``DistributedDataParallel`` (the process group
        must be initialised); gradients are then averaged across ranks inside ``backward``."""
        from torch.nn.parallel import DistributedDataParallel

        def wrap(module: nn.Module) -> nn.Module:
            if not any(p.requires_grad for p in module.parameters()):
                return module
            ids = [self.device.index] if self.device.type == "cuda" else None
            return DistributedDataParallel(module, device_ids=ids, **kwargs)

        self.wrap_trainable(wrap)
        self._ddp = True

    # ------------------------------------------------------------------ auxiliary modules
    def _attach_aux(self, aux_cfg: AuxConfig | dict, where: str) -> None:
        if not isinstance(aux_cfg, AuxConfig):
            raise ConfigError(f"{where}: build agent configs through rlkit.config (it resolves "
                              f"{aux_cfg.get('name')!r} in rlkit.auxiliary.AUX_MODULES), or pass the module's config "
                              "dataclass")
        name = aux_cfg.label_or_name()
        if name in self.aux_modules:
            raise ConfigError(f"{where}: two auxiliary modules named '{name}'; give one a distinct `label`")
        part = aux_cfg.part if aux_cfg.part != "encoder" else self.parts.encoder
        if part is None:
            raise ConfigError(f"{where}: {name} attaches to the encoder, but {type(self).__name__} declares none; "
                              f"set part: to one of {', '.join(self.parts.names())}")
        if not self.parts.has(part):
            raise ConfigError(f"{where}: {type(self).__name__} has no module part '{part}'; its module parts: "
                              f"{', '.join(self.parts.module_names())}")
        optimizer = self.parts.optimizer_of(part)
        if optimizer is None:
            raise ConfigError(f"{where}: no optimizer of {type(self).__name__} trains '{part}', so {name}'s loss "
                              "would train nothing")
        if not any(p.requires_grad for p in self.parts.module_at(part).parameters()):
            raise ConfigError(f"{where}: {name} would shape '{part}', which has no trainable parameters (vector "
                              "observations are only flattened); set agent.encoder_hidden (e.g. [256]) to learn an "
                              "encoder, or attach it to another part")
        zeros = obs_to_tensor(_zeros_like_space(self.observation_space), self.device)
        try:
            with torch.no_grad():
                probe = self.encode(zeros, part)
            if not isinstance(probe, torch.Tensor) or probe.ndim != 2:
                raise TypeError(f"it returned {type(probe).__name__}")
        except (TypeError, AttributeError, RuntimeError, ValueError, KeyError) as exc:
            raise ConfigError(f"{where}: part '{part}' does not map a batch of observations to features [B, F] "
                              f"({' '.join(str(exc).split())[:120]}); attach {name} to the encoder") from None
        module = aux_cfg.build(int(probe.shape[-1]), self.observation_space, self.action_space).to(self.device)
        module.part = part
        of_encoder = self.parts.sources.get(part, part) == self.parts.encoder
        example = self.parts.encoder_inputs(zeros) if (of_encoder and self.parts.encoder_inputs) else zeros
        module.bind(self.parts.module_at(part), example)  # heads sized by the part's own layers (CLAPP) built here
        self.aux_modules[name] = module
        self._aux_by_optimizer.setdefault(optimizer, []).append((name, module))
        self.parts.add_aux(f"aux.{name}", module, optimizer)
        for local, extra in module.extra_parts(self.parts.module_at(part)).items():  # e.g. CURL's key encoder
            module.part_names[local] = f"aux.{name}.{local}"
            self.parts.add_aux_part(f"aux.{name}.{local}", extra)


def _average_gradients(params: list[torch.Tensor]) -> None:
    """All-reduce and average the gradients of ``params`` across the process group (what DDP does for the
    parts it wraps; auxiliary heads live outside them)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def _zeros_like_space(space: gym.Space) -> Any:
    """A batch of one all-zero observation of ``space`` (to size an auxiliary head)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: _zeros_like_space(s) for k, s in space.spaces.items()}
    return np.zeros((1, *space.shape), dtype=space.dtype)


class FunctionPolicy:
    """A policy on host arrays, ``fn(obs, episode_start, prev_reward) -> actions`` (uniform random, a scripted
    policy, a Stable-Baselines3 model), seen through the step record so that the collector drives it like an agent.
    On the CPU the record's tensors share memory with the arrays, so nothing is copied either way."""

    device = torch.device("cpu")

    def __init__(self, fn: Callable[[Any, np.ndarray, np.ndarray], np.ndarray]) -> None:
        self.fn = fn

    def act(self, step: StepRecord, explore: bool, epsilon: float | None = None) -> np.ndarray:
        obs = ({k: v.cpu().numpy() for k, v in step.obs.items()} if isinstance(step.obs, dict)
               else step.obs.cpu().numpy())
        return self.fn(obs, step.episode_start.cpu().numpy(), step.prev_reward.cpu().numpy())


def _count(value: Any, name: str) -> int:
    """A checkpoint's agent counter: an integer >= 0 (a 0-dim integer tensor too). Anything else — a tampered or
    corrupted entry: inf, NaN, a float, a string, a negative number — is a ValueError naming it, which the loaders
    turn into their one-line 'does not fit' error (``int(inf)`` would raise OverflowError, which they do not expect)."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point() \
            and value.dtype != torch.bool:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"agent.{name} is {' '.join(repr(value).split())[:60]}, not a count >= 0")
    return int(value)


# --------------------------------------------------------------------------------------
# Actions: checks, rescaling, epsilon mixing (shared by the continuous-action agents)
# --------------------------------------------------------------------------------------


def check_bounded_box_actions(agent: str, action_space: gym.Space) -> None:
    """Agents whose policy lives in [-1, 1]^A and rescales to the env's bounds need a Box with finite ones."""
    if not isinstance(action_space, gym.spaces.Box):
        raise ConfigError(f"{agent} needs a continuous (Box) action space, the env has {action_space}; "
                          "use DQN for discrete actions")
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise ConfigError(f"{agent} rescales actions to the env's bounds, which must be finite: {action_space}")


class BoxActions:
    """The map between a Box action space and the policy's [-1, 1]^A units, written once:
    a = c + h * u and u = (a - c) / h with c = (high + low) / 2, h = (high - low) / 2 (flattened, on device).
    A fixed dimension (low == high, h = 0) has one env value, low, whatever the policy outputs, and its
    normalised value is 0 (not (a - c) / 0, which is NaN for a == c and would poison every network input).
    """

    def __init__(self, space: gym.spaces.Box, device: torch.device) -> None:
        self.space = space
        self.shape, self.dtype = tuple(space.shape), space.dtype
        self.dim = int(np.prod(space.shape))
        low = torch.as_tensor(space.low, dtype=torch.float32, device=device).flatten()
        high = torch.as_tensor(space.high, dtype=torch.float32, device=device).flatten()
        self.center, self.half_range = (high + low) / 2, (high - low) / 2
        self.unit = bool((low == -1).all() and (high == 1).all())  # the rescaling is the identity
        fixed = self.half_range == 0                                  # [A] dimensions with low == high
        self.fixed = fixed if bool(fixed.any()) else None
        if self.fixed is not None:  # divide by 1 there (then set to 0): no 0/0 in the graph
            self.divisor = torch.where(fixed, torch.ones_like(high), self.half_range)

    def to(self, device: torch.device) -> None:
        self.center, self.half_range = self.center.to(device), self.half_range.to(device)
        if self.fixed is not None:
            self.fixed, self.divisor = self.fixed.to(device), self.divisor.to(device)

    def normalize(self, actions: torch.Tensor) -> torch.Tensor:
        """Env-scale actions ``[B, *shape]`` -> ``[B, A]`` float32 in policy units (0 in fixed dimensions)."""
        actions = actions.reshape(actions.shape[0], -1).float()
        if self.unit:
            return actions
        if self.fixed is None:
            return (actions - self.center) / self.half_range
        return ((actions - self.center) / self.divisor).masked_fill(self.fixed, 0.0)

    def to_env(self, unit_actions: torch.Tensor) -> np.ndarray:
        """Policy-unit actions ``[n, A]`` -> env-scale host actions ``[n, *shape]`` in the space's dtype (``low`` in
        fixed dimensions, even for a non-finite policy output there)."""
        env = unit_actions if self.unit else self.center + self.half_range * unit_actions
        if self.fixed is not None:
            env = torch.where(self.fixed, self.center, env)
        return env.cpu().numpy().astype(self.dtype, copy=False).reshape(len(unit_actions), *self.shape)

    def uniform(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniform env-scale actions (warm-up exploration)."""
        return rng.uniform(self.space.low, self.space.high, size=(n, *self.shape)).astype(self.dtype)


def epsilon_mix(actions: np.ndarray, epsilon: float | None, action_space: gym.Space,
                rng: np.random.Generator) -> np.ndarray:
    """Replace each action by a uniformly random one with probability ``epsilon`` (agents whose own
    exploration is not epsilon-greedy use this for ``act(..., epsilon=)``)."""
    if not epsilon:
        return actions
    n = len(actions)
    mask = rng.random(n) < epsilon
    if not mask.any():
        return actions
    actions = np.array(actions, copy=True)
    if isinstance(action_space, gym.spaces.Discrete):
        actions[mask] = action_space.start + rng.integers(action_space.n, size=int(mask.sum()))
    elif isinstance(action_space, gym.spaces.Box):
        low, high = np.broadcast_to(action_space.low, action_space.shape), np.broadcast_to(action_space.high, action_space.shape)
        random = rng.uniform(low, high, size=(int(mask.sum()), *action_space.shape))
        actions[mask] = random.astype(actions.dtype)
    else:
        raise ConfigError(f"epsilon exploration is not defined for action space {action_space}")
    return actions


def metric_values(metrics: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Metrics as Python floats (one host sync for all of them)."""
    tensors = {k: v for k, v in metrics.items() if isinstance(v, torch.Tensor)}
    values = {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor)}
    if tensors:
        stacked = torch.stack([t.detach().double().reshape(()) for t in tensors.values()]).cpu().tolist()
        values.update(zip(tensors, stacked))
    return values
