"""Self-play: a pool of the learner's past snapshots that two-player seat envs (rlkit.envs.board_games) draw their
opponents from.

Why a pool and not only the current policy: a learner that only ever meets its current self can cycle (it beats
its last strategy and forgets how to beat an older one); playing a uniform draw over past snapshots (Bansal et al.
2018, "Emergent Complexity via Multi-Agent Competition"; AlphaStar's league in miniature), with a random and a
heuristic opponent mixed in, keeps old weaknesses punished.

The collector owns the pool: it attaches it to every sub-env that asks for one (``wants_selfplay_pool`` and
``opponent: selfplay``), adds a snapshot of the agent's acting parts every ``snapshot_every`` real env steps of
training (oldest dropped past ``pool_size``), and saves the pool in the checkpoint before the envs, so that the env
replay of an exact resume meets the same opponents. Which snapshot a game meets is the env's draw (its
``np_random``). A snapshot acts greedily with the action mask through a copy of the agent (``agent.predict``).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch


class SelfPlayPool:
    """Past snapshots of the learner's acting tensors (``Agent.acting_tensors``), oldest first."""

    def __init__(self, pool_size: int, snapshot_every: int) -> None:
        self.pool_size, self.snapshot_every = int(pool_size), int(snapshot_every)
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.snapshot_steps: list[int] = []   # the training step each snapshot was taken at
        self.steps = 0                        # real env steps of training seen
        self._players: list[Any] = []         # one frozen copy of the agent per snapshot, made when first needed
        self._template = None

    def __len__(self) -> int:
        return len(self.snapshots)

    def attach(self, envs) -> int:
        """Give the pool to every sub-env of a SyncVectorEnv that plays self-play; returns how many."""
        count = 0
        for env in getattr(envs, "envs", ()):
            inner = env.unwrapped
            if getattr(inner, "wants_selfplay_pool", False) and getattr(inner, "opponent_kind", None) == "selfplay":
                inner.pool = self
                count += 1
        return count

    @staticmethod
    def settings(envs) -> tuple[int, int] | None:
        """``(pool_size, snapshot_every)`` of the first self-play sub-env, or None when there is none."""
        for env in getattr(envs, "envs", ()):
            inner = env.unwrapped
            if getattr(inner, "wants_selfplay_pool", False) and getattr(inner, "opponent_kind", None) == "selfplay":
                return inner.pool_size, inner.snapshot_every
        return None

    # ------------------------------------------------------------------ growing
    def after_steps(self, agent, real_steps: int) -> None:
        """Count training steps; snapshot the agent each time ``snapshot_every`` is crossed."""
        before, self.steps = self.steps, self.steps + int(real_steps)
        if before // self.snapshot_every != self.steps // self.snapshot_every:
            self.add(agent)

    def add(self, agent) -> None:
        if self._template is None:
            self._template = agent
        self.snapshots.append({k: v.detach().to("cpu", copy=True) for k, v in agent.acting_tensors().items()})
        self.snapshot_steps.append(self.steps)
        self._players.append(None)
        if len(self.snapshots) > self.pool_size:
            del self.snapshots[0], self.snapshot_steps[0], self._players[0]

    # ------------------------------------------------------------------ playing
    def player(self, index: int):
        if self._players[index] is None:
            if self._template is None:
                raise RuntimeError("the self-play pool has snapshots but no agent to play them: call add() or "
                                   "bind(agent) first")
            player = copy.deepcopy(self._template)
            player.load_acting_tensors(self.snapshots[index])
            self._players[index] = player
        return self._players[index]

    def bind(self, agent) -> None:
        """The agent whose class and config play the snapshots (after a resume: the loaded agent)."""
        self._template = agent
        self._players = [None] * len(self.snapshots)

    def act(self, index: int, obs: dict[str, np.ndarray]) -> int:
        """Snapshot ``index``'s greedy masked action for one observation."""
        batch = {key: np.asarray(value)[None] for key, value in obs.items()}
        return int(np.asarray(self.player(index).predict(batch, deterministic=True))[0])

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"pool_size": self.pool_size, "snapshot_every": self.snapshot_every, "steps": self.steps,
                "snapshot_steps": torch.as_tensor(self.snapshot_steps, dtype=torch.int64),
                "snapshots": [dict(s) for s in self.snapshots]}

    def load_state_dict(self, state: dict[str, Any], agent) -> None:
        snapshots = state.get("snapshots")
        steps = state.get("snapshot_steps")
        if not isinstance(snapshots, list) or not isinstance(steps, torch.Tensor) or len(steps) != len(snapshots) \
                or not isinstance(state.get("steps"), int) or state["steps"] < 0:
            raise ValueError("the checkpoint's self-play pool is malformed")
        expected = agent.acting_tensors()
        for i, snapshot in enumerate(snapshots):
            fits = isinstance(snapshot, dict) and set(snapshot) == set(expected) and all(
                isinstance(snapshot[k], torch.Tensor) and snapshot[k].shape == expected[k].shape
                and snapshot[k].dtype == expected[k].dtype for k in expected)
            if not fits or any(snapshot[k].is_floating_point() and not bool(torch.isfinite(snapshot[k]).all())
                               for k in expected):
                raise ValueError(f"the checkpoint's self-play snapshot {i} does not fit the agent's acting parts")
        self.snapshots = [dict(s) for s in snapshots]
        self.snapshot_steps = [int(x) for x in steps.tolist()]
        self.steps = int(state["steps"])
        self.bind(agent)
