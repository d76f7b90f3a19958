"""The Detect stage blockwise on one machine vs the single job, on the same volume.

Prints, for the same synthetic two-channel uint8 volume (default 64 x 2048 x 2048 =
268 Mvoxel, "256 Mvoxel"), the time from channels on disk to a finished results folder:

- single job (what the Detect job does after its BOSS pull): ``detection.detect()`` on the
  whole volume in memory, ``features.synapse_table()``, ``outputs.write_results()``
  (ids and mask OME-TIFFs, synapses.csv, manifest) — wall time and peak RSS;
- blockwise (what the Distributed Map flow does): ``run_blockwise()`` reading the channels
  block by block from ``.npy`` files, per-block outputs in a work folder on disk, the
  finalize pass writing ids and mask as Zarr chunks and the table partials, the merge
  reducing the table, then ``outputs.write_table_results()`` — wall time and peak RSS;
- the same blockwise run on a volume 4x smaller, and on the same volume with blocks half as
  large: peak RSS must follow the block, not the volume (per-block peaks also vary with the
  block's content by about +-100 MiB, so compare the two as orders of magnitude).

Each measurement runs in its own subprocess (peak RSS = ``VmHWM`` of that process,
numba kernels warmed up on a small volume first, so no JIT time is counted). The ids are
compared voxel for voxel and the synapse tables value for value.

    python benchmarks/bench_blockwise.py                       # 256 Mvoxel, blocks 64x512x512
    python benchmarks/bench_blockwise.py --shape 32,1024,1024  # quick

The machine is shared: run it when nothing else is heavy, and look at the ratio as much
as at the absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_rss_mib() -> float:
    """Peak resident memory of this process (VmHWM). ``ru_maxrss`` would be wrong here: on
    Linux it survives exec, so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def _warm_up() -> None:
    from synapse_pipelines.science import detection, synthetic

    exp = synthetic.make_experiment(
        (8, 64, 64), seed=0, channels=[synthetic.PRESYNAPTIC, synthetic.POSTSYNAPTIC]
    )
    detection.detect(exp.channels[synthetic.PRESYNAPTIC], exp.channels[synthetic.POSTSYNAPTIC])


VOXEL_SIZE = (40.0, 4.0, 4.0)


def child_single(folder: Path) -> dict:
    from synapse_pipelines.io import outputs
    from synapse_pipelines.science import detection, features, synthetic

    _warm_up()
    channels = {
        synthetic.PRESYNAPTIC: np.load(folder / "pre.npy"),
        synthetic.POSTSYNAPTIC: np.load(folder / "post.npy"),
    }
    out = folder / "results_single"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = detection.detect(channels[synthetic.PRESYNAPTIC], channels[synthetic.POSTSYNAPTIC])
    detect_seconds = time.perf_counter() - start
    table = features.synapse_table(result.labels, channels, voxel_size=VOXEL_SIZE)
    outputs.write_results(
        out, mask=result.mask, labels=result.labels, table=table, voxel_size=VOXEL_SIZE
    )
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "detect_seconds": detect_seconds,
        "peak_rss_mib": _peak_rss_mib(),
        "n_synapses": result.n_synapses,
        "timings": result.timings,
    }


def child_blockwise(folder: Path, block: tuple[int, int, int], out_name: str) -> dict:
    from synapse_pipelines.blockwise.finalize import TableSpec
    from synapse_pipelines.blockwise.nomads import BYTES_PER_VOXEL, NomadsKernel
    from synapse_pipelines.blockwise.plan import plan_request
    from synapse_pipelines.blockwise.runner import run_blockwise
    from synapse_pipelines.blockwise.sources import open_file_source
    from synapse_pipelines.blockwise.store import LocalStore
    from synapse_pipelines.core.geometry import Box
    from synapse_pipelines.io import outputs
    from synapse_pipelines.science import synthetic

    _warm_up()
    source = open_file_source(folder / "pre.npy", folder / "post.npy")
    kernel = NomadsKernel()
    plan = plan_request(
        source.box, block_shape=block, halo=kernel.halo, bytes_per_voxel=BYTES_PER_VOXEL
    )
    work = folder / f"work-{out_name}"
    out = folder / out_name
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)

    def read_channels(box: Box) -> dict[str, np.ndarray]:
        pre, post = source.read(box)
        return {synthetic.PRESYNAPTIC: pre, synthetic.POSTSYNAPTIC: post}

    spec = TableSpec(
        results=LocalStore(out),
        results_id=str(out),
        read_channels=read_channels,
        channel_names=[synthetic.PRESYNAPTIC, synthetic.POSTSYNAPTIC],
        voxel_size=VOXEL_SIZE,
    )
    rss_before = _peak_rss_mib()
    start = time.perf_counter()
    result = run_blockwise(source, plan, work, kernel=kernel, table=spec)
    assert result.table is not None
    outputs.write_table_results(
        out,
        table=result.table,
        shape=plan.box.shape,
        foreground_voxels=result.n_voxels,
        arrays={},
        voxel_size=VOXEL_SIZE,
        overwrite=True,
    )
    seconds = time.perf_counter() - start
    shutil.rmtree(work, ignore_errors=True)
    return {
        "seconds": seconds,
        "peak_rss_mib": _peak_rss_mib(),
        "peak_rss_before_run_mib": rss_before,
        "n_blocks": plan.n_blocks,
        "block_shape": list(plan.block_shape),
        "n_synapses": result.n_objects,
        "pass_seconds": {k: round(v, 3) for k, v in result.seconds.items()},
    }


def run_child(args: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode:
        raise SystemExit(f"child {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_volume(folder: Path, shape: tuple[int, int, int], seed: int) -> None:
    from synapse_pipelines.science import synthetic

    if (folder / "pre.npy").exists() and np.load(folder / "pre.npy", mmap_mode="r").shape == shape:
        return
    exp = synthetic.make_experiment(
        shape, seed=seed, channels=[synthetic.PRESYNAPTIC, synthetic.POSTSYNAPTIC]
    )
    np.save(folder / "pre.npy", exp.channels[synthetic.PRESYNAPTIC])
    np.save(folder / "post.npy", exp.channels[synthetic.POSTSYNAPTIC])


def same_results(single: Path, blockwise: Path) -> tuple[bool, bool]:
    """(identical ids and mask, identical synapse table) of the two results folders."""
    import zarr

    from synapse_pipelines.io import ome_tiff, outputs

    ids = ome_tiff.read_volume(single / outputs.SYNAPSE_IDS).data
    mask = ome_tiff.read_volume(single / outputs.PREDICTIONS).data
    same_ids = np.array_equal(
        zarr.open_array(blockwise / outputs.SYNAPSE_IDS_ZARR, mode="r")[:], ids
    ) and np.array_equal(zarr.open_array(blockwise / outputs.PREDICTIONS_ZARR, mode="r")[:], mask)
    same_table = (single / outputs.SYNAPSES_CSV).read_bytes() == (
        blockwise / outputs.SYNAPSES_CSV
    ).read_bytes()
    return same_ids, same_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,2048,2048", help="z,y,x voxels")
    parser.add_argument("--block", default="64,512,512", help="block z,y,x (cuboid multiple)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs (best of)")
    parser.add_argument("--folder", default=None, help="keep the volume here between runs")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, folder = args.child[0], Path(args.child[1])
        if kind == "single":
            out = child_single(folder)
        else:
            block = tuple(int(v) for v in args.child[2].split(","))
            out = child_blockwise(folder, block, args.child[3])  # type: ignore[arg-type]
        print(json.dumps(out))
        return

    shape = tuple(int(v) for v in args.shape.split(","))
    block = args.block
    folder = Path(args.folder or tempfile.mkdtemp(prefix="bench-blockwise-"))
    folder.mkdir(parents=True, exist_ok=True)
    voxels = int(np.prod(shape))
    print(
        f"volume {shape} = {voxels / 1e6:.0f} Mvoxel, blocks {block}, cpus {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    t = time.perf_counter()
    make_volume(folder, shape, args.seed)  # type: ignore[arg-type]
    print(f"synthetic volume ready ({time.perf_counter() - t:.1f} s) in {folder}")

    # interleaved repeats, best of N: the machine is shared, and the minimum is the run
    # least disturbed by others
    singles, blockwises = [], []
    for _ in range(args.repeat):
        singles.append(run_child(["--child", "single", str(folder)]))
        blockwises.append(
            run_child(["--child", "blockwise", str(folder), block, "results_blockwise"])
        )
    single = min(singles, key=lambda r: r["seconds"])
    blockwise = min(blockwises, key=lambda r: r["seconds"])
    print(
        "all runs (s): single "
        + ", ".join(f"{r['seconds']:.2f}" for r in singles)
        + "; blockwise "
        + ", ".join(f"{r['seconds']:.2f}" for r in blockwises)
    )
    same_ids, same_table = same_results(folder / "results_single", folder / "results_blockwise")
    ratio = blockwise["seconds"] / single["seconds"]
    passes = blockwise["pass_seconds"]
    compute = sum(passes.get(k, 0.0) for k in ("covariance", "reduce_threshold", "label"))
    compute += passes.get("reduce_stitch", 0.0)
    print(
        f"single job  detect() + table + write: {single['seconds']:7.2f} s "
        f"(detect() alone {single['detect_seconds']:.2f} s)  "
        f"{voxels / single['seconds'] / 1e6:6.1f} Mvoxel/s  peak RSS "
        f"{single['peak_rss_mib']:7.0f} MiB  synapses {single['n_synapses']}"
    )
    print(
        f"blockwise   all passes + write:       {blockwise['seconds']:7.2f} s "
        f"(detection passes alone {compute:.2f} s)  "
        f"{voxels / blockwise['seconds'] / 1e6:6.1f} Mvoxel/s  peak RSS "
        f"{blockwise['peak_rss_mib']:7.0f} MiB  synapses {blockwise['n_synapses']}  "
        f"({blockwise['n_blocks']} blocks of {blockwise['block_shape']})"
    )
    print(f"  passes: {passes}")
    print(
        f"ratio blockwise / single: {ratio:.2f} (target <= 1.30); detection only: "
        f"{compute / single['detect_seconds']:.2f}; identical ids and mask: {same_ids}; "
        f"identical synapses.csv: {same_table}"
    )

    # same blocks, a quarter of the volume: peak memory must follow the block, not the volume
    small_shape = (shape[0], shape[1] // 2, shape[2] // 2)
    small = folder / "small"
    small.mkdir(exist_ok=True)
    pre = np.load(folder / "pre.npy", mmap_mode="r")
    post = np.load(folder / "post.npy", mmap_mode="r")
    np.save(small / "pre.npy", pre[:, : small_shape[1], : small_shape[2]])
    np.save(small / "post.npy", post[:, : small_shape[1], : small_shape[2]])
    del pre, post
    quarter = run_child(["--child", "blockwise", str(small), block, "results_blockwise"])
    print(
        f"blockwise, volume / 4 {small_shape}: peak RSS {quarter['peak_rss_mib']:.0f} MiB "
        f"(full volume: {blockwise['peak_rss_mib']:.0f} MiB; single job: "
        f"{single['peak_rss_mib']:.0f} MiB)"
    )
    # same volume, blocks half as large: the peak follows the block
    half = [int(v) for v in block.split(",")]
    half[0] //= 2  # z: blocks stay multiples of the BOSS cuboid
    halved = run_child(
        ["--child", "blockwise", str(folder), ",".join(map(str, half)), "results_half"]
    )
    print(
        f"blockwise, blocks / 2 {tuple(half)}: peak RSS {halved['peak_rss_mib']:.0f} MiB "
        f"({halved['n_blocks']} blocks; blocks {block}: {blockwise['peak_rss_mib']:.0f} MiB)"
    )
    block_voxels = int(np.prod([int(v) for v in block.split(",")]))
    base = blockwise["peak_rss_before_run_mib"]
    print(
        f"peak RSS above the interpreter + libraries ({base:.0f} MiB) per block voxel: "
        f"{(blockwise['peak_rss_mib'] - base) * 2**20 / block_voxels:.1f} B "
        f"(block {block_voxels / 1e6:.1f} Mvoxel); single job per volume voxel: "
        f"{single['peak_rss_mib'] * 2**20 / voxels:.1f} B"
    )
    if not args.folder:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
