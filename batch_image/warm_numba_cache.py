"""Compile the detector's numba kernels into ``NUMBA_CACHE_DIR`` (run while building the image).

The detectors' kernels (``science/nomads_kernels.py``, ``science/paired_puncta_kernels*``)
are compiled with ``cache=True``. In the Batch image the package
directory belongs to root, so without a baked cache every job process would JIT-compile them
again (~8 s of CPU). ``batch_image/Dockerfile`` runs this script in the final stage, against the
installed package, so the cache index matches the files jobs import (same path, same source
stamp, same Python and numba). It runs both detectors (``paired-puncta``, the default, and
NOMADS' ``detect()`` and its blockwise path) on small synthetic uint8 and uint16 volumes with
synapses, which compiles every kernel signature those paths use.

``--check`` runs the same work and fails unless every kernel came from the cache (no
compilation): the build runs it right after warming, and it is how the cache is checked
without Docker (see docs/aws.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _work() -> None:
    from synapse_pipelines.blockwise import blockwise_detect
    from synapse_pipelines.science import synthetic
    from synapse_pipelines.science.detection import detect
    from synapse_pipelines.science.paired_puncta import detect_paired_puncta

    experiment = synthetic.make_experiment(
        (12, 64, 64),
        seed=1,
        profile="sparse",
        channels=(synthetic.PRESYNAPTIC, synthetic.POSTSYNAPTIC),
    )
    pre = experiment.channels[experiment.presynaptic]
    post = experiment.channels[experiment.postsynaptic]
    for dtype in (np.uint8, np.uint16):  # the two input types detect() accepts
        a, b = pre.astype(dtype), post.astype(dtype)
        if dtype == np.uint16:  # 12-bit camera range: the int64 numerator kernels
            a, b = a * np.uint16(16), b * np.uint16(16)
        pairs = detect_paired_puncta(a, b, voxel_size=experiment.voxel_size)
        if pairs.n_synapses == 0:
            raise SystemExit("warm-up volume gave PAIRS no synapse: not exercised")
        single = detect(a, b)
        blocks = blockwise_detect(a, b, block_shape=(6, 32, 32))
        if single.n_synapses == 0 or blocks.n_synapses != single.n_synapses:
            raise SystemExit(f"warm-up volume found {single.n_synapses} synapses: not exercised")


def _kernel_stats() -> tuple[int, int, set[str]]:
    """Cache hits, misses (= compilations) and cache folders of every compiled kernel the
    package has loaded (whichever module defines it)."""
    from numba.core.registry import CPUDispatcher

    hits = misses = 0
    paths: set[str] = set()
    for name, module in list(sys.modules.items()):
        if not name.startswith("synapse_pipelines."):
            continue
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher):
                hits += sum(value.stats.cache_hits.values())
                misses += sum(value.stats.cache_misses.values())
                paths.add(str(value.stats.cache_path))
    return hits, misses, paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if anything was compiled")
    args = parser.parse_args(argv)
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    if not cache_dir:
        print("warm_numba_cache: set NUMBA_CACHE_DIR to the cache folder", file=sys.stderr)
        return 2
    start = time.perf_counter()
    _work()
    hits, misses, paths = _kernel_stats()
    files = sum(len(f) for _, _, f in os.walk(cache_dir))
    print(
        f"numba cache {cache_dir}: {hits} kernels loaded, {misses} compiled, {files} files, "
        f"{time.perf_counter() - start:.1f} s; used {sorted(paths)}"
    )
    # numba silently picks another folder (or none) when NUMBA_CACHE_DIR is not writable
    outside = [p for p in paths if not p.startswith(os.path.abspath(cache_dir))]
    if args.check and (misses or not hits or outside):
        print(
            "warm_numba_cache: the baked cache was not used (kernels compiled, or cached "
            f"elsewhere: {outside}); NUMBA_CACHE_DIR must be writable by this user",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
