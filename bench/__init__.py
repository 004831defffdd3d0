"""Side-by-side benchmarks: rlkit vs the reference implementation (Stable-Baselines3, raw ALE), one run.

Why this shape: absolute times on shared machines are noise, so every figure is a **ratio** of rlkit to
the reference measured in the same process, on the same machine, with the same env, hyperparameters,
budget and thread settings, and the two sides **interleaved** (A B A B ...) so that drifting load hits
both. Each suite returns per-repeat values for both sides; the ratio is taken per repeat (seed) and
reported as median with min..max spread.

    rlkit bench SUITE [--seeds N] [--out DIR] [--threads T] [--quick]

Suites: ``dqn-cartpole`` (learning: time and env steps to solve), ``dqn-throughput`` (training env
steps/s after learning starts, CartPole and Pong), ``atari-collect`` (collection path vs raw ALE vector
env), ``replay`` (sampling rate and memory vs SB3's ReplayBuffer), ``sac`` (SAC learning outcome and
update throughput vs SB3's SAC, Pendulum and HalfCheetah), ``sac-her`` (SAC + HER success rate at equal env
steps and training env steps/s vs SB3's SAC + HerReplayBuffer, PointMaze U and Fetch Push), ``sac-her-fetch``
(the same on Fetch Push alone at a longer budget), ``ris-antmaze`` (RIS vs SAC + HER, both rlkit, success on
the Ant U-maze at equal env steps; resumable), ``ris-pointmaze`` (the same comparison on the point mass in
D4RL's medium maze, corner to corner). ``all`` runs every suite but the long ones (``LONG_SUITES``).
Results: ``DIR/<suite>.json``, ``DIR/<suite>.png`` and the suite's section of ``docs/benchmarks.md``.

This package lives in ``bench/`` and installs as ``rlkit.bench`` (``package_dir`` in setup.cfg); nothing in
rlkit's core imports it. Its modules:

- ``registry``: ``SUITES`` (name -> :class:`Suite`: run, notes, long) and ``LONG_SUITES``; ``rlkit bench`` reads it.
- ``runner``: ``run_suite`` and ``report`` (``--report``), what the command does with a suite.
- ``figures``: :class:`Figure`, one compared quantity and its ratio; ``results``: the machine, the markdown
  section and docs update, the PNG, the ``--quick`` label.
- ``timing``: windows, update timers, interleaved calls, the lockstep of two training runs.
- ``rlkit_side`` / ``sb3_side``: each side's timed run; ``sb3_side.require_sb3`` says how to install the
  reference (Stable-Baselines3, the ``bench`` extra: ``pip install 'rlkit-toolkit[bench]'``), which is imported
  inside functions only.
- ``suites/``: one module per suite (``sac_her`` holds ``sac-her`` and ``sac-her-fetch``, ``ris`` both RIS suites).
"""

from rlkit.bench.figures import Figure
from rlkit.bench.registry import LONG_SUITES, SUITES, Suite
from rlkit.bench.results import SMOKE, markdown_section, update_docs
from rlkit.bench.runner import report, run_suite
from rlkit.bench.sb3_side import require_sb3

# Names that tests outside the bench import from here (tests/test_dqn_cartpole_stability.py, tests/test_sac.py).
from rlkit.bench.suites.dqn_cartpole import SOLVED, Outcome
from rlkit.bench.timing import window_rate as _window_rate

__all__ = ["Figure", "LONG_SUITES", "SMOKE", "SOLVED", "SUITES", "Outcome", "Suite", "markdown_section", "report",
           "require_sb3", "run_suite", "update_docs"]
