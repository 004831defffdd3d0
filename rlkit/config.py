"""Strict, typed run configuration: dataclasses loaded from YAML with dotted overrides.

Why strict: a typo in a YAML key (``learning_rte``) that silently falls back to a default
wastes a whole training run. Every unknown key, wrong type or bad value is a
:class:`ConfigError` that names the key, the file and the closest valid key.

A run config nests ``env``, ``agent``, ``train``, ``log`` plus ``seed`` and ``device``.
The ``agent`` section picks its dataclass through ``agent.name`` and the registry
``rlkit.agents.AGENTS``; everything else is common to all agents. The resolved config
(:func:`to_dict`) is written to the run directory and is enough to rebuild the run.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from rlkit.errors import ConfigError


MAX_CONFIG_BYTES = 1 << 20
"""Config files larger than this (1 MiB) are refused before parsing: rlkit configs are a few hundred
bytes, and YAML of list data grows ~200x in memory when parsed (a 50 MB file reached 10 GB)."""
MAX_DEPTH = 32
"""Deepest nesting of sections, lists and mappings accepted in a config or an override value."""
MAX_VALUES = 100_000
"""Most values (scalars, lists, mappings; aliases counted each time they are used) in a config."""
MAX_SEED = 2**32 - 1
"""Seeds lie in [0, MAX_SEED]: what numpy, Python's ``random`` and Gymnasium all accept."""


def check_seed(seed: Any, where: str = "seed") -> int:
    """``seed`` if it is an integer in [0, 2**32 - 1], else a one-line :class:`ConfigError`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{where} must be an integer in [0, 2**32 - 1] (numpy's seed range), got {seed!r}")
    return seed


# --------------------------------------------------------------------------------------
# Sections common to every run
# --------------------------------------------------------------------------------------


@dataclass
class EnvConfig:
    id: str | None = "CartPole-v1"
    """Gymnasium id (``CartPole-v1``, ``rlkit/Pong-v0``, …); ``rlkit list`` shows rlkit's own. Offline runs
    may set ``null``: no evaluation in an env."""
    num_envs: int = 1
    """Sub-environments stepped together; ids with a native vector entry point (Atari) use it."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments passed to ``gymnasium.make`` / ``make_vec`` (e.g. ``frame_stack: 4``)."""
    vectorization: Literal["auto", "sync", "async", "native"] = "auto"
    """``native``: the env's own vector entry point (gymnasium's ``vector_entry_point``).
    ``auto``: native for rlkit's ids that have one (Atari, whose autoreset contract rlkit tests),
    else ``sync``, which also allows exact resume (see rlkit.training.loops.EnvReplay)."""
    imports: list[str] = field(default_factory=list)
    """Python modules imported before the env is made, so that the ``gymnasium.register`` calls in your own
    package run (``imports: [my_package.envs]``). Gymnasium's ``module:Env-v0`` id form does the same: it is
    read as ``imports: [module]`` and ``id: Env-v0``."""
    backend: Literal["mujoco", "warp"] = "mujoco"
    """``mujoco``: MuJoCo on the CPU, one env per sub-env. ``warp``: the env's batched mujoco-warp vector env
    (:data:`WARP_BACKENDS`; ``pip install 'rlkit-toolkit[warp]'``): the ``num_envs`` worlds step together on one
    warp device (``env.kwargs.device``: auto = cuda when torch sees one, else cpu)."""

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ConfigError(f"env.num_envs must be >= 1, got {self.num_envs}")
        if self.id is not None and ":" in self.id:  # gymnasium's "module:Env-v0"
            module, self.id = self.id.split(":", 1)
            if not module or not self.id:
                raise ConfigError(f"env.id '{module}:{self.id}': expected module:Env-v0 (e.g. my_package:MyEnv-v0)")
            if module not in self.imports:
                self.imports = [*self.imports, module]
        for module in self.imports:
            import_env_module(module)
        if self.backend == "warp":
            check_warp_backend(self)


WARP_BACKENDS = {"rlkit/HumanoidImitation-v0": "rlkit.envs.humanoid_warp:HumanoidImitationWarpEnv",
                 "rlkit/AntMazeU-v0": "rlkit.envs.ant_warp:AntMazeWarpEnv"}
"""Env ids with a batched mujoco-warp backend (``env.backend: warp``) -> their vector env class."""


def check_warp_backend(env: EnvConfig) -> None:
    """``env.backend: warp`` needs an env that has one and mujoco-warp installed; else one line saying so."""
    import importlib.util

    if env.id not in WARP_BACKENDS:
        raise ConfigError(f"env.backend=warp: '{env.id}' has no mujoco-warp backend (those that have one: "
                          f"{', '.join(WARP_BACKENDS)}); use env.backend: mujoco")
    if env.vectorization != "auto":
        raise ConfigError(f"env.vectorization={env.vectorization}: the warp backend steps all worlds in one batch; "
                          "leave env.vectorization at auto")
    if any(importlib.util.find_spec(name) is None for name in ("mujoco_warp", "warp")):
        raise ConfigError("env.backend=warp needs mujoco-warp, which is not installed: "
                          "pip install 'rlkit-toolkit[warp]' (or pip install mujoco-warp==4.0.0 warp-lang==1.19.0)")


def import_env_module(module: str) -> None:
    """Import ``module`` (``env.imports``) so its env registrations run; a failure is one line."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or whatever the user's module raises while importing
        raise ConfigError(f"env.imports: cannot import '{module}' ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]}); install your package (pip install -e .) or put it "
                          "on PYTHONPATH") from None


@dataclass
class HERConfig:
    """Hindsight experience replay (Andrychowicz et al. 2017): at sample time a ``relabel_ratio`` share of
    each batch gets its desired goal replaced by a goal the same episode achieved, with the reward
    recomputed by the env's own ``compute_reward`` (:class:`rlkit.experience.her.HindsightRelabeler`). Needs a Dict
    observation space with ``achieved_key`` and ``desired_key`` and an env with ``compute_reward``
    (gymnasium-robotics' GoalEnv convention). Read when the run starts (not changeable on resume)."""

    strategy: Literal["future", "final", "episode"] = "future"
    """Where the new goal comes from, within the sampled transition's episode in its sub-env stream:
    ``future`` a state after the transition (its next state up to the episode's last stored state),
    ``final`` the episode's last stored state, ``episode`` any stored state of the episode. For the
    episode still running, "last" is its newest stored state."""
    relabel_ratio: float | None = None
    """Share of each batch that is relabelled, in [0, 1] (exactly ``round(ratio * batch_size)`` samples,
    drawn at random). Default 0.8, SB3's ``n_sampled_goal=4``. None: from ``n_sampled_goal`` (or 0.8)."""
    n_sampled_goal: int | None = None
    """SB3's / the paper's k: k virtual goals per real one, i.e. ``relabel_ratio = k / (k + 1)``
    (``1 - 1 / (k + 1)``; 4 -> 0.8). An alternative to ``relabel_ratio``: give one of them (both only if
    they agree)."""
    replay_goal_fraction: float = 0.0
    """Share of the relabelled samples whose new goal is the achieved goal of a stored state drawn
    uniformly from the whole buffer (any episode), not from the strategy. RIS's reference uses 0.5 (its
    80% relabelled goals are half future states, half replayed states); SB3 has no such option (0)."""
    recompute_terminated: bool | None = None
    """Recompute the relabelled samples' terminations with the env's ``compute_terminated`` (a transition is
    terminal when it reaches the new goal; :mod:`rlkit.experience.her`). None (auto): where the env offers one that
    answers per row of a batch (rlkit's goal envs; not gymnasium-robotics' own ids). False: keep the stored
    terminations (SB3's behaviour). True: require it."""
    achieved_key: str = "achieved_goal"
    """Observation key of the goal a state achieves."""
    desired_key: str = "desired_goal"
    """Observation key of the goal the policy is asked to reach (replaced when relabelling)."""

    def __post_init__(self) -> None:
        if self.n_sampled_goal is not None:
            if self.n_sampled_goal < 0:
                raise ConfigError(f"train.replay.her.n_sampled_goal must be >= 0, got {self.n_sampled_goal}")
            derived = self.n_sampled_goal / (self.n_sampled_goal + 1)
            if self.relabel_ratio is not None and abs(self.relabel_ratio - derived) > 1e-9:
                raise ConfigError(f"train.replay.her: relabel_ratio={self.relabel_ratio} contradicts n_sampled_goal="
                                  f"{self.n_sampled_goal} (= relabel_ratio {derived:.6g}); set one of them and the "
                                  "other to null")
            self.relabel_ratio = derived
        elif self.relabel_ratio is None:
            self.relabel_ratio = 0.8
        if not 0.0 <= self.relabel_ratio <= 1.0:
            raise ConfigError(f"train.replay.her.relabel_ratio must lie in [0, 1], got {self.relabel_ratio}")
        if not 0.0 <= self.replay_goal_fraction <= 1.0:
            raise ConfigError("train.replay.her.replay_goal_fraction must lie in [0, 1], got "
                              f"{self.replay_goal_fraction}")
        if not self.achieved_key or not self.desired_key or self.achieved_key == self.desired_key:
            raise ConfigError("train.replay.her: achieved_key and desired_key must be two different observation keys, "
                              f"got {self.achieved_key!r} and {self.desired_key!r}")


@dataclass
class ReplayConfig:
    capacity: int = 100_000
    """Transitions kept (over all sub-envs)."""
    n_step: int = 1
    """n-step returns (Sutton & Barto §7.1), computed by the buffer across episode ends."""
    prioritized: bool = False
    """Prioritized experience replay (Schaul et al. 2016) with a vectorized sum-tree."""
    alpha: float = 0.6
    """PER: priority exponent."""
    beta_start: float = 0.4
    """PER: importance-sampling exponent, annealed linearly to 1.0 over ``train.total_steps``."""
    frame_stack: int = 1
    """Observations are stacks of this many frames on axis 0 (Atari: 4); each frame is stored once."""
    her: HERConfig | None = None
    """Hindsight relabelling of goals at sample time (:class:`HERConfig`, e.g. ``her: {strategy: future}``);
    None: none."""
    symmetries: bool = False
    """Replay each sampled transition under a symmetry of the game drawn from the group the env declares
    (``env.unwrapped.symmetries()``: connect four's mirror, tic-tac-toe's 8 turns and reflections), the same for
    s, a and s' (:mod:`rlkit.experience.symmetries`; AlphaGo Zero's data augmentation). Discrete actions only."""

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ConfigError(f"train.replay.capacity must be >= 1, got {self.capacity}")
        if self.frame_stack < 1:
            raise ConfigError(f"train.replay.frame_stack must be >= 1, got {self.frame_stack}")
        if self.n_step < 1:
            raise ConfigError(f"train.replay.n_step must be >= 1, got {self.n_step}")
        if not 0.0 <= self.alpha <= 1.0 or not 0.0 <= self.beta_start <= 1.0:
            raise ConfigError("train.replay.alpha and beta_start must lie in [0, 1]")


@dataclass
class RolloutsConfig:
    """``train.rollouts``: collect with Ray actors instead of in the learner's process
    (:mod:`rlkit.training.ray_rollouts`; the ``ray`` extra, ``pip install 'rlkit-toolkit[ray]'``). Each actor
    steps its own ``env.num_envs`` envs with the latest acting weights; the learner stores their batches in one
    replay of ``actors * env.num_envs`` columns and updates as ``train_every`` / ``gradient_steps`` say."""

    backend: Literal["ray"] = "ray"
    """The engine; ``ray`` is the only one."""
    actors: int = 2
    """Ray actors, each stepping ``env.num_envs`` envs."""
    steps_per_call: int = 64
    """Vector steps an actor takes per call (per round trip to the learner)."""
    sync_every: int = 1
    """Agent updates between weight pushes to the actors (sent with their next call)."""
    cpus_per_actor: float = 1.0
    """CPUs each actor reserves in Ray's scheduler."""
    address: str | None = None
    """A running Ray cluster (``ray.init(address=...)``, e.g. ``auto``); None: a local Ray started for the run."""

    def __post_init__(self) -> None:
        if self.backend != "ray":
            raise ConfigError(f"train.rollouts.backend must be 'ray', got {self.backend!r}")
        for name in ("actors", "steps_per_call", "sync_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.rollouts.{name} must be >= 1, got {getattr(self, name)}")
        if not self.cpus_per_actor >= 0:
            raise ConfigError(f"train.rollouts.cpus_per_actor must be >= 0, got {self.cpus_per_actor}")
        if self.address is not None and not self.address.strip():
            raise ConfigError("train.rollouts.address must be a Ray address (e.g. auto) or null for a local Ray")


@dataclass
class TrainConfig:
    total_steps: int = 50_000
    """Environment steps (summed over sub-envs) to train for."""
    learning_starts: int = 1_000
    """Env steps of experience collected before the first update."""
    train_every: int = 1
    """Env steps between update phases."""
    gradient_steps: int = 1
    """Updates per update phase (SB3's ``gradient_steps``)."""
    batch_size: int = 64
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    gather_batches: int = 1
    """Update batches drawn from the replay in one gather (up to the updates due in a phase), then taken one
    per update as views of it: fewer sampling calls and device launches per update. The batches are the same
    uniform draws with replacement as one by one (a different stream of them for a seed); refused with
    prioritized replay, whose priorities change between the updates. Measured: docs/benchmarks.md, "Update
    options"."""
    eval_every: int = 5_000
    """Env steps between evaluations; 0 disables periodic evaluation (the final one still runs)."""
    eval_episodes: int = 10
    eval_epsilon: float = 0.0
    """Exploration during evaluation (0 = deterministic greedy; Atari papers use 0.05)."""
    eval_env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Env kwargs that only the evaluation envs get, over ``env.kwargs`` (e.g. ``{eval_goal: true}``: the
    goal-conditioned mazes' fixed far-end test goal, while training samples goals everywhere)."""
    checkpoint_every: int = 10_000
    """Env steps between checkpoints (one is always written at the end and on Ctrl-C)."""
    save_buffer: bool = True
    """Store the replay buffer in checkpoints: needed for exact resume, large for Atari."""
    snapshot_every: int = 0
    """Steps between policy snapshots (0: none): the acting weights exported to ``snapshots/step_<N>/`` in the
    run directory, each usable by ``rlkit eval`` (a few hundred KB for MLP policies). The training history of a
    run, kept, e.g. to pick the policy that reached a third of the final return (a D4RL "medium" policy)."""
    stop_at_solve: float | None = None
    """Stop early once an evaluation mean reaches this return (None: train the full budget)."""
    rollouts: RolloutsConfig | None = None
    """Collect with Ray actors (:class:`RolloutsConfig`); None (the default): in the learner's process."""
    compile: bool = False
    """``torch.compile`` every trained module part before training (``Agent.compile``; checkpoints, targets and
    exports keep the plain modules; under torchrun it wraps the DDP-wrapped parts). Acting and evaluation use the
    compiled parts too (other batch sizes: more compiles). Off by default: on this project's 2-core CPU box (inductor backend) it made
    updates slower — DT 0.70x, DQN 0.75x — after 144 s / 21 s of compiling (docs/benchmarks.md, "Update
    options"); on a GPU, where the updates measured are launch-bound, it is the option to try (not yet measured)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """``bf16``: each update runs under ``torch.autocast(dtype=torch.bfloat16)``: matmuls and convolutions in
    bfloat16, the optimizer's state and step in float32 (no loss scaling needed: bf16 has float32's range); which
    other ops stay float32 is the device's autocast list — on CUDA softmax, norms and losses, on CPU fewer (softmax,
    layer_norm and logsumexp of bf16 inputs stay bf16 there). The cached bf16 weight copies are dropped after every
    optimizer step (``Agent.optimize``), so a network stepped earlier in an update is read afresh. ``fp32`` (default): plain float32, what every shipped result used. Measured on the 2-core box (AMD
    EPYC with avx512_bf16): the Decision Transformer's update 2.13x faster in bf16, DQN's CartPole MLP 0.97x;
    not the default until a learning run shows bf16 reaches the same scores."""

    def __post_init__(self) -> None:
        if not isinstance(self.compile, bool):
            raise ConfigError(f"train.compile must be true or false, got {self.compile!r}")
        for name in ("total_steps", "train_every", "gradient_steps", "batch_size", "eval_episodes", "gather_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("learning_starts", "eval_every", "checkpoint_every", "snapshot_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.eval_epsilon <= 1.0:
            raise ConfigError(f"train.eval_epsilon must lie in [0, 1], got {self.eval_epsilon}")


@dataclass
class LogConfig:
    root: str = "runs"
    """Runs are written to ``root/<name>`` unless ``--run-dir`` is given."""
    name: str | None = None
    """Run directory name; default ``<config>-<agent>-s<seed>-<timestamp>``."""
    progress: bool = True
    """Live progress bar (steps, steps/s, recent return, ETA)."""
    tensorboard: bool = True
    log_every: int = 1_000
    """Env steps between training-metric records (metrics.jsonl, TensorBoard)."""
    plot: bool = True
    """Write ``learning_curve.png`` at the end of training."""

    def __post_init__(self) -> None:
        if self.log_every < 0:
            raise ConfigError(f"log.log_every must be >= 0 (0: no training records), got {self.log_every}")


@dataclass
class OfflineConfig:
    """An ``offline:`` section makes ``rlkit train`` learn from a dataset (``rlkit.training.loops.train_offline``)
    instead of from env interaction. ``train.total_steps``, ``eval_every``, ``checkpoint_every`` and
    ``log.log_every`` then count gradient steps; the env (``env.id``; ``null`` for none) is used only to
    evaluate the agent."""

    dataset: str = ""
    """A Minari dataset id under ``MINARI_DATASETS_PATH`` (``rlkit dataset list``) or a dataset directory."""
    allow_env_mismatch: bool = False
    """Train on a dataset recorded in another env (or with other ``env.kwargs``) than ``env.id``, on purpose;
    by default such a dataset is refused in one line naming both (same spaces do not make the same task)."""

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ConfigError("offline.dataset must name a dataset (an id from `rlkit dataset list`, or a path)")


SB3_PREFIXES = ("sb3.", "sb3_contrib.")
"""``agent.name`` prefixes of Stable-Baselines3 / sb3-contrib algorithms (``sb3.PPO``, ``sb3_contrib.MaskablePPO``),
trained by :mod:`rlkit.training.sb3_runner` instead of rlkit's loops (the ``sb3`` extra)."""


def is_sb3_agent(name: Any) -> bool:
    """Whether ``agent.name`` names a Stable-Baselines3 or sb3-contrib algorithm (``sb3.PPO``)."""
    return isinstance(name, str) and name.startswith(SB3_PREFIXES)


@dataclass
class SB3AgentConfig:
    """An SB3 algorithm as the run's agent: ``agent: {name: sb3.PPO, policy: MlpPolicy, kwargs: {n_steps: 256}}``.
    The algorithm, the policy and the kwargs are checked against the installed SB3 when the run is built
    (:mod:`rlkit.training.sb3_runner`); nothing here imports SB3."""

    name: str
    """``sb3.<Algorithm>`` (PPO, A2C, DQN, SAC, TD3, DDPG) or ``sb3_contrib.<Algorithm>`` (MaskablePPO, QRDQN, TQC,
    RecurrentPPO, ...)."""
    policy: str = "auto"
    """An SB3 policy alias (``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``); ``auto``: MultiInputPolicy for Dict
    observations, CnnPolicy for images, else MlpPolicy."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the algorithm's constructor (``learning_rate``, ``n_steps``, ``policy_kwargs``, ...);
    rlkit sets ``env``, ``seed`` and ``device`` itself. ``train.learning_starts``, when set, is SB3's
    ``learning_starts`` for the algorithms that have one (not read by PPO and A2C); rlkit's other update settings
    (``train.batch_size``, ``train_every``, ``gradient_steps``, ``replay``) are refused: SB3 takes them here."""

    resumable: typing.ClassVar[tuple[str, ...]] = ()  # nothing of an SB3 agent changes on resume (resume_changes)
    optimizer_settings: typing.ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        package, _, algo = self.name.partition(".")
        if not algo.isidentifier():
            raise ConfigError(f"agent.name '{self.name}': expected {package}.<Algorithm>, e.g. sb3.PPO or "
                              "sb3_contrib.MaskablePPO")
        bad = [key for key in self.kwargs if not isinstance(key, str)]
        if bad:
            raise ConfigError(f"agent.kwargs: keys are argument names (strings), got {bad[0]!r}")

    def check_run(self, cfg: "RunConfig") -> None:
        """rlkit's own agents' training settings are not read by an SB3 run: a config that sets them would
        silently not get them, so they are refused, naming where SB3 takes them (``agent.kwargs``)."""
        if cfg.offline is not None:
            raise ConfigError(f"agent '{self.name}' trains online; SB3 agents cannot learn from an offline: dataset "
                              "here (remove the offline: section)")
        defaults, given = TrainConfig(), cfg.train
        # (train.learning_starts is passed on as SB3's learning_starts where the algorithm has one: sb3_runner)
        sb3_names = {"train_every": "train_freq", "gradient_steps": "gradient_steps", "batch_size": "batch_size"}
        for key, sb3_key in sb3_names.items():
            if getattr(given, key) != getattr(defaults, key):
                raise ConfigError(f"train.{key} is read by rlkit's own agents, not by '{self.name}': remove it and "
                                  f"set agent.kwargs.{sb3_key} (SB3's name) if the algorithm takes it")
        if to_dict(given.replay) != to_dict(defaults.replay):
            raise ConfigError(f"train.replay is rlkit's replay buffer, not read by '{self.name}': remove it and set "
                              "SB3's buffer_size / replay_buffer_class in agent.kwargs")
        if cfg.env.vectorization in ("async", "native"):
            raise ConfigError(f"env.vectorization: {cfg.env.vectorization} is not supported for '{self.name}': SB3 "
                              "agents step their env.num_envs copies in one process (SB3's DummyVecEnv); use sync "
                              "or auto")
        if given.snapshot_every:
            raise ConfigError(f"train.snapshot_every is not supported for '{self.name}' (SB3 agents); set it to 0 — "
                              "the run's checkpoints/*.zip are SB3 model files")


@dataclass
class RunConfig:
    env: EnvConfig
    agent: Any
    """The agent's own dataclass (``DQNConfig``, …), chosen by ``agent.name``."""
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` picks CUDA when available."""
    torch_threads: int = 1
    """CPU threads for torch ops (``torch.set_num_threads``). 1 is fastest for small networks and
    avoids spin-wait collapse when cores are shared; raise it for CNNs on an otherwise idle machine.
    0 leaves torch's default."""
    offline: OfflineConfig | None = None
    """Learn from a dataset instead of env interaction (see :class:`OfflineConfig`); None: online."""

    def __post_init__(self) -> None:
        check_seed(self.seed)
        if self.torch_threads < 0:
            raise ConfigError(f"torch_threads must be >= 0, got {self.torch_threads}")
        if self.offline is not None and self.train.replay.her is not None:
            raise ConfigError("train.replay.her relabels with the env's compute_reward while training online; offline "
                              "runs do not relabel: remove train.replay.her (or the offline: section)")
        if isinstance(self.agent, SB3AgentConfig) and (self.train.compile or self.train.precision != "fp32"):
            raise ConfigError("train.compile / train.precision apply to rlkit's own agents; SB3 agents train with SB3's "
                              "own loop: remove them (or use an rlkit agent)")
        if self.train.replay.symmetries and (self.offline is not None or isinstance(self.agent, SB3AgentConfig)):
            what = "offline runs learn from a dataset" if self.offline is not None else "SB3 agents keep their own buffer"
            raise ConfigError(f"train.replay.symmetries augments rlkit's online replay; {what}: set it to false")
        if self.train.rollouts is not None and (self.offline is not None or isinstance(self.agent, SB3AgentConfig)):
            what = "offline runs learn from a dataset" if self.offline is not None else "SB3 agents collect themselves"
            raise ConfigError(f"train.rollouts (Ray actors) is for rlkit's online loop; {what}: remove train.rollouts")


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def _closest(name: str, options: list[str]) -> str:
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else f" Valid keys: {', '.join(sorted(options))}."


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it (ints widen to floats)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        members = [arg for arg in args if arg is not type(None)]
        if len(members) == 1:  # Optional[X]: X's own message ("must be a finite number", ...)
            return _coerce(value, members[0], where)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{where}: {value!r} is not one of {list(choices)}." + _closest(str(value), [str(c) for c in choices])
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return build_dataclass(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp in (int, float) and isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)  # PyYAML reads 1e-3 (no dot) as a string: accept it as the number it is
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if not (isinstance(value, float) and value.is_integer()):
                raise ConfigError(f"{where}: expected an integer, got {value!r}")
            value = int(value)  # 1e6 in YAML reads as a float
        if not -2**63 <= value < 2**63:  # sizes and counters go to torch and numpy as int64 (2**63 overflowed there)
            raise ConfigError(f"{where}: {value} does not fit a 64-bit integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):  # every float field: .inf and .nan train on NaN losses
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp!r}")  # programming error, still explicit


def build_dataclass(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build ``cls`` from a mapping, rejecting unknown keys and wrong types with a helpful message."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            full = f"{where}.{key}" if where else key
            raise ConfigError(f"unknown key '{full}'." + _closest(str(key), names))
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where else key)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(str(exc)) from None
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _aux_config(entry: Any, where: str) -> Any:
    """An ``agent.aux`` entry as its module's typed config (``rlkit.auxiliary.AUX_MODULES``)."""
    from rlkit.auxiliary import AUX_MODULES  # local import, as for the agents' registry

    if not isinstance(entry, dict):
        return entry  # already typed (a config built in Python)
    name = entry.get("name")
    if name not in AUX_MODULES:
        raise ConfigError(f"{where}.name: unknown auxiliary module {name!r}."
                          + _closest(str(name), list(AUX_MODULES)).replace("keys", "modules"))
    return build_dataclass(AUX_MODULES[name], entry, where)


def check_capabilities(cfg: "RunConfig", agent_cls: type) -> None:
    """The config asks the agent only for what its ``capabilities`` declare: checked once, before anything
    is built, so a mismatch fails at start with one line instead of deep in a run (or never)."""
    caps, name, replay = agent_cls.capabilities, cfg.agent.name, cfg.train.replay
    if replay.prioritized and not caps.priority_feedback:
        raise ConfigError(f"train.replay.prioritized: true, but agent '{name}' returns no TD errors to "
                          "prioritize by (it would silently sample uniformly); set "
                          "train.replay.prioritized: false, or use an agent that supports it (dqn)")
    if cfg.offline is None and not caps.online:
        raise ConfigError(f"agent '{name}' learns from a dataset, and this config has no offline: section (it would "
                          "clone its own random actions); add offline: {dataset: <id from `rlkit dataset list`>}")
    if replay.prioritized and cfg.train.gather_batches > 1:
        raise ConfigError(f"train.gather_batches={cfg.train.gather_batches} draws several updates' batches at once, "
                          "but prioritized replay changes its priorities between updates; set train.gather_batches: "
                          "1 or train.replay.prioritized: false")
    if replay.prioritized and cfg.offline is not None:
        raise ConfigError("train.replay.prioritized is not supported offline (a dataset source is read-only and "
                          "takes no priorities); set train.replay.prioritized: false")
    if replay.her is not None and caps.experience != "transitions":
        raise ConfigError(f"train.replay.her relabels transitions, but agent '{name}' learns from "
                          f"{caps.experience}; remove train.replay.her")
    if cfg.offline is not None and caps.sample_hook:
        raise ConfigError(f"agent '{name}' rewrites every batch with its sample-time hook, which needs the online "
                          "replay buffer; the offline dataset source does not run it: train it online (remove "
                          "offline:)")
    if cfg.offline is not None and cfg.agent.env_step_schedules():
        key = cfg.agent.env_step_schedules()[0]
        raise ConfigError(f"agent.{key} is a schedule over env steps, and an offline run has none (its steps are "
                          f"gradient steps); set agent.{key}: 0 (or its schedule off), or train online")
    for i, aux in enumerate(cfg.agent.aux):
        if type(aux).needs_one_step and replay.n_step != 1:
            raise ConfigError(f"agent.aux[{i}] ({aux.name}) learns from one-step transitions (s_t, a_t, s_t+1), "
                              f"but train.replay.n_step is {replay.n_step}; set train.replay.n_step: 1")
        if type(aux).needs_one_step and caps.experience != "transitions":
            raise ConfigError(f"agent.aux[{i}] ({aux.name}) learns from transitions, but agent '{name}' learns from "
                              f"{caps.experience}")
        if caps.experience not in type(aux).experience:
            raise ConfigError(f"agent.aux[{i}] ({aux.name}) learns from {' or '.join(type(aux).experience)}, but "
                              f"agent '{name}' learns from {caps.experience}")
        aux.check_run(cfg, caps.experience, f"agent.aux[{i}]")
    cfg.agent.check_run(cfg)  # what only the agent knows it needs (e.g. RIS: one-step targets, sparse rewards)


def _agent_registry() -> dict[str, tuple[type, type]]:
    from rlkit.agents import AGENTS  # local import: agents import the core, not the other way round

    return AGENTS


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.total_steps=20000`` -> (["train", "total_steps"], 20000); values parse as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value (e.g. train.total_steps=20000)")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = yaml.load(raw, Loader=_StrictLoader) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise ConfigError(f"override '{key}': the value is nested more than {MAX_DEPTH} levels deep") from None
    _check_size(value, f"override '{key}'")
    return key.split("."), value


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override '{'.'.join(path)}': '{part}' is not a section")
        node = child
    node[path[-1]] = value


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys: a second ``train:`` block would silently
    replace the whole first one."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable key: SafeLoader reports it
                    continue
                if duplicate:
                    first = seen[key]
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key}' (first at line {first.line + 1}; a second one would "
                        "silently replace it): merge the two", key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _check_size(data: Any, where: str) -> None:
    """Refuse data nested deeper than MAX_DEPTH or holding more than MAX_VALUES values (iterative:
    no recursion, and alias bombs stop at the budget instead of expanding)."""
    stack = [(data, 0)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{where} holds more than {MAX_VALUES} values; rlkit configs are small — is it the "
                              "right file?")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a directory; pass a YAML file (shipped configs are in "
                          f"{configs_dir()})")
    if not path.is_file():
        hint = ""
        configs = configs_dir()
        if configs.is_dir():
            options = sorted(p.name for p in configs.glob("*.yaml"))
            hint = _closest(path.name, options).replace("keys", "configs") + f" Shipped configs are in {configs}."
        raise ConfigError(f"config file '{path}' does not exist.{hint}")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file '{path}' is {size / 2**20:.1f} MiB; rlkit configs are small (the limit "
                              f"is {MAX_CONFIG_BYTES // 2**20} MiB) — is it the right file?")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file '{path}' cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file '{path}' is not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x}); "
                          "is it a YAML config?") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or exc
        raise ConfigError(f"config file '{path}' is not valid YAML{where}: {_one_line(problem)}") from None
    except RecursionError:
        raise ConfigError(f"config file '{path}' is nested more than {MAX_DEPTH} levels deep") from None
    _check_size(data, f"config file '{path}'")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of sections (env, agent, train, log, seed)")
    return data


def build_run_config(data: dict[str, Any], overrides: list[str] = (), source: str = "config") -> RunConfig:
    """Apply ``key.sub=value`` overrides to raw YAML data and build the typed :class:`RunConfig`."""
    data = copy.deepcopy(data)  # overrides must not leak into the caller's data
    try:
        file_agent = dict(data["agent"]) if isinstance(data.get("agent"), dict) else {}  # as the file has it
        parsed = [parse_override(text) for text in overrides]
        for path, value in parsed:
            _set_path(data, path, value)
        note = _drop_other_agents_keys(data, file_agent, parsed)
        agent_data = data.get("agent")
        if not isinstance(agent_data, dict) or "name" not in agent_data:
            raise ConfigError("the 'agent' section needs a 'name' (e.g. agent: {name: dqn})")
        registry = _agent_registry()
        name = agent_data["name"]
        sb3 = is_sb3_agent(name)  # an SB3 algorithm (rlkit.training.sb3_runner), not one of rlkit's agents
        if not isinstance(name, str):
            raise ConfigError(f"agent.name must be an agent's name (one of {', '.join(sorted(registry))}), got {name!r}")
        if name not in registry and not sb3:
            raise ConfigError(f"unknown agent '{name}'." + _closest(str(name), list(registry)).replace("keys", "agents")
                              + " Stable-Baselines3 algorithms are named sb3.PPO, sb3_contrib.MaskablePPO, ...")
        agent_cls = SB3AgentConfig if sb3 else registry[name][0]
        top = {f.name for f in dataclasses.fields(RunConfig)}
        for key in data:
            if key not in top:
                raise ConfigError(f"unknown top-level key '{key}'." + _closest(str(key), sorted(top)))
        env = _coerce(data.get("env", {}), EnvConfig, "env")
        agent = build_dataclass(agent_cls, {k: v for k, v in agent_data.items()}, "agent")
        train = _coerce(data.get("train", {}), TrainConfig, "train")
        log = _coerce(data.get("log", {}), LogConfig, "log")
        seed = _coerce(data.get("seed", 0), int, "seed")
        device = _coerce(data.get("device", "auto"), typing.get_type_hints(RunConfig)["device"], "device")
        threads = _coerce(data.get("torch_threads", 1), int, "torch_threads")
        offline = _coerce(data.get("offline"), OfflineConfig | None, "offline")
        if env.id is None and offline is None:
            raise ConfigError("env.id is null, but only offline runs (an `offline:` section) can train without an env")
        if not sb3:
            agent.aux = [_aux_config(entry, f"agent.aux[{i}]") for i, entry in enumerate(agent.aux)]
        cfg = RunConfig(env=env, agent=agent, train=train, log=log, seed=seed, device=device, torch_threads=threads,
                        offline=offline)
        if sb3:
            agent.check_run(cfg)
        else:
            check_capabilities(cfg, registry[name][1])
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if note:  # only for a config that builds: a refused one says one line, its error
        import sys

        print(note, file=sys.stderr)
    return cfg


def _drop_other_agents_keys(data: dict[str, Any], file_agent: dict[str, Any], parsed: list) -> str | None:
    """An override that switches ``agent.name`` (``agent.name=sac`` over a DQN file) drops the file's other
    agent keys, tuned for the other agent, so the new one starts from its own defaults (keys given as
    overrides stay); returns a one-line notice naming what was dropped (printed once the config builds), or None.
    Only an override of ``agent.name`` switches: a file's own name, even one unequal to itself (NaN), does not."""
    agent = data.get("agent")
    old_name = file_agent.get("name")
    if not any(path == ["agent", "name"] for path, _ in parsed):
        return None
    if not isinstance(agent, dict) or old_name is None or agent.get("name") == old_name:
        return None
    if any(path == ["agent"] for path, _ in parsed):  # the whole section was given: nothing of the file is left
        return None
    given = {path[1] for path, _ in parsed if path[0] == "agent" and len(path) > 1}
    dropped = [key for key in file_agent if key != "name" and key not in given]
    for key in dropped:
        del agent[key]
    if not dropped:
        return None
    return (f"rlkit: note: agent.name {old_name} -> {agent.get('name')}: the config's {old_name} settings are "
            f"dropped ({', '.join(f'agent.{k}' for k in dropped)}); {agent.get('name')} starts from its defaults")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML file (``None`` = the default DQN CartPole config) and apply overrides."""
    path = Path(path) if path is not None else default_config_path()
    return build_run_config(read_yaml(path), overrides, source=str(path))


def default_config_path() -> Path:
    return configs_dir() / "dqn_cartpole.yaml"


def configs_dir() -> Path:
    """Shipped configs: ``rlkit/configs/`` in an installed package (setup.cfg ships ``configs/*.yaml``
    as the package data of ``rlkit.configs``), else the repository's ``configs/`` (source tree or
    editable install)."""
    here = Path(__file__).resolve().parent
    installed = here / "configs"
    return installed if installed.is_dir() else here.parent / "configs"


def to_dict(cfg: Any) -> Any:
    """Plain data (dicts, lists, scalars) for YAML; round-trips through :func:`build_run_config`."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def dump_yaml(cfg: RunConfig, path: Path) -> None:
    """Write the resolved config atomically (a temporary file, then ``os.replace``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
