"""The suites ``rlkit bench`` knows, by name: how to run each, the text under its table in docs/benchmarks.md, and
whether ``rlkit bench all`` leaves it out. Adding a suite: its module under ``bench/suites/`` and one line here."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rlkit.bench.figures import Figure
from rlkit.bench.suites import atari_collect, dqn_cartpole, dqn_loop, dqn_throughput, dt, replay, ris, sac, sac_her

SuiteRun = Callable[[list[int], Path, bool, int], "list[Figure] | tuple[list[Figure], dict[str, Any]]"]
"""``run(seeds, out, quick, threads)``: the figures, or (figures, status) for a suite that can end unfinished
(status: ``complete``, and ``status`` / ``failed`` when it is not)."""


@dataclass(frozen=True)
class Suite:
    run: SuiteRun
    notes: str
    """How the suite measures, printed under its table (docs/benchmarks.md)."""
    long: bool = False
    """An hour or more of training on a CPU, or a reference side in its own venv (``dt``: d3rlpy's): left out of
    ``rlkit bench all`` (run on its own; the RIS suites resume their runs when repeated, ``sac-her-fetch`` starts
    over)."""


SUITES: dict[str, Suite] = {  # in the order `rlkit bench all` runs them
    "dqn-cartpole": Suite(dqn_cartpole.suite_dqn_cartpole, dqn_cartpole.NOTES),
    "dqn-throughput": Suite(dqn_throughput.suite_dqn_throughput, dqn_throughput.NOTES),
    "dqn-loop": Suite(dqn_loop.suite_dqn_loop, dqn_loop.NOTES),
    "atari-collect": Suite(atari_collect.suite_atari_collect, atari_collect.NOTES),
    "replay": Suite(replay.suite_replay, replay.NOTES),
    "sac": Suite(sac.suite_sac, sac.NOTES),
    "sac-her": Suite(sac_her.suite_sac_her, sac_her.NOTES),
    "sac-her-fetch": Suite(sac_her.suite_sac_her_fetch, sac_her.FETCH_NOTES, long=True),
    "ris-antmaze": Suite(functools.partial(ris.suite_ris, ris.RIS_TASKS["ris-antmaze"]), ris.ANTMAZE_NOTES, long=True),
    "ris-pointmaze": Suite(functools.partial(ris.suite_ris, ris.RIS_TASKS["ris-pointmaze"]), ris.POINTMAZE_NOTES,
                           long=True),
    "dt": Suite(dt.suite_dt, dt.NOTES, long=True),  # needs d3rlpy's own venv (RLKIT_D3RLPY_PYTHON; else exit 2)
}
LONG_SUITES = frozenset(name for name, suite in SUITES.items() if suite.long)
"""Left out of ``rlkit bench all`` (see :attr:`Suite.long`)."""
