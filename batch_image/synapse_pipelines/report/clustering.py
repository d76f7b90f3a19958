"""The report's clustering: PyMEDA's hierarchical GMM and the representative rows.

Pure: z-scored features in, a :class:`Hierarchy` or rows out (no plotting, no I/O). Owns
:class:`ClusterNode` / :class:`Hierarchy`, :func:`hierarchical_gmm` and
:func:`representative_rows` (k-means++ seeds). The z-scoring that feeds them is
:mod:`synapse_pipelines.report.feature_statistics`'s.

What PyMEDA (neurodata-nomads/pymeda, 2018) computed, and how this module reproduces it:

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
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from .feature_statistics import ReportInputError, sample_rows

#: Above this many synapses the representative heatmap shows k-means++ seeds (PyMEDA: 1000).
REPRESENTATIVE_ROWS = 1000
#: EM restarts of each 2-component fit (best likelihood kept). PyMEDA used 1; one start
#: from k-means sometimes lands in a poor split of clearly separated groups.
GMM_INITS = 3
#: k-means++ seeds are drawn from a sample of at most this many synapses.
KMEANSPP_SAMPLES = 100_000
#: Smallest cluster the hierarchical GMM tries to split.
MIN_SPLIT_SIZE = 10


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
