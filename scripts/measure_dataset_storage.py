"""Bytes per step and read rates of rlkit's datasets under each HDF5 filter (docs/datasets.md, "Storage").

    MINARI_DATASETS_PATH=/tmp/storage python scripts/measure_dataset_storage.py bench/pong-random-v0 ...

Each dataset named (already written, e.g. by `rlkit collect`) is rewritten under a temporary root with each
filter in FILTERS, then per filter: bytes per step of ``main_data.hdf5`` and of its observations alone, the
write time, the rate of
``load_dataset`` (disk to checked numpy: what an offline run reads before training) and of
``minari.load_dataset`` iterating every episode, best of ``--repeats``. For the default filter, also the
Decision Transformer's read rate: ``SequenceBuffer.from_episodes`` and ``sample(64)`` windows of 20 steps.
For frame stacks ``[S, H, W]``, also the size of the same frames stored once (what a single-frame layout
would take). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FILTERS = {
    "none": {},
    "lzf": {"compression": "lzf"},
    "gzip 1": {"compression": "gzip", "compression_opts": 1},
    "gzip 1 + shuffle (default)": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
    "gzip 4 + shuffle": {"compression": "gzip", "compression_opts": 4, "shuffle": True},
}


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def single_frame_bytes(episodes, root: Path) -> float:
    """Bytes of the episodes' frames stored once each (``[T + S, H, W]`` per episode), gzip 1, rows chunked."""
    import h5py

    from rlkit.experience.datasets import CHUNK_BYTES

    path = root / "single.h5"
    with h5py.File(path, "w") as f:
        for i, ep in enumerate(episodes):
            obs = ep.observations
            frames = np.concatenate([obs[0, :-1], obs[:, -1]])
            rows = max(1, min(len(frames), CHUNK_BYTES // frames[0].nbytes))
            f.create_dataset(f"e{i}", data=frames, chunks=(rows, *frames.shape[1:]), compression="gzip",
                             compression_opts=1)
    return path.stat().st_size


def _arrays(node):
    """The HDF5 datasets under ``node`` (itself, or a Dict observation's group)."""
    import h5py

    return [node] if isinstance(node, h5py.Dataset) else [a for key in node for a in _arrays(node[key])]


def measure(dataset_id: str, repeats: int) -> list[str]:
    import h5py
    import minari

    import rlkit.experience.datasets as datasets
    from rlkit.experience.sequences import SequenceBuffer

    source = datasets.load_dataset(dataset_id)
    steps = source.total_steps
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        outer = os.environ.get("MINARI_DATASETS_PATH")
        os.environ["MINARI_DATASETS_PATH"] = tmp
        try:
            for name, filters in FILTERS.items():
                datasets.COMPRESSION = filters
                copy = f"measure/{name.split()[0]}-{len(rows)}-v0"
                write = best(lambda: datasets.write_dataset(copy, source.episodes, source.observation_space,
                                                            source.action_space, env_id=source.env_id,
                                                            overwrite=True), 1)
                h5 = datasets.dataset_path(copy) / "data" / "main_data.hdf5"
                size = h5.stat().st_size
                with h5py.File(h5, "r") as f:
                    obs = sum(node.id.get_storage_size() for i in range(len(source.episodes))
                              for node in _arrays(f[f"episode_{i}/observations"]))
                load = best(lambda: datasets.load_dataset(copy), repeats)
                theirs = best(lambda: list(minari.load_dataset(copy).iterate_episodes()), repeats)
                extra = ""
                if "default" in name:
                    loaded = datasets.load_dataset(copy)
                    build = best(lambda: SequenceBuffer.from_episodes(loaded.episodes, loaded.observation_space,
                                                                      loaded.action_space, length=20), 1)
                    buffer = SequenceBuffer.from_episodes(loaded.episodes, loaded.observation_space,
                                                          loaded.action_space, length=20)
                    sample = best(lambda: [buffer.sample(64) for _ in range(20)], repeats) / 20
                    extra = f"DT store {steps / build:,.0f} steps/s, sample(64 x 20) {64 / sample:,.0f} windows/s"
                rows.append(f"| {dataset_id} | {name} | {size / steps:,.0f} | {obs / steps:,.0f} | {write:.2f} | "
                            f"{steps / load:,.0f} | "
                            f"{steps / theirs:,.0f} | {extra} |")
            shape = getattr(source.observation_space, "shape", None) or ()
            if len(shape) == 3 and source.observation_space.dtype == np.uint8:
                single = single_frame_bytes(source.episodes, Path(tmp))
                rows.append(f"| {dataset_id} | frames stored once, gzip 1 (not rlkit's layout) | | "
                            f"{single / steps:,.0f} | | | | |")
        finally:
            datasets.COMPRESSION = FILTERS["gzip 1 + shuffle (default)"]
            if outer is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = outer
    return rows


def against_baseline(dataset_id: str, baseline: Path, repeats: int) -> list[str]:
    """Before/after: the dataset written and loaded by ``baseline`` (an older ``rlkit/experience/datasets.py``)
    vs by this one, the loads interleaved over ``repeats`` rounds (best of each)."""
    import importlib.util

    import minari

    import rlkit.experience.datasets as datasets

    spec = importlib.util.spec_from_file_location("baseline_datasets", baseline)
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old  # dataclasses look their module up there
    spec.loader.exec_module(old)
    source = datasets.load_dataset(dataset_id)
    steps = source.total_steps
    with tempfile.TemporaryDirectory() as tmp:
        outer = os.environ.get("MINARI_DATASETS_PATH")
        os.environ["MINARI_DATASETS_PATH"] = tmp
        try:
            args = (source.episodes, source.observation_space, source.action_space)
            old.write_dataset("measure/before-v0", *args, env_id=source.env_id)
            datasets.write_dataset("measure/after-v0", *args, env_id=source.env_id)
            runs = {"before: written and loaded by the baseline": lambda: old.load_dataset("measure/before-v0"),
                    "after: written and loaded by this rlkit": lambda: datasets.load_dataset("measure/after-v0"),
                    "minari.load_dataset, before": lambda: list(minari.load_dataset("measure/before-v0")
                                                               .iterate_episodes()),
                    "minari.load_dataset, after": lambda: list(minari.load_dataset("measure/after-v0")
                                                              .iterate_episodes())}
            times = {name: [] for name in runs}
            for _ in range(repeats):
                for name, run in runs.items():
                    times[name].append(best(run, 1))
            sizes = {name: (Path(tmp) / "measure" / f"{'before' if 'before' in name else 'after'}-v0" / "data" /
                            "main_data.hdf5").stat().st_size for name in runs}
        finally:
            if outer is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = outer
    return [f"| {dataset_id} | {name} | {sizes[name] / steps:,.0f} | {steps / min(t):,.0f} | "
            f"{steps / float(np.median(t)):,.0f} |" for name, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", metavar="ID", help="datasets under MINARI_DATASETS_PATH")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, metavar="DATASETS_PY",
                        help="an older rlkit/experience/datasets.py (git show REV:rlkit/experience/datasets.py > F): "
                             "compare its writer and loader with this one's instead of the filters")
    args = parser.parse_args()
    if args.baseline is not None:
        print("| dataset | what | file bytes/step | steps/s (best) | steps/s (median) |")
        print("|---|---|---:|---:|---:|")
        for dataset_id in args.datasets:
            for row in against_baseline(dataset_id, args.baseline, args.repeats):
                print(row, flush=True)
        return
    print("| dataset | filter | file bytes/step | observations bytes/step | write s | load_dataset steps/s | "
          "minari steps/s | DT read |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for dataset_id in args.datasets:
        for row in measure(dataset_id, args.repeats):
            print(row, flush=True)


if __name__ == "__main__":
    main()
