"""PAIRS' explanation of an empty result, in a sentence, from what the detector measured.

Owns :func:`explain_empty` (from the thresholds and each channel's candidate puncta) and
:func:`whole_volume_puncta` (the one-job puncta, computed in the memory of the all-zero
labels). A blockwise run gathers the same puncta with
:func:`~synapse_pipelines.science.paired_puncta_blocks.block_puncta`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from synapse_pipelines.core.geometry import Box
from synapse_pipelines.science import paired_puncta_kernels as kernels
from synapse_pipelines.science.paired_puncta_blocks import (
    CHANNELS,
    SectionThresholds,
    region_evidence,
    region_seeds,
    strong_seed_levels,
)
from synapse_pipelines.science.paired_puncta_geometry import PairsGeometry

__all__ = ["explain_empty", "whole_volume_puncta"]


def whole_volume_puncta(
    pre: np.ndarray,
    post: np.ndarray,
    thr: SectionThresholds,
    g: PairsGeometry,
    labels: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel puncta: maxima of ``D / T`` >= ``seed_level`` within the seed radius.

    Only run for an empty result, whose (all-zero) ``labels`` lend their memory to the
    ratio and are zeroed again: the explanation costs no memory beyond the detection's.
    """
    whole = Box.from_shape(g.volume_shape)
    core: kernels.Core = tuple((0, n) for n in g.volume_shape)  # type: ignore[assignment]
    level = g.params["seed_level"]
    found = []
    for mode in (1, 2):
        e, _, cand, counts = region_evidence(
            pre, post, whole, whole, thr, g, mode=mode, level=level, out=labels.view(np.float32)
        )
        found.append(region_seeds(e, cand, int(counts[0]), core, g, level))
    labels.fill(0)
    return found[0], found[1]


def explain_empty(
    g: PairsGeometry,
    thr: SectionThresholds,
    *,
    presynaptic_puncta: np.ndarray,
    postsynaptic_puncta: np.ndarray,
    seeds: int = 0,
    largest_region_voxels: int = 0,
    voxels_in_both: int | None = None,
) -> str:
    """Why no synapse was found, in a sentence, from what the detector measured.

    ``*_puncta``: (n, 3) voxel coordinates of each channel's candidate puncta (maxima of
    ``D / T`` at or above ``seed_level``); ``seeds``/``largest_region_voxels``: what the
    size filter removed, when it removed everything; ``voxels_in_both``: voxels where both
    channels pass their thresholds, when the caller counted them.
    """
    floor = g.params["noise_floor_sigma"]
    flat = [c for c in CHANNELS if not np.isfinite(thr.stats[c]["threshold"]).any()]
    if flat:
        which = " and the ".join(flat)
        return (
            f"the {which} channel{'s are' if len(flat) > 1 else ' is'} flat: no voxel is "
            f"brighter than its surroundings within {g.params['background_radius_nm']:g} nm, "
            "so there are no puncta; check that the box covers imaged tissue and that the "
            "right channels were selected"
        )
    if seeds:
        um3 = largest_region_voxels * math.prod(g.voxel_size) / 1e9
        return (
            f"{seeds} synapse(s) were detected but every one is smaller than min_volume_um3 = "
            f"{g.params['min_volume_um3']:g} um^3 (the largest is {um3:.4f} um^3, "
            f"{largest_region_voxels} voxels); lower min_volume_um3"
        )
    at_floor = []
    for c in CHANNELS:
        s = thr.stats[c]
        finite = np.isfinite(s["otsu_split"])
        noise, otsu = s["noise_sigma"][finite], s["otsu_split"][finite]
        if finite.any() and np.all(floor * noise >= g.k * otsu):
            at_floor.append(c)
    counts = {"presynaptic": len(presynaptic_puncta), "postsynaptic": len(postsynaptic_puncta)}
    none = [c for c in CHANNELS if counts[c] == 0]
    if none:
        c = none[0]
        text = (
            f"the {c} channel has no punctum above its threshold"
            + (f" ({floor:g} sigma of its noise)" if c in at_floor else "")
            + f"; the {CHANNELS[1 - CHANNELS.index(c)]} channel has "
            f"{counts[CHANNELS[1 - CHANNELS.index(c)]]}"
        )
    elif voxels_in_both != 0 and (guarded := _guarded_sections(g, thr)):
        text = (
            (f"{voxels_in_both} voxel(s) pass both thresholds, but " if voxels_in_both else "")
            + f"in {guarded} of {g.volume_shape[0]} section(s) the thresholds lie within "
            f"{g.params['noise_guard_sigma']:g} pixel-noise sigmas, where a seed also needs "
            f"{g.support_voxels} voxels of foreground around it (noise_guard_sigma), and none "
            "has it: what passes there are specks of noise, not puncta"
        )
    else:
        scale = np.array(g.voxel_size)
        dist, _ = cKDTree(presynaptic_puncta * scale).query(postsynaptic_puncta * scale)
        nearest = float(np.min(dist))
        offset = g.params["pair_offset_nm"]
        text = (
            "no voxel where both channels exceed their thresholds: the presynaptic channel "
            f"has {counts['presynaptic']} candidate puncta, the postsynaptic "
            f"{counts['postsynaptic']}, "
            + (
                f"none within {offset:g} nm of each other (the nearest pair is "
                f"{nearest:.0f} nm apart)"
                if nearest > offset
                else f"and even the nearest pair ({nearest:.0f} nm apart) does not overlap "
                "enough for both channels to exceed their thresholds at one voxel"
            )
        )
    if at_floor:
        which = " and the ".join(at_floor)
        return (
            f"every section's threshold sits at the noise floor ({floor:g} sigma of the noise) "
            f"in the {which} channel{'s' if len(at_floor) > 1 else ''}: SNR too low for puncta "
            f"to stand out; {text}"
        )
    return f"{text}; check the channel choice and the channels' registration"


def _guarded_sections(g: PairsGeometry, thr: SectionThresholds) -> int:
    """Sections where the noise guard asks every seed below its level for support."""
    levels = strong_seed_levels(thr, g, 0, g.volume_shape[0])
    return int(np.count_nonzero(levels > np.float32(g.params["seed_level"])))
