"""The auxiliary-loss hook's two types: :class:`AuxConfig` (a module's config) and :class:`AuxModule`.

An auxiliary module is a small network with a loss on a batch, attached to one of the agent's parts (its
``encoder`` by default). The agent's :meth:`~rlkit.contract.agent.Agent.optimize` adds ``weight * loss`` to
the loss of the optimizer that trains that part, inside the same step, so the part learns from both; the
module's own parameters (its head) join that optimizer. RLlib's self-supervised loss API and the request
in SB3 #2080 are the model; here attaching one is one config line for any agent:

    agent:
      aux: [{name: inverse_dynamics, weight: 0.1}]

Adding a module is one file in ``rlkit/auxiliary/`` (its config subclass and module subclass) and one line in
``rlkit.auxiliary.AUX_MODULES``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import torch
from torch import nn

from rlkit.contract.parts import Part
from rlkit.errors import ConfigError

@dataclass
class AuxConfig:
    """Fields every auxiliary module shares; subclasses add theirs and set ``module``."""

    name: str = ""
    """The registry name (``rlkit.auxiliary.AUX_MODULES``)."""
    weight: float = 0.1
    """The loss's weight in the update it joins: L = L_agent + weight * L_aux."""
    part: str = "encoder"
    """The part it learns on: ``encoder`` (the agent's declared encoder) or any declared part name, dotted
    into a module where needed (``critic.encoder``)."""
    label: str | None = None
    """Its name in logs (``aux/<label>``) when two modules of one kind are attached; default ``name``."""

    module: ClassVar[type["AuxModule"]]
    """The module class this config builds."""
    needs_one_step: ClassVar[bool] = False
    """The loss reads (s_t, a_t, s_t+1): the run's transitions must be one-step (``train.replay.n_step: 1``)."""
    experience: ClassVar[tuple[str, ...]] = ("transitions", "sequences")
    """The batch kinds its loss reads (``Capabilities.experience`` of the agent it joins): a run whose agent
    learns from another kind is refused at start (:func:`rlkit.config.check_capabilities`)."""

    def __post_init__(self) -> None:
        if not (0.0 <= self.weight < math.inf):
            raise ConfigError(f"weight must be a finite number >= 0, got {self.weight}")

    def check_run(self, run: Any, experience: str, where: str) -> None:
        """What only this module knows it needs from the run (a :class:`rlkit.config.RunConfig`; ``experience``:
        the agent's batch kind): raise :class:`ConfigError` naming ``where`` (``agent.aux[i]``). Default: none."""

    def label_or_name(self) -> str:
        return self.label or self.name

    def build(self, feature_dim: int, observation_space: gym.Space, action_space: gym.Space) -> "AuxModule":
        return self.module(self, feature_dim, observation_space, action_space)


class AuxModule(nn.Module):
    """An auxiliary loss with its own parameters. ``loss(batch, agent)`` returns a 0-dim tensor whose
    gradient reaches the attached part through ``agent.encode(obs, self.part)``."""

    part: str

    def __init__(self, cfg: AuxConfig, feature_dim: int, observation_space: gym.Space, action_space: gym.Space) -> None:
        super().__init__()
        self.cfg = cfg
        self.part_names: dict[str, str] = {}  # local name -> declared name of the parts from extra_parts

    def bind(self, source: nn.Module, example: Any = None) -> None:
        """Called once when attached, with the attached part (unwrapped) and ``example``, a batch of two
        all-zero observations as that part receives them (after the agent's ``encoder_inputs`` where it has
        one), before the module's parameters join its optimizer: a module whose head depends on the part's
        layers (CLAPP's one matrix per block) builds it here. Default: nothing."""

    def extra_parts(self, source: nn.Module) -> dict[str, Part]:
        """Parts this module keeps outside its own parameters, declared through the agent's contract so that
        checkpoints, exact resume, device moves and DDP see them: ``{local name: momentum_of(self.part,
        copy, tau)}``, ``source`` being the attached part (unwrapped). They are declared as
        ``aux.<label>.<local name>``; read one back with :meth:`extra`, run it with ``agent.encode(obs,
        self.part_names[local])``. With ``tau`` set, the contract updates the copy after every step of the
        attached part's optimizer. Default: none."""
        return {}

    def extra(self, agent: Any, local: str) -> nn.Module:
        """The declared module of :meth:`extra_parts`' entry ``local``."""
        return agent.parts.modules[self.part_names[local]]

    def loss(self, batch: Any, agent: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

