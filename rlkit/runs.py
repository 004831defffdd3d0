"""Run directories: where a run writes, and how to recognise one.

    runs/<name>/
        config.yaml          resolved config: enough to rebuild the run (`rlkit train config.yaml`)
        metrics.jsonl        every record (see rlkit.logging)
        tb/                  TensorBoard events
        checkpoints/latest.pt   atomic, for --resume
        checkpoints/best.pt     weights of the best evaluation, for `rlkit eval`
        learning_curve.png
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

CONFIG_FILE = "config.yaml"
LATEST = Path("checkpoints") / "latest.pt"
BEST = Path("checkpoints") / "best.pt"


class RunDirError(ValueError):
    """A directory that should be a run is not one."""


def new_run_dir(root: str | Path, name: str | None, config_name: str, agent: str, seed: int) -> Path:
    if name is None:
        name = f"{config_name}-{agent}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(root) / name
    suffix = 1
    while path.exists():  # never write into someone else's run
        suffix += 1
        path = Path(root) / f"{name}-{suffix}"
    return path


def check_run_dir(run_dir: str | Path, need_checkpoint: bool = True) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory '{run_dir}' does not exist (runs are under runs/ by default; "
                          "`ls runs` lists them)")
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunDirError(f"'{run_dir}' is not an rlkit run: it has no {CONFIG_FILE}. Pass the directory "
                          "that `rlkit train` created (it prints it at the start)")
    if need_checkpoint and not (run_dir / LATEST).is_file():
        raise RunDirError(f"run '{run_dir}' has no checkpoint yet ({LATEST}); it was stopped before its first "
                          "checkpoint — start it again with `rlkit train`")
    return run_dir


def run_label(run_dir: Path) -> str:
    """A label shared by runs that differ only in seed: '<env id> <agent> [<config name>]'."""
    try:
        cfg = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
        name = (run_dir / "source.txt").read_text().strip() if (run_dir / "source.txt").exists() else ""
        return f"{cfg['env']['id']} {cfg['agent']['name']}" + (f" [{name}]" if name else "")
    except Exception:
        return run_dir.name
