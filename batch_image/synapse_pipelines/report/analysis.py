"""Everything the report shows, computed once: :func:`analyse_table` -> :class:`ReportData`.

Pure: a synapse table in, numbers out (no plotting, no I/O). Owns :class:`ReportData`,
the input checks of the analysis (seed, GMM levels), the row samples of the pair plot and
the spatial views, the synapse ids and the request as the header shows it (secrets
dropped). The computations themselves are
:mod:`~synapse_pipelines.report.feature_statistics` (feature rule, z-score, ridge lines,
locations, correlation, scree), :mod:`~synapse_pipelines.report.clustering` (hierarchical
GMM, k-means++ seeds) and :mod:`~synapse_pipelines.report.spatial` (centroids, voxel size,
volumes, the analysed box).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .clustering import REPRESENTATIVE_ROWS, Hierarchy, hierarchical_gmm, representative_rows
from .feature_statistics import (
    KDE_SAMPLES,
    ReportInputError,
    Ridges,
    ZScored,
    correlation_matrix,
    feature_matrix,
    location_estimates,
    ridge_densities,
    sample_rows,
    scree,
    select_feature_columns,
    zscore,
)
from .spatial import Geometry, table_geometry

#: Pair plot: at most this many synapses (a seeded sample) and the first this many features.
PAIR_PLOT_SAMPLES = 1000
PAIR_PLOT_FEATURES = 3
#: Spatial views: at most this many centroids are drawn (a seeded sample).
SPATIAL_SAMPLES = 5000

ID_COLUMNS = ("id", "synapse_id")


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, computed once (pure; rendering reads only this)."""

    title: str
    seed: int
    gmm_levels: int
    features: list[str]
    ids: np.ndarray  # (n,) synapse ids (the table's id column, else row numbers)
    raw: np.ndarray  # (n, d) float64 raw features (NaN where missing)
    z: ZScored
    hierarchy: Hierarchy | None  # None when there are no synapses
    representative: np.ndarray  # rows of the representative heatmap (z-scored)
    representative_is_kmeanspp: bool
    ridges: Ridges | None
    location_mean: np.ndarray
    location_median: np.ndarray
    correlation: np.ndarray | None
    scree: np.ndarray | None
    pair_rows: np.ndarray  # row indices drawn in the pair plot
    pair_features: list[int]  # feature indices drawn in the pair plot
    spatial_rows: np.ndarray  # row indices drawn in the spatial views
    geometry: Geometry
    request_info: dict[str, Any]
    results_key: str | None
    notes: list[str]

    @property
    def n(self) -> int:
        return int(self.raw.shape[0])

    @property
    def d(self) -> int:
        return int(self.raw.shape[1])


#: Request fields never shown, whatever a caller passes (the token must not reach a file).
_SECRET_KEYS = ("token", "password", "secret_value")


def public_request_info(info: Mapping[str, Any] | None) -> dict[str, Any]:
    """The request as shown in the header: JSON-like values, secrets dropped."""
    if not info:
        return {}
    return {
        str(k): v
        for k, v in info.items()
        if str(k).lower() not in _SECRET_KEYS and not str(k).lower().endswith("_token")
    }


def table_ids(table: pd.DataFrame) -> np.ndarray:
    for name in ID_COLUMNS:
        if name in table.columns:
            return table[name].to_numpy()
    return np.arange(len(table))


@threadpool_limits.wrap(limits=1)
def analyse_table(
    table: pd.DataFrame,
    *,
    title: str,
    features: Sequence[str] | None = None,
    seed: int = 0,
    gmm_levels: int = 2,
    voxel_size: Sequence[float] | None = None,
    voxel_unit: str | None = None,
    box_shape: Sequence[int] | None = None,
    request_info: Mapping[str, Any] | None = None,
    results_key: str | None = None,
    max_fit_samples: int = 20_000,
    kde_samples: int = KDE_SAMPLES,
) -> ReportData:
    """Run every computation of the report on a synapse table (no plotting, no I/O).

    BLAS and OpenMP are held to one thread: the matrices here are n x d with d about
    10-30, where extra threads only add synchronisation (measured: 0.4 s single-threaded
    against 14 s with two threads on a busy 2-core machine for 2000 synapses), and one
    thread also fixes the order of floating-point reductions, so results do not depend on
    the machine's core count.
    """
    if not isinstance(table, pd.DataFrame):
        raise ReportInputError(
            f"the synapse table must be a pandas DataFrame; got {type(table).__name__}",
            field="table",
            hint="read synapses.csv with io.synapse_table_files.read_synapse_table",
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ReportInputError(f"seed must be an integer >= 0; got {seed!r}", field="seed")
    if (
        isinstance(gmm_levels, bool)
        or not isinstance(gmm_levels, int | np.integer)
        or not (0 <= gmm_levels <= 8)
    ):
        raise ReportInputError(
            f"gmm levels must be an integer from 0 to 8; got {gmm_levels!r}",
            field="gmm_levels",
            hint="2 is what the original pipeline used; each level at most doubles the clusters",
        )
    seed, gmm_levels = int(seed), int(gmm_levels)
    names = select_feature_columns(table, features)
    raw = feature_matrix(table, names)
    n, d = raw.shape
    z = zscore(raw)
    notes: list[str] = []
    for j, name in enumerate(names):
        if z.missing[j] == n and n:
            notes.append(f"feature {name!r} has no values (all missing): shown as 0")
        elif z.constant[j] and n > 1:
            notes.append(f"feature {name!r} is constant: its z-score is 0 for every synapse")
        if 0 < z.missing[j] < n:
            notes.append(
                f"feature {name!r}: {int(z.missing[j])} missing value(s) imputed with the mean"
            )
    hierarchy = None
    if n:
        hierarchy = hierarchical_gmm(
            z.values, levels=gmm_levels, seed=seed, max_fit_samples=max_fit_samples
        )
    observed = np.isfinite(raw)
    ridges = (
        ridge_densities(z, seed=seed, observed=observed, kde_samples=kde_samples)
        if n >= 2
        else None
    )
    loc_mean, loc_median = location_estimates(raw) if n else (np.full(d, np.nan),) * 2
    geometry = table_geometry(
        table,
        voxel_size=voxel_size,
        voxel_unit=voxel_unit,
        box_shape=box_shape,
        request_info=request_info,
    )
    info = public_request_info(request_info)
    key = results_key if results_key is not None else info.get("results_key")
    return ReportData(
        title=title,
        seed=seed,
        gmm_levels=gmm_levels,
        features=names,
        ids=table_ids(table),
        raw=raw,
        z=z,
        hierarchy=hierarchy,
        representative=representative_rows(z.values, seed=seed) if n else z.values,
        representative_is_kmeanspp=n > REPRESENTATIVE_ROWS,
        ridges=ridges,
        location_mean=loc_mean,
        location_median=loc_median,
        correlation=correlation_matrix(z) if n >= 2 and d >= 2 else None,
        scree=scree(z.values) if n >= 2 and d >= 2 else None,
        pair_rows=sample_rows(n, PAIR_PLOT_SAMPLES, seed=seed, stream=2),
        pair_features=list(range(min(PAIR_PLOT_FEATURES, d))),
        spatial_rows=sample_rows(n, SPATIAL_SAMPLES, seed=seed, stream=3),
        geometry=geometry,
        request_info=info,
        results_key=str(key) if key is not None else None,
        notes=notes,
    )
