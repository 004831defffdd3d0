"""rlkit: reinforcement learning toolkit.

The Python API (``rlkit.train``, ``rlkit.load``, ``rlkit.Run``, ``rlkit.Policy``; see :mod:`rlkit.api`)
loads on first use, so ``import rlkit`` stays light: torch, gymnasium and the agents are imported only
when a function needs them.
"""

__version__ = "0.1.0"

_API = ("train", "load", "Run", "Policy")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        from rlkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'rlkit' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
