"""Seeded synthetic array-tomography (AT) experiments with known synapses.

Owns the public generator used by the tests, the benchmarks and the demo in place of
collman15v2 (whose channel names it copies), its calibrated profiles, and the checks that
keep it honest (:func:`intensity_statistics` against the real at_example figures and
:func:`oracle_f1`, the score of a perfect pairing of the true puncta). The rendering
primitives are in :mod:`synapse_pipelines.science.synthetic_render`. Public API::

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from synapse_pipelines.science import synthetic_render as sr
from synapse_pipelines.science.synthetic_sparse import make_sparse

__all__ = [
    "ALL_CHANNELS",
    "AT_EXAMPLE_INTENSITY",
    "DEFAULT_SHAPE",
    "DEFAULT_VOXEL_SIZE",
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

DEFAULT_SHAPE: tuple[int, int, int] = (16, 512, 512)
#: z, y, x in nanometers: 70 nm sections, ~100 nm pixels (array tomography).
DEFAULT_VOXEL_SIZE: tuple[float, float, float] = (70.0, 100.0, 100.0)
VOXEL_UNIT = "nanometers"

PRESYNAPTIC = "Synapsin647"
POSTSYNAPTIC = "PSD95_488"
ALL_CHANNELS: tuple[str, ...] = (
    "Synapsin647",
    "PSD95_488",
    "VGluT1_647",
    "GAD647",
    "gephyrin594",
    "NR1594",
    "DAPI1st",
)

#: at_example's measured intensity profile (``/work/shared/realdata/README.md``): per
#: channel, median, 90th, 99th and 99.9th percentile, mean and std of the uint8 values.
AT_EXAMPLE_INTENSITY: dict[str, dict[str, float]] = {
    PRESYNAPTIC: {"p50": 5, "p90": 39, "p99": 137, "p99.9": 233, "mean": 14.8, "std": 26.4},
    POSTSYNAPTIC: {"p50": 4, "p90": 34, "p99": 124, "p99.9": 235, "mean": 12.7, "std": 24.4},
}


# ------------------------------------------------------------------------------ profiles
@dataclass(frozen=True)
class ChannelStyle:
    """How one channel looks; grey levels refer to the final 0..255 scale."""

    sigma_xy_nm: float = 180.0  #: in-plane Gaussian sigma of a punctum (object x PSF)
    sigma_z_nm: float = 110.0  #: apparent z sigma (AT sections are physically thin)
    size_log_sd: float = 0.25  #: log-normal sd of the per-punctum size factor
    amp_median: float = 34.0  #: median punctum peak amplitude (before ``snr``)
    amp_log_sd: float = 1.0  #: log-normal sd of amplitudes (heavy tail)
    diffuse: float = 2.5  #: diffuse staining on its process network
    diffuse_base: float = 0.5  #: diffuse staining anywhere in neuropil
    network: Literal["pre", "post", "none"] = "pre"  #: which network carries the diffuse
    read_noise: float = 2.3  #: read-noise sd
    shot_gain: float = 0.7  #: shot-noise variance per grey level of signal
    noise_corr: float = 0.3  #: neighbour weight of the [c, 1, c] kernel correlating noise
    offset: float = -0.5  #: background left after subtraction (before clipping at 0)
    gain_drift_cv: float = 0.05  #: sd of the per-section gain (log)
    level_drift_cv: float = 0.2  #: sd of the per-section diffuse level (log)
    noise_drift_sd: float = 0.1  #: log-sd of the per-section noise multiplier
    bad_section_rate: float = 0.0  #: chance that a section is noisy (noise x1.8-3, whiter)
    misreg_shift_nm: float = 0.0  #: per-section translation sd (per axis) at misreg. 1
    misreg_rot_deg: float = 0.0  #: systematic rotation vs Synapsin647 at misreg. 1


@dataclass(frozen=True)
class Profile:
    """Geometry, densities and per-channel styles of the realistic model.

    Densities are per um^3 averaged over the volume (voids have none, dense neuropil more),
    before ``density`` / ``unpaired`` and before the spacing rules thin them.
    """

    synapse_density_um3: float = 1.4  #: excitatory synapses (~1.0 / um^3 after spacing)
    inhibitory_fraction: float = 0.1  #: inhibitory synapses, as a fraction of the above
    pre_orphan_um3: float = 3.3  #: synapsin-only puncta (~1.4 / um^3 after clearance)
    post_orphan_um3: float = 3.0  #: PSD-95-only puncta (~2.2 / um^3 after clearance)
    vglut1_fraction: float = 0.8
    nr1_fraction: float = 0.5
    other_orphan_um3: float = 0.5  #: orphan puncta in VGluT1 / GAD / gephyrin / NR1
    offset_nm: float = 150.0  #: pre -> post centre distance, mean (isotropic direction)
    offset_sd_nm: float = 40.0
    offset_min_nm: float = 50.0
    offset_max_nm: float = 250.0  #: longest pre -> post distance of a synapse
    synapse_spacing_nm: float = 450.0  #: least distance between two synapse centres
    orphan_clearance_nm: float = 350.0  #: least distance of an orphan to the other channel
    amp_corr: float = 0.8  #: correlation of log amplitudes of a synapse's two puncta
    synapse_amp_spread: float = 0.6  #: log-amplitude spread of synaptic vs unpaired puncta
    synapse_amp_boost: float = 1.6  #: brightness of synaptic vs unpaired puncta
    sub_blobs: float = 1.0  #: mean number of extra sub-blobs per punctum (irregular shapes)
    sub_jitter_nm: float = 200.0  #: in-plane sd of sub-blob offsets (half that in z)
    tissue_scale_nm: float = 2500.0  #: scale of the voids
    void_fraction: float = 0.08
    density_contrast: float = 0.5  #: log-sd of a smooth neuropil density modulation
    density_scale_nm: float = 1500.0
    network_sigma_nm: float = 700.0  #: smoothing of the field whose zero set is a process
    network_sigma_z_nm: float = 350.0
    network_width: float = 0.3  #: relative line width (larger = thicker, more coverage)
    network_attraction: float = 6.0  #: punctum density on a process vs off it
    network_correlation: float = 0.95  #: correlation of the fields behind the two networks
    section_jitter_nm: float = 170.0  #: per-section tissue jitter at misregistration 1
    warp_nm: float = 330.0  #: non-rigid section distortion at misregistration 1
    warp_scale_nm: float = 6400.0  #: node spacing of that distortion
    soft_knee: float = 150.0  #: above this, grey levels are compressed towards 255
    styles: Mapping[str, ChannelStyle] = field(default_factory=dict)


_PRE = ChannelStyle(bad_section_rate=0.25)
_POST = replace(
    _PRE,
    sigma_xy_nm=165.0,
    sigma_z_nm=65.0,
    amp_median=38.0,
    diffuse=7.0,
    diffuse_base=1.0,
    network="post",
    shot_gain=0.8,
    noise_drift_sd=0.15,
    bad_section_rate=0.0,
    gain_drift_cv=0.12,
    level_drift_cv=0.5,
    misreg_shift_nm=620.0,
    misreg_rot_deg=0.7,
)
_OTHER = {"misreg_shift_nm": 300.0, "misreg_rot_deg": 0.3}

#: The calibrated realistic profile (see the module docstring and docs/detection.md).
REALISTIC = Profile(
    styles={
        "Synapsin647": _PRE,
        "PSD95_488": _POST,
        "VGluT1_647": replace(_PRE, amp_median=26.0, diffuse=3.0, **_OTHER),
        "GAD647": replace(_PRE, amp_median=28.0, diffuse=1.5, diffuse_base=0.8, **_OTHER),
        "gephyrin594": replace(_POST, amp_median=24.0, diffuse=2.0, diffuse_base=0.8, **_OTHER),
        "NR1594": replace(_POST, amp_median=18.0, diffuse=4.0, **_OTHER),
        "DAPI1st": replace(
            _PRE, amp_median=0.0, diffuse=0.0, diffuse_base=0.5, network="none", **_OTHER
        ),
    }
)

#: Named profiles: ``make_experiment(profile=...)`` takes a name or a :class:`Profile`.
PROFILES: tuple[str, ...] = ("realistic", "sparse")


@dataclass(frozen=True)
class SyntheticExperiment:
    """A synthetic multi-channel experiment with its ground truth (see module docstring)."""

    channels: dict[str, np.ndarray]
    voxel_size: tuple[float, float, float]
    voxel_unit: str
    synapse_centroids: np.ndarray
    annotation: np.ndarray
    decoys: dict[str, np.ndarray] = field(default_factory=dict)
    presynaptic: str = PRESYNAPTIC
    postsynaptic: str = POSTSYNAPTIC
    seed: int = 0
    #: (N, 3) pre and post punctum centres of each synapse (voxels, presynaptic frame).
    pre_centroids: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    post_centroids: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    #: Per channel: (Z, 2) y, x translation (voxels) and rotation (deg) of its image frame
    #: relative to the presynaptic frame (what a perfect registration would undo).
    registration: dict[str, tuple[np.ndarray, float]] = field(default_factory=dict)
    params: dict[str, float] = field(default_factory=dict)
    profile: str = "realistic"
    #: Synapsin and PSD-95: (K, 3) centres of every punctum of that channel (synaptic,
    #: inhibitory, unpaired; voxels, presynaptic frame), what a perfect detector would see.
    puncta: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.annotation.shape)  # type: ignore[return-value]

    @property
    def n_synapses(self) -> int:
        return len(self.synapse_centroids)


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
    return _make_realistic(
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
    exp: SyntheticExperiment, *, pair_nm: float = 250.0, match_nm: float = 300.0
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


# ------------------------------------------------------------------------- realistic
def _make_realistic(
    shape: tuple[int, int, int],
    *,
    seed: int,
    prof: Profile,
    knobs: dict[str, float],
    shift_nm: np.ndarray,
    voxel: np.ndarray,
    names: tuple[str, ...],
    dtype: str,
) -> SyntheticExperiment:
    """The realistic model: tissue, objects, frames, then each channel's image."""
    density, unpaired = knobs["density"], knobs["unpaired"]
    misreg = knobs["misregistration"]
    shift_vox = shift_nm / voxel
    root = np.random.SeedSequence(seed)
    geo_seq, field_seq, chan_seq = root.spawn(3)
    geo = np.random.default_rng(geo_seq)
    # per channel: (registration stream, rendering stream)
    chan_seqs = {
        n: tuple(s.spawn(2))
        for n, s in zip(ALL_CHANNELS, chan_seq.spawn(len(ALL_CHANNELS)), strict=True)
    }

    # --- tissue fields and object positions (tissue frame, voxels) ---------------------
    # puncta up to ~3 z-sigmas outside the stack still light its first / last sections
    max_sz = max(st.sigma_z_nm for st in prof.styles.values()) / voxel[0]
    margin = math.ceil(3.0 * max_sz * 1.6) + 1
    fl = sr.make_fields(np.random.default_rng(field_seq), shape, margin, voxel, prof)
    zrange = (float(-margin), float(shape[0] - 1 + margin))
    a = prof.network_attraction
    w_pre = fl.tissue * (1.0 + a * fl.net["pre"])
    w_post = fl.tissue * (1.0 + a * fl.net["post"])
    w_syn = fl.tissue * (1.0 + 0.5 * a * (fl.net["pre"] + fl.net["post"]))

    def sample(d: float, w: np.ndarray) -> np.ndarray:
        return sr.sample_points(geo, d * density, w, fl, zrange, shape, voxel)

    syn = sample(prof.synapse_density_um3, w_syn)
    inh = sample(prof.synapse_density_um3 * prof.inhibitory_fraction, w_syn)
    pre_orph = sample(prof.pre_orphan_um3 * unpaired, w_pre)
    post_orph = sample(prof.post_orphan_um3 * unpaired, w_post)
    # Rule 3: synapses (excitatory and inhibitory alike) do not overlap.
    both = sr.hard_core(np.vstack([syn, inh]), voxel, prof.synapse_spacing_nm)
    syn, inh = syn[both[: len(syn)]], inh[both[len(syn) :]]
    n_syn, n_inh = len(syn), len(inh)

    def offsets(n: int) -> np.ndarray:
        # Rule 1: a bounded pre -> post distance, isotropic 3-D direction
        length = np.clip(
            geo.normal(prof.offset_nm, prof.offset_sd_nm, n),
            prof.offset_min_nm,
            prof.offset_max_nm,
        )
        return sr.unit_vectors(geo, n) * length[:, None] / voxel

    off = offsets(n_syn)
    pre_pos, post_pos = syn - 0.5 * off, syn + 0.5 * off
    off_i = offsets(n_inh)
    ipre, ipost = inh - 0.5 * off_i, inh + 0.5 * off_i
    # Rule 2: unpaired puncta keep clear of every punctum of the other channel.
    post_orph = post_orph[
        sr.clear_of(post_orph, np.vstack([pre_pos, ipre]), voxel, prof.orphan_clearance_nm)
    ]
    pre_orph = pre_orph[
        sr.clear_of(pre_orph, np.vstack([post_pos, post_orph]), voxel, prof.orphan_clearance_nm)
    ]

    # Synaptic puncta: correlated pre/post amplitudes, a narrower spread and a brightness
    # boost relative to unpaired puncta (log z-scores).
    za = geo.standard_normal(n_syn)
    zb = prof.amp_corr * za + math.sqrt(1 - prof.amp_corr**2) * geo.standard_normal(n_syn)
    zi_pre, zi_post = geo.standard_normal(n_inh), geo.standard_normal(n_inh)
    za, zb, zi_pre, zi_post = (prof.synapse_amp_spread * z for z in (za, zb, zi_pre, zi_post))
    z_po, z_qo = geo.standard_normal(len(pre_orph)), geo.standard_normal(len(post_orph))
    s_pre, s_post = geo.standard_normal(n_syn), geo.standard_normal(n_syn)
    s_ipre, s_ipost = geo.standard_normal(n_inh), geo.standard_normal(n_inh)
    s_po, s_qo = geo.standard_normal(len(pre_orph)), geo.standard_normal(len(post_orph))
    vglut = geo.random(n_syn) < prof.vglut1_fraction
    nr1 = geo.random(n_syn) < prof.nr1_fraction
    # Nuclei sit in the voids.
    n_nuc = max(1, round(shape[1] * shape[2] / (400 * 400)))
    void_w = np.clip(1.0 - fl.tissue, 0, 1) ** 4 + 1e-6
    nuc = sr.sample_points(geo, 1.0, void_w, fl, (-0.5, shape[0] - 0.5), shape, voxel)
    if len(nuc) >= n_nuc:
        nuc = nuc[:n_nuc]
    else:
        nuc = np.vstack([nuc, geo.random((n_nuc - len(nuc), 3)) * np.array(shape)])
    # Registration error shared by every channel (section placement, non-rigid warp).
    jit_vox = geo.normal(0.0, 1.0, (shape[0], 2)) * prof.section_jitter_nm * misreg / voxel[1:]
    warp_spacing = prof.warp_scale_nm / float(voxel[1])
    gy = math.ceil((shape[1] - 1) / warp_spacing) + 2
    gx = math.ceil((shape[2] - 1) / warp_spacing) + 2
    warp_nodes = geo.normal(0.0, 1.0, (shape[0], gy, gx, 2)) * (
        prof.warp_nm * misreg / float(voxel[1])
    )
    centre = (np.array(shape[1:], dtype=np.float64) - 1) / 2

    def compound(
        pos: np.ndarray, zlog: np.ndarray, zsize: np.ndarray, gain: float = 1.0
    ) -> sr.PunctaGroup:
        # irregular puncta: a main Gaussian plus fainter, smaller sub-blobs around it,
        # drawn once and shared by every channel showing that object
        n = len(pos)
        k = geo.poisson(prof.sub_blobs, n)
        parent = np.concatenate([np.arange(n), np.repeat(np.arange(n), k)])
        m = int(k.sum())
        jit_sd = np.array([prof.sub_jitter_nm * 0.5, prof.sub_jitter_nm, prof.sub_jitter_nm])
        sub = np.vstack([np.zeros((n, 3)), geo.standard_normal((m, 3)) * jit_sd / voxel])
        ampf = np.concatenate([np.ones(n), geo.uniform(0.3, 0.9, m)]) * gain
        sizef = np.concatenate([np.ones(n), np.full(m, 0.8)])
        return sr.PunctaGroup(pos[parent] + sub, zlog[parent], zsize[parent], ampf, sizef, parent)

    sb = prof.synapse_amp_boost
    g_pre = compound(pre_pos, za, s_pre, sb)
    g_post = compound(post_pos, zb, s_post, sb)
    g_ipre = compound(ipre, zi_pre, s_ipre, sb)
    g_ipost = compound(ipost, zi_post, s_ipost, sb)
    g_po = compound(pre_orph, z_po, s_po)
    g_qo = compound(post_orph, z_qo, s_qo)
    groups: dict[str, list[sr.PunctaGroup]] = {
        "Synapsin647": [g_pre, g_ipre, g_po],
        "PSD95_488": [g_post, g_qo],
        "VGluT1_647": [g_pre.subset(vglut)],
        "GAD647": [g_ipre],
        "gephyrin594": [g_ipost],
        "NR1594": [g_post.subset(nr1)],
        "DAPI1st": [],
    }
    orphan_net = {"VGluT1_647": "pre", "GAD647": "pre", "gephyrin594": "post", "NR1594": "post"}

    def frames(name: str) -> tuple[sr.SectionFrames, np.ndarray, float]:
        st = prof.styles[name]
        reg_rng = np.random.default_rng(chan_seqs[name][0])
        d = reg_rng.normal(0.0, 1.0, (shape[0], 2)) * st.misreg_shift_nm * misreg
        rot = st.misreg_rot_deg * misreg * (1.0 if reg_rng.random() < 0.5 else -1.0)
        dv = d / voxel[1:]
        if name == POSTSYNAPTIC:
            dv = dv + shift_vox[1:]
        fr = sr.SectionFrames(
            mats=np.repeat(sr.rotation_matrix(rot)[None], shape[0], axis=0),
            trans=jit_vox + dv,
            warp=warp_nodes,
            spacing=warp_spacing,
            centre=centre,
        )
        return fr, dv, rot

    # --- render ------------------------------------------------------------------------
    rendered: dict[str, np.ndarray] = {}
    registration: dict[str, tuple[np.ndarray, float]] = {}
    disp_low: np.ndarray | None = None  # the shared warp on the half-resolution grid
    for name in ALL_CHANNELS:
        fr, dv, rot = frames(name)
        registration[name] = (dv.copy(), rot)
        if name in names:
            if disp_low is None:
                disp_low = sr.grid_displacement(fr, shape[1] // 2 + 1, shape[2] // 2 + 1, fl.f)
            rendered[name] = _render_channel(
                name, prof, groups[name], orphan_net.get(name), fr, disp_low, fl,
                (w_pre, w_post), nuc, knobs, shift_vox, zrange, shape, voxel, dtype,
                np.random.default_rng(chan_seqs[name][1]),
            )  # fmt: skip

    # --- ground truth (presynaptic image frame) ------------------------------------------
    pre_frames = frames(PRESYNAPTIC)[0]

    def to_pre_frame(p: np.ndarray) -> np.ndarray:
        if len(p) == 0:
            return p.reshape(0, 3)
        zi = np.clip(np.rint(p[:, 0]).astype(int), 0, shape[0] - 1)
        q = p.copy()
        q[:, 1:] = pre_frames.to_image(zi, p[:, 1:])
        return q

    def inside(p: np.ndarray) -> np.ndarray:
        return (p[:, 0] >= -0.5) & (p[:, 0] < shape[0] - 0.5)

    keep = inside(syn)
    syn_c, pre_c, post_c = (to_pre_frame(p[keep]) for p in (syn, pre_pos, post_pos))
    st_pre, st_post = prof.styles[PRESYNAPTIC], prof.styles[POSTSYNAPTIC]
    annotation = sr.annotate_synapses(
        shape,
        pre_c,
        post_c,
        np.exp(st_pre.size_log_sd * s_pre[keep]),
        np.exp(st_post.size_log_sd * s_post[keep]),
        np.array([st_pre.sigma_z_nm, st_pre.sigma_xy_nm, st_pre.sigma_xy_nm]) / voxel,
        np.array([st_post.sigma_z_nm, st_post.sigma_xy_nm, st_post.sigma_xy_nm]) / voxel,
    )
    vol_um3 = float(np.prod(np.asarray(shape) * voxel)) / 1e9
    params = {
        **knobs,
        "shift_nm_z": float(shift_nm[0]),
        "shift_nm_y": float(shift_nm[1]),
        "shift_nm_x": float(shift_nm[2]),
        "synapse_density_um3": len(syn_c) / vol_um3,
        "pre_unpaired_um3": float(inside(pre_orph).sum()) / vol_um3,
        "post_unpaired_um3": float(inside(post_orph).sum()) / vol_um3,
        "post_rotation_deg": registration[POSTSYNAPTIC][1],
    }
    # every punctum a perfect detector would see, at its centre (no sub-blobs)
    puncta = {
        PRESYNAPTIC: np.vstack([to_pre_frame(p) for p in (pre_pos, ipre, pre_orph)]),
        POSTSYNAPTIC: np.vstack([to_pre_frame(p) for p in (post_pos, post_orph)]),
    }
    return SyntheticExperiment(
        channels=rendered,
        voxel_size=tuple(float(v) for v in voxel),  # type: ignore[arg-type]
        voxel_unit=VOXEL_UNIT,
        synapse_centroids=syn_c,
        annotation=annotation,
        decoys={
            "synapsin_only": to_pre_frame(pre_orph[inside(pre_orph)]),
            "inhibitory": to_pre_frame(inh[inside(inh)]),
            "psd_only": to_pre_frame(post_orph[inside(post_orph)]),
        },
        seed=seed,
        pre_centroids=pre_c,
        post_centroids=post_c,
        registration=registration,
        params=params,
        profile="realistic",
        puncta=puncta,
    )


def _render_channel(
    name: str,
    prof: Profile,
    groups: list[sr.PunctaGroup],
    orphan_network: str | None,
    fr: sr.SectionFrames,
    disp_low: np.ndarray,
    fl: sr.TissueFields,
    weights: tuple[np.ndarray, np.ndarray],
    nuclei: np.ndarray,
    knobs: dict[str, float],
    shift_vox: np.ndarray,
    zrange: tuple[float, float],
    shape: tuple[int, int, int],
    voxel: np.ndarray,
    dtype: str,
    crng: np.random.Generator,
) -> np.ndarray:
    """One channel's image: puncta, diffuse staining, drift, noise, clipping, rounding."""
    st = prof.styles[name]
    drift = knobs["drift"]
    pts_l, amp_l, size_l = [], [], []
    for g in groups:
        pts_l.append(g.pos)
        amp_l.append(g.ampf * np.exp(st.amp_log_sd * g.zlog))
        size_l.append(g.sizef * np.exp(st.size_log_sd * g.zsize))
    if orphan_network is not None:  # this channel's own unpaired puncta
        w = weights[0] if orphan_network == "pre" else weights[1]
        dens = prof.other_orphan_um3 * knobs["density"] * knobs["unpaired"]
        extra = sr.sample_points(crng, dens, w, fl, zrange, shape, voxel)
        pts_l.append(extra)
        amp_l.append(np.exp(st.amp_log_sd * crng.standard_normal(len(extra))))
        size_l.append(np.exp(st.size_log_sd * crng.standard_normal(len(extra))))
    pts = np.vstack(pts_l) if pts_l else np.zeros((0, 3))
    amps = np.concatenate(amp_l) if amp_l else np.zeros(0)
    szs = np.concatenate(size_l) if size_l else np.zeros(0)
    if name == POSTSYNAPTIC and shift_vox[0] != 0:
        pts = pts + np.array([shift_vox[0], 0.0, 0.0])
    # Per-section drift: a smooth random walk of gain and diffuse level along z.
    gain = np.exp(drift * st.gain_drift_cv * sr.section_walk(crng, shape[0]))
    level = np.exp(drift * st.level_drift_cv * sr.section_walk(crng, shape[0]))
    # Section quality: most sections have smooth (correlated) noise; a few are much
    # noisier and whiter (at_example's synapsin sections 0 and 1).
    qual = np.exp(drift * st.noise_drift_sd * crng.standard_normal(shape[0]))
    noisy = crng.random(shape[0]) < min(1.0, st.bad_section_rate * drift)
    boost = 1.0 + drift * crng.uniform(0.8, 2.0, shape[0])
    qual = np.where(noisy, qual * boost, qual)
    corr = np.where(noisy, sr.BAD_SECTION_CORR, st.noise_corr)
    img = sr.render_puncta(
        shape,
        pts,
        amps * st.amp_median * knobs["snr"],
        szs,
        st.sigma_xy_nm / voxel[1],
        st.sigma_z_nm / voxel[0],
        fr,
    )
    # Diffuse staining on the process network (and a little everywhere in neuropil).
    if st.network != "none":
        lowres = fl.tissue * (st.diffuse_base + st.diffuse * fl.net[st.network])
    else:
        lowres = fl.tissue * st.diffuse_base
    diff = sr.warp_field(lowres, fl.f, fl.z0, shape, fr, disp_low)
    img += diff * level[:, None, None].astype(np.float32)
    if name == "DAPI1st":
        img += sr.render_nuclei(shape, nuclei, voxel, crng)
    img *= gain[:, None, None].astype(np.float32)
    # Noise: shot (variance ~ signal) + read, per-section quality, spatially correlated.
    var = np.maximum(img, 0.0)
    var *= np.float32(st.shot_gain)
    var += np.float32(st.read_noise**2)
    noise = sr.correlated_noise(crng, shape, corr)
    noise *= np.sqrt(var)
    noise *= qual[:, None, None].astype(np.float32)
    img += noise
    img += np.float32(st.offset)  # background subtraction leaves ~25 % of voxels at 0
    img = sr.soft_clip(img, prof.soft_knee)
    np.clip(img, 0.0, 255.0, out=img)
    if dtype == "uint8":
        out = np.rint(img).astype(np.uint8)
    else:
        out = np.rint(img * np.float32(257.0)).astype(np.uint16)
    out.setflags(write=False)
    return out
