"""Pure computation behind the report: arrays and tables in, numbers out (no plotting, no I/O).

What PyMEDA (neurodata-nomads/pymeda, 2018) computed, and how this module reproduces it:

* **z-scoring**: every feature column minus its mean, divided by its population standard
  deviation (``scipy.stats.zscore``, ddof=0), as ``Meda`` did before every plot except the
  two location plots (those show raw values). Departures, because PyMEDA crashed instead:
  a constant feature z-scores to 0 (not NaN) and a missing value (NaN) is imputed with the
  feature mean, i.e. 0 after z-scoring; both are counted and reported.
* **hierarchical GMM** (PyMEDA's ``HGMMClustering``): level 0 is every synapse; at each
  next level every cluster is fitted with a 1- and a 2-component full-covariance Gaussian
  mixture and split in two when the 2-component model has the lower BIC, otherwise it is
  carried down unchanged. ``levels`` is the number of splitting rounds (the original
  pipeline asked for 2). For speed each node is fitted on a seeded sample of at most
  ``max_fit_samples`` members and the split is then predicted for all members; a node with
  fewer than ``MIN_SPLIT_SIZE`` members or with no spread is not split (a 2-component
  full-covariance mixture is not identifiable there; PyMEDA crashed on such nodes).
  Cluster means are the averages of the members' z-scored features, as PyMEDA's plots used.
* **representative rows**: above 1000 synapses PyMEDA showed 1000 k-means++ seeds (knor,
  ``max_iters=0, init='kmeanspp'``) instead of every row; we take the same classic k-means++
  seeding (one candidate per step) from scikit-learn, on a seeded sample of at most
  ``KMEANSPP_SAMPLES`` rows.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import gaussian_kde
from sklearn.cluster import kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.science.features import (
    CENTROID_COLUMNS,
    MEAN_SUFFIX,
    WINDOW_SUFFIX,
)

#: Default feature rule: numeric columns whose names end with one of these, grouped by
#: suffix in this order and in table order within a suffix (the synapse table's per-channel
#: windowed z-score sums, then per-channel mean intensities).
DEFAULT_FEATURE_SUFFIXES: tuple[str, ...] = (WINDOW_SUFFIX, MEAN_SUFFIX)
#: Above this many synapses the representative heatmap shows k-means++ seeds (PyMEDA: 1000).
REPRESENTATIVE_ROWS = 1000
#: EM restarts of each 2-component fit (best likelihood kept). PyMEDA used 1; one start
#: from k-means sometimes lands in a poor split of clearly separated groups.
GMM_INITS = 3
#: k-means++ seeds are drawn from a sample of at most this many synapses.
KMEANSPP_SAMPLES = 100_000
#: Smallest cluster the hierarchical GMM tries to split.
MIN_SPLIT_SIZE = 10
#: Pair plot: at most this many synapses (a seeded sample) and the first this many features.
PAIR_PLOT_SAMPLES = 1000
PAIR_PLOT_FEATURES = 3
#: Spatial views: at most this many centroids are drawn (a seeded sample).
SPATIAL_SAMPLES = 5000
#: Ridge lines: each KDE is fitted on at most this many values; evaluated on this grid size.
KDE_SAMPLES = 5000
KDE_POINTS = 100
#: Clip of the ridge-line range, in standard deviations (PyMEDA: 5).
RIDGE_CLIP = 5.0
#: Bins of the synapse volume histogram (at most).
VOLUME_HISTOGRAM_BINS = 40

#: Micrometres per unit, for the density (BOSS coordinate frames say "nanometers").
UNIT_TO_MICROMETRES: dict[str, float] = {
    "nanometers": 1e-3,
    "nanometer": 1e-3,
    "nm": 1e-3,
    "micrometers": 1.0,
    "micrometer": 1.0,
    "microns": 1.0,
    "micron": 1.0,
    "um": 1.0,
    "µm": 1.0,
    "millimeters": 1e3,
    "millimeter": 1e3,
    "mm": 1e3,
}

ID_COLUMNS = ("id", "synapse_id")
VOLUME_COLUMN = "volume_voxels"
CLIPPED_COLUMN = "window_clipped"


class ReportInputError(SynapsePipelinesError):
    """The synapse table or a report option cannot be used."""

    error_type = "ReportInputError"


# --------------------------------------------------------------------------- features


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


# --------------------------------------------------------------------------- clustering


@dataclass(frozen=True)
class ClusterNode:
    """One cluster of the hierarchy."""

    level: int
    index: int  # position within its level (the label at that level)
    parent: int | None  # index at level - 1
    path: str  # e.g. "0.1.0": root, then the branch taken at each level
    members: np.ndarray  # row indices (sorted)
    mean_z: np.ndarray  # (d,) mean z-scored features of the members
    split: bool  # whether this node was split at the next level

    @property
    def size(self) -> int:
        return int(self.members.size)


@dataclass(frozen=True)
class Hierarchy:
    """Hierarchical GMM result: ``levels[0]`` is the root, ``levels[-1]`` the leaves."""

    levels: list[list[ClusterNode]]
    labels_by_level: list[np.ndarray]  # per level, (n,) int label of each synapse
    requested_levels: int

    @property
    def leaves(self) -> list[ClusterNode]:
        return self.levels[-1]

    @property
    def labels(self) -> np.ndarray:
        return self.labels_by_level[-1]

    @property
    def depth(self) -> int:
        """Splitting rounds actually run (``len(levels) - 1``)."""
        return len(self.levels) - 1


def _fit_gmm(x: np.ndarray, k: int, seed: int) -> GaussianMixture:
    gmm = GaussianMixture(
        n_components=k, covariance_type="full", random_state=seed, n_init=GMM_INITS if k > 1 else 1
    )
    with warnings.catch_warnings():
        # a mixture that has not converged in 100 EM steps is still a usable split
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(x)
    return gmm


def _try_split(
    z: np.ndarray, members: np.ndarray, *, seed: int, path: str, max_fit_samples: int
) -> list[np.ndarray] | None:
    """Split ``members`` in two by BIC (PyMEDA's ``gmmBranch``), or None to keep it whole."""
    if members.size < MIN_SPLIT_SIZE:
        return None
    x_all = z[members]
    if not np.any(np.ptp(x_all, axis=0) > 0):
        return None  # every member identical: nothing to split
    # one sample per node, seeded by the seed and the node's path: reproducible and
    # independent of the order in which nodes are visited
    rng = np.random.default_rng([seed, *(int(p) for p in path.split("."))])
    if members.size > max_fit_samples:
        fit_rows = np.sort(rng.choice(members.size, size=max_fit_samples, replace=False))
        x_fit = x_all[fit_rows]
    else:
        x_fit = x_all
    if np.unique(x_fit, axis=0).shape[0] < 2:
        return None
    gmm1 = _fit_gmm(x_fit, 1, seed)
    gmm2 = _fit_gmm(x_fit, 2, seed)
    if not gmm2.bic(x_fit) < gmm1.bic(x_fit):
        return None
    pred = gmm2.predict(x_all)
    parts = [members[pred == 0], members[pred == 1]]
    if min(p.size for p in parts) == 0:
        return None  # the mixture put everybody in one component: no split
    return parts


def hierarchical_gmm(
    z: np.ndarray, *, levels: int = 2, seed: int = 0, max_fit_samples: int = 20_000
) -> Hierarchy:
    """PyMEDA's hierarchical GMM on z-scored features ``z`` (n, d); see the module docstring."""
    if levels < 0:
        raise ReportInputError(
            f"gmm levels must be >= 0; got {levels}", field="gmm_levels", hint="use 2"
        )
    with threadpool_limits(limits=1):  # see analyse_table
        return _hierarchical_gmm(z, levels=levels, seed=seed, max_fit_samples=max_fit_samples)


def _hierarchical_gmm(z: np.ndarray, *, levels: int, seed: int, max_fit_samples: int) -> Hierarchy:
    n = z.shape[0]
    root_members = np.arange(n)
    mean0 = z.mean(axis=0) if n else np.zeros(z.shape[1])
    tree: list[list[ClusterNode]] = [[ClusterNode(0, 0, None, "0", root_members, mean0, False)]]
    labels_by_level = [np.zeros(n, dtype=np.int64)]
    for level in range(1, levels + 1):
        # PyMEDA stopped once there were as many clusters as synapses; we carry unsplit
        # clusters down instead, so every requested level exists (a cluster that small is
        # never split: MIN_SPLIT_SIZE)
        previous = tree[-1]
        nodes: list[ClusterNode] = []
        labels = np.zeros(n, dtype=np.int64)
        updated_previous: list[ClusterNode] = []
        for node in previous:
            parts = _try_split(
                z, node.members, seed=seed, path=node.path, max_fit_samples=max_fit_samples
            )
            updated_previous.append(
                ClusterNode(
                    node.level,
                    node.index,
                    node.parent,
                    node.path,
                    node.members,
                    node.mean_z,
                    parts is not None,
                )
            )
            for branch, members in enumerate(parts if parts is not None else [node.members]):
                idx = len(nodes)
                mean = z[members].mean(axis=0) if members.size else np.zeros(z.shape[1])
                nodes.append(
                    ClusterNode(
                        level, idx, node.index, f"{node.path}.{branch}", members, mean, False
                    )
                )
                labels[members] = idx
        tree[-1] = updated_previous
        tree.append(nodes)
        labels_by_level.append(labels)
    return Hierarchy(levels=tree, labels_by_level=labels_by_level, requested_levels=levels)


def representative_rows(
    z: np.ndarray,
    *,
    seed: int,
    limit: int = REPRESENTATIVE_ROWS,
    max_rows: int = KMEANSPP_SAMPLES,
) -> np.ndarray:
    """Rows for the representative heatmap: all rows up to ``limit``, else k-means++ seeds.

    The seeds are drawn from a seeded uniform sample of at most ``max_rows`` rows: seeding
    costs O(rows x limit x d), 40 s for 10^6 x 20 against 1.3 s for 10^5 x 12 on one core,
    and a 10^5-row sample already holds every cluster a 1000-seed heatmap can show.
    """
    if z.shape[0] <= limit:
        return z
    pool = z[sample_rows(z.shape[0], max_rows, seed=seed, stream=4)]
    centres, _ = kmeans_plusplus(pool, n_clusters=limit, random_state=seed, n_local_trials=1)
    return centres


# --------------------------------------------------------------------------- descriptive


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


def stacked_widths(sizes: Sequence[int]) -> np.ndarray:
    """Column edges (0..1) giving each cluster a width proportional to its size."""
    sizes_arr = np.asarray(sizes, dtype=np.float64)
    total = sizes_arr.sum()
    return (
        np.r_[0.0, np.cumsum(sizes_arr) / total] if total > 0 else np.linspace(0, 1, len(sizes) + 1)
    )


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """Where the synapses are and how big they are, in voxels and (when known) micrometres."""

    centroids_voxels: np.ndarray | None  # (n, 3) z, y, x, or None when the table lacks them
    voxel_size_um: tuple[float, float, float] | None
    volumes_voxels: np.ndarray | None
    box_shape: tuple[int, int, int] | None  # analysed box in voxels
    box_source: str  # where the box came from (shown in the summary)
    clipped_windows: int | None = None  # rows whose feature window met the volume border
    notes: list[str] = field(default_factory=list)

    @property
    def voxel_volume_um3(self) -> float | None:
        return float(np.prod(self.voxel_size_um)) if self.voxel_size_um else None

    @property
    def box_volume_um3(self) -> float | None:
        if self.box_shape is None or self.voxel_volume_um3 is None:
            return None
        return float(np.prod(self.box_shape)) * self.voxel_volume_um3


def _to_micrometres(voxel_size: Sequence[float], unit: str) -> tuple[float, float, float] | None:
    factor = UNIT_TO_MICROMETRES.get(unit.strip().lower())
    if factor is None:
        return None
    return tuple(float(v) * factor for v in voxel_size)  # type: ignore[return-value]


def parse_voxel_size(value: Sequence[float] | str | None) -> tuple[float, float, float] | None:
    """``"z,y,x"`` or a 3-sequence of positive numbers -> tuple; None stays None."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        out = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or not all(math.isfinite(v) and v > 0 for v in out):
        raise ReportInputError(
            f"voxel size must be three positive numbers z,y,x; got {value!r}",
            field="voxel_size",
            hint="e.g. --voxel-size 50,2.24,2.24 (in --voxel-unit, nanometers by default)",
        )
    return out  # type: ignore[return-value]


def _box_from_request(info: Mapping[str, Any]) -> tuple[int, int, int] | None:
    try:
        ranges = [info[f"{a}_range"] for a in ("z", "y", "x")]
        shape = tuple(int(r[1]) - int(r[0]) for r in ranges)
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return shape if all(s > 0 for s in shape) else None  # type: ignore[return-value]


def table_geometry(
    table: pd.DataFrame,
    *,
    voxel_size: Sequence[float] | None,
    voxel_unit: str | None,
    box_shape: Sequence[int] | None,
    request_info: Mapping[str, Any] | None,
) -> Geometry:
    """Centroids, voxel size (µm), volumes and the analysed box, from arguments or metadata.

    Precedence for the voxel size and its unit: the arguments, then ``table.attrs`` (written
    by the synapse table's companion JSON). For the box: the argument, then the request's
    z/y/x ranges, then ``table.attrs["shape"]``.
    """
    notes: list[str] = []
    attrs = dict(table.attrs)
    cols = set(map(str, table.columns))
    centroids = None
    if all(c in cols for c in CENTROID_COLUMNS):
        centroids = table[list(CENTROID_COLUMNS)].to_numpy(dtype=np.float64, na_value=np.nan)
    elif all(c in cols for c in ("z", "y", "x")):
        centroids = table[["z", "y", "x"]].to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        notes.append(f"the table has no centroid columns ({', '.join(CENTROID_COLUMNS)})")

    size = voxel_size if voxel_size is not None else attrs.get("voxel_size")
    unit = voxel_unit if voxel_unit is not None else attrs.get("voxel_unit", "nanometers")
    size_um = None
    if size is not None:
        size_um = _to_micrometres(parse_voxel_size(size), str(unit))  # type: ignore[arg-type]
        if size_um is None:
            notes.append(
                f"voxel unit {unit!r} is not a length unit this report knows "
                f"({', '.join(sorted(UNIT_TO_MICROMETRES))}): physical sizes are not shown"
            )
    else:
        notes.append("voxel size unknown (no --voxel-size and no table metadata)")

    volumes = None
    if VOLUME_COLUMN in cols:
        volumes = table[VOLUME_COLUMN].to_numpy(dtype=np.float64, na_value=np.nan)

    clipped = None
    if CLIPPED_COLUMN in cols:
        flags = table[CLIPPED_COLUMN]
        if flags.dtype != bool:  # e.g. read from a CSV without the table's dtypes
            flags = flags.astype(str).str.strip().str.lower().isin({"true", "1"})
        clipped = int(flags.sum())

    shape: tuple[int, int, int] | None = None
    source = "unknown"
    if box_shape is not None:
        shape, source = tuple(int(s) for s in box_shape), "given"  # type: ignore[assignment]
    elif request_info and (req := _box_from_request(request_info)) is not None:
        shape, source = req, "request z/y/x ranges"
    elif isinstance(attrs.get("shape"), list | tuple) and len(attrs["shape"]) == 3:
        shape, source = tuple(int(s) for s in attrs["shape"]), "table metadata"  # type: ignore[assignment]
    return Geometry(
        centroids_voxels=centroids,
        voxel_size_um=size_um,
        volumes_voxels=volumes,
        box_shape=shape,
        box_source=source,
        clipped_windows=clipped,
        notes=notes,
    )


# --------------------------------------------------------------------------- everything


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
            hint="read synapses.csv with features.read_synapse_table",
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
