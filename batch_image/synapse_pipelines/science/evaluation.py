"""Object-level precision, recall and F1 by one-to-one centroid matching, and the readers
of point annotations (CSV of z,y,x or y,x; the weiler14 npz layout) it scores against.

A predicted synapse and a true synapse may match when their centroids lie within
``max_distance`` of each other (Euclidean, in physical units: voxel coordinates times the
z, y, x voxel size; the bound is inclusive). Each object matches at most once. Among all
such one-to-one matchings we take one with the **most matches** and, among those, the
**smallest total distance** — an optimal assignment, not greedy nearest-first (greedy can
steal a truth from a prediction that had no other candidate, losing a match).

How: a cKDTree gives the sparse set of candidate pairs within the distance; the bipartite
candidate graph is split into connected components, and each component with more than one
pair is solved exactly by :func:`scipy.optimize.linear_sum_assignment` on a dense matrix
of that component only, with cost ``distance - C`` for candidates and 0 otherwise, where
``C > (k + 1) * max_distance`` for k the component's smaller side: one more match always
lowers the cost more than any change of distances, so cardinality comes first.

Point annotations without z (y, x only: one plane, or a projection of a stack) are scored
in 2-D: predictions are matched by their y, x wherever they are in z
(:func:`evaluate_points`). :func:`matching_rule` says in words which rule was used.

Conventions for empty inputs (never NaN):
``precision = tp / (tp + fp)``, 1.0 when there are no predictions (no false positive was
made); ``recall = tp / (tp + fn)``, 1.0 when there is no truth (nothing was missed);
``f1 = 2 tp / (2 tp + fp + fn)``, 1.0 when both are empty and 0.0 when exactly one is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.geometry import NANOMETERS_PER_UNIT, PIXEL, normalise_unit
from synapse_pipelines.science.features import object_geometry

#: Largest dense assignment problem solved for one cluster (cells = predictions x truths,
#: 8 bytes each): 200 MB. Reached only when the distance spans many synapses.
MAX_CLUSTER_CELLS = 25_000_000


class EvaluationInputError(SynapsePipelinesError):
    """Centroids or distance given to the evaluation are unusable."""

    error_type = "EvaluationInputError"


@dataclass(frozen=True)
class EvaluationResult:
    """Counts, scores and the matched pairs (indices into the inputs, and distances)."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    max_distance: float
    voxel_size: tuple[float, float, float]
    n_predicted: int
    n_truth: int
    #: (k, 2) int array: row i = (index into predicted, index into truth)
    matches: np.ndarray = field(repr=False)
    #: (k,) physical distances of the matched pairs
    distances: np.ndarray = field(repr=False)

    def to_dict(self, *, include_matches: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "max_distance": self.max_distance,
            "voxel_size": list(self.voxel_size),
            "n_predicted": self.n_predicted,
            "n_truth": self.n_truth,
            "mean_matched_distance": (
                float(self.distances.mean()) if self.distances.size else None
            ),
        }
        if include_matches:
            out["matches"] = [
                {"predicted": int(p), "truth": int(t), "distance": float(d)}
                for (p, t), d in zip(self.matches, self.distances, strict=True)
            ]
        return out


def _as_points(points: Any, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 3), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise EvaluationInputError(
            f"{name} centroids must be an (n, 3) array of z, y, x; got shape {arr.shape}",
            field=name,
        )
    if not np.isfinite(arr).all():
        raise EvaluationInputError(f"{name} centroids contain NaN or infinity", field=name)
    return arr


def centroids_from_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, centroids in voxels) of every non-zero label, e.g. an annotation channel."""
    geo = object_geometry(labels)
    return geo.ids, geo.centroids


def slice_centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, centroids) of every (label, z-slice) piece: the 2-D objects of each slice.

    Centroids are (z, y, x) with z the slice index; rows sorted by slice, then id.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise EvaluationInputError(
            f"per-slice evaluation needs a 3-D label volume, got shape {labels.shape}",
            field="labels",
        )
    plane = labels.shape[1] * labels.shape[2]
    flat = labels.reshape(-1)
    fg = np.flatnonzero(flat)
    if fg.size == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros((0, 3), dtype=np.float64)
    lab = flat[fg]
    z = fg // plane
    order = np.lexsort((lab, z))
    lab, z, fg = lab[order], z[order], fg[order]
    starts = np.flatnonzero(np.r_[True, (lab[1:] != lab[:-1]) | (z[1:] != z[:-1])])
    counts = np.diff(np.r_[starts, fg.size])
    rem = fg % plane
    cy = np.add.reduceat(rem // labels.shape[2], starts) / counts
    cx = np.add.reduceat(rem % labels.shape[2], starts) / counts
    cents = np.stack([z[starts].astype(np.float64), cy, cx], axis=1)
    return lab[starts].astype(np.uint64), cents


def evaluate_per_slice(
    predicted: np.ndarray,
    truth: np.ndarray,
    *,
    max_distance: float,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
) -> EvaluationResult:
    """2-D evaluation: every (label, slice) piece is an object; matches stay in one slice.

    This is how the published collman15v2 figures were computed (2-D per slice, centroid
    matching). Both inputs are label volumes of one shape; distances use the y, x voxel
    size. Implemented as one 3-D matching in which slices are set further apart than
    ``max_distance``, which is exactly the sum of independent per-slice matchings.
    """
    pred, true = np.asarray(predicted), np.asarray(truth)
    if pred.shape != true.shape:
        raise EvaluationInputError(
            f"predictions {pred.shape} and truth {true.shape} differ in shape",
            field="truth",
            hint="per-slice evaluation compares two label volumes of the same box",
        )
    vs = [float(v) for v in voxel_size]
    separation = 2.0 * float(max_distance) + 1.0
    scale = (separation, vs[1], vs[2])
    result = evaluate_centroids(
        slice_centroids(pred)[1],
        slice_centroids(true)[1],
        max_distance=max_distance,
        voxel_size=scale,
    )
    return dataclasses.replace(result, voxel_size=(vs[0], vs[1], vs[2]))


def match_centroids(
    predicted: np.ndarray,
    truth: np.ndarray,
    max_distance: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of two physical point sets; (pairs (k, 2), distances)."""
    empty = (np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float64))
    if len(predicted) == 0 or len(truth) == 0:
        return empty
    # 'ndarray' output keeps pairs at distance exactly 0 (a sparse matrix would drop them)
    pairs = cKDTree(predicted).sparse_distance_matrix(
        cKDTree(truth), max_distance, output_type="ndarray"
    )
    if pairs.size == 0:
        return empty
    pi = pairs["i"].astype(np.int64)
    ti = pairs["j"].astype(np.int64)
    dist = pairs["v"].astype(np.float64)
    n_p, n_t = len(predicted), len(truth)
    graph = coo_matrix((np.ones(pi.size), (pi, n_p + ti)), shape=(n_p + n_t, n_p + n_t))
    _, comp = connected_components(graph, directed=False)
    pair_comp = comp[pi]
    # components with exactly one candidate pair (the common case) match directly
    per_comp = np.bincount(pair_comp, minlength=comp.max() + 1)
    single = per_comp[pair_comp] == 1
    out_p = [pi[single]]
    out_t = [ti[single]]
    multi = np.flatnonzero(~single)
    if multi.size:
        order = multi[np.argsort(pair_comp[multi], kind="stable")]
        bounds = np.flatnonzero(np.diff(pair_comp[order])) + 1
        for group in np.split(order, bounds):  # one iteration per ambiguous cluster
            gp, gp_inv = np.unique(pi[group], return_inverse=True)
            gt, gt_inv = np.unique(ti[group], return_inverse=True)
            if gp.size * gt.size > MAX_CLUSTER_CELLS:
                raise EvaluationInputError(
                    f"{gp.size} predictions and {gt.size} truths form one cluster within "
                    f"{max_distance:g} of each other: the distance is far larger than the "
                    "spacing of the synapses",
                    field="max_distance",
                    hint="use a distance about the size of one synapse (e.g. 2-3 voxels)",
                )
            big = (min(gp.size, gt.size) + 1) * max(max_distance, 1e-12) * 2.0 + 1.0
            cost = np.zeros((gp.size, gt.size), dtype=np.float64)
            cost[gp_inv, gt_inv] = dist[group] - big
            rows, cols = linear_sum_assignment(cost)
            keep = cost[rows, cols] < 0  # drop assignments that are not candidates
            out_p.append(gp[rows[keep]])
            out_t.append(gt[cols[keep]])
    p_all = np.concatenate(out_p)
    t_all = np.concatenate(out_t)
    order = np.argsort(p_all, kind="stable")
    matches = np.stack([p_all[order], t_all[order]], axis=1)
    # distances from the points themselves (the shifted costs would lose low bits)
    d_exact = np.linalg.norm(predicted[matches[:, 0]] - truth[matches[:, 1]], axis=1)
    return matches, d_exact


def scores_from_counts(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from match counts (1.0 where nothing was to be found)."""
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return precision, recall, f1


def evaluate_centroids(
    predicted: Any,
    truth: Any,
    *,
    max_distance: float,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
) -> EvaluationResult:
    """Precision, recall and F1 of ``predicted`` against ``truth`` centroids (z, y, x voxels).

    Both are in the same voxel frame; ``voxel_size`` (z, y, x) converts them to physical
    units, in which ``max_distance`` is given.
    """
    if not np.isfinite(max_distance) or max_distance < 0:
        raise EvaluationInputError(
            f"the matching distance must be a non-negative number; got {max_distance}",
            field="max_distance",
            hint="give it in the voxel size's physical unit, e.g. 500 (nm)",
        )
    vs = np.asarray([float(v) for v in voxel_size], dtype=np.float64)
    if vs.shape != (3,) or not (np.isfinite(vs).all() and (vs > 0).all()):
        raise EvaluationInputError(
            f"voxel size must be three positive numbers (z, y, x); got {tuple(voxel_size)}",
            field="voxel_size",
        )
    pred = _as_points(predicted, "predicted") * vs
    true = _as_points(truth, "truth") * vs
    matches, distances = match_centroids(pred, true, float(max_distance))
    tp = len(matches)
    fp = len(pred) - tp
    fn = len(true) - tp
    precision, recall, f1 = scores_from_counts(tp, fp, fn)
    return EvaluationResult(
        tp=tp,
        fp=fp,
        fn=fn,
        precision=precision,
        recall=recall,
        f1=f1,
        max_distance=float(max_distance),
        voxel_size=tuple(float(v) for v in vs),  # type: ignore[arg-type]
        n_predicted=len(pred),
        n_truth=len(true),
        matches=matches,
        distances=distances,
    )


def evaluate_labels(
    predicted: np.ndarray,
    truth: np.ndarray,
    *,
    max_distance: float,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
) -> EvaluationResult:
    """Like :func:`evaluate_centroids` with either side given as a labelled volume.

    A 3-D integer array is taken as labels (centroid per id, e.g. ``synapse_ids`` or an
    annotation channel); an (n, 3) array as centroids.
    """

    def points(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        return centroids_from_labels(x)[1] if x.ndim == 3 else x

    return evaluate_centroids(
        points(predicted), points(truth), max_distance=max_distance, voxel_size=voxel_size
    )


# -- point annotations ------------------------------------------------------------------


def length_unit(unit: str) -> str:
    """Canonical name of a length unit (``nm`` -> ``nanometers``; ``px`` -> ``pixel``: a
    distance in voxels)."""
    name = normalise_unit(unit)
    if name is None:
        raise EvaluationInputError(
            f"unknown unit {unit!r}",
            field="--unit",
            hint="use nm, um, mm, or px (a distance in voxels)",
        )
    return name


def distance_in_voxel_unit(distance: float, unit: str, voxel_unit: str | None) -> float:
    """``distance`` given in ``unit`` expressed in ``voxel_unit`` (the unit the voxel size
    is recorded in), e.g. 300 nm -> 0.3 when voxels are in micrometers."""
    unit = length_unit(unit)
    target = normalise_unit(voxel_unit)
    if unit == target:
        return float(distance)
    if target is None or target == PIXEL:
        raise EvaluationInputError(
            f"a distance in {unit} needs a physical voxel size, and the voxel unit is "
            f"{voxel_unit or 'not recorded'}",
            field="--unit",
            hint="pass --voxel-size with its unit (e.g. 70,100,100 and --unit nm), or give "
            "the distance in voxels with --unit px",
        )
    if unit == PIXEL:  # callers match in voxel coordinates instead
        raise ValueError("a distance in voxels has no physical equivalent")
    return float(distance) * NANOMETERS_PER_UNIT[unit] / NANOMETERS_PER_UNIT[target]


def evaluate_points(
    predicted: Any,
    truth: Any,
    *,
    max_distance: float,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
) -> EvaluationResult:
    """:func:`evaluate_centroids` for truth given as (N, 3) z, y, x **or (N, 2) y, x**.

    Two-column truth has no z: predictions (z, y, x) are matched by their y, x only, with
    the y, x voxel size (the annotation marks a synapse in a single plane, or in whichever
    plane of the stack it lies).
    """
    true = np.asarray(truth, dtype=np.float64)
    if true.ndim == 2 and true.shape[1] == 2:
        pred = _as_points(predicted, "predicted")
        vs = [float(v) for v in voxel_size]
        flat_pred = np.column_stack([np.zeros(len(pred)), pred[:, 1:]])
        flat_true = np.column_stack([np.zeros(len(true)), true])
        result = evaluate_centroids(
            flat_pred, flat_true, max_distance=max_distance, voxel_size=(1.0, vs[1], vs[2])
        )
        return dataclasses.replace(result, voxel_size=(vs[0], vs[1], vs[2]))
    return evaluate_centroids(predicted, truth, max_distance=max_distance, voxel_size=voxel_size)


def matching_rule(
    *,
    mode: str,
    max_distance: float,
    unit: str,
    voxel_size: Sequence[float],
    voxel_unit: str | None,
) -> str:
    """One sentence stating how predictions were matched, for summaries and JSON."""
    vs = ",".join(f"{float(v):g}" for v in voxel_size)
    where = {
        "3-D": "3-D centroid distance",
        "2-D (y,x)": "y,x distance (the truth has no z: a prediction in any plane may match)",
        "2-D per slice": "2-D distance within each z-slice",
    }[mode]
    scale = (
        "in voxels"
        if length_unit(unit) == PIXEL
        else f"voxel size {vs} {voxel_unit or ''}".rstrip()
    )
    return (
        f"one-to-one (optimal: most matches, then least total distance) within "
        f"{max_distance:g} {unit}, {where}, {scale}"
    )


def points_outside(points: np.ndarray, origin: Sequence[float], shape: Sequence[int]) -> int:
    """How many points lie outside the box ``origin .. origin + shape`` (voxel coordinates,
    voxel centres on integers). 2-D points (y, x) are checked against the box's y and x."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        return 0
    n = pts.shape[1]
    low = np.asarray(origin, dtype=np.float64)[-n:] - 0.5
    high = low + np.asarray(shape, dtype=np.float64)[-n:]
    return int(np.count_nonzero(np.any((pts < low) | (pts > high), axis=1)))
