"""``python -m rlkit`` is the ``rlkit`` command; ``torchrun --nproc_per_node=N -m rlkit train CONFIG`` trains
data-parallel (rlkit.training.distributed)."""

import sys

from rlkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
