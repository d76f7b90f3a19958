"""The report's statistics per feature: the feature rule, z-scores, densities, correlation.

Pure: a table in, arrays out (no plotting, no I/O). Owns :class:`ReportInputError`, the
feature rule (:func:`select_feature_columns`), the feature matrix, z-scoring, the
ridge-line densities, the location estimates, the correlation matrix, the scree values
and the seeded row samples every other part of the report draws from
(:func:`sample_rows`). The clustering is :mod:`synapse_pipelines.report.clustering`'s.

What PyMEDA (neurodata-nomads/pymeda, 2018) computed, and how this module reproduces it:

* **z-scoring**: every feature column minus its mean, divided by its population standard
  deviation (``scipy.stats.zscore``, ddof=0), as ``Meda`` did before every plot except the
  two location plots (those show raw values). Departures, because PyMEDA crashed instead:
  a constant feature z-scores to 0 (not NaN) and a missing value (NaN) is imputed with the
  feature mean, i.e. 0 after z-scoring; both are counted and reported.
* **ridge lines**: a Gaussian KDE (Scott's bandwidth) of each z-scored feature on 100
  points spanning [floor(min), ceil(max)] clipped to [-5, 5]; we fit each KDE on a seeded
  sample of at most ``kde_samples`` values (the curve does not change visibly; the cost
  does).
* **scree**: PyMEDA plotted singular values divided by their sum under the label
  "proportion of total variance"; we plot what the label says, the eigenvalues of the
  covariance of the z-scored features (squared singular values) divided by their sum.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import gaussian_kde

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.science.features import MEAN_SUFFIX, WINDOW_SUFFIX

#: Default feature rule: numeric columns whose names end with one of these, grouped by
#: suffix in this order and in table order within a suffix (the synapse table's per-channel
#: windowed z-score sums, then per-channel mean intensities).
DEFAULT_FEATURE_SUFFIXES: tuple[str, ...] = (WINDOW_SUFFIX, MEAN_SUFFIX)
#: Ridge lines: each KDE is fitted on at most this many values; evaluated on this grid size.
KDE_SAMPLES = 5000
KDE_POINTS = 100
#: Clip of the ridge-line range, in standard deviations (PyMEDA: 5).
RIDGE_CLIP = 5.0


class ReportInputError(SynapsePipelinesError):
    """The synapse table or a report option cannot be used."""

    error_type = "ReportInputError"


def select_feature_columns(
    table: pd.DataFrame,
    features: Sequence[str] | None = None,
    *,
    suffixes: Sequence[str] = DEFAULT_FEATURE_SUFFIXES,
) -> list[str]:
    """The feature columns the report analyses.

    ``features`` given: exactly those, in that order (each must exist). Otherwise the
    default rule: every column whose name ends with one of ``suffixes`` (by default the
    synapse table's ``<channel>_window_zsum`` then ``<channel>_mean`` columns), grouped by
    suffix in the order of ``suffixes`` and in table order within a suffix.
    """
    columns = [str(c) for c in table.columns]
    if features is not None:
        chosen = [str(f) for f in features]
        missing = [f for f in chosen if f not in columns]
        if missing:
            raise ReportInputError(
                f"feature columns {missing} are not in the table (its columns: {columns})",
                field="features",
                hint="name existing columns, or leave features unset for the default rule",
            )
        if len(set(chosen)) != len(chosen):
            raise ReportInputError(
                f"feature columns repeat: {chosen}", field="features", hint="name each once"
            )
        if not chosen:
            raise ReportInputError(
                "the feature list is empty", field="features", hint="name at least one column"
            )
        return chosen
    chosen = []
    for suffix in suffixes:
        chosen += [c for c in columns if c.endswith(suffix) and c not in chosen]
    if not chosen:
        raise ReportInputError(
            f"no feature columns found: none of the columns {columns} ends with {list(suffixes)}",
            field="features",
            hint="pass a synapse table written by the detect step, or name the feature "
            "columns explicitly (--features a,b,c)",
        )
    return chosen


def feature_matrix(table: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The features as an (n, d) float64 array (NaN where missing or infinite).

    Non-numeric text is an error naming the column and the row.
    """
    out = np.empty((len(table), len(features)), dtype=np.float64)
    for j, name in enumerate(features):
        col = table[name]
        if col.dtype == bool or pd.api.types.is_numeric_dtype(col):
            out[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        numeric = pd.to_numeric(col, errors="coerce")
        bad = numeric.isna() & col.notna() & (col.astype(str).str.strip() != "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ReportInputError(
                f"feature column {name!r} holds non-numeric value {col.iloc[row]!r} "
                f"(data row {row + 1})",
                field=f"features[{name}]",
                hint="feature columns must be numbers (empty cells are allowed and imputed)",
            )
        out[:, j] = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    out[np.isinf(out)] = np.nan  # an infinite feature value is as unusable as a missing one
    return out


@dataclass(frozen=True)
class ZScored:
    """z-scored features and what it took to get them."""

    values: np.ndarray  # (n, d) float64, NaN imputed as 0
    mean: np.ndarray  # (d,) NaN where a feature has no values
    std: np.ndarray  # (d,) population std; 0 for a constant feature
    constant: np.ndarray  # (d,) bool: no spread (or no values at all)
    missing: np.ndarray  # (d,) int: NaN count per feature


def zscore(raw: np.ndarray) -> ZScored:
    """Column-wise z-score as ``scipy.stats.zscore`` (ddof=0), robust to NaN and constants."""
    n, d = raw.shape
    finite = np.isfinite(raw)
    missing = (~finite).sum(axis=0)
    clean = np.where(finite, raw, np.nan)
    with warnings.catch_warnings():  # all-NaN columns: handled just below
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(clean, axis=0) if n else np.full(d, np.nan)
        std = np.nanstd(clean, axis=0) if n else np.full(d, np.nan)
    constant = ~(np.isfinite(std) & (std > 0))
    safe_std = np.where(constant, 1.0, std)
    safe_mean = np.where(np.isfinite(mean), mean, 0.0)
    z = (np.where(finite, raw, safe_mean) - safe_mean) / safe_std
    z[:, constant] = 0.0
    return ZScored(
        values=z,
        mean=mean,
        std=np.where(np.isfinite(std), std, 0.0),
        constant=constant,
        missing=missing.astype(np.int64),
    )


@dataclass(frozen=True)
class Ridges:
    x: np.ndarray  # (KDE_POINTS,) grid in standard deviations
    densities: dict[int, np.ndarray]  # feature index -> density on x (only those with a KDE)
    skipped: dict[int, str]  # feature index -> why no curve


def ridge_densities(
    z: ZScored, *, seed: int, kde_samples: int = KDE_SAMPLES, observed: np.ndarray | None = None
) -> Ridges:
    """Per-feature Gaussian KDEs of the z-scored features (PyMEDA's ridge line plot)."""
    values = z.values
    n, d = values.shape
    lo = max(-RIDGE_CLIP, math.floor(float(values.min()))) if n else -1.0
    hi = min(RIDGE_CLIP, math.ceil(float(values.max()))) if n else 1.0
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    grid = np.linspace(lo, hi, KDE_POINTS)
    rng = np.random.default_rng([seed, 1])
    densities: dict[int, np.ndarray] = {}
    skipped: dict[int, str] = {}
    for j in range(d):
        col = values[:, j]
        if observed is not None:
            col = col[observed[:, j]]  # imputed values would put a false spike at 0
        if z.constant[j]:
            skipped[j] = "constant (no spread)"
            continue
        if np.unique(col).size < 2:
            skipped[j] = "fewer than 2 distinct values"
            continue
        if col.size > kde_samples:
            col = col[np.sort(rng.choice(col.size, size=kde_samples, replace=False))]
        try:
            densities[j] = gaussian_kde(col)(grid)
        except np.linalg.LinAlgError:  # degenerate sample (e.g. two distinct values only)
            skipped[j] = "degenerate distribution (KDE covariance is singular)"
    return Ridges(x=grid, densities=densities, skipped=skipped)


def location_estimates(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and median of the raw (not z-scored) values, ignoring NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN feature -> NaN
        return np.nanmean(raw, axis=0), np.nanmedian(raw, axis=0)


def correlation_matrix(z: ZScored) -> np.ndarray:
    """Pearson correlation of the features; 0 where undefined (constant), as PyMEDA did."""
    d = z.values.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.corrcoef(z.values, rowvar=False) if z.values.shape[0] > 1 else np.eye(d)
    c = np.nan_to_num(np.atleast_2d(c))
    for j in range(d):
        c[j, j] = 0.0 if z.constant[j] else 1.0
    return c


def scree(z: np.ndarray) -> np.ndarray:
    """Proportion of total variance per principal component (descending)."""
    cov = (z.T @ z) / max(z.shape[0], 1)
    eig = np.clip(np.linalg.eigvalsh(cov)[::-1], 0.0, None)
    total = eig.sum()
    return eig / total if total > 0 else eig


def sample_rows(n: int, limit: int, *, seed: int, stream: int) -> np.ndarray:
    """Sorted indices of a seeded sample of at most ``limit`` rows out of ``n``."""
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng([seed, stream])
    return np.sort(rng.choice(n, size=limit, replace=False))
