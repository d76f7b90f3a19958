"""The first build's clean synthetic generator, kept as ``profile="sparse"``.

Owns the sparse, high-SNR image model (objects one per cell of a jittered grid, so they
never touch; Gaussian puncta on a smooth background with Gaussian read noise) that the
earliest regression tests were written against. :func:`make_sparse` returns the arrays
and the truth; :func:`synapse_pipelines.science.synthetic.make_experiment` wraps them.
Nothing about it is calibrated to real data: use the default realistic profile for that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SparseVolumes", "make_sparse"]

#: Background level and read-noise sigma per channel (uint8 grey levels).
_BACKGROUND = {
    "Synapsin647": (22.0, 6.0),
    "PSD95_488": (18.0, 6.0),
    "VGluT1_647": (15.0, 5.0),
    "GAD647": (14.0, 5.0),
    "gephyrin594": (16.0, 5.0),
    "NR1594": (15.0, 5.0),
    "DAPI1st": (10.0, 4.0),
}

#: Channel order of the per-channel random streams (the same as ``synthetic.ALL_CHANNELS``).
_CHANNELS = tuple(_BACKGROUND)

#: Punctum sigma in voxels (z, y, x): ~85 nm in z, ~160 nm in x/y.
_PUNCTUM_SIGMA = np.array([1.2, 1.6, 1.6])
#: Default synapse density, per cubic micrometre (cortex has ~1; AT resolves fewer).
_DEFAULT_DENSITY_PER_UM3 = 0.1
#: Grid cell (z, y, x voxels) holding at most one object: keeps objects apart.
_CELL = (4, 10, 10)


def _gauss_box(
    shape: tuple[int, int, int], center: np.ndarray, sigma: np.ndarray
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Separable anisotropic Gaussian (peak 1) on the clipped box around ``center``."""
    slices = []
    profiles = []
    for axis in range(3):
        radius = math.ceil(3.0 * sigma[axis])
        lo = max(0, math.floor(center[axis]) - radius)
        hi = min(shape[axis], math.floor(center[axis]) + radius + 2)
        if hi <= lo:
            return None
        coords = np.arange(lo, hi, dtype=np.float64)
        profiles.append(np.exp(-0.5 * ((coords - center[axis]) / sigma[axis]) ** 2))
        slices.append(slice(lo, hi))
    blob = profiles[0][:, None, None] * profiles[1][None, :, None] * profiles[2][None, None, :]
    return tuple(slices), blob.astype(np.float32)


def _add_punctum(
    image: np.ndarray, center: np.ndarray, sigma: np.ndarray, amplitude: float
) -> None:
    box = _gauss_box(image.shape, center, sigma)
    if box is not None:
        slices, blob = box
        image[slices] += np.float32(amplitude) * blob


def _place_objects(shape: tuple[int, int, int], count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` sub-voxel positions, one per distinct cell of a jittered grid."""
    grid = tuple(max(1, s // c) for s, c in zip(shape, _CELL, strict=True))
    n_cells = grid[0] * grid[1] * grid[2]
    if count > n_cells:
        raise ValueError(
            f"n_synapses plus decoys ({count}) do not fit in a {shape} volume "
            f"(at most {n_cells} objects); ask for fewer synapses or a larger shape"
        )
    cells = rng.choice(n_cells, size=count, replace=False)
    idx = np.stack(np.unravel_index(cells, grid), axis=1).astype(np.float64)
    cell_size = np.array([s / g for s, g in zip(shape, grid, strict=True)])
    # Keep centres in the middle half of each cell so neighbours stay apart.
    jitter = rng.uniform(0.25, 0.75, size=(count, 3))
    return (idx + jitter) * cell_size


def _smooth_gain(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Uneven illumination: 1 + a separable, slowly varying profile (+-15 %)."""
    profiles = []
    for n in shape:
        t = np.linspace(0.0, 1.0, n)
        phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.2)
        profiles.append(0.05 * np.sin(2 * np.pi * freq * t + phase))
    return (
        1.0 + profiles[0][:, None, None] + profiles[1][None, :, None] + profiles[2][None, None, :]
    ).astype(np.float32)


@dataclass(frozen=True)
class SparseVolumes:
    """What :func:`make_sparse` renders: the asked channels and the ground truth."""

    channels: dict[str, np.ndarray]
    synapse_centroids: np.ndarray
    annotation: np.ndarray
    decoys: dict[str, np.ndarray]
    pre_centroids: np.ndarray
    post_centroids: np.ndarray


def make_sparse(
    shape: tuple[int, int, int],
    seed: int,
    names: Sequence[str],
    voxel_size: tuple[float, float, float],
    dtype: str = "uint8",
    n_synapses: int | None = None,
    *,
    synapsin_only_fraction: float = 0.3,
    inhibitory_fraction: float = 0.2,
    psd_only_fraction: float = 0.4,
    vglut1_fraction: float = 0.8,
    nr1_fraction: float = 0.5,
    n_nuclei: int | None = None,
    amplitude_range: tuple[float, float] = (70.0, 170.0),
    noise_scale: float = 1.0,
) -> SparseVolumes:
    """Render the sparse experiment (arguments already checked by ``make_experiment``).

    ``n_synapses`` defaults to 0.1 synapse per cubic micrometre of the volume. The decoy
    counts are fractions of ``n_synapses``; ``noise_scale`` multiplies every channel's read
    noise; ``dtype="uint16"`` is the uint8 image x 257.
    """
    volume_um3 = float(np.prod(np.array(shape) * np.array(voxel_size))) / 1e9
    if n_synapses is None:
        n_synapses = max(1, round(volume_um3 * _DEFAULT_DENSITY_PER_UM3))
    if n_synapses < 0:
        raise ValueError(f"n_synapses must be >= 0, got {n_synapses}")

    root = np.random.SeedSequence(seed)
    geometry_seq, channel_seq = root.spawn(2)
    rng = np.random.default_rng(geometry_seq)
    channel_rngs = {
        name: np.random.default_rng(s)
        for name, s in zip(_CHANNELS, channel_seq.spawn(len(_CHANNELS)), strict=True)
    }

    n_syn_only = round(n_synapses * synapsin_only_fraction)
    n_inhib = round(n_synapses * inhibitory_fraction)
    n_psd_only = round(n_synapses * psd_only_fraction)
    positions = _place_objects(shape, n_synapses + n_syn_only + n_inhib + n_psd_only, rng)
    syn_pos, rest = positions[:n_synapses], positions[n_synapses:]
    syn_only_pos, rest = rest[:n_syn_only], rest[n_syn_only:]
    inhib_pos, psd_only_pos = rest[:n_inhib], rest[n_inhib:]

    # Pre/post offset: ~150 nm, mostly lateral, in a random direction.
    angle = rng.uniform(0, 2 * np.pi, size=n_synapses)
    offset = np.stack(
        [rng.normal(0.0, 0.3, size=n_synapses), 0.75 * np.sin(angle), 0.75 * np.cos(angle)],
        axis=1,
    )
    pre_pos, post_pos = syn_pos - offset, syn_pos + offset
    inhib_angle = rng.uniform(0, 2 * np.pi, size=n_inhib)
    inhib_offset = np.stack(
        [np.zeros(n_inhib), 0.75 * np.sin(inhib_angle), 0.75 * np.cos(inhib_angle)], axis=1
    )
    lo, hi = amplitude_range

    def amplitudes(n: int) -> np.ndarray:
        return rng.uniform(lo, hi, size=n)

    def sigmas(n: int) -> np.ndarray:
        return _PUNCTUM_SIGMA * rng.uniform(0.8, 1.25, size=(n, 1))

    # Draw every random quantity up front, in a fixed order, whatever channels are asked.
    puncta: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
        "Synapsin647": [
            (pre_pos, amplitudes(n_synapses), sigmas(n_synapses)),
            (syn_only_pos, amplitudes(n_syn_only), sigmas(n_syn_only)),
            (inhib_pos - inhib_offset, amplitudes(n_inhib), sigmas(n_inhib)),
        ],
        "PSD95_488": [
            (post_pos, amplitudes(n_synapses), sigmas(n_synapses)),
            (psd_only_pos, amplitudes(n_psd_only), sigmas(n_psd_only)),
        ],
    }
    vglut = rng.random(n_synapses) < vglut1_fraction
    puncta["VGluT1_647"] = [
        (pre_pos[vglut], amplitudes(int(vglut.sum())), 1.15 * sigmas(int(vglut.sum())))
    ]
    puncta["GAD647"] = [(inhib_pos - inhib_offset, amplitudes(n_inhib), sigmas(n_inhib))]
    puncta["gephyrin594"] = [(inhib_pos + inhib_offset, amplitudes(n_inhib), sigmas(n_inhib))]
    nr1 = rng.random(n_synapses) < nr1_fraction
    puncta["NR1594"] = [(post_pos[nr1], 0.7 * amplitudes(int(nr1.sum())), sigmas(int(nr1.sum())))]
    if n_nuclei is None:
        n_nuclei = max(1, round(shape[1] * shape[2] / (256 * 256)))
    nuclei_pos = rng.uniform(0, 1, size=(n_nuclei, 3)) * np.array(shape)
    nuclei_sigma = np.array([max(3.0, shape[0] / 2), 25.0, 25.0]) * rng.uniform(
        0.8, 1.2, size=(n_nuclei, 1)
    )
    puncta["DAPI1st"] = [(nuclei_pos, rng.uniform(90, 140, size=n_nuclei), nuclei_sigma)]

    rendered: dict[str, np.ndarray] = {}
    for name in names:
        crng = channel_rngs[name]
        level, noise = _BACKGROUND[name]
        image = crng.standard_normal(shape, dtype=np.float32)
        image *= np.float32(noise * noise_scale)
        image += np.float32(level) * _smooth_gain(shape, crng)
        for centers, amps, sig in puncta[name]:
            for center, amp, s in zip(centers, amps, sig, strict=True):
                _add_punctum(image, center, s, float(amp))
        if name == "DAPI1st":
            # Chromatin texture: nuclei are not uniform blobs.
            image *= np.float32(1.0) + np.float32(0.1) * crng.standard_normal(
                shape, dtype=np.float32
            )
        np.clip(np.rint(image, out=image), 0, 255, out=image)
        out = image.astype(np.uint8)
        if dtype == "uint16":
            out = out.astype(np.uint16) * np.uint16(257)
        out.setflags(write=False)
        rendered[name] = out

    annotation = np.zeros(shape, dtype=np.uint64)
    core = math.exp(-0.5 * 1.5**2)  # within 1.5 sigma of a punctum centre
    pre_sig = puncta["Synapsin647"][0][2]
    post_sig = puncta["PSD95_488"][0][2]
    for i in range(n_synapses):
        a = _gauss_box(shape, pre_pos[i], pre_sig[i])
        b = _gauss_box(shape, post_pos[i], post_sig[i])
        for box in (a, b):
            if box is None:
                continue
            slices, blob = box
            view = annotation[slices]
            view[(blob >= core) & (view == 0)] = i + 1
    annotation.setflags(write=False)

    return SparseVolumes(
        channels=rendered,
        synapse_centroids=syn_pos,
        annotation=annotation,
        decoys={
            "synapsin_only": syn_only_pos,
            "inhibitory": inhib_pos,
            "psd_only": psd_only_pos,
        },
        pre_centroids=pre_pos,
        post_centroids=post_pos,
    )
