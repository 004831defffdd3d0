"""`rlkit bench --help` names every suite the registry runs (the list is written out so that --help needs no SB3)."""

import subprocess
import sys


def test_bench_help_lists_every_registered_suite():
    from rlkit.bench.registry import LONG_SUITES, SUITES

    text = " ".join(subprocess.run([sys.executable, "-m", "rlkit", "bench", "--help"], capture_output=True, text=True,
                                   check=True).stdout.split()).replace("- ", "-")  # argparse wraps at hyphens
    missing = [name for name in SUITES if f"{name}," not in text and f"{name})" not in text]
    assert not missing, f"rlkit bench --help does not name {missing}"
    words = {3: "three", 4: "four", 5: "five"}
    assert f"the last {words.get(len(LONG_SUITES), len(LONG_SUITES))}" in text
