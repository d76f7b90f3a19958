"""Every registered detector across an SNR x density grid of the realistic synthetic profile.

Asserts the F1 *curve*, not one point: F1 does not fall as SNR rises, does not rise as
density rises (both within ``TOLERANCE``), and stays above per-cell floors. The floors are
each detector's F1 measured on exactly these volumes minus ``MARGIN``; the measured grids
are in docs/detection.md ("Synthetic experiments").

Detectors are run through the registry, as a user's request runs them. The parametrisation
is the union of what is installed and what must be (``REQUIRED``): a required pipeline that
is missing fails, and so does a registered one without recorded floors; none is skipped.
"""

from __future__ import annotations

import numpy as np
import pytest

from synapse_pipelines.core.pipelines import available_pipelines, get_pipeline
from synapse_pipelines.science.evaluation import centroids_from_labels, evaluate_centroids
from synapse_pipelines.science.synthetic import (
    GRID_DENSITY,
    GRID_SEEDS,
    GRID_SHAPE,
    GRID_SNR,
    MATCH_NM,  # about one punctum (FWHM ~450 nm), more than the largest pre/post offset
    POSTSYNAPTIC,
    PRESYNAPTIC,
    make_experiment,
)

SNR, DENSITY, SEEDS, SHAPE = GRID_SNR, GRID_DENSITY, GRID_SEEDS, GRID_SHAPE
#: Allowed step the "wrong" way between neighbouring cells (seed noise, ~2 x its sd).
TOLERANCE = 0.04
#: Floors sit this far below the measured reference F1.
MARGIN = 0.05

REQUIRED = ("nomads-unsupervised", "paired-puncta")

#: Measured F1 (mean of SEEDS) of each detector on this grid; rows SNR, columns density.
#: NOMADS with the first build's null-floor threshold measured 0.00-0.004 in every cell.
MEASURED: dict[str, tuple[tuple[float, ...], ...]] = {
    "paired-puncta": (
        (0.681, 0.612, 0.536),
        (0.738, 0.671, 0.587),
        (0.772, 0.722, 0.661),
    ),
    "nomads-unsupervised": (
        (0.485, 0.495, 0.439),
        (0.522, 0.517, 0.453),
        (0.588, 0.567, 0.516),
    ),
}


def _floors(name: str) -> np.ndarray:
    return np.maximum(np.asarray(MEASURED[name]) - MARGIN, 0.0)


PIPELINES = sorted(set(available_pipelines()) | set(REQUIRED))


@pytest.fixture(scope="module")
def grid() -> dict[tuple[float, float, int], object]:
    """The rendered volumes, shared by every pipeline (pre/post channels only)."""
    return {
        (snr, den, seed): make_experiment(
            SHAPE, seed=seed, snr=snr, density=den, channels=[PRESYNAPTIC, POSTSYNAPTIC]
        )
        for snr in SNR
        for den in DENSITY
        for seed in SEEDS
    }


_SCORES: dict[str, np.ndarray] = {}


def _f1_grid(name: str, grid: dict) -> np.ndarray:
    """Mean F1 over SEEDS per (SNR, density) cell; computed once per pipeline."""
    if name not in _SCORES:
        pipeline = get_pipeline(name)  # a missing pipeline raises here: the test fails
        f1 = np.zeros((len(SNR), len(DENSITY)))
        for i, snr in enumerate(SNR):
            for j, den in enumerate(DENSITY):
                vals = []
                for seed in SEEDS:
                    exp = grid[(snr, den, seed)]
                    result = pipeline.run(
                        exp.channels, PRESYNAPTIC, POSTSYNAPTIC, voxel_size=exp.voxel_size
                    )
                    found = centroids_from_labels(result.labels)[1]
                    score = evaluate_centroids(
                        found,
                        exp.synapse_centroids,
                        max_distance=MATCH_NM,
                        voxel_size=exp.voxel_size,
                    )
                    vals.append(score.f1)
                f1[i, j] = float(np.mean(vals))
        _SCORES[name] = f1
    return _SCORES[name]


def _table(f1: np.ndarray) -> str:
    head = "snr \\ density " + " ".join(f"{d:>6g}" for d in DENSITY)
    rows = [f"{s:>13g} " + " ".join(f"{v:6.3f}" for v in f1[i]) for i, s in enumerate(SNR)]
    return "\n".join([head, *rows])


@pytest.mark.parametrize("name", PIPELINES)
def test_f1_curve_over_snr_and_density(name: str, grid: dict) -> None:
    if name not in MEASURED:
        pytest.fail(
            f"pipeline {name!r} is registered but has no measured grid: run it on this grid, "
            "record MEASURED[name] here and the table in docs/detection.md"
        )
    f1 = _f1_grid(name, grid)
    shown = f"{name} F1 grid:\n{_table(f1)}"
    # the curve: better with SNR, worse with crowding (within seed noise)
    assert np.all(np.diff(f1, axis=0) >= -TOLERANCE), shown
    assert np.all(np.diff(f1, axis=1) <= TOLERANCE), shown
    floors = _floors(name)
    assert np.all(f1 >= floors), f"{shown}\nfloors:\n{_table(floors)}"


@pytest.mark.parametrize("name", PIPELINES)
def test_pipeline_finds_synapses_on_the_default_profile(name: str, grid: dict) -> None:
    """A curve of zeros satisfies every ordering: each pipeline must also find synapses,
    and do best in the easiest cell (high SNR, low density)."""
    f1 = _f1_grid(name, grid)
    assert f1.max() >= 0.3, f"{name} F1 grid:\n{_table(f1)}"
    assert f1[-1, 0] >= f1[0, -1] + 0.05, f"{name} F1 grid:\n{_table(f1)}"
