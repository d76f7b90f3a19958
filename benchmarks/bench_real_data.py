"""Benchmark: every registered detector and the original NOMADS on the two real data sets.

Reads ``--data`` (default ``../shared/realdata``; see its README.md and docs/real_data.md)
itself, with tifffile and numpy:

- ``weiler14_dev/crop_400500.npz``: one 100 x 100 uint16 plane (synapsin, PSD-95; vGluT1 is
  not used) with 23 expert synapse positions (row, column). Each detector runs on the plane
  as a (1, 100, 100) volume; detections (label centroids) are matched one-to-one to the
  expert points within 3 pixels in y, x: precision, recall, F1 (how the DoGNet paper
  scores it).
- ``at_example/``: 8 x 1024 x 1344 uint8 synapsin and PSD-95, no ground truth; the
  published detections of a peer method (Simhal et al. 2017; 2,477 26-connected objects).
  Figures: the number of detections, their density per um^3 at 0.07 x 0.1 x 0.1 um voxels
  (the source does not state the voxel size; this is typical AT sampling), the fraction
  of the peer's objects with a detection within 400 nm ("peer found") and the fraction of
  detections within 400 nm of a peer object ("reverse").

Detectors: every pipeline in the registry (``synapse_pipelines.core.pipelines``; run as a
request runs them, with the voxel size in nm) and
:func:`synapse_pipelines.science.nomads_original.original_nomads` (the 2018 code as written,
typo included: its mask's 26-connected components are its detections), and the peer method
itself (:mod:`peer_probabilistic_query`: Simhal et al. 2017's query at its published
operating point, re-expressed here; on at_example it gives back the published detections).
Timings are wall and CPU seconds of the detector call alone.

A calibration table follows: at_example's intensity statistics next to the default
realistic synthetic profile's at the same shape (:mod:`synapse_pipelines.science.synthetic`),
then their section continuity: how alike neighbouring sections and the two channels of a
section look at zero shift (at_example's sections are not aligned to each other; the
profile's ``misregistration=1`` models that).

``--dognet DIR`` (optional) also scores the weiler14 crops that the DoGNet paper published
with its code (a checkout of github.com/kulikovv/dognet, or any folder holding its
``weiler300400_*.mat``): ``weiler300400_400500`` is weiler14_dev itself (a check that the
conversion matches), ``weiler300400_800900`` a sibling crop of the same section with 27
expert synapses that nothing in this project was designed or tuned on. Each crop's
channels (synapsin, vGluT1, PSD-95) are rescaled to 0..65535 uint16 and its points
``(X - 1, Y - 1)`` taken as (row, column), as weiler14_dev was made; the (0, 0) entry that
some crops carry first is not a synapse and is dropped.

Usage::

    python benchmarks/bench_real_data.py --data ../shared/realdata [--json out.json]
        [--pipelines paired-puncta,nomads-unsupervised] [--skip-original] [--skip-peer] [--skip-at]
        [--skip-calibration] [--dognet ../dognet]
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from peer_probabilistic_query import peer_detections
from scipy import ndimage
from scipy.io import loadmat
from scipy.spatial import cKDTree

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.pipelines import available_pipelines, get_pipeline
from synapse_pipelines.science.evaluation import centroids_from_labels, evaluate_points
from synapse_pipelines.science.nomads_original import original_nomads
from synapse_pipelines.science.paired_puncta_blocks import (
    CHANNELS,
    block_histograms,
    section_thresholds,
)
from synapse_pipelines.science.paired_puncta_geometry import geometry
from synapse_pipelines.science.paired_puncta_reference import bandpass
from synapse_pipelines.science.section_continuity import summarise_continuity
from synapse_pipelines.science.synthetic import (
    AT_EXAMPLE_INTENSITY,
    POSTSYNAPTIC,
    PRESYNAPTIC,
    intensity_statistics,
    make_experiment,
)

#: (z, y, x) nm. weiler14: ~0.1 um pixels (one plane, so z does not matter); at_example:
#: typical AT sampling, not stated by the source.
WEILER_VOXEL_NM = (70.0, 100.0, 100.0)
AT_VOXEL_NM = (70.0, 100.0, 100.0)
WEILER_MATCH_PX = 3.0
AT_MATCH_NM = 400.0
ORIGINAL = "original NOMADS (2018 code)"
PEER = "peer: Simhal et al. 2017 query"
#: The targets of issue 12, printed beside the figures.
TARGETS = "weiler F1 >= 0.85; at_example 0.2-2 /um^3 and peer found >= 0.70"

#: A detector: (pre, post, voxel size nm) -> (label centroids in voxels, wall s, CPU s of
#: the detection call alone, without reading data or taking centroids).
Detector = Callable[
    [np.ndarray, np.ndarray, tuple[float, float, float]], tuple[np.ndarray, float, float]
]


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - start[0], time.process_time() - start[1]


def _registry_detector(name: str) -> Detector:
    pipeline = get_pipeline(name)
    # The voxel_size keyword is part of the pipeline contract from issue 12 on; a pipeline
    # built before it (no such parameter) works in voxels and is called without it.
    takes_voxels = "voxel_size" in inspect.signature(pipeline.run).parameters

    def run(
        pre: np.ndarray, post: np.ndarray, voxel: tuple[float, float, float]
    ) -> tuple[np.ndarray, float, float]:
        channels = {PRESYNAPTIC: pre, POSTSYNAPTIC: post}
        extra: dict[str, Any] = {"voxel_size": voxel} if takes_voxels else {}
        start = _clock()
        result = pipeline.run(channels, PRESYNAPTIC, POSTSYNAPTIC, **extra)
        wall, cpu = _since(start)
        return centroids_from_labels(result.labels)[1], wall, cpu

    return run


def _original(
    pre: np.ndarray, post: np.ndarray, voxel: tuple[float, float, float]
) -> tuple[np.ndarray, float, float]:
    start = _clock()
    mask = original_nomads(pre, post)
    wall, cpu = _since(start)
    labels, _ = ndimage.label(mask > 0, structure=np.ones((3, 3, 3), dtype=bool))
    return centroids_from_labels(labels)[1], wall, cpu


def _peer(
    pre: np.ndarray, post: np.ndarray, voxel: tuple[float, float, float]
) -> tuple[np.ndarray, float, float]:
    start = _clock()
    points = peer_detections(pre, post)  # in pixels, as the paper's lengths are
    wall, cpu = _since(start)
    return points, wall, cpu


def weiler(folder: Path, fn: Detector) -> dict[str, Any]:
    """P, R, F1 on the weiler14_dev plane, one-to-one within 3 px in y, x."""
    data = np.load(folder / "weiler14_dev" / "crop_400500.npz")
    pre, post = data["synapsin"], data["psd95"]  # (1, 100, 100) uint16
    return _score_plane(pre, post, np.asarray(data["synapses_yx"], dtype=np.float64), fn)


def _score_plane(
    pre: np.ndarray, post: np.ndarray, truth: np.ndarray, fn: Detector
) -> dict[str, Any]:
    points, wall, cpu = fn(pre, post, WEILER_VOXEL_NM)
    score = evaluate_points(points, truth, max_distance=WEILER_MATCH_PX, voxel_size=(1, 1, 1))
    return {
        "n": score.n_predicted,
        "n_truth": score.n_truth,
        "tp": score.tp,
        "precision": score.precision,
        "recall": score.recall,
        "f1": score.f1,
        "wall_s": wall,
        "cpu_s": cpu,
    }


def load_dognet_crop(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synapsin and PSD-95 of one DoGNet weiler14 ``.mat`` crop as (1, Y, X) uint16, and its
    expert points (row, column), converted as weiler14_dev was (module docstring)."""
    mat = loadmat(path)
    synapsin, _vglut1, psd95 = (
        np.round((c - c.min()) / (c.max() - c.min()) * 65535).astype(np.uint16)[None]
        for c in np.asarray(mat["data"], dtype=np.float64)
    )
    rows, cols = np.ravel(mat["X"]), np.ravel(mat["Y"])
    real = (rows > 0) | (cols > 0)  # MATLAB's 1-based points; (0, 0) is a placeholder
    return synapsin, psd95, np.stack([rows[real] - 1, cols[real] - 1], axis=1)


def dognet_crop(path: Path, fn: Detector) -> dict[str, Any]:
    """As :func:`weiler`, on one DoGNet weiler14 crop."""
    pre, post, truth = load_dognet_crop(path)
    return _score_plane(pre, post, truth, fn)


def load_at(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """at_example's synapsin, PSD-95 and the peer's object centroids (voxels)."""
    at = folder / "at_example"
    pre = tifffile.imread(at / "synapsin.tif")
    post = tifffile.imread(at / "psd95.tif")
    peer = tifffile.imread(at / "peer_probabilistic_detections.tif")
    labels, _ = ndimage.label(peer > 0, structure=np.ones((3, 3, 3), dtype=bool))
    return pre, post, centroids_from_labels(labels)[1]


def at_example(pre: np.ndarray, post: np.ndarray, peer: np.ndarray, fn: Detector) -> dict[str, Any]:
    """Count, density and two-way agreement with the peer's objects within 400 nm."""
    points, wall, cpu = fn(pre, post, AT_VOXEL_NM)
    v = np.asarray(AT_VOXEL_NM)
    vol_um3 = float(np.prod(np.asarray(pre.shape) * v)) / 1e9
    out: dict[str, Any] = {
        "n": len(points),
        "density_per_um3": len(points) / vol_um3,
        "n_peer": len(peer),
        "peer_found_400nm": 0.0,
        "reverse_400nm": 0.0,
        "wall_s": wall,
        "cpu_s": cpu,
        "mvoxel_per_s_cpu": pre.size / 1e6 / cpu if cpu > 0 else None,
    }
    if len(points) and len(peer):
        d_peer, _ = cKDTree(points * v).query(peer * v)
        d_ours, _ = cKDTree(peer * v).query(points * v)
        out["peer_found_400nm"] = float((d_peer <= AT_MATCH_NM).mean())
        out["reverse_400nm"] = float((d_ours <= AT_MATCH_NM).mean())
    return out


def _median_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Median over sections of the Pearson correlation of ``a[z]`` and ``b[z]``."""
    a, b = (x.reshape(len(x), -1) for x in (a, b))
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return float(np.median((a * b).sum(axis=1) / np.where(den > 0, den, 1.0)))


def section_continuity(pre: np.ndarray, post: np.ndarray) -> dict[str, float | None]:
    """How alike neighbouring sections, and the two channels of one section, look at zero
    shift. z vs z+1: the median section continuity PAIRS itself records and warns on
    (``parameters["section_continuity"]``: the correlation of its in-plane band-pass,
    the pixel noise's share taken out; docs/detection.md, "Section continuity"). Synapsin
    vs PSD-95: the median over sections of the plain correlation of the two channels'
    in-plane band-pass (pre and post puncta are offset, so even aligned channels give
    little). Aligned sections give values near 1; sections or channels that show different
    puncta at the same pixel (misalignment, misregistration) near 0."""
    g = geometry(pre.shape, AT_VOXEL_NM)
    whole = Box.from_shape(pre.shape)
    stats = section_thresholds(block_histograms(pre, post, whole, whole, g), g).to_dict()
    z = summarise_continuity({c: stats[c]["section_continuity"] for c in CHANNELS})
    in_plane = (0, g.orders[1], g.orders[2])
    d_pre = bandpass(pre, in_plane, g.widths).astype(np.float64)
    d_post = bandpass(post, in_plane, g.widths).astype(np.float64)
    return {
        "synapsin z vs z+1": z["presynaptic"],
        "PSD-95 z vs z+1": z["postsynaptic"],
        "synapsin vs PSD-95": _median_correlation(d_pre, d_post),
    }


def calibration(pre: np.ndarray, post: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Intensity statistics of at_example, the README's figures, and the default realistic
    profile rendered at at_example's shape; then the section continuity of at_example and
    of that profile with and without its at_example-like misregistration."""
    channels = [PRESYNAPTIC, POSTSYNAPTIC]
    exp = make_experiment(pre.shape, seed=seed, channels=channels)
    misregistered = make_experiment(pre.shape, seed=seed, channels=channels, misregistration=1.0)
    out: dict[str, Any] = {
        name: {
            "at_example": intensity_statistics(real),
            "readme": AT_EXAMPLE_INTENSITY[name],
            "synthetic": intensity_statistics(exp.channels[name]),
        }
        for name, real in ((PRESYNAPTIC, pre), (POSTSYNAPTIC, post))
    }
    out["section_continuity"] = {
        "at_example": section_continuity(pre, post),
        "synthetic": section_continuity(*(exp.channels[c] for c in channels)),
        "synthetic, misregistration=1": section_continuity(
            *(misregistered.channels[c] for c in channels)
        ),
    }
    return out


def _guarded(measure: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """A detector that refuses an input (e.g. a plane thinner than its window) is a
    figure of the benchmark, not the end of it."""
    try:
        return measure(*args)
    except SynapsePipelinesError as exc:
        return {"error": str(exc)}


#: A table column: header, width, and the cell of a detector's row.
Column = tuple[str, int, Callable[[dict[str, Any]], str]]


def _column(header: str, key: str, spec: str) -> Column:
    width = int(spec.split(".")[0].rstrip("ds"))
    return header, width, lambda r: format(r[key], spec)


def _mvoxel_rate(r: dict[str, Any]) -> str:
    return f"{r['mvoxel_per_s_cpu']:7.1f}" if r["mvoxel_per_s_cpu"] else "      -"


PLANE_COLUMNS = [_column("n", "n", "5d"), _column("P", "precision", "6.3f"),
                 _column("R", "recall", "6.3f"), _column("F1", "f1", "6.3f")]  # fmt: skip
WEILER_COLUMNS = [*PLANE_COLUMNS, _column("wall s", "wall_s", "7.2f")]
CROP_COLUMNS = [PLANE_COLUMNS[0], _column("truth", "n_truth", "5d"), *PLANE_COLUMNS[1:]]
AT_COLUMNS = [
    _column("n", "n", "6d"), _column("/um^3", "density_per_um3", "6.2f"),
    _column("peer found", "peer_found_400nm", "10.3f"), _column("reverse", "reverse_400nm", "8.3f"),
    _column("wall s", "wall_s", "7.2f"), _column("cpu s", "cpu_s", "7.2f"),
    ("Mvox/s", 7, _mvoxel_rate),
]  # fmt: skip


def _print_table(title: str, rows: dict[str, dict[str, Any]], columns: list[Column]) -> None:
    """A title, a header and one line per detector (or the error it raised)."""
    print(title)
    print(f"{'detector':32s} " + " ".join(f"{h:>{w}s}" for h, w, _ in columns))
    for name, r in rows.items():
        if "error" in r:
            print(f"{name:32s} error: {r['error']}")
            continue
        print(f"{name:32s} " + " ".join(cell(r) for _, _, cell in columns))


def _print_tables(report: dict[str, Any]) -> None:
    _print_table(
        f"\nweiler14_dev, one 100 x 100 plane, 23 expert synapses, one-to-one within "
        f"{WEILER_MATCH_PX:g} px (synapsin + PSD-95)",
        report["weiler14_dev"], WEILER_COLUMNS,
    )  # fmt: skip
    if "at_example" in report:
        a = report["at_example"]
        _print_table(
            f"\nat_example, 8 x 1024 x 1344 at {AT_VOXEL_NM} nm; peer = Simhal et al. 2017 "
            f"({next(iter(a.values())).get('n_peer', '?')} objects), within "
            f"{AT_MATCH_NM:g} nm",
            a, AT_COLUMNS,
        )  # fmt: skip
    for crop, rows in report.get("dognet_weiler14", {}).items():
        _print_table(
            f"\nDoGNet weiler14 crop {crop}, one plane, synapsin + PSD-95, one-to-one within "
            f"{WEILER_MATCH_PX:g} px",
            rows, CROP_COLUMNS,
        )  # fmt: skip
    print(f"\ntargets (issue 12): {TARGETS}")
    if "calibration" in report:
        print("\ncalibration: at_example vs the default realistic synthetic profile "
              "(same shape, seed 0), uint8 grey levels")  # fmt: skip
        print(f"{'channel':12s} {'statistic':9s} {'at_example':>10s} {'synthetic':>10s} "
              f"{'ratio':>6s}")  # fmt: skip
        cal = dict(report["calibration"])
        continuity = cal.pop("section_continuity", None)
        for name, c in cal.items():
            for key, real in c["at_example"].items():
                syn = c["synthetic"][key]
                ratio = syn / real if real else float("nan")
                print(f"{name:12s} {key:9s} {real:10.2f} {syn:10.2f} {ratio:6.2f}")
        if continuity:
            print("\nsection continuity: median correlation of the in-plane band-pass at zero "
                  "shift (z vs z+1: PAIRS' own figure, noise-corrected; near 1: aligned "
                  "sections; PAIRS warns below half of that)")  # fmt: skip
            rows = list(next(iter(continuity.values())))
            print(f"{'volume':30s} " + " ".join(f"{r:>18s}" for r in rows))
            for vol, c in continuity.items():
                print(f"{vol:30s} " + " ".join(_cell(c[r]) for r in rows))


def _cell(value: float | None) -> str:
    return f"{'-':>18s}" if value is None else f"{value:18.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/realdata"))
    ap.add_argument("--pipelines", default=None, help="comma-separated (default: all registered)")
    ap.add_argument("--skip-original", action="store_true", help="skip the 2018 code")
    ap.add_argument("--skip-peer", action="store_true", help="skip the peer method")
    ap.add_argument("--skip-at", action="store_true", help="weiler14_dev only")
    ap.add_argument("--skip-calibration", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument(
        "--dognet", type=Path, default=None,
        help="a checkout of github.com/kulikovv/dognet: also score its weiler14 crops",
    )  # fmt: skip
    args = ap.parse_args()
    if not (args.data / "weiler14_dev" / "crop_400500.npz").is_file():
        ap.error(f"no weiler14_dev/crop_400500.npz under {args.data} (see --data)")
    crops = sorted(args.dognet.rglob("weiler300400_*.mat")) if args.dognet else []
    if args.dognet and not crops:
        ap.error(f"no weiler300400_*.mat under {args.dognet} (see --dognet)")
    names = args.pipelines.split(",") if args.pipelines else available_pipelines()
    detectors: dict[str, Detector] = {n: _registry_detector(n) for n in names}
    if not args.skip_original:
        detectors[ORIGINAL] = _original
    if not args.skip_peer:
        detectors[PEER] = _peer
    report: dict[str, Any] = {
        "data": str(args.data.resolve()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "pipelines": names,
        "weiler14_dev": {},
    }
    for name, fn in detectors.items():
        report["weiler14_dev"][name] = _guarded(weiler, args.data, fn)
    if crops:
        report["dognet_weiler14"] = {
            path.stem.removeprefix("weiler300400_"): {
                name: _guarded(dognet_crop, path, fn) for name, fn in detectors.items()
            }
            for path in crops
        }
    if not args.skip_at:
        pre, post, peer = load_at(args.data)
        report["at_example"] = {
            name: _guarded(at_example, pre, post, peer, fn) for name, fn in detectors.items()
        }
        if not args.skip_calibration:
            report["calibration"] = calibration(pre, post)
    _print_tables(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
