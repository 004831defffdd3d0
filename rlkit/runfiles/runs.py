"""Run directories: where a run writes, and how to recognise one.

    runs/<name>/
        config.yaml          resolved config: enough to rebuild the run (`rlkit train config.yaml`)
        metrics.jsonl        every record (see rlkit.runfiles.logger)
        tb/                  TensorBoard events
        checkpoints/latest.pt   atomic, for --resume
        checkpoints/best.pt     weights of the best evaluation, for `rlkit eval`
        learning_curve.png
        .rlkit.lock          held (flock) by the process writing the run; released when it exits

A run directory is created only once the run is built (env, agent, replay buffer), so a failed start
leaves nothing behind, and rlkit writes only into a new or empty directory, or into its own run.

:func:`open_run` opens a run (or an ``rlkit export`` directory) to load its policy: ``rlkit eval``,
``rlkit export``, ``rlkit collect``, ``rlkit dataset from-run`` and ``rlkit.load`` all go through it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml

from rlkit.errors import ConfigError, RunDirError

if TYPE_CHECKING:
    from rlkit.config import RunConfig

CONFIG_FILE = "config.yaml"
LATEST = Path("checkpoints") / "latest.pt"
BEST = Path("checkpoints") / "best.pt"
LOCK_FILE = ".rlkit.lock"


def new_run_dir(root: str | Path, name: str | None, config_name: str, agent: str, seed: int) -> Path:
    """A new run directory ``root/<name>`` (default ``<config>-<agent>-s<seed>-<timestamp>``), claimed
    atomically: it is created here, holding only an empty lock file, so two runs started in the same
    second (or with the same ``log.name``) get two directories (``<name>``, ``<name>-2``, ...). A run that
    fails before its first checkpoint removes it again (``rlkit.training.loops._Run``)."""
    if name is None:
        name = f"{config_name}-{agent}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(root) / name
    suffix = 1
    while True:  # never write into someone else's run: mkdir is atomic, the first process to make it owns it
        try:
            path.mkdir(parents=True)
            (path / LOCK_FILE).touch()  # marks the directory as claimed by rlkit (a failed start removes it)
            return path
        except FileExistsError:
            suffix += 1
            path = Path(root) / f"{name}-{suffix}"
        except OSError as exc:
            raise RunDirError(f"cannot create run directory '{path}' (log.root '{root}'): "
                              f"{exc.strerror or exc}") from None


def is_claimed_empty(run_dir: Path) -> bool:
    """``run_dir`` holds nothing but rlkit's lock file: claimed by :func:`new_run_dir`, nothing written yet."""
    lock = Path(run_dir) / LOCK_FILE
    try:
        return ([p.name for p in Path(run_dir).iterdir()] == [LOCK_FILE] and not lock.is_symlink()
                and lock.is_file() and lock.stat().st_size == 0)
    except OSError:
        return False


def check_run_dir(run_dir: str | Path, need_checkpoint: bool = True) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory '{run_dir}' does not exist (runs are under runs/ by default; "
                          "`ls runs` lists them)")
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunDirError(f"'{run_dir}' is not an rlkit run: it has no {CONFIG_FILE}. Pass the directory "
                          "that `rlkit train` created (it prints it at the start)")
    if need_checkpoint and not (run_dir / LATEST).is_file():
        raise RunDirError(f"run '{run_dir}' has no checkpoint yet ({LATEST}); it stopped before its first "
                          "checkpoint, so there is nothing to resume — remove it and start again with `rlkit train`")
    return run_dir


@dataclass(frozen=True)
class OpenedRun:
    """A run directory, or an ``rlkit export`` directory, opened to load its policy.

    ``config``: its ``config.yaml``, built and checked; ``weights``: the file to load the agent from
    (``checkpoints/best.pt`` or ``latest.pt``, or the export's ``model.safetensors``); ``exported``: which
    of the two kinds of directory it is (load with ``load_exported`` or ``load_agent_weights``).
    """

    run_dir: Path
    config: "RunConfig"
    weights: Path
    exported: bool


def open_run(path: str | Path, checkpoint: Literal["best", "latest"] = "best", *,
             exported: bool = True) -> OpenedRun:
    """Open the run directory ``path`` (or, unless ``exported=False``, a directory written by
    ``rlkit export``) to load its policy: check it, read its config, pick the weights to load.

    ``checkpoint``: ``best`` (the best evaluation's weights; the latest when the run has not evaluated
    yet) or ``latest``; an exported directory holds one set of weights. A run without a checkpoint, a
    file or a directory that is not a run is a one-line :class:`~rlkit.errors.RunDirError`.
    """
    from rlkit.config import build_run_config, read_yaml
    from rlkit.runfiles.export import WEIGHTS_FILE, is_exported

    if checkpoint not in ("best", "latest"):
        raise ConfigError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}")
    path = Path(path)
    if path.is_file():
        export = " or a directory written by `rlkit export`" if exported else ""
        raise RunDirError(f"'{path}' is a file; pass the run directory (the one holding {CONFIG_FILE} and "
                          f"checkpoints/){export}")
    is_export = exported and path.is_dir() and is_exported(path) and not (path / LATEST).exists()
    run_dir = check_run_dir(path, need_checkpoint=not is_export)
    config = build_run_config(read_yaml(run_dir / CONFIG_FILE), [], source=str(run_dir / CONFIG_FILE))
    if is_export:
        weights = run_dir / WEIGHTS_FILE
    else:
        weights = run_dir / (BEST if checkpoint == "best" and (run_dir / BEST).exists() else LATEST)
    return OpenedRun(run_dir, config, weights, is_export)


def check_new_run_dir(run_dir: str | Path, flag: str = "--run-dir") -> Path:
    """A path where a new run may be written: absent, or an empty directory, in a writable place.
    ``flag`` names the argument in messages (``rlkit export`` passes ``OUT_DIR``).

    Never a directory holding anything else: rlkit would overwrite or append to the user's files.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{flag} '{run_dir}' is a file, not a directory; pick a new directory")
    if run_dir.is_dir():
        if (run_dir / CONFIG_FILE).exists():
            resume = f" or resume it with `rlkit train --resume {run_dir}`" if flag == "--run-dir" else ""
            raise RunDirError(f"{flag} '{run_dir}' already holds a run; pick a new directory{resume}")
        try:
            others = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_FILE)
        except OSError as exc:
            raise RunDirError(f"{flag} '{run_dir}' cannot be read: {exc.strerror}") from None
        if others:
            raise RunDirError(f"{flag} '{run_dir}' is not empty ({len(others)} entries, e.g. '{others[0]}') and is "
                              "not an rlkit run; rlkit writes only into a new or empty directory — pick another")
        lock = run_dir / LOCK_FILE
        if lock.is_symlink() or (lock.exists() and not lock.is_file()):
            what = "a symlink" if lock.is_symlink() else "not a file"
            raise RunDirError(f"{flag} '{run_dir}': its {LOCK_FILE} is {what}; rlkit writes its lock only as a plain "
                              "file — remove it or pick another directory")
        writable = run_dir
    else:
        writable = run_dir.parent
        while not writable.exists() and writable != writable.parent:
            writable = writable.parent
        if not writable.is_dir():
            raise RunDirError(f"{flag} '{run_dir}' cannot be created: '{writable}' is a file, not a directory")
    if not os.access(writable, os.W_OK | os.X_OK):
        raise RunDirError(f"{flag} '{run_dir}' cannot be written: no write permission in '{writable}'")
    return run_dir


def create_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create run directory '{run_dir}': {exc.strerror or exc}") from None


class RunLock:
    """An exclusive ``flock`` on ``RUN_DIR/.rlkit.lock`` while a process writes the run.

    The kernel releases it when the process exits, however it exits (even SIGKILL), so a lock file
    left behind by a dead process is stale by construction and never blocks anyone.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        try:  # never through a symlink: the pid written below would overwrite whatever it points at
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RunDirError(f"cannot lock run '{self.path.parent}': its lock file {LOCK_FILE} is a symlink; "
                                  "rlkit writes its lock only as a plain file — remove the link") from None
            raise RunDirError(f"cannot lock run '{self.path.parent}': {exc.strerror or exc}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunDirError(f"cannot lock run '{self.path.parent}': {LOCK_FILE} is not a plain file; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunDirError(f"cannot lock run '{self.path.parent}': {exc.strerror or exc}") from None
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise RunDirError(f"run '{self.path.parent}' is in use by another rlkit process{by}; wait for it to "
                              "finish, or stop it (Ctrl-C checkpoints) and then resume") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def run_label(run_dir: Path) -> str:
    """A label shared by runs that differ only in seed: '<env id> <agent> [<config name>]'."""
    try:
        cfg = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
        name = (run_dir / "source.txt").read_text().strip() if (run_dir / "source.txt").exists() else ""
        return f"{cfg['env']['id']} {cfg['agent']['name']}" + (f" [{name}]" if name else "")
    except Exception:
        return run_dir.name
