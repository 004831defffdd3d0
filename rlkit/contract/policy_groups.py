"""One network per agent or per team of a multi-agent game, as one module (``agent.policies``).

Parameter sharing (one network for every agent, the agent id as an input: Gupta, Egorov & Kochenderfer 2017,
"Cooperative multi-agent control using deep RL"; Terry et al. 2020, "Revisiting parameter sharing in
multi-agent deep RL") is rlkit's default for PettingZoo rows. Its alternatives — one network per agent
(independent learners, Tan 1993) or one per team (knights and archers learn different jobs) — are the same
agent with its acting network replaced by :class:`PolicyGroups`: ``K`` copies of the network and a
``group_of`` table from agent id to copy. Each batch row goes through its own group's copy, so one forward
pass still serves every agent of every env copy; the module is one declared part, so checkpoints, export,
resume, freezing and target copies work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rlkit.contract.networks import index_obs, obs_batch_size
from rlkit.errors import ConfigError

SHARED, PER_AGENT = "shared", "per_agent"


def check_policies(value: Any, where: str = "agent.policies") -> None:
    """``shared``, ``per_agent`` or ``{team: [agent names or ids]}``: the form, before any env is known."""
    if isinstance(value, str):
        if value not in (SHARED, PER_AGENT):
            raise ConfigError(f"{where} must be '{SHARED}', '{PER_AGENT}' or a mapping {{team: [agents]}}, got {value!r}")
        return
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"{where} must be '{SHARED}', '{PER_AGENT}' or a non-empty mapping {{team: [agents]}}, "
                          f"got {value!r}")
    seen: set[Any] = set()
    for team, members in value.items():
        if not isinstance(team, str) or not team:
            raise ConfigError(f"{where}: team names must be non-empty strings, got {team!r}")
        if not isinstance(members, (list, tuple)) or not members:
            raise ConfigError(f"{where}.{team} must be a non-empty list of agent names or ids, got {members!r}")
        for member in members:
            if isinstance(member, bool) or not isinstance(member, (str, int)) or (isinstance(member, int) and member < 0):
                raise ConfigError(f"{where}.{team}: {member!r} is not an agent name or an id >= 0")
            if member in seen:
                raise ConfigError(f"{where}: agent {member!r} is in two teams; each agent belongs to one")
            seen.add(member)


def resolve_policies(value: Any, agent_names: Sequence[str] | None, where: str = "agent.policies") -> Any:
    """The canonical form ``shared`` or ``{team: [ids]}`` for a game whose agents are ``agent_names`` (index = the
    rows' ``agent_id``; None: the env is not a multi-agent game, or is not at hand — then only ids are kept).
    ``per_agent`` becomes one team per agent named after it."""
    check_policies(value, where)
    if value == SHARED:
        return SHARED
    names = list(agent_names) if agent_names is not None else None
    if value == PER_AGENT:
        if not names:
            raise ConfigError(f"{where}: {PER_AGENT} needs a multi-agent env whose rows carry agent ids (PettingZoo "
                              "rows, e.g. rlkit/Pistonball-v0, rlkit/KnightsArchersZombies-v0); this env has one agent")
        return {name: [i] for i, name in enumerate(names)}
    resolved: dict[str, list[int]] = {}
    for team, members in value.items():
        ids = []
        for member in members:
            if isinstance(member, str):
                if not names or member not in names:
                    known = f"the env's agents are {', '.join(names)}" if names else "this env names no agents"
                    raise ConfigError(f"{where}.{team}: unknown agent {member!r}; {known} (or give ids 0..n-1)")
                member = names.index(member)
            elif names is not None and member >= len(names):
                raise ConfigError(f"{where}.{team}: agent id {member} is out of range: the env has {len(names)} agents")
            ids.append(int(member))
        resolved[team] = ids
    all_ids = [i for ids in resolved.values() for i in ids]
    if len(set(all_ids)) != len(all_ids):
        raise ConfigError(f"{where}: an agent is in two teams ({resolved}); each agent belongs to one")
    if names is not None:
        missing = [names[i] for i in range(len(names)) if i not in set(all_ids)]
        if missing:
            raise ConfigError(f"{where}: agents {', '.join(missing)} are in no team; every agent needs a network")
    return resolved


class PolicyGroups(nn.Module):
    """``K`` copies of a network, one per group of agent ids: ``forward(obs, agent_id)`` runs each batch row
    through its group's copy. obs ``[B, ...]`` (or a dict), agent_id ``[B]`` int64 -> the network's output ``[B, ...]``.

    The groups' copies are initialised independently (each ``make()`` draws its own weights)."""

    def __init__(self, make: Callable[[], nn.Module], groups: Mapping[str, Sequence[int]]) -> None:
        super().__init__()
        self.teams = list(groups)
        self.nets = nn.ModuleList(make() for _ in self.teams)
        n_agents = 1 + max(i for ids in groups.values() for i in ids)
        group_of = torch.full((n_agents,), -1, dtype=torch.int64)
        for k, ids in enumerate(groups.values()):
            group_of[list(ids)] = k
        self.register_buffer("group_of", group_of)  # saved with the weights: a checkpoint knows its teams

    def forward(self, obs: Any, agent_id: torch.Tensor | None) -> torch.Tensor:
        if agent_id is None:
            raise ValueError(f"one network per team ({', '.join(self.teams)}) needs each row's agent id: the env "
                             "must report info['agent_id'] (PettingZoo rows do)")
        n = obs_batch_size(obs)
        agent_id = agent_id.reshape(-1)
        if agent_id.shape[0] != n:
            raise ValueError(f"{agent_id.shape[0]} agent ids for {n} observations")
        known = (agent_id >= 0) & (agent_id < len(self.group_of))
        group = torch.where(known, self.group_of[agent_id.clamp(0, len(self.group_of) - 1)], -1)
        # the check reads the ids on the host: free on a CPU; on a GPU it and the per-group row selection below are
        # host syncs (K + 1 per forward), the price of running only each row's own network
        if bool((group < 0).any()):
            bad = agent_id[group < 0][0].item()
            raise ValueError(f"agent id {bad} belongs to no team of agent.policies ({self.teams})")
        out: torch.Tensor | None = None
        for k, net in enumerate(self.nets):
            rows = (group == k).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            values = net(index_obs(obs, rows))
            if out is None:
                out = values.new_zeros((n, *values.shape[1:]))
            out = out.index_copy(0, rows, values)
        return out if out is not None else self.nets[0](obs)  # an empty batch
