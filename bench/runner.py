"""The two things ``rlkit bench SUITE`` does: run a suite (both sides in this process, the same torch threads) and
write its JSON, PNG and docs section; or, with ``--report``, re-render those from the saved JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from rlkit.bench.figures import Figure
from rlkit.bench.registry import SUITES
from rlkit.bench.results import labelled, machine_info, markdown_section, plot_ratios, update_docs
from rlkit.bench.sb3_side import require_sb3
from rlkit.errors import ConfigError


def run_suite(name: str, seeds: list[int], out: Path, quick: bool = False, threads: int = 1,
              docs: Path | None = None) -> dict[str, Any]:
    require_sb3()  # before anything is printed or written: the reference side, and the version in every result
    with labelled(quick):
        return _run_suite(name, seeds, out, quick, threads, docs)


def _run_suite(name: str, seeds: list[int], out: Path, quick: bool, threads: int, docs: Path | None) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)  # the same for both sides: they run in this process
    print(f"[{name}] seeds {seeds}, torch threads {threads} for rlkit and the reference, out {out}", flush=True)
    started = time.perf_counter()
    figures = SUITES[name].run(seeds, out, quick, threads)
    status: dict[str, Any] = {}
    if isinstance(figures, tuple):  # a suite that can end unfinished says how (e.g. ris-antmaze)
        figures, status = figures
    result = {"suite": name, "seeds": seeds, "quick": quick, "machine": machine_info(threads), **status,
              "command": f"rlkit bench {name} --seeds {len(seeds)} --threads {threads}" + (" --quick" if quick else ""),
              "duration_s": round(time.perf_counter() - started, 1), "figures": [f.summary() for f in figures],
              "notes": SUITES[name].notes}
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    plot_ratios(result, out / f"{name}.png")
    print(markdown_section(result), flush=True)
    if docs is not None and not quick and not status.get("failed"):
        update_docs(docs, result)
    return result


def report(name: str, out: Path, docs: Path | None) -> dict[str, Any]:
    """Re-render a suite's PNG and docs section from its saved JSON (raw values), without running it."""
    path = Path(out) / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"no results at '{path}': run `rlkit bench {name}` first")
    result = json.loads(path.read_text())
    with labelled(result.get("quick", False)):
        return _report(name, out, docs, path, result)


def _report(name: str, out: Path, docs: Path | None, path: Path, result: dict[str, Any]) -> dict[str, Any]:
    result["figures"] = [Figure.from_summary(f).summary() for f in result["figures"]]
    result["notes"] = SUITES[name].notes
    path.write_text(json.dumps(result, indent=1))
    plot_ratios(result, Path(out) / f"{name}.png")
    print(markdown_section(result), flush=True)
    if docs is not None and not result["quick"] and not result.get("failed"):
        update_docs(docs, result)
    return result

