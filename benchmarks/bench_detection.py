"""Benchmark: the detectors (PAIRS, NOMADS) and the original approach, in the same run, on one core.

Detectors: :func:`synapse_pipelines.science.paired_puncta.detect_paired_puncta` (PAIRS, the
``paired-puncta`` pipeline) and :func:`synapse_pipelines.science.detection.detect` (NOMADS),
both with compiled kernels, on two-channel uint8 volumes of ``Z x 1024 x 1024`` for each
``Z`` in ``--sizes`` (default 32, 64, 128, 256: 32 to 256 Mvoxel), taking turns on each
volume so both see the same moment of a shared machine. The data is a seeded synthetic
experiment of 32 x 1024 x 1024 (see ``synthetic.py``), tiled along z for the larger sizes so
every size has the same content per voxel (a linear-scaling check, not a content check).

The original: :func:`synapse_pipelines.science.nomads_original.original_nomads`, a faithful
re-implementation of the 2018 code (float64 z-score, its covariance line, 256-bin Otsu,
26-connected labels, the quadratic per-label small-object filter), on
``--original-shape`` (default 32 x 512 x 512 = 8.4 Mvoxel). The detectors run on that
volume too so the ratio is also given at equal size, with object-level precision/recall of
all three against the synthetic truth.

Figures per run:

- wall seconds and CPU seconds (``time.process_time``: this process only, so it is the
  fairer figure while other jobs share the machine), best of ``--repeat``, and the load
  average (1 minute) when each row was measured;
- Mvoxel/s = voxels per channel / seconds;
- peak memory, bytes per voxel, beyond the inputs, two ways: ``tracemalloc`` peak during
  the call (numpy allocations; numba's small internal arrays are not traced) and the
  peak-RSS delta (``VmHWM`` reset through ``/proc/self/clear_refs`` before the call, minus
  ``VmRSS`` before it; Linux only);
- PAIRS' seconds per step (band-pass with histograms, thresholds with evidence, seeds,
  labels) from its ``timings``.

With ``--real-data DIR`` (the shared ``realdata`` folder; never used by the tests) it also
scores the detectors on the two real data sets, as the literature does:

- ``weiler14_dev`` (one plane of synapsin and PSD-95, 23 expert points): precision, recall
  and F1, one-to-one within 3 pixels (``evaluation.evaluate_centroids``);
- ``at_example`` (8 x 1024 x 1344, about 70 x 100 x 100 nm): detections per cubic
  micrometre, the share of the peer method's 2,477 objects (26-connected, centroids) with a
  detection within 400 nm, and the reverse share.

PAIRS is scored by its seeds (the point it reports per synapse, from the block primitives
on the whole volume) and by its label centroids (what the synapse table holds).

Usage::

    python benchmarks/bench_detection.py [--sizes 32,64,128,256] [--repeat 3]
        [--detectors pairs,nomads] [--original-shape 32,512,512] [--skip-original]
        [--real-data ../shared/realdata] [--json out.json]

Threads are pinned to one (OMP/MKL/OpenBLAS/numba) before numpy is imported; the script
re-executes itself once with ``MALLOC_MMAP_THRESHOLD_`` set so that RSS deltas are exact.
"""

from __future__ import annotations

import os
import sys

if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
    # A fixed mmap threshold makes glibc map every large array fresh and unmap it on free,
    # so the peak-RSS delta measures the call, not memory recycled from an earlier one.
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
    os.execv(sys.executable, [sys.executable, *sys.argv])

for _var in (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from scipy import ndimage  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from synapse_pipelines.core.errors import DetectionError  # noqa: E402
from synapse_pipelines.core.geometry import Box  # noqa: E402
from synapse_pipelines.science import paired_puncta  # noqa: E402
from synapse_pipelines.science.detection import detect  # noqa: E402
from synapse_pipelines.science.evaluation import (  # noqa: E402
    centroids_from_labels,
    evaluate_centroids,
    evaluate_labels,
)
from synapse_pipelines.science.nomads_original import original_nomads  # noqa: E402
from synapse_pipelines.science.paired_puncta import detect_paired_puncta  # noqa: E402
from synapse_pipelines.science.synthetic import make_experiment  # noqa: E402

PRE, POST = "Synapsin647", "PSD95_488"
MATCH_NM = 300.0
VOXEL_NM = (70.0, 100.0, 100.0)  # the synthetic experiment's voxel size

#: The detectors, by their --detectors name.
DETECTORS: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
    "pairs": lambda pre, post: detect_paired_puncta(pre, post, voxel_size=VOXEL_NM),
    "nomads": lambda pre, post: detect(pre, post),
}


def _proc_status(key: str) -> int:
    """A ``/proc/self/status`` memory field in bytes (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], Any], repeat: int, voxels: int) -> dict[str, Any]:
    """Best wall/CPU time of ``repeat`` calls, then one traced call for memory."""
    walls, cpus, steps = [], [], []
    result = None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
        steps.append(dict(getattr(result, "timings", {}) or {}))
        del result
    # memory: peak RSS delta and tracemalloc peak, on a separate call
    rss_ok = _reset_peak_rss()
    rss0 = _proc_status("VmRSS")
    tracemalloc.start()
    result = fn()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = _proc_status("VmHWM")
    wall, cpu = min(walls), min(cpus)
    return {
        "voxels": voxels,
        "wall_s": wall,
        "cpu_s": cpu,
        "mvox_per_s_wall": voxels / wall / 1e6,
        "mvox_per_s_cpu": voxels / cpu / 1e6,
        "tracemalloc_bytes_per_voxel": traced_peak / voxels,
        "rss_delta_bytes_per_voxel": (rss_peak - rss0) / voxels if rss_ok and rss0 else None,
        "steps_s": steps[int(np.argmin(cpus))],
        "load_average_1min": os.getloadavg()[0],
        "result": result,
    }


def _fmt(row: dict[str, Any]) -> str:
    rss = row["rss_delta_bytes_per_voxel"]
    rss_text = f"{rss:5.1f}" if rss is not None else "  n/a"
    return (
        f"{row['voxels'] / 1e6:7.1f} Mvox  wall {row['wall_s']:7.3f} s "
        f"({row['mvox_per_s_wall']:6.1f} Mvox/s)  cpu {row['cpu_s']:7.3f} s "
        f"({row['mvox_per_s_cpu']:6.1f} Mvox/s)  peak B/vox: tracemalloc "
        f"{row['tracemalloc_bytes_per_voxel']:5.1f}  rss {rss_text}  "
        f"load {row['load_average_1min']:.1f}"
    )


def _steps(row: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in row["steps_s"].items())


def _score(labels: np.ndarray, exp) -> tuple[float, float]:
    ev = evaluate_labels(
        labels, exp.synapse_centroids, max_distance=MATCH_NM, voxel_size=exp.voxel_size
    )
    return ev.precision, ev.recall


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="32,64,128,256", help="z sizes of Z x 1024 x 1024")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--detectors", default="pairs,nomads", help="of: pairs, nomads")
    parser.add_argument("--original-shape", default="32,512,512")
    parser.add_argument("--skip-original", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--real-data", type=Path, default=None, help="the realdata folder")
    parser.add_argument("--json", type=Path, default=None, help="also write figures here")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DETECTORS))
    if unknown:
        parser.error(f"unknown detectors {unknown}; choose from {sorted(DETECTORS)}")

    load = os.getloadavg()
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        "threads pinned to 1"
    )
    base = make_experiment((32, 1024, 1024), seed=args.seed, channels=[PRE, POST])
    # compile (or load the numba cache) outside the timings
    for name in names:
        DETECTORS[name](
            base.channels[PRE][:4, :64, :64].copy(), base.channels[POST][:4, :64, :64].copy()
        )

    figures: dict[str, Any] = {"load_average": load, "detectors": {n: [] for n in names}}
    print("\ntwo uint8 channels, Z x 1024 x 1024, the detectors taking turns on each volume")
    for z in (int(v) for v in args.sizes.split(",")):
        reps = -(-z // 32)
        pre = np.concatenate([base.channels[PRE]] * reps)[:z]
        post = np.concatenate([base.channels[POST]] * reps)[:z]
        for name in names:
            fn = DETECTORS[name]
            row = measure(lambda pre=pre, post=post, fn=fn: fn(pre, post), args.repeat, pre.size)
            row["n_synapses"] = row.pop("result").n_synapses
            figures["detectors"][name].append(row)
            print(f"{name:7s}" + _fmt(row) + f"  synapses {row['n_synapses']}")
            if row["steps_s"] and name == "pairs":
                print(f"{'':7s}  steps (s, fastest call): {_steps(row)}")
        del pre, post
    for name in names:
        rows = figures["detectors"][name]
        for row in rows[1:]:
            row["time_per_voxel_vs_smallest_cpu"] = (row["cpu_s"] / row["voxels"]) / (
                rows[0]["cpu_s"] / rows[0]["voxels"]
            )
        if len(rows) > 1:
            print(
                f"{name} linearity (CPU time per voxel relative to the smallest size): "
                + ", ".join(
                    f"{r['voxels'] / 1e6:.0f}M: {r['time_per_voxel_vs_smallest_cpu']:.2f}"
                    for r in rows[1:]
                )
            )

    if not args.skip_original:
        figures["original"] = _original(args, names, figures)
    if args.real_data:
        figures["real_data"] = _real_data(args.real_data, names)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=float))
    return figures


def _original(args: argparse.Namespace, names: list[str], figures: dict[str, Any]) -> dict:
    """The original approach and the detectors on one smaller volume: speed and quality."""
    shape = tuple(int(v) for v in args.original_shape.split(","))
    exp = make_experiment(shape, seed=args.seed + 1, channels=[PRE, POST])
    pre, post = exp.channels[PRE], exp.channels[POST]
    print(f"\noriginal approach vs the detectors on {shape} ({pre.size / 1e6:.1f} Mvox)")
    orig = measure(lambda: original_nomads(pre, post), 1, pre.size)
    orig_labels, _ = ndimage.label(orig.pop("result") > 0, structure=np.ones((3, 3, 3)))
    print(f"{'original':9s}" + _fmt(orig))
    out: dict[str, Any] = {"shape": shape, "original": orig, "quality": {}}
    po, ro = _score(orig_labels, exp)
    out["quality"]["original"] = [po, ro]
    for name in names:
        row = measure(lambda name=name: DETECTORS[name](pre, post), args.repeat, pre.size)
        labels = row.pop("result").labels
        out[name] = row
        out["quality"][name] = list(_score(labels, exp))
        big = figures["detectors"][name][0]
        ratios = {
            "same_size_cpu": orig["cpu_s"] / row["cpu_s"],
            "same_size_wall": orig["wall_s"] / row["wall_s"],
            "largest_throughput_vs_original_cpu": big["mvox_per_s_cpu"] / orig["mvox_per_s_cpu"],
        }
        out[f"{name}_ratios"] = ratios
        print(
            f"{name:9s}"
            + _fmt(row)
            + f"\n{'':9s}speed-up, same volume: {ratios['same_size_cpu']:.0f}x (CPU), "
            f"{ratios['same_size_wall']:.0f}x (wall); at {big['voxels'] / 1e6:.0f} Mvox vs "
            f"the original at {pre.size / 1e6:.1f} Mvox: "
            f"{ratios['largest_throughput_vs_original_cpu']:.0f}x (CPU throughput)"
        )
    print(
        f"quality on this volume ({exp.n_synapses} synapses, match {MATCH_NM:.0f} nm): "
        + "; ".join(
            f"{name} precision {p:.2f} recall {r:.2f}" for name, (p, r) in out["quality"].items()
        )
    )
    return out


def _points(name: str, pre: np.ndarray, post: np.ndarray) -> dict[str, np.ndarray]:
    """The detector's points (z, y, x voxels): label centroids, and PAIRS' seeds."""
    result = DETECTORS[name](pre, post)
    points = {"label centroids": centroids_from_labels(result.labels)[1]}
    if name == "pairs":
        g = paired_puncta.geometry(pre.shape, VOXEL_NM)
        whole = Box.from_shape(pre.shape)
        thr = paired_puncta.section_thresholds(
            paired_puncta.block_histograms(pre, post, whole, whole, g), g
        )
        points = {"seeds": paired_puncta.block_seeds(pre, post, whole, whole, thr, g), **points}
    return points


def _real_data(folder: Path, names: list[str]) -> dict[str, Any]:
    """Scores on weiler14_dev (F1 within 3 px) and at_example (density, peer agreement)."""
    out: dict[str, Any] = {}
    weiler = np.load(folder / "weiler14_dev" / "crop_400500.npz")
    truth = np.column_stack([np.zeros(len(weiler["synapses_yx"])), weiler["synapses_yx"]])
    at = {c: tifffile.imread(folder / "at_example" / f"{c}.tif") for c in ("synapsin", "psd95")}
    peer_mask = tifffile.imread(folder / "at_example" / "peer_probabilistic_detections.tif")
    peer_labels, _ = ndimage.label(peer_mask > 0, structure=np.ones((3, 3, 3)))
    scale = np.asarray(VOXEL_NM)
    peer = centroids_from_labels(peer_labels)[1] * scale
    volume_um3 = float(np.prod(np.asarray(peer_mask.shape) * scale / 1000.0))
    print(f"\nreal data ({folder}): weiler14_dev one plane, 23 expert points; at_example "
          f"{peer_mask.shape}, {len(peer)} peer objects, {volume_um3:.0f} um^3")  # fmt: skip
    for name in names:
        try:
            weiler_points = _points(name, weiler["synapsin"], weiler["psd95"])
        except DetectionError as exc:  # NOMADS' window does not fit one plane
            weiler_points = {}
            print(f"{name:7s} weiler14_dev: refused: {exc}")
        for kind, pts in weiler_points.items():
            ev = evaluate_centroids(pts, truth, max_distance=3.0)
            out[f"{name} {kind} weiler14_dev"] = ev.f1
            print(
                f"{name:7s} {kind:16s} weiler14_dev: {len(pts)} detections, precision "
                f"{ev.precision:.3f} recall {ev.recall:.3f} F1 {ev.f1:.3f}"
            )
        for kind, pts in _points(name, at["synapsin"], at["psd95"]).items():
            mine = np.asarray(pts, np.float64).reshape(-1, 3) * scale
            found = reverse = 0.0
            if len(mine):
                found = float(np.mean(cKDTree(mine).query(peer)[0] <= 400.0))
                reverse = float(np.mean(cKDTree(peer).query(mine)[0] <= 400.0))
            out[f"{name} {kind} at_example"] = [len(mine), found, reverse]
            print(
                f"{name:7s} {kind:16s} at_example: {len(mine)} detections = "
                f"{len(mine) / volume_um3:.2f}/um^3; peer objects found within 400 nm "
                f"{found:.3f}; detections within 400 nm of a peer object {reverse:.3f}"
            )
    return out


if __name__ == "__main__":
    main()
