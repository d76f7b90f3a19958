"""Choose a detector's operating point from the user's own annotation (``tune``).

Why this exists: PAIRS' thresholds are relative to each section's puncta, and its evidence
levels (1 for a seed, 0.5 for the foreground) are where one set of experts drew the line
between a synapse and a dim pair. Another lab's experts draw it elsewhere: the two
expert-annotated weiler14 crops disagree about it, and so does every method measured on
them (docs/real_data.md). Where a user has annotated part of an experiment, the level
that reproduces *their* annotation is the better choice, and one number moves it: the
pipeline's ``operating_point`` (``core.pipelines``) scales its evidence levels together.

Choosing the best of many levels on the very points it is scored on flatters it, so the
sweep also gives a held-out figure: the volume is cut into strips along x, and for each
strip in turn the level is chosen on the others and scored on it (cross-validation by
region, as annotations are made region by region). Each level's detections are matched to
the points once, over the whole volume, and the strips share out that one matching: a
matched pair counts in the strip of its annotated point, an unmatched point or detection in
its own. So a synapse and a detection on either side of a border still match, and the
strips' counts add up to the whole volume's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from synapse_pipelines.core.errors import DetectionError, RequestValidationError
from synapse_pipelines.core.pipelines import (
    Pipeline,
    get_pipeline,
    operating_point_parameters,
    validate_parameters,
)
from synapse_pipelines.science.evaluation import (
    centroids_from_labels,
    evaluate_points,
    points_outside,
    scores_from_counts,
)
from synapse_pipelines.workflow.resolution_check import run_on_a_grid_that_runs

#: Levels swept when none are given: from twice as permissive to twice as strict, denser
#: near the default (1) where the weiler14 crops' best levels lie (0.7-1.15).
DEFAULT_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.15, 1.3, 1.5, 1.75, 2.0)
#: Below this many annotated synapses one match more or less moves F1 by over 2.5 % (1 / n).
FEW_POINTS = 40


@dataclass(frozen=True)
class LevelScore:
    """One level of the sweep, scored on every annotated point."""

    level: float
    parameters: dict[str, float]  # the operating point's parameters at this level
    detections: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class StripScore:
    """One strip held out: the level chosen on the other strips, and both F1s on it."""

    strip: int
    x_range: tuple[int, int]  # global voxels, [start, stop)
    truth_points: int
    chosen_level: float
    f1_chosen: float
    f1_default: float


@dataclass(frozen=True)
class OperatingPointSweep:
    """What ``tune`` reports (``to_dict`` is its JSON)."""

    pipeline: str
    levels: list[LevelScore]
    best: LevelScore  # the highest F1 on every point (ties: the level nearest 1)
    default: LevelScore  # level 1: the pipeline's defaults
    strips: list[StripScore]
    #: F1 over the held-out strips pooled (match counts summed), at each strip's chosen
    #: level and at the default; None with fewer than two strips
    held_out_f1: float | None
    held_out_default_f1: float | None
    truth_points: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _nearest_one_first(levels: Sequence[float], f1: np.ndarray) -> int:
    """The index of the highest F1; among ties, the level nearest the default (1)."""
    top = f1.max()
    tied = [i for i in range(len(levels)) if f1[i] >= top - 1e-12]
    return min(tied, key=lambda i: (abs(math.log(levels[i])), levels[i]))


def _f1(counts: np.ndarray) -> np.ndarray:
    """F1 of each row of (tp, fp, fn) counts."""
    return np.array([scores_from_counts(*map(int, row))[2] for row in counts])


def _strip_of(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)


def level_parameters(
    runner: Pipeline,
    parameters: Mapping[str, int | float],
    levels: Sequence[float],
    *,
    field: str = "levels",
) -> tuple[list[float], list[dict[str, int | float]]]:
    """The levels to run (sorted, with the default 1 added) and each one's checked
    parameters; raises :class:`DetectionError` (``field``) before anything runs when the
    pipeline has no operating point or refuses a level's parameters."""
    if operating_point_parameters(runner, 1.0) is None:
        raise DetectionError(
            f"pipeline {runner.name!r} declares no operating point to tune",
            field="pipeline",
            hint="tune a pipeline that declares one (paired-puncta), or sweep its "
            "parameters by hand with detect -p and evaluate",
        )
    chosen = sorted({float(v) for v in levels} | {1.0})
    if chosen[0] <= 0 or not all(math.isfinite(v) for v in chosen):
        raise DetectionError(
            f"levels must be positive numbers, got {', '.join(f'{v:g}' for v in chosen)}",
            field=field,
            hint="give levels such as 0.5,0.7,1,1.5 (1 is the pipeline's default)",
        )
    checked = []
    for level in chosen:
        point = operating_point_parameters(runner, level) or {}
        try:
            checked.append(validate_parameters(runner, {**parameters, **point}))
        except RequestValidationError as exc:
            problems = "; ".join(f"{f.removeprefix('pipeline_parameters.')}: {m}"
                                 for f, m in exc.problems)  # fmt: skip
            raise DetectionError(
                f"level {level:g} gives parameters {runner.name} refuses: {problems}",
                field=field,
                hint="drop that level, or change the other parameters (-p) it conflicts with",
            ) from exc
    return chosen, checked


def strip_counts(
    matches: np.ndarray, detection_strip: np.ndarray, truth_strip: np.ndarray, strips: int
) -> np.ndarray:
    """``(strips, 3)`` (tp, fp, fn) from one matching of the whole volume (``matches``: rows
    of (detection, point) indices): a matched pair counts in its point's strip, an unmatched
    detection or point in its own, so the rows add up to the whole volume's counts."""
    matched_detection = np.zeros(len(detection_strip), dtype=bool)
    matched_point = np.zeros(len(truth_strip), dtype=bool)
    matched_detection[matches[:, 0]] = True
    matched_point[matches[:, 1]] = True
    return np.stack(
        [
            np.bincount(truth_strip[matched_point], minlength=strips),
            np.bincount(detection_strip[~matched_detection], minlength=strips),
            np.bincount(truth_strip[~matched_point], minlength=strips),
        ],
        axis=1,
    ).astype(np.int64)


def held_out(
    counts: np.ndarray,
    levels: Sequence[float],
    edges: np.ndarray,
    truth_strip: np.ndarray,
) -> tuple[list[StripScore], float | None, float | None]:
    """Cross-validation by strip: ``counts[level, strip] = (tp, fp, fn)``. Each strip is
    scored at the level with the best F1 on the other strips' counts summed (ties: nearest
    1), and at the default (level 1); returns the strips and both F1s of the held-out
    counts pooled (None with one strip)."""
    n_strips = counts.shape[1]
    if n_strips < 2:
        return [], None, None
    one = list(levels).index(1.0)
    held: list[StripScore] = []
    pooled = np.zeros(3, dtype=np.int64)
    pooled_default = np.zeros(3, dtype=np.int64)
    for s in range(n_strips):
        others = counts[:, [t for t in range(n_strips) if t != s]].sum(axis=1)
        pick = _nearest_one_first(levels, _f1(others))
        pooled += counts[pick, s]
        pooled_default += counts[one, s]
        held.append(
            StripScore(
                strip=s,
                x_range=(int(edges[s]), int(edges[s + 1])),
                truth_points=int((truth_strip == s).sum()),
                chosen_level=float(levels[pick]),
                f1_chosen=float(_f1(counts[pick, s][None])[0]),
                f1_default=float(_f1(counts[one, s][None])[0]),
            )
        )
    return held, float(_f1(pooled[None])[0]), float(_f1(pooled_default[None])[0])


def sweep_operating_point(
    pipeline: str,
    channels: Mapping[str, np.ndarray],
    presynaptic: str,
    postsynaptic: str,
    voxel_size_nm: tuple[float, float, float] | None,
    parameters: Mapping[str, int | float],
    truth: np.ndarray,
    *,
    origin: Sequence[int],
    max_distance: float,
    matching_scale: Sequence[float],
    levels: Sequence[float] = DEFAULT_LEVELS,
    strips: int = 2,
    grid_level: int | None = None,
) -> OperatingPointSweep:
    """Run ``pipeline`` at each level of its operating point and score it on ``truth``.

    ``truth``: (N, 3) z, y, x or (N, 2) y, x global voxel coordinates (``evaluate``'s
    points); ``origin``: the global voxel of the volume's first voxel; ``max_distance`` in
    the units of ``matching_scale`` (the voxel size, or ones for pixels). ``parameters``
    are the pipeline's other parameters (its operating point's are set per level);
    ``grid_level``: the in-plane grid to detect on (``resolution_check``), None for the
    input's or the first coarser one the pipeline runs at.
    """
    runner = get_pipeline(pipeline)
    chosen, per_level = level_parameters(runner, parameters, levels)
    if strips < 1:
        raise DetectionError(
            f"strips must be at least 1, got {strips}",
            field="strips",
            hint="use 2 or more for a held-out F1, 1 for none",
        )
    truth = np.asarray(truth, dtype=np.float64)
    shape = channels[presynaptic].shape
    edges = np.linspace(origin[2], origin[2] + shape[2], strips + 1).round().astype(int)
    truth_strip = _strip_of(truth[:, -1], edges) if len(truth) else np.zeros(0, int)
    scores: list[LevelScore] = []
    counts = np.zeros((len(chosen), strips, 3), dtype=np.int64)  # tp, fp, fn
    for i, (level, params) in enumerate(zip(chosen, per_level, strict=True)):
        point = operating_point_parameters(runner, level) or {}
        result = run_on_a_grid_that_runs(
            pipeline, channels, presynaptic, postsynaptic, voxel_size_nm, params, grid_level
        )
        _, cents = centroids_from_labels(result.labels)
        cents = cents + np.asarray(origin, dtype=np.float64)
        whole = evaluate_points(cents, truth, max_distance=max_distance, voxel_size=matching_scale)
        scores.append(
            LevelScore(
                level=level,
                parameters=point,
                detections=len(cents),
                tp=whole.tp,
                fp=whole.fp,
                fn=whole.fn,
                precision=whole.precision,
                recall=whole.recall,
                f1=whole.f1,
            )
        )
        counts[i] = strip_counts(whole.matches, _strip_of(cents[:, 2], edges), truth_strip, strips)
    f1_all = np.array([s.f1 for s in scores])
    best = scores[_nearest_one_first(chosen, f1_all)]
    default = scores[chosen.index(1.0)]
    held, held_f1, held_default = held_out(counts, chosen, edges, truth_strip)
    return OperatingPointSweep(
        pipeline=pipeline,
        levels=scores,
        best=best,
        default=default,
        strips=held,
        held_out_f1=held_f1,
        held_out_default_f1=held_default,
        truth_points=len(truth),
        warnings=_warnings(scores, best, held_f1, held_default, truth, origin, shape),
    )


def _warnings(
    scores: list[LevelScore],
    best: LevelScore,
    held_f1: float | None,
    held_default: float | None,
    truth: np.ndarray,
    origin: Sequence[int],
    shape: Sequence[int],
) -> list[str]:
    """What makes the choice uncertain, in plain words."""
    out: list[str] = []
    n = len(truth)
    if n == 0:
        return ["the annotation holds no points: nothing to choose a level by"]
    outside = points_outside(truth, origin, shape)
    if outside:
        out.append(
            f"{outside} of {n} annotated points lie outside the volume and count as misses "
            "at every level (evaluate's warning explains the usual causes)"
        )
    if n < FEW_POINTS:
        out.append(
            f"only {n} annotated synapses: one match more or less moves F1 by about "
            f"{1 / n:.2f}, so levels within a few of that of the best are as good; annotate "
            "more (a few hundred) for a firm choice"
        )
    if best.level != 1.0 and best.level in (scores[0].level, scores[-1].level):
        out.append(
            f"the best level ({best.level:g}) is the sweep's "
            f"{'lowest' if best.level == scores[0].level else 'highest'}: extend --levels"
        )
    if held_f1 is not None and held_default is not None and held_f1 <= held_default:
        out.append(
            f"chosen on part of the annotation, the level did not beat the default on the "
            f"rest (held-out F1 {held_f1:.3f} against {held_default:.3f}): keep the default"
        )
    return out
