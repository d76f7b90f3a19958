"""What choosing PAIRS' operating point from an annotation (``synapse-pipelines tune``) gains.

For each annotated volume the sweep of ``workflow.operating_point_sweep`` runs PAIRS at the
default levels (0.5-2 times its evidence levels) and reports:

- ``default``: F1 at level 1 (PAIRS as shipped);
- ``best``: the best level's F1 on the same points (optimistic: chosen where scored);
- ``held out``: tune's own estimate, each of two strips along x scored at the level chosen
  on the other (the strips' F1 pooled; ``default`` on the same strips beside it);
- ``transfer``: F1 at the level chosen on a *different* volume of the same kind (the other
  seed of a grid cell; the other DoGNet crop), i.e. annotating one volume and running on
  the next.

Data: the realistic synthetic grid of ``tests/test_detection_grid.py`` (SNR 0.5-2 x density
0.5-2, seeds 0 and 1, 12 x 256 x 256, matched within 300 nm) and, with ``--dognet DIR``, the
two expert-annotated weiler14 crops DoGNet published (one plane each, within 3 px).

    python benchmarks/bench_operating_point.py [--dognet ../dognet] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_real_data import load_dognet_crop  # a sibling script: sys.path[0]

from synapse_pipelines.science.synthetic import (
    GRID_DENSITY,
    GRID_SEEDS,
    GRID_SHAPE,
    GRID_SNR,
    MATCH_NM,
    POSTSYNAPTIC,
    PRESYNAPTIC,
    make_experiment,
)
from synapse_pipelines.workflow.operating_point_sweep import (
    OperatingPointSweep,
    sweep_operating_point,
)

AT_VOXEL_NM = (70.0, 100.0, 100.0)


def _sweep(
    pre: np.ndarray,
    post: np.ndarray,
    voxel: tuple[float, float, float],
    truth: np.ndarray,
    max_distance: float,
    scale: tuple[float, float, float],
) -> OperatingPointSweep:
    return sweep_operating_point(
        "paired-puncta",
        {"pre": pre, "post": post},
        "pre",
        "post",
        voxel,
        {},
        truth,
        origin=(0, 0, 0),
        max_distance=max_distance,
        matching_scale=scale,
        strips=2,
    )


def _f1_at(sweep: OperatingPointSweep, level: float) -> float:
    return next(s.f1 for s in sweep.levels if s.level == level)


def _row(name: str, pair: list[OperatingPointSweep]) -> dict[str, Any]:
    """Both volumes' figures averaged; transfer: each at the other's best level."""
    a, b = pair
    return {
        "data": name,
        "default": float(np.mean([s.default.f1 for s in pair])),
        "best": float(np.mean([s.best.f1 for s in pair])),
        "held_out_default": float(np.mean([s.held_out_default_f1 for s in pair])),
        "held_out": float(np.mean([s.held_out_f1 for s in pair])),
        "transfer": float(np.mean([_f1_at(b, a.best.level), _f1_at(a, b.best.level)])),
        "best_levels": [a.best.level, b.best.level],
    }


def grid_rows() -> list[dict[str, Any]]:
    rows = []
    for snr in GRID_SNR:
        for density in GRID_DENSITY:
            pair = []
            for seed in GRID_SEEDS:
                exp = make_experiment(
                    GRID_SHAPE,
                    seed=seed,
                    snr=snr,
                    density=density,
                    channels=[PRESYNAPTIC, POSTSYNAPTIC],
                )
                vs = tuple(float(v) for v in exp.voxel_size)
                pair.append(
                    _sweep(
                        exp.channels[PRESYNAPTIC],
                        exp.channels[POSTSYNAPTIC],
                        vs,  # type: ignore[arg-type]
                        exp.synapse_centroids,
                        MATCH_NM,
                        vs,
                    )  # type: ignore[arg-type]
                )
            rows.append(_row(f"realistic SNR {snr:g} density {density:g}", pair))
    return rows


def crop_rows(dognet: Path) -> list[dict[str, Any]]:
    pair = []
    for crop in ("400500", "800900"):
        found = sorted(dognet.rglob(f"weiler300400_{crop}.mat"))
        if not found:
            raise SystemExit(f"no weiler300400_{crop}.mat under {dognet} (see --dognet)")
        pre, post, points = load_dognet_crop(found[0])
        pair.append(_sweep(pre, post, AT_VOXEL_NM, points, 3.0, (1.0, 1.0, 1.0)))
    rows = []
    for i, crop in enumerate(("400500", "800900")):
        own, other = pair[i], pair[1 - i]
        rows.append(
            {
                "data": f"DoGNet weiler14 {crop} ({own.truth_points} expert points)",
                "default": own.default.f1,
                "best": own.best.f1,
                "held_out_default": own.held_out_default_f1,
                "held_out": own.held_out_f1,
                "transfer": _f1_at(own, other.best.level),
                "best_levels": [own.best.level, other.best.level],
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dognet", type=Path, help="a clone of github.com/kulikovv/dognet")
    ap.add_argument("--skip-grid", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    start = time.perf_counter()
    rows = [] if args.skip_grid else grid_rows()
    if rows:
        keys = ("default", "best", "held_out_default", "held_out", "transfer")
        rows.append(
            {
                "data": "realistic grid, mean of 9 cells",
                **{k: float(np.mean([r[k] for r in rows])) for k in keys},
                "best_levels": [],
            }
        )
    if args.dognet:
        rows += crop_rows(args.dognet)
    print("PAIRS' operating point chosen from an annotation (tune): F1")
    print(
        f"{'data':48s} {'default':>8s} {'best':>6s} {'strips':>7s} {'held out':>9s} "
        f"{'transfer':>9s}  best levels"
    )
    for r in rows:
        levels = " / ".join(f"{v:g}" for v in r["best_levels"])
        print(
            f"{r['data']:48s} {r['default']:8.3f} {r['best']:6.3f} "
            f"{r['held_out_default']:7.3f} {r['held_out']:9.3f} {r['transfer']:9.3f}  {levels}"
        )
    print(
        "strips: the default on tune's two strips (the held-out figure's baseline); "
        "transfer: at the level chosen on the other volume (grid: the other seed; crops: "
        f"the other crop). {time.perf_counter() - start:.0f} s"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
