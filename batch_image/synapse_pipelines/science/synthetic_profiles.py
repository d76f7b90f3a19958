"""The synthetic generator's data model: channel names, calibrated profiles and the result.

:class:`Profile` / :class:`ChannelStyle` hold every calibrated constant of the realistic
profile (:data:`REALISTIC`, fitted to at_example: see :mod:`synapse_pipelines.science.synthetic`
for what the knobs mean); :class:`SyntheticExperiment` is what ``make_experiment`` returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

DEFAULT_SHAPE: tuple[int, int, int] = (16, 512, 512)
#: z, y, x in nanometers: 70 nm sections, ~100 nm pixels (array tomography).
DEFAULT_VOXEL_SIZE: tuple[float, float, float] = (70.0, 100.0, 100.0)
VOXEL_UNIT = "nanometers"
#: The distance within which a detection matches a synthetic truth synapse, nm: about one
#: punctum (3 pixels of 100 nm). The one default of ``synth``'s suggested ``evaluate``,
#: ``demo``'s F1, :func:`~synapse_pipelines.science.synthetic.oracle_f1`, the detection
#: tests and docs/detection.md. (Real data has its own: 3 px for weiler14_dev's expert
#: points, 400 nm for at_example's peer detections, whose channels are misregistered.)
MATCH_NM = 300.0

#: The realistic profile's SNR x density grid (x the calibrated values; seeds, shape) that
#: tests/test_detection_grid.py asserts the F1 curve on and the benchmarks score on.
GRID_SNR = (0.5, 1.0, 2.0)
GRID_DENSITY = (0.5, 1.0, 2.0)
GRID_SEEDS = (0, 1)
#: 0.84 x 25.6 x 25.6 um: ~300-900 true synapses per volume, so one cell's F1 moves by
#: ~0.02 between seeds; two seeds per cell.
GRID_SHAPE = (12, 256, 256)

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
