"""The real-data benchmark's reader of DoGNet's weiler14 crops (the crops themselves live in
a DoGNet checkout, never in the test suite): a .mat written here in their layout comes
back as weiler14_dev's layout, and a detector is scored on it one-to-one within 3 px."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
from fixtures.benchmark_modules import load_benchmark
from scipy.io import savemat


def _bench() -> ModuleType:
    return load_benchmark("bench_real_data")


def _write_crop(path: Path) -> np.ndarray:
    """Three float channels (synapsin, vGluT1, PSD-95) and 1-based points, the first one
    DoGNet's (0, 0) placeholder; returns the points as (row, column), 0-based."""
    rng = np.random.default_rng(0)
    data = rng.uniform(0.05, 0.6, (3, 40, 50))
    rows, cols = np.array([0.0, 11.5, 30.25]), np.array([0.0, 21.0, 4.5])
    savemat(path, {"data": data, "X": rows[None], "Y": cols[None]})
    return np.stack([rows[1:] - 1, cols[1:] - 1], axis=1)


def test_a_dognet_crop_reads_as_weiler14_dev_does(tmp_path: Path) -> None:
    bench = _bench()
    truth = _write_crop(tmp_path / "weiler300400_000100.mat")
    synapsin, psd95, points = bench.load_dognet_crop(tmp_path / "weiler300400_000100.mat")
    assert synapsin.shape == psd95.shape == (1, 40, 50)
    assert synapsin.dtype == psd95.dtype == np.uint16
    assert synapsin.min() == psd95.min() == 0 and synapsin.max() == psd95.max() == 65535
    np.testing.assert_allclose(points, truth)


def test_a_dognet_crop_is_scored_within_three_pixels(tmp_path: Path) -> None:
    bench = _bench()
    truth = _write_crop(tmp_path / "weiler300400_000100.mat")
    found = np.array([[0.0, *truth[0] + 2.0], [0.0, 5.0, 40.0]])  # one within 3 px, one not

    def detector(pre, post, voxel):  # type: ignore[no-untyped-def]
        return found, 0.0, 0.0

    row = bench.dognet_crop(tmp_path / "weiler300400_000100.mat", detector)
    assert (row["n"], row["n_truth"], row["tp"]) == (2, 2, 1)
    assert row["precision"] == row["recall"] == row["f1"] == 0.5
