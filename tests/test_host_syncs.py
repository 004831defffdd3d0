"""No host sync per update (issue 22, "One device"): on a GPU, ``.item()``, ``.cpu()``, ``.tolist()``, ``.numpy()``
and ``float()`` / ``int()`` / ``bool()`` of a tensor wait for the device, so the loops read metrics only at log
points (``RunState.add_metrics`` keeps the update's 0-dim tensors; ``pop_means`` reads a window in one transfer per
metric). Counted here on CPU through patched ``torch.Tensor`` methods, for DQN and SAC through ``train_online`` and
BC through ``train_offline``, 200 updates with ``log.log_every`` 100:

- zero inside ``agent.update`` calls;
- zero in the loops' own code between log points (outside the collector's step, where actions must reach the env,
  and the experience source's ``add`` and ``sample``, whose host-side rows and index bookkeeping — rewards, flags,
  sum-tree, generator — live on the CPU by design, rlkit/experience/replay.py);
- the metrics are read at the log points.
"""

from __future__ import annotations

import collections
import functools

import numpy as np
import pytest
import torch

from rlkit.config import build_run_config
from rlkit.training import loops

SYNCS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")
QUIET = {"progress": False, "tensorboard": False, "plot": False, "log_every": 100}


class _Counter:
    """Host reads of tensors, by the phase of the loop they happen in (the innermost marked call)."""

    def __init__(self) -> None:
        self.phases: list[str] = []
        self.counts: collections.Counter = collections.Counter()
        self.updates = 0
        self.finished = False

    def read(self, name: str) -> None:
        phase = self.phases[-1] if self.phases else ("loop" if self.updates and not self.finished else "setup")
        self.counts[phase, name] += 1

    def total(self, phase: str) -> int:
        return sum(v for (p, _), v in self.counts.items() if p == phase)


@pytest.fixture
def counter(monkeypatch):
    from rlkit.agents import AGENTS
    from rlkit.experience.replay import ReplayBuffer
    from rlkit.experience.sequences import SequenceBuffer
    from rlkit.training.collector import Collector

    counter = _Counter()
    for name in SYNCS:
        original = getattr(torch.Tensor, name, None)
        if original is None:
            continue

        def read(self, *args, _name=name, _original=original, **kwargs):
            counter.read(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, read)

    def mark(owner, method: str, phase: str, on_call=None) -> None:
        original = getattr(owner, method)

        @functools.wraps(original)
        def marked(*args, **kwargs):
            if on_call is not None:
                on_call()
            counter.phases.append(phase)
            try:
                return original(*args, **kwargs)
            finally:
                counter.phases.pop()

        monkeypatch.setattr(owner, method, marked)

    def updated() -> None:
        counter.updates += 1

    for _, agent_cls in AGENTS.values():
        if "update" in vars(agent_cls):
            mark(agent_cls, "update", "update", updated)
    for source in (ReplayBuffer, SequenceBuffer):
        mark(source, "sample", "sample")
        mark(source, "add", "store")
    mark(Collector, "step", "collect")
    for method in ("log_train", "evaluate", "evaluate_untrained", "checkpoint", "snapshot"):
        mark(loops._Run, method, "log point")
    mark(loops._Run, "finish", "finish", lambda: setattr(counter, "finished", True))
    return counter


def _check(counter: _Counter, updates: int) -> None:
    assert counter.updates == updates
    assert counter.total("update") == 0, counter.counts  # no host sync inside agent.update
    assert counter.total("loop") == 0, counter.counts  # nor in the loop's own code between log points
    assert counter.total("log point") > 0  # the metrics are read there, a window at a time


def test_dqn_updates_never_sync(counter, tmp_path):
    data = {"seed": 0, "device": "cpu", "env": {"id": "CartPole-v1", "num_envs": 1},
            "agent": {"name": "dqn", "hidden": [32], "target_update_every": 50},
            "train": {"total_steps": 300, "learning_starts": 101, "train_every": 1, "batch_size": 32,
                      "eval_every": 0, "checkpoint_every": 150}, "log": QUIET}
    loops.train(build_run_config(data, []), tmp_path / "run")
    _check(counter, 200)


def test_sac_updates_never_sync(counter, tmp_path):
    data = {"seed": 0, "device": "cpu", "env": {"id": "Pendulum-v1", "num_envs": 1},
            "agent": {"name": "sac", "actor_hidden": [32], "critic_hidden": [32], "random_steps": 100},
            "train": {"total_steps": 300, "learning_starts": 101, "train_every": 1, "batch_size": 32,
                      "eval_every": 0, "checkpoint_every": 150}, "log": QUIET}
    loops.train(build_run_config(data, []), tmp_path / "run")
    _check(counter, 200)


def test_bc_updates_never_sync(counter, tmp_path, monkeypatch):
    import gymnasium as gym

    from rlkit.experience.datasets import Episode, write_dataset

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    rng = np.random.default_rng(0)
    obs_space, act_space = gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Box(-2, 2, (1,), np.float32)
    episodes = [Episode(rng.uniform(-1, 1, (51, 3)).astype(np.float32), rng.uniform(-2, 2, (50, 1)).astype(np.float32),
                        rng.normal(size=50), np.zeros(50, bool), np.arange(50) == 49) for _ in range(4)]
    write_dataset("test/syncs-v0", episodes, obs_space, act_space)
    data = {"seed": 0, "device": "cpu", "env": {"id": None}, "offline": {"dataset": "test/syncs-v0"},
            "agent": {"name": "bc", "loss": "gaussian", "hidden": [32]},
            "train": {"total_steps": 200, "batch_size": 32, "checkpoint_every": 150}, "log": QUIET}
    counter.updates = 0
    loops.train(build_run_config(data, []), tmp_path / "run")
    _check(counter, 200)
