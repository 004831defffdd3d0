"""Acting in a frozen motor skill's latent space: the high-level half of Catch & Carry (issue 23).

Merel, Tunyasuvunakool, Ahuja, Tassa, Hasenclever, Pham, Erez, Wayne, Heess (2020), "Catch & Carry:
Reusable Neural Controllers for Vision-Guided Whole-Body Tasks", section 4: a task policy outputs the
motor intention z_t; the NPMP's frozen low-level decoder turns it into joint targets,
    a_t = mu_pi(s_t, z_t)        (agents/npmp.py: ``Decoder``, ``load_skill``),
s_t the proprioception. The high-level agent sees the task observation and learns pi_hi(z_t | o_t) by
any continuous-control algorithm (MPO, SAC); the decoder is never trained.

:class:`SkillActionWrapper` wraps a humanoid task env (``rlkit/HumanoidGoToTarget-v0``,
``rlkit/HumanoidCarry-v0`` with ``action_mode="pd"``): its action space is z's Box, its ``step(z)`` runs
the decoder on the last observation's ``proprio`` and steps the env with the decoded PD targets. Made by
config through the ids registered here (``env.imports: [rlkit.envs.skill_actions]`` or the id's
``module:`` form, see ``configs/mpo_humanoid_goto_skill.yaml``)::

    env:
      id: rlkit.envs.skill_actions:rlkit-skill/HumanoidGoToTarget-v0
      kwargs: {skill: runs/npmp_export, reward_type: shaped}     # the rest goes to the task env

or in Python ``SkillActionWrapper(gymnasium.make("rlkit/HumanoidGoToTarget-v0"), skill=PATH)``.

Why a wrapper and not a declared frozen part of the high-level agent. The contract route would have the
agent act z, store z in its replay and send decoder(proprio, z) to the env: the Collector would then need
two actions per step (one stored, one sent), and every agent (MPO, SAC, and SB3's, which never see
rlkit's contract) would need the same extra path. As an env wrapper the skill is part of the high-level
agent's world: every continuous-control agent, rlkit's or SB3's, trains over z unchanged; the replay
stores z because z is the action; evaluation, ``rlkit eval --video``, resume and export work as for any
env. Frozen is then structural: the decoder lives in the env, loaded by ``load_skill`` with every
``requires_grad`` False and in eval mode, and run under ``torch.no_grad``; no agent optimizer can
reach it (tests/test_skill_policy.py checks its weights unchanged after training). The cost: an
exported high-level policy needs the skill path to act (it is in the run's ``config.yaml``).

The range of z. The NPMP's AR(1) prior p(z_t | z_{t-1}) = N(alpha z_{t-1}, (1 - alpha^2) I) has the
stationary distribution N(0, I), the z the decoder was trained around. The wrapper's action is
u in [-1, 1]^d and z = z_bound * u, a box [-z_bound, z_bound]^d (default 3: +-3 prior standard
deviations, 99.7% of the prior's mass per dimension); u is clipped to [-1, 1] inside ``step``. A
clipped box rather than a tanh squash inside the wrapper, because each agent already bounds its own
actions to a Box: MPO (Acme's) keeps an unsquashed Gaussian and clips at the Box, SAC squashes with tanh
into it; a second squash here would distort both. The unit Box (not [-3, 3]) is what SB3 and Gymnasium's
checkers ask for; rlkit's agents map any Box to [-1, 1] themselves (``BoxActions``), so for them the two
are the same computation. With MPO's ``init_std: 0.2`` the initial exploration in z has std 0.6 around
the policy mean.

Control rate: one z per env step (30 Hz), as the decoder was trained; the paper's high level acts at
the same rate as the low level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.errors import ConfigError

SKILL_IDS = {"rlkit-skill/HumanoidGoToTarget-v0": "rlkit/HumanoidGoToTarget-v0",
             "rlkit-skill/HumanoidCarry-v0": "rlkit/HumanoidCarry-v0"}
"""The ids registered here (a namespace of their own: they need a ``skill`` path, so they are not among the
``rlkit/`` ids every registry test makes without arguments) -> the task they wrap."""


class SkillActionWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The env's action becomes u in ``[-1, 1]^d``, z = ``z_bound`` * u; ``step(u)`` sends ``decoder(proprio, z)``.

    ``skill``: an exported NPMP directory (``rlkit export NPMP_RUN OUT``: ``model.safetensors`` and
    ``config.yaml``), loaded frozen with :func:`rlkit.agents.npmp.load_skill`, or an already loaded
    ``(decoder, spec)`` pair. ``proprio_key``: the Dict observation's key holding the decoder's input
    (the task envs' ``"proprio"``, 116 entries)."""

    def __init__(self, env: gym.Env, skill: str | Path | tuple, z_bound: float = 3.0,
                 proprio_key: str = "proprio") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, skill=skill, z_bound=z_bound, proprio_key=proprio_key)
        super().__init__(env)
        import torch

        from rlkit.agents.npmp import load_skill

        if not (isinstance(z_bound, (int, float)) and np.isfinite(z_bound) and z_bound > 0):
            raise ConfigError(f"SkillActionWrapper: z_bound must be a positive number, got {z_bound!r}")
        if isinstance(skill, tuple):
            self.decoder, self.skill_spec = skill
        else:
            if not skill or not Path(skill).exists():
                raise ConfigError(f"SkillActionWrapper: skill path '{skill}' does not exist; export a trained NPMP "
                                  "run with `rlkit export RUN_DIR OUT_DIR` and set env.kwargs.skill: OUT_DIR")
            self.decoder, self.skill_spec = load_skill(skill)
        self._check_env(env, proprio_key)
        self.proprio_key, self.z_bound = proprio_key, float(z_bound)
        self.torch = torch
        space = env.action_space
        self._low, self._high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.skill_spec.latent_dim,), np.float32)  # u; z = z_bound u
        self._proprio: np.ndarray | None = None

    def _check_env(self, env: gym.Env, key: str) -> None:
        spec, obs_space, act_space = self.skill_spec, env.observation_space, env.action_space
        where = f"SkillActionWrapper on {env.spec.id if env.spec else type(env.unwrapped).__name__}"
        if not (isinstance(obs_space, gym.spaces.Dict) and key in obs_space.spaces):
            raise ConfigError(f"{where}: the decoder reads the observation's '{key}' entry, but the observation "
                              f"space is {obs_space}; wrap a humanoid task env (Dict with '{key}')")
        size = int(np.prod(obs_space[key].shape))
        if size != spec.proprio_dim:
            raise ConfigError(f"{where}: the skill's decoder reads {spec.proprio_dim} proprioceptive entries, the "
                              f"env's '{key}' has {size}; use the skill with the env it was trained for "
                              f"(its env: {spec.env_id})")
        if not (isinstance(act_space, gym.spaces.Box) and act_space.shape == (spec.action_dim,)
                and np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
            raise ConfigError(f"{where}: the skill's decoder outputs {spec.action_dim} actions, the env's action "
                              f"space is {act_space}")
        mode = spec.env_kwargs.get("action_mode")
        env_mode = getattr(env.unwrapped, "action_mode", None)
        if mode is not None and env_mode is not None and mode != env_mode:
            raise ConfigError(f"{where}: the skill's decoder outputs action_mode '{mode}' actions, the env takes "
                              f"'{env_mode}'; set env.kwargs.action_mode: {mode}")

    def latent(self, action: np.ndarray) -> np.ndarray:
        """z = z_bound * clip(u, -1, 1) for the wrapper's action u ``[d]``."""
        u = np.clip(np.asarray(action, dtype=np.float32).reshape(self.skill_spec.latent_dim), -1.0, 1.0)
        return (self.z_bound * u).astype(np.float32)

    def decode(self, action: np.ndarray) -> np.ndarray:
        """The env action ``decoder(proprio, z)`` for the last observation and z = ``latent(action)``, in the
        env's Box."""
        torch = self.torch
        z = self.latent(action)
        with torch.no_grad():
            unit = self.decoder(torch.as_tensor(self._proprio, dtype=torch.float32)[None],
                                torch.as_tensor(z)[None])[0].clamp(-1.0, 1.0).double().numpy()
        action = self._low + (unit + 1.0) * 0.5 * (self._high - self._low)
        return action.astype(self.env.action_space.dtype)

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._proprio = np.asarray(obs[self.proprio_key]).reshape(-1)
        return obs, info

    def step(self, action: np.ndarray):
        if self._proprio is None:
            raise gym.error.ResetNeeded("SkillActionWrapper: call reset() before step()")
        obs, reward, terminated, truncated, info = self.env.step(self.decode(action))
        self._proprio = np.asarray(obs[self.proprio_key]).reshape(-1)
        return obs, reward, terminated, truncated, info


def make_skill_env(task: str, skill: str | Path | None = None, z_bound: float = 3.0, **task_kwargs: Any) -> gym.Env:
    """``task`` made with ``task_kwargs`` (``action_mode`` defaults to the skill's), wrapped in
    :class:`SkillActionWrapper` with ``skill`` (an exported NPMP directory; required)."""
    from rlkit.agents.npmp import load_skill

    if skill is None:
        raise ConfigError(f"{task} over a skill: env.kwargs.skill is missing; set it to an exported NPMP "
                          "(`rlkit export NPMP_RUN_DIR OUT_DIR`, then env.kwargs.skill: OUT_DIR)")
    if not Path(skill).exists():
        raise ConfigError(f"env.kwargs.skill: '{skill}' does not exist; export a trained NPMP run with "
                          "`rlkit export RUN_DIR OUT_DIR` and point env.kwargs.skill at OUT_DIR")
    decoder, spec = load_skill(skill)
    task_kwargs.setdefault("action_mode", spec.env_kwargs.get("action_mode", "pd"))
    import rlkit.envs  # noqa: F401  (registers the task ids)

    return SkillActionWrapper(gym.make(task, **task_kwargs), (decoder, spec), z_bound=z_bound)


for _id, _task in SKILL_IDS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point="rlkit.envs.skill_actions:make_skill_env", kwargs={"task": _task})
