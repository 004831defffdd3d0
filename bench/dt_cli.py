"""``python -m rlkit.bench.dt_cli``: ``rlkit bench dt`` with the race's settings as flags (the dataset, d3rlpy's
venv, reference returns, the budget); each flag sets the environment variable ``rlkit bench dt`` reads
(bench/suites/dt.py lists them), then the suite runs as ``rlkit bench dt`` runs it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rlkit.bench.suites.dt import PYTHON_ENV
from rlkit.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    """``python -m rlkit.bench.dt_cli``: the race with its settings as flags (then as ``rlkit bench dt``)."""
    p = argparse.ArgumentParser(prog="python -m rlkit.bench.dt_cli", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", help="dataset id (under MINARI_DATASETS_PATH) or directory")
    p.add_argument("--d3rlpy-python", help=f"the Python of d3rlpy's venv (else ${PYTHON_ENV})")
    p.add_argument("--ref-returns", nargs=2, type=float, metavar=("MIN", "MAX"), help="returns scoring 0 and 100")
    p.add_argument("--target-return", type=float)
    for key in ("steps", "chunk", "eval-every", "eval-episodes"):
        p.add_argument(f"--{key}", type=int)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench_out")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--docs", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"))
    p.add_argument("--no-docs", action="store_true")
    ns = p.parse_args(argv)
    values = {"RLKIT_BENCH_DT_DATASET": ns.dataset, PYTHON_ENV: ns.d3rlpy_python,
              "RLKIT_BENCH_DT_REF_RETURNS": ",".join(map(repr, ns.ref_returns)) if ns.ref_returns else None,
              "RLKIT_BENCH_DT_TARGET_RETURN": None if ns.target_return is None else repr(ns.target_return),
              **{f"RLKIT_BENCH_DT_{k.upper()}": None if getattr(ns, k) is None else str(getattr(ns, k))
                 for k in ("steps", "chunk", "eval_every", "eval_episodes")}}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    from rlkit.bench.runner import run_suite

    try:
        run_suite("dt", list(range(ns.seeds)), Path(ns.out), quick=ns.quick, threads=ns.threads,
                  docs=None if ns.no_docs else Path(ns.docs))
    except ConfigError as exc:
        print(f"rlkit: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
