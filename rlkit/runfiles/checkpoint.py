"""Atomic checkpoints that load without unpickling code.

Write: ``torch.save`` to a temporary file in the same directory, fsync, then ``os.replace`` —
a crash (even SIGKILL) or a full disk mid-write leaves the previous checkpoint intact.
Read: ``torch.load(weights_only=True)``, which only rebuilds tensors and plain Python data, so a
checkpoint from elsewhere cannot run code on load. Everything we store is therefore tensors,
numbers, strings, lists and dicts (RNG states are JSON strings).
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from rlkit.errors import CheckpointError, DiskFullError, TrainingDiverged


FORMAT_VERSION = 1
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_cause(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT ``OSError`` behind ``exc`` (torch buries it under a RuntimeError), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full_message(path: Path | None, exc: BaseException | None = None) -> str:
    if isinstance(exc, DiskFullError):
        return str(exc.strerror)
    free = ""
    try:
        free = f", {shutil.disk_usage(Path(path).parent if path else '.').free / 2**20:.0f} MiB free"
    except OSError:
        pass
    reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else "No space left on device"
    return f"the disk is full ({reason}{free})" + (f" while writing '{path}'" if path else "")


def _nearly_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < 64 * 2**20
    except OSError:
        return False


def nonfinite(state: Any, prefix: str = "") -> str | None:
    """The name of the first floating tensor in a state dict holding NaN or inf, else None."""
    if isinstance(state, torch.Tensor):
        return prefix if state.is_floating_point() and not bool(torch.isfinite(state).all()) else None
    if isinstance(state, dict):
        for key, value in state.items():
            found = nonfinite(value, f"{prefix}.{key}" if prefix else str(key))
            if found is not None:
                return found
    return None


class _WriteErrorKeeper:
    """A file for ``torch.save`` that keeps the exception its ``write`` raised. torch writes through this Python
    callback and turns anything raised in it into a RuntimeError ("unexpected pos N vs M"): the full disk's
    ENOSPC, and also a signal's exception (Ctrl-C's KeyboardInterrupt) landing during the write, which must
    stay itself so that the interrupt is handled as one."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        if self.error is not None:  # torch writes its end-of-file record after a failure (and its writer's
            return len(data)        # destructor may): nothing may raise there, or C++ calls std::terminate
        try:
            return self.file.write(data)
        except BaseException as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically. A full disk raises :class:`DiskFullError` (one clear line) and
    leaves the previous checkpoint at ``path`` untouched. Non-finite agent weights (``state["agent"]``)
    are never written: :class:`TrainingDiverged`, and the previous checkpoint stays."""
    path = Path(path)
    broken = nonfinite(state.get("agent"))
    if broken is not None:
        raise TrainingDiverged(f"agent state '{broken}' is not finite")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            writer = _WriteErrorKeeper(f)
            try:
                torch.save({"format": FORMAT_VERSION, **state}, writer)
            except RuntimeError:
                if writer.error is not None:  # the real cause, not torch's "unexpected pos" that replaced it
                    raise writer.error.with_traceback(None) from None
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        cause = disk_full_cause(exc)
        if cause is None and isinstance(exc, RuntimeError) and "unexpected pos" in str(exc) and _nearly_full(path):
            cause = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a short write whose errno torch lost
        if cause is not None:
            raise DiskFullError(cause.errno, disk_full_message(path, cause)
                                + "; the previous checkpoint is intact") from None
        raise
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu",
                    required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load an rlkit checkpoint; anything else (garbage, a truncated file, a foreign pickle, a dict
    without the ``required`` entries) is a one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if zipfile.is_zipfile(path):  # a real torch file, refused by the weights-only unpickler
            raise CheckpointError(f"'{path}' is not an rlkit checkpoint: it holds Python objects other than tensors "
                                  "and plain data, which cannot be loaded safely") from None
        raise CheckpointError(f"'{path}' is not an rlkit checkpoint (it is not a torch checkpoint file)") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        reason = "truncated or corrupt" if path.stat().st_size else "empty"
        raise CheckpointError(f"'{path}' is not an rlkit checkpoint ({reason}: "
                              f"{str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__})"
                              ) from None
    except Exception as exc:  # anything else torch.load can raise on foreign bytes
        raise CheckpointError(f"'{path}' is not an rlkit checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"'{path}' is not an rlkit checkpoint (format {FORMAT_VERSION})")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"'{path}' is not an rlkit checkpoint: it has no {', '.join(repr(k) for k in missing)}")
    broken = nonfinite(state.get("agent"))
    if broken is not None:  # rlkit never writes one: a damaged or foreign file, not a "last good" state
        raise CheckpointError(f"'{path}' holds non-finite weights ('{broken}' has NaN or inf): it cannot be resumed, "
                              "evaluated or exported; use another checkpoint (--checkpoint best|latest) or run")
    return state
