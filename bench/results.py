"""How a suite's result is written: the machine it ran on, its markdown section (the one in docs/benchmarks.md,
replaced between its markers), its PNG of ratios, and the ``--quick`` label on every printed line."""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from rlkit.bench.figures import median


SMOKE = "SMOKE RUN (--quick: tiny budgets, checks the harness, measures nothing)"


class _LinePrefix(io.TextIOBase):
    """A stdout that starts every line with a label (``--quick`` output must never read as results)."""

    def __init__(self, stream: Any, label: str) -> None:
        self.stream, self.label, self.at_line_start = stream, label, True

    def write(self, text: str) -> int:
        pieces = []
        for piece in text.splitlines(keepends=True):
            if self.at_line_start:
                pieces.append(self.label)
            pieces.append(piece)
            self.at_line_start = piece.endswith("\n")
        self.stream.write("".join(pieces))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def labelled(quick: bool):
    return contextlib.redirect_stdout(_LinePrefix(sys.stdout, f"[{SMOKE}] ")) if quick else contextlib.nullcontext()


def machine_info(threads: int) -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import stable_baselines3

    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "sb3": stable_baselines3.__version__, "torch_threads": threads,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M")}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("s", "GB"):
        return f"{value:.1f}" if unit == "s" and value >= 10 else f"{value:.2f}"
    return f"{value:,.0f}"


def markdown_section(result: dict[str, Any]) -> str:
    m = result["machine"]
    title = f"### `{result['suite']}`" + (f" — {SMOKE}" if result.get("quick") else "")
    lines = [title, "",
             f"Command: `{result['command']}` — {m['date']}, {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
             f"({m['torch_threads']} thread(s) for both sides), SB3 {m['sb3']}, Python {m['python']}, {m['device']}.",
             "", result["notes"], "",
             *([f"**Not complete — {result['status']}.**", ""] if result.get("status") else []),
             "| figure | rlkit (median) | reference (median) | ratio rlkit/ref: median [min..max] | goal | met |",
             "|---|---|---|---|---|---|"]
    for f in result["figures"]:
        ratio = (f"{f['ratio_median']:.2f} [{f['ratio_min']:.2f}..{f['ratio_max']:.2f}]"
                 + ("" if f.get("paired", True) else " †") if "ratio_median" in f else "—")
        goal, met = f["goal"] or "", {True: "yes", False: "**miss**"}.get(f.get("goal_met"), "")
        if f.get("target"):  # an absolute requirement on every seed, shown for both sides
            goal = f"every seed {f['target']}"
            met = ({True: "yes", False: "**miss**"}[f["target_met_rlkit"]]
                   + f" (reference: {'yes' if f['target_met_reference'] else 'no'})")
        if result.get("quick") and goal:  # tiny budgets measure nothing: no verdict on a goal
            met = "not judged (smoke run)"
        lines.append(f"| {f['name']} ({f['unit']}) | {_fmt(median(f['rlkit']), f['unit'])} | "
                     f"{_fmt(median(f['reference']), f['unit'])} | {ratio} | {goal} | {met} |")
    if any(not f.get("paired", True) for f in result["figures"]):
        lines += ["", "† unpaired (learning outcomes; seeds do not correspond across libraries): "
                      "median(rlkit) / median(reference), spread = extreme ratios."]
    per_seed = [f for f in result["figures"] if len(f["rlkit"]) > 1]
    if per_seed:
        lines += ["", "Per seed (rlkit / reference): " + "; ".join(
            f"{f['name']}: " + ", ".join(f"{_fmt(a, f['unit'])}/{_fmt(b, f['unit'])}" for a, b in zip(f["rlkit"], f["reference"]))
            for f in per_seed)]
    return "\n".join(lines) + "\n"


def update_docs(path: Path, result: dict[str, Any]) -> None:
    """Replace this suite's section between its markers in docs/benchmarks.md (append if absent)."""
    start, end = f"<!-- bench:{result['suite']}:start -->", f"<!-- bench:{result['suite']}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{markdown_section(result)}{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def plot_ratios(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figures = [f for f in result["figures"] if "ratio_median" in f]
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.5 * max(len(figures), 1)))
    for i, f in enumerate(figures):
        ax.plot([f["ratio_min"], f["ratio_max"]], [i, i], color="0.6", linewidth=3)
        ax.plot(f["ratio_median"], i, "o", color="tab:blue" if f.get("goal_met", True) else "tab:red")
        if f["goal"]:
            ax.plot(float(f["goal"].split()[1]), i, "|", color="tab:green", markersize=14)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(figures)), [f["name"] for f in figures], fontsize=7)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labelled ticks at powers of 2 only
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("ratio rlkit / reference (green: goal)")
    ax.set_title(f"rlkit bench {result['suite']}" + (f"\n{SMOKE}" if result.get("quick") else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
