"""The error types of rlkit, in one module that imports nothing from rlkit (so every module can use
them without import cycles).

User mistakes are typed errors whose message says what went wrong, where, and how to fix it; the
CLI prints such an error as one line and exits 2 (``rlkit.cli.main``). A traceback means a bug.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A user mistake in a config file, an override or a command-line argument."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or not an rlkit checkpoint."""


class DiskFullError(OSError):
    """The disk filled up while rlkit wrote a file; what was there before is intact."""


class RunDirError(ValueError):
    """A directory that should be a run is not one."""


class DatasetError(ValueError):
    """A dataset is missing, corrupt, truncated, or does not fit the run (spaces, keys, dtypes)."""


class TrainingDiverged(RuntimeError):
    """A loss or a weight went non-finite; the run stopped without checkpointing the broken state."""


USER_ERRORS = (ConfigError, CheckpointError, RunDirError, DatasetError)
"""What the CLI reports as one line with exit status 2 (a full disk, DiskFullError, gets its own hint)."""
