"""Benchmark: the synapse table vs the original's approach, in the same run.

The original (nomads_cloud, as described in FIELD_NOTES) z-scored each channel per
z-slice into a full float copy of the volume and then, in a Python loop over synapses,
summed the window ``[c-2:c+2, c-5:c+5, c-5:c+5]`` around each centroid (skipping border
synapses). Centroids here come from ``scipy.ndimage.center_of_mass`` for the original
(the most favourable choice for it). Ours: :func:`synapse_table` (geometry, window sums
from per-slice summed-area tables, and per-object means, for every channel).

Usage::

    python benchmarks/bench_features.py [--shape 32,1024,1024] [--channels 7] [--repeat 2]

Prints seconds, Mvoxel/s and peak traced memory (bytes per voxel) of each, their ratio,
and checks that both give the same window sums on the synapses the original keeps.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from scipy import ndimage

from synapse_pipelines.science.detection import detect
from synapse_pipelines.science.features import synapse_table
from synapse_pipelines.science.synthetic import ALL_CHANNELS, make_experiment


def original_features(labels: np.ndarray, channels: dict[str, np.ndarray]) -> dict[str, dict]:
    """The original approach: per-slice z-scored float copies + a loop over synapses."""
    n = int(labels.max())
    ids = np.arange(1, n + 1)
    cents = np.asarray(ndimage.center_of_mass(labels > 0, labels, ids)).reshape(-1, 3)
    out: dict[str, dict] = {}
    for name, vol in channels.items():
        zs = np.empty(vol.shape, dtype=np.float64)
        for k in range(vol.shape[0]):
            s = vol[k].astype(np.float64)
            sd = s.std()
            zs[k] = (s - s.mean()) / sd if sd > 0 else 0.0
        feats = {}
        for i, c in zip(ids, cents, strict=True):
            z, y, x = (int(v) for v in c)
            if z < 2 or y < 5 or x < 5 or z + 2 > vol.shape[0] or y + 5 > vol.shape[1]:
                continue  # the original skipped synapses near the border
            if x + 5 > vol.shape[2]:
                continue
            feats[int(i)] = float(zs[z - 2 : z + 2, y - 5 : y + 5, x - 5 : x + 5].sum())
        out[name] = feats
        del zs
    return out


def measure(fn, repeat: int) -> tuple[float, int, object]:
    best = float("inf")
    peak = 0
    result = None
    for _ in range(repeat):
        tracemalloc.start()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return best, peak, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="32,1024,1024")
    ap.add_argument("--channels", type=int, default=len(ALL_CHANNELS))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    names = list(ALL_CHANNELS[: args.channels])
    exp = make_experiment(shape, seed=args.seed, channels=names)
    det = detect(exp.channels[exp.presynaptic], exp.channels[exp.postsynaptic])
    labels = det.labels
    chans = {n: exp.channels[n] for n in names}
    vox = int(np.prod(shape))
    print(
        f"volume {shape} ({vox / 1e6:.1f} Mvoxel), {len(names)} channels, {det.n_synapses} synapses"
    )

    t_new, m_new, table = measure(
        lambda: synapse_table(labels, chans, voxel_size=exp.voxel_size), args.repeat
    )
    t_old, m_old, old = measure(lambda: original_features(labels, chans), args.repeat)

    # same numbers where the original computes them
    worst = 0.0
    tab = table.set_index("id")
    for name, feats in old.items():
        for i, v in feats.items():
            worst = max(worst, abs(tab.loc[i, f"{name}_window_zsum"] - v) / max(1.0, abs(v)))
    kept = len(next(iter(old.values()))) if old else 0
    mv = vox * len(names) / 1e6
    print(f"{'':10} {'seconds':>8} {'Mvox/s':>8} {'peak B/voxel':>13} {'rows':>6}")
    print(f"{'ours':10} {t_new:8.3f} {mv / t_new:8.1f} {m_new / vox:13.2f} {len(table):6d}")
    print(f"{'original':10} {t_old:8.3f} {mv / t_old:8.1f} {m_old / vox:13.2f} {kept:6d}")
    print(
        f"speed-up x{t_old / t_new:.1f}; memory ratio x{m_old / max(m_new, 1):.1f}; "
        f"max relative difference of window sums {worst:.2e}; "
        f"rows the original drops at the border: {len(table) - kept}"
    )


if __name__ == "__main__":
    main()
