"""Seeded synthetic array-tomography (AT) experiments with known synapses.

Owns the public generator used by the tests, the benchmarks and the demo in place of
collman15v2 (whose channel names it copies), its calibrated profiles, and the checks that
keep it honest (:func:`intensity_statistics` against the real at_example figures and
:func:`oracle_f1`, the score of a perfect pairing of the true puncta). The rendering
primitives are in :mod:`synapse_pipelines.science.synthetic_render` and
:mod:`synapse_pipelines.science.synthetic_tissue`. Public API::

    make_experiment(shape=(16, 512, 512), *, seed, profile="realistic", snr=1.0,
                    density=1.0, drift=1.0, shift_nm=50.0, unpaired=1.0,
                    misregistration=0.0, voxel_size=(70, 100, 100), channels=None,
                    dtype="uint8", n_synapses=None, **overrides) -> SyntheticExperiment

Profiles
========
``"realistic"`` (the default) is calibrated to the real at_example volume (8 x 1024 x
1344 uint8, synapsin / PSD-95; figures in ``../shared/realdata/README.md`` and
docs/detection.md): a dark, partly zero background (background-subtracted data), dense
bright puncta of log-normal brightness, most of them unpaired in each channel, diffuse
staining along process networks, voids, section-to-section gain drift, shot + correlated
read noise, soft saturation. Its intensity percentiles, mean and std stay within ~30 % of
the real ones (``tests/test_synthetic.py`` pins the ranges). Every knob is a multiplier of
the calibrated value (1.0 = like at_example):

- ``snr``: punctum amplitudes, relative to noise and diffuse staining;
- ``density``: the number of every kind of punctum (synapses and unpaired alike);
- ``unpaired``: the number of unpaired (orphan) puncta in each channel, synapses fixed;
- ``drift``: section-to-section variation (gain, diffuse level, noise, noisy sections);
- ``shift_nm``: a constant registration shift of PSD-95 against synapsin, (z, y, x) nm or
  a float ``s`` for ``(0, s / sqrt 2, s / sqrt 2)``; 50 nm by default (half a pixel:
  chromatic and mechanical registration is never perfect);
- ``misregistration``: at_example's per-section misregistration (PSD-95 rotated 0.7 deg,
  per-section translations of ~0.9 um RMS, tissue jitter and non-rigid warp between
  sections). 0 by default: at 1 no local detector can tell synapses from chance
  neighbours, and even a perfect pairing of the true puncta scores F1 ~0.5.

What makes the truth well defined (the realistic profile's three rules). At light
resolution a synapsin punctum and a PSD-95 punctum closer than ~250 nm *look* like a
synapse whatever they are, so a generator that put unpaired puncta there would score
detectors against a coin flip. So: (1) a synapse's pre/post centres are 150 +- 40 nm
apart, never more than ``offset_max_nm`` = 250 nm; (2) unpaired puncta keep
``orphan_clearance_nm`` = 350 nm from every punctum of the other channel (they are
unpaired *because* nothing is apposed to them); (3) synapse centres keep
``synapse_spacing_nm`` = 450 nm from each other (two synapses cannot overlap; puncta of
neighbours still touch). With these, a detector that pairs the true puncta centres within
250 nm and reports the midpoints scores F1 >= 0.95 (:func:`oracle_f1`), while most puncta
in each channel stay unpaired as in real AT.

``"sparse"`` is the first build's clean generator (high SNR, objects one per cell of a
jittered grid, never touching), kept so that older regression tests can pin it. It takes
``n_synapses`` and its own keyword options (``synapsin_only_fraction``,
``inhibitory_fraction``, ``psd_only_fraction``, ``vglut1_fraction``, ``nr1_fraction``,
``n_nuclei``, ``amplitude_range``, ``noise_scale``), not the realistic knobs.

The result, :class:`SyntheticExperiment`
========================================
- ``channels``: read-only C-order ZYX arrays (uint8, or uint16 = the uint8 scale x 257);
  ``Synapsin647`` (presynaptic: every synapse, inhibitory synapses, synapsin-only puncta),
  ``PSD95_488`` (postsynaptic: every excitatory synapse, PSD-95-only puncta),
  ``VGluT1_647``, ``GAD647``, ``gephyrin594``, ``NR1594``, ``DAPI1st`` (nuclei);
- ``voxel_size`` (z, y, x) in nanometers, default (70, 100, 100): AT cuts 70 nm sections
  imaged at ~100 nm per pixel;
- ``synapse_centroids``: (N, 3) z, y, x voxels of the true synapses, the midpoint of each
  synapsin / PSD-95 pair in the presynaptic channel's frame, in label order;
- ``annotation``: uint64 labels, synapse ``i`` on the voxels within 1.5 sigma of either of
  its puncta (like collman15v2's annotation channel);
- ``decoys``: (M, 3) centres of what is *not* a synapsin/PSD-95 synapse:
  ``synapsin_only``, ``inhibitory`` and ``psd_only``;
- extras: ``pre_centroids`` / ``post_centroids`` (each synapse's two puncta),
  ``registration`` (per channel: per-section y, x translation in voxels and rotation in
  degrees), ``params`` (the knobs and the achieved densities), ``puncta`` (every
  synapsin and PSD-95 punctum centre) and ``profile``.

Determinism: everything derives from ``numpy.random.SeedSequence(seed)``; geometry and the
tissue fields have their own child streams and so does each channel, so rendering a subset
of channels gives identical arrays. Shapes: any (Z, Y, X) with Z >= 1, including a single
plane. The default (16, 512, 512) two-channel experiment takes ~2-3 s of CPU. Pure numpy +
scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from synapse_pipelines.science.synthetic_profiles import (
    ALL_CHANNELS,
    AT_EXAMPLE_INTENSITY,
    DEFAULT_SHAPE,
    DEFAULT_VOXEL_SIZE,
    GRID_DENSITY,
    GRID_SEEDS,
    GRID_SHAPE,
    GRID_SNR,
    MATCH_NM,
    POSTSYNAPTIC,
    PRESYNAPTIC,
    PROFILES,
    REALISTIC,
    VOXEL_UNIT,
    ChannelStyle,
    Profile,
    SyntheticExperiment,
)
from synapse_pipelines.science.synthetic_realistic import make_realistic
from synapse_pipelines.science.synthetic_sparse import make_sparse

__all__ = [
    "ALL_CHANNELS",
    "AT_EXAMPLE_INTENSITY",
    "DEFAULT_SHAPE",
    "DEFAULT_VOXEL_SIZE",
    "GRID_DENSITY",
    "GRID_SEEDS",
    "GRID_SHAPE",
    "GRID_SNR",
    "MATCH_NM",
    "POSTSYNAPTIC",
    "PRESYNAPTIC",
    "PROFILES",
    "REALISTIC",
    "ChannelStyle",
    "Profile",
    "SyntheticExperiment",
    "intensity_statistics",
    "make_experiment",
    "oracle_f1",
]


# ------------------------------------------------------------------------------ public
def make_experiment(
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    *,
    seed: int,
    profile: str | Profile = "realistic",
    snr: float = 1.0,
    density: float = 1.0,
    drift: float = 1.0,
    shift_nm: tuple[float, float, float] | float = 50.0,
    unpaired: float = 1.0,
    misregistration: float = 0.0,
    voxel_size: tuple[float, float, float] = DEFAULT_VOXEL_SIZE,
    channels: Sequence[str] | None = None,
    dtype: Literal["uint8", "uint16"] = "uint8",
    n_synapses: int | None = None,
    **overrides: Any,
) -> SyntheticExperiment:
    """Generate a seeded synthetic experiment (see the module docstring).

    ``profile`` is ``"realistic"`` (default), ``"sparse"`` or a :class:`Profile`.
    ``overrides`` replace scalar fields of a realistic profile (e.g. ``offset_nm=200``,
    ``orphan_clearance_nm=0``) or are the sparse generator's own options.
    ``channels`` restricts which channels are rendered (default all); the truth and the
    rendered arrays do not depend on that choice.
    """
    shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive sizes (z, y, x), got {shape}")
    names = tuple(ALL_CHANNELS if channels is None else channels)
    unknown = [n for n in names if n not in ALL_CHANNELS]
    if unknown:
        raise ValueError(f"unknown synthetic channel(s) {unknown}; choose from {ALL_CHANNELS}")
    if dtype not in ("uint8", "uint16"):
        raise ValueError(f"dtype must be 'uint8' or 'uint16', got {dtype!r}")
    vs = tuple(float(v) for v in voxel_size)
    if len(vs) != 3 or not all(math.isfinite(v) and v > 0 for v in vs):
        raise ValueError(f"voxel_size must be three positive numbers (z, y, x), got {vs}")
    if profile == "sparse":
        knobs = {"snr": snr, "density": density, "drift": drift, "unpaired": unpaired}
        changed = [k for k, v in knobs.items() if v != 1.0]
        if misregistration != 0.0 or shift_nm != 50.0:
            changed += ["misregistration/shift_nm"]
        if changed:
            raise ValueError(
                f"{', '.join(changed)} apply to the realistic profile, not to "
                "profile='sparse' (which takes n_synapses and its own fractions)"
            )
        sp = make_sparse(shape, seed, names, vs, dtype, n_synapses, **overrides)  # type: ignore[arg-type]
        return SyntheticExperiment(
            channels=sp.channels,
            voxel_size=vs,  # type: ignore[arg-type]
            voxel_unit=VOXEL_UNIT,
            synapse_centroids=sp.synapse_centroids,
            annotation=sp.annotation,
            decoys=sp.decoys,
            seed=seed,
            pre_centroids=sp.pre_centroids,
            post_centroids=sp.post_centroids,
            profile="sparse",
        )
    if isinstance(profile, str):
        if profile != "realistic":
            raise ValueError(f"unknown profile {profile!r}; choose from {PROFILES}")
        profile = REALISTIC
    if n_synapses is not None:
        raise ValueError(
            "n_synapses applies to profile='sparse'; the realistic profile sets the number "
            "of synapses by density (1.0 = about 1 per cubic micrometre)"
        )
    for nm, val in (
        ("snr", snr),
        ("density", density),
        ("drift", drift),
        ("unpaired", unpaired),
        ("misregistration", misregistration),
    ):
        if not (math.isfinite(val) and val >= 0):
            raise ValueError(f"{nm} must be a finite number >= 0, got {val}")
    if overrides:
        valid = {f.name for f in fields(Profile)} - {"styles"}
        bad = sorted(set(overrides) - valid)
        if bad:
            raise ValueError(f"unknown profile override(s) {bad}; valid: {sorted(valid)}")
        profile = replace(profile, **overrides)
    if isinstance(shift_nm, int | float):
        s = float(shift_nm) / math.sqrt(2.0)
        shift = np.array([0.0, s, s])
    else:
        shift = np.asarray(shift_nm, dtype=np.float64).reshape(3)
    return make_realistic(
        shape,  # type: ignore[arg-type]
        seed=seed,
        prof=profile,
        knobs={
            "snr": float(snr),
            "density": float(density),
            "drift": float(drift),
            "unpaired": float(unpaired),
            "misregistration": float(misregistration),
        },
        shift_nm=shift,
        voxel=np.asarray(vs),
        names=names,
        dtype=dtype,
    )


def intensity_statistics(volume: np.ndarray) -> dict[str, float]:
    """Median, 90th / 99th / 99.9th percentile, mean and std of a channel on the uint8
    scale (uint16 input is divided by 257 first), the figures of
    :data:`AT_EXAMPLE_INTENSITY`."""
    v = np.asarray(volume)
    if v.dtype == np.uint16:
        v = v.astype(np.float32) / np.float32(257.0)
    p = np.percentile(v, [50, 90, 99, 99.9])
    return {
        "p50": float(p[0]),
        "p90": float(p[1]),
        "p99": float(p[2]),
        "p99.9": float(p[3]),
        "mean": float(v.mean()),
        "std": float(v.std()),
    }


def oracle_f1(
    exp: SyntheticExperiment, *, pair_nm: float = 250.0, match_nm: float = MATCH_NM
) -> dict[str, float]:
    """Score of a perfect pairing detector: every synapsin punctum centre (synaptic,
    inhibitory, unpaired) is paired with every PSD-95 punctum centre within ``pair_nm``
    (exact positions, no noise), and the pair midpoints are matched one-to-one to the true
    synapses within ``match_nm``. What is left of F1 < 1 is the ambiguity of the truth
    itself (chance neighbours, crowding), not any detector's fault."""
    if not exp.puncta:
        raise ValueError(f"the {exp.profile!r} profile does not record its puncta")
    v = np.asarray(exp.voxel_size)
    pre, post = exp.puncta[exp.presynaptic] * v, exp.puncta[exp.postsynaptic] * v
    mids = np.zeros((0, 3))
    if len(pre) and len(post):
        pairs = cKDTree(pre).sparse_distance_matrix(cKDTree(post), pair_nm, output_type="ndarray")
        mids = 0.5 * (pre[pairs["i"]] + post[pairs["j"]])
        # puncta beyond the first / last section light the stack, but a pair is reported
        # only where its midpoint is inside it (as the truth is)
        z = mids[:, 0] / v[0]
        mids = mids[(z >= -0.5) & (z < exp.shape[0] - 0.5)]
    tp = _count_matches(mids, exp.synapse_centroids * v, match_nm)
    fp, fn = len(mids) - tp, exp.n_synapses - tp
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "f1": f1,
    }


def _count_matches(a: np.ndarray, b: np.ndarray, max_dist: float) -> int:
    """Size of a maximum one-to-one matching of two physical point sets within
    ``max_dist`` (solved per connected component of the candidate graph)."""
    if len(a) == 0 or len(b) == 0:
        return 0
    pairs = cKDTree(a).sparse_distance_matrix(cKDTree(b), max_dist, output_type="ndarray")
    if len(pairs) == 0:
        return 0
    i, j = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
    n = len(a) + len(b)
    graph = coo_matrix((np.ones(len(i)), (i, len(a) + j)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    tp = 0
    order = np.argsort(comp[i], kind="stable")
    bounds = np.flatnonzero(np.diff(comp[i][order])) + 1
    for group in np.split(order, bounds):
        ui, ri = np.unique(i[group], return_inverse=True)
        uj, rj = np.unique(j[group], return_inverse=True)
        cost = np.ones((len(ui), len(uj)))
        cost[ri, rj] = 0.0  # a candidate pair costs 0, anything else 1: maximise matches
        r, c = linear_sum_assignment(cost)
        tp += int((cost[r, c] == 0).sum())
    return tp
