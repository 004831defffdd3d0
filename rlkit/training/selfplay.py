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
    """Past snapshots of the learner's acting tensors (``Agent.acting_tensors``), oldest first, each with an id.

    A game keeps the snapshot it drew (id and tensors) until it ends, even after the pool drops it, and the
    collector checkpoints each env's current opponent with it, so a resumed run's env replay meets the same one.
    """

    def __init__(self, pool_size: int, snapshot_every: int) -> None:
        self.pool_size, self.snapshot_every = int(pool_size), int(snapshot_every)
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.snapshot_ids: list[int] = []     # 0, 1, 2, ... in the order they were taken
        self.snapshot_steps: list[int] = []   # the training step each snapshot was taken at
        self.steps = 0                        # real env steps of training seen
        self.taken = 0                        # snapshots taken so far (the next id)
        self._players: dict[int, Any] = {}    # one frozen copy of the agent per snapshot id, made when first needed
        self._template = None

    def __len__(self) -> int:
        return len(self.snapshots)

    @staticmethod
    def _selfplay_envs(envs) -> list[Any]:
        return [env.unwrapped for env in getattr(envs, "envs", ())
                if getattr(env.unwrapped, "wants_selfplay_pool", False)
                and getattr(env.unwrapped, "opponent_kind", None) == "selfplay"]

    def attach(self, envs) -> int:
        """Give the pool to every sub-env of a SyncVectorEnv that plays self-play; returns how many."""
        games = self._selfplay_envs(envs)
        for game in games:
            game.pool = self
        return len(games)

    @classmethod
    def settings(cls, envs) -> tuple[int, int] | None:
        """``(pool_size, snapshot_every)`` of the first self-play sub-env, or None when there is none."""
        games = cls._selfplay_envs(envs)
        return (games[0].pool_size, games[0].snapshot_every) if games else None

    # ------------------------------------------------------------------ growing
    def after_steps(self, agent, real_steps: int) -> None:
        """Count training steps; snapshot the agent each time ``snapshot_every`` is crossed. The first call binds the
        agent that plays the snapshots, unless a resume already did."""
        if self._template is None:
            self.bind(agent)
        before, self.steps = self.steps, self.steps + int(real_steps)
        if before // self.snapshot_every != self.steps // self.snapshot_every:
            self.add(agent)

    def add(self, agent) -> None:
        if self._template is None:
            self._template = agent
        self.snapshots.append({k: v.detach().to("cpu", copy=True) for k, v in agent.acting_tensors().items()})
        self.snapshot_ids.append(self.taken)
        self.snapshot_steps.append(self.steps)
        self.taken += 1
        if len(self.snapshots) > self.pool_size:
            dropped = self.snapshot_ids[0]
            del self.snapshots[0], self.snapshot_ids[0], self.snapshot_steps[0]
            self._players.pop(dropped, None)  # a game still playing it makes it again from its own tensors

    # ------------------------------------------------------------------ playing
    def draw(self, u: float) -> tuple[int, dict[str, torch.Tensor]]:
        """The snapshot at uniform ``u`` in [0, 1): its id and tensors."""
        index = min(int(u * len(self.snapshots)), len(self.snapshots) - 1)
        return self.snapshot_ids[index], self.snapshots[index]

    def bind(self, agent) -> None:
        """The agent whose class and config play the snapshots (after a resume: the loaded agent)."""
        self._template = agent
        self._players = {}

    def act(self, snapshot_id: int, tensors: dict[str, torch.Tensor], obs: dict[str, np.ndarray]) -> int:
        """Snapshot ``snapshot_id``'s greedy masked action for one observation."""
        player = self._players.get(snapshot_id)
        if player is None:
            if self._template is None:
                raise RuntimeError("the self-play pool has no agent to play its snapshots: bind(agent) first")
            player = copy.deepcopy(self._template)
            player.load_acting_tensors(tensors)
            if len(self._players) > 4 * self.pool_size:  # games of dropped snapshots end: forget old players
                self._players.clear()
            self._players[snapshot_id] = player
        batch = {key: np.asarray(value)[None] for key, value in obs.items()}
        return int(np.asarray(player.predict(batch, deterministic=True))[0])

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"pool_size": self.pool_size, "snapshot_every": self.snapshot_every, "steps": self.steps,
                "taken": self.taken, "snapshot_ids": torch.as_tensor(self.snapshot_ids, dtype=torch.int64),
                "snapshot_steps": torch.as_tensor(self.snapshot_steps, dtype=torch.int64),
                "snapshots": [dict(s) for s in self.snapshots]}

    def check_snapshot(self, snapshot: Any, agent, what: str) -> None:
        expected = agent.acting_tensors()
        fits = isinstance(snapshot, dict) and set(snapshot) == set(expected) and all(
            isinstance(snapshot[k], torch.Tensor) and snapshot[k].shape == expected[k].shape
            and snapshot[k].dtype == expected[k].dtype for k in expected)
        if not fits or any(snapshot[k].is_floating_point() and not bool(torch.isfinite(snapshot[k]).all())
                           for k in expected):
            raise ValueError(f"the checkpoint's self-play {what} does not fit the agent's acting parts")

    def load_state_dict(self, state: dict[str, Any], agent) -> None:
        snapshots, ids, steps = state.get("snapshots"), state.get("snapshot_ids"), state.get("snapshot_steps")
        counts = (state.get("steps"), state.get("taken"))
        if not isinstance(snapshots, list) or not isinstance(steps, torch.Tensor) or not isinstance(ids, torch.Tensor) \
                or len(steps) != len(snapshots) or len(ids) != len(snapshots) \
                or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts) \
                or any(not 0 <= int(i) < counts[1] for i in ids.tolist()) \
                or any(b <= a for a, b in zip(ids.tolist(), ids.tolist()[1:])) or len(snapshots) > self.pool_size:
            raise ValueError("the checkpoint's self-play pool is malformed (ids must increase, at most pool_size "
                             "snapshots)")
        for i, snapshot in enumerate(snapshots):
            self.check_snapshot(snapshot, agent, f"snapshot {i}")
        self.snapshots = [dict(s) for s in snapshots]
        self.snapshot_ids = [int(x) for x in ids.tolist()]
        self.snapshot_steps = [int(x) for x in steps.tolist()]
        self.steps, self.taken = counts
        self.bind(agent)
