"""Local blockwise runner: exact answer vs one block, resume, retries, corrupted outputs.

These tests drive the passes with a small exact kernel defined here (integer window sums),
so they check the runner's halos, border padding, reductions and bookkeeping on their own;
``test_blockwise_nomads.py`` checks the real detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from synapse_pipelines.blockwise.passes import border_pad_widths
from synapse_pipelines.blockwise.plan import plan_request
from synapse_pipelines.blockwise.runner import array_sink, run_blockwise
from synapse_pipelines.blockwise.sources import ArraySource
from synapse_pipelines.blockwise.stitch import extended_box, reference_labels
from synapse_pipelines.core.geometry import Box


class ToyKernel:
    """Exact integer 'detector': window sum of centred products, fixed histogram edges."""

    halo = (1, 1, 1)
    min_size = 3
    bins = 256
    scale = 4096

    def parameters(self) -> dict[str, Any]:
        return {"toy": 1, "min_size": self.min_size}

    def block_stats(self, pre: np.ndarray, post: np.ndarray) -> dict[str, Any]:
        return {
            "n": int(pre.size),
            "pre": int(pre.sum(dtype=np.int64)),
            "post": int(post.sum(dtype=np.int64)),
        }

    def reduce_stats(self, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
        n = sum(p["n"] for p in parts)
        return {
            "pre": sum(p["pre"] for p in parts) // n,
            "post": sum(p["post"] for p in parts) // n,
        }

    def check_volume(self, volume: Box) -> None:
        pass

    def label(self, mask: np.ndarray) -> tuple[np.ndarray, int]:
        labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
        return labels, int(n)

    def explain_empty(self, summary: dict[str, Any], threshold: dict[str, Any]) -> str | None:
        return None if summary["n_objects"] else "toy: nothing above the threshold"

    def covariance(self, pre, post, box, read_box, volume):
        pad = border_pad_widths(box, read_box, self.halo)
        # a fixed offset stands in for the mean: the covariance must not need global values
        a = np.pad(pre.astype(np.int64) - 100, pad, mode="edge")
        b = np.pad(post.astype(np.int64) - 100, pad, mode="edge")
        prod = a * b
        out = np.zeros(box.shape, np.int64)
        for dz in range(3):
            for dy in range(3):
                for dx in range(3):
                    out += prod[
                        dz : dz + box.shape[0], dy : dy + box.shape[1], dx : dx + box.shape[2]
                    ]
        return out

    def histogram(self, cov: np.ndarray) -> np.ndarray:
        return np.bincount(
            np.clip(cov.ravel() // self.scale + self.bins // 2, 0, self.bins - 1),
            minlength=self.bins,
        )

    def threshold(self, histogram: np.ndarray, stats: dict[str, Any]) -> dict[str, Any]:
        # the bin where the top 5% starts
        cum = np.cumsum(histogram[::-1])
        k = self.bins - 1 - int(np.searchsorted(cum, 0.05 * histogram.sum()))
        return {"t": (k - self.bins // 2) * self.scale}

    def mask(self, cov: np.ndarray, threshold: dict[str, Any]) -> np.ndarray:
        return cov > threshold["t"]


def toy_volume(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random(shape), 1.0)
    pre = np.clip(base * 400 + rng.normal(0, 8, shape), 0, 255).astype(np.uint8)
    post = np.clip(base * 380 + rng.normal(0, 8, shape), 0, 255).astype(np.uint8)
    return pre, post


def run(pre, post, block_shape, workdir, **kw):
    source = ArraySource(pre, post)
    plan = plan_request(source.box, block_shape=block_shape, alignment=(1, 1, 1))
    out = np.zeros(pre.shape, np.uint32)
    res = run_blockwise(
        source, plan, workdir, kernel=ToyKernel(), sink=array_sink(out, source.box), **kw
    )
    return out, res


@pytest.mark.parametrize(
    ("shape", "block"), [((12, 20, 17), (4, 7, 5)), ((9, 9, 9), (2, 3, 4)), ((5, 31, 6), (5, 8, 3))]
)
def test_blockwise_equals_single_block(tmp_path, shape, block) -> None:
    pre, post = toy_volume(shape, seed=sum(shape))
    single, r1 = run(pre, post, shape, tmp_path / "single")
    assert r1.plan.n_blocks == 1 and r1.n_objects > 1
    blocks, r2 = run(pre, post, block, tmp_path / "blocks")
    assert r2.plan.n_blocks >= 8
    assert r1.stats == r2.stats and r1.threshold == r2.threshold
    np.testing.assert_array_equal(blocks, single)
    assert r2.n_objects == r1.n_objects and r2.n_voxels == int((single > 0).sum())


def test_rerun_skips_everything_and_gives_the_same_answer(tmp_path) -> None:
    pre, post = toy_volume((8, 16, 16), seed=3)
    first, r1 = run(pre, post, (4, 5, 6), tmp_path)
    n = r1.plan.n_blocks
    assert r1.computed == {"covariance": n, "label": n, "write": n}
    second, r2 = run(pre, post, (4, 5, 6), tmp_path)
    assert r2.skipped["covariance"] == r2.skipped["label"] == n
    assert r2.computed["covariance"] == r2.computed["label"] == 0
    np.testing.assert_array_equal(first, second)


def test_corrupted_or_missing_block_output_is_recomputed_alone(tmp_path) -> None:
    pre, post = toy_volume((8, 16, 16), seed=4)
    first, _ = run(pre, post, (4, 5, 6), tmp_path)
    # truncate one covariance output, delete one label record
    hist = tmp_path / "covariance" / "3.hist.npy"
    hist.write_bytes(hist.read_bytes()[:100])
    (tmp_path / "label" / "5.done.json").unlink()
    second, r2 = run(pre, post, (4, 5, 6), tmp_path)
    assert r2.computed["covariance"] == 1
    # block 3's histogram is recomputed bit-identical (same threshold), so its labels
    # stay valid: only block 5 relabels
    assert r2.computed["label"] == 1
    np.testing.assert_array_equal(first, second)


def test_changed_parameters_or_source_invalidate_records(tmp_path) -> None:
    pre, post = toy_volume((6, 10, 10), seed=5)
    source = ArraySource(pre, post)
    plan = plan_request(source.box, block_shape=(3, 5, 5), alignment=(1, 1, 1))
    run_blockwise(source, plan, tmp_path, kernel=ToyKernel(), source_id="a")
    again = run_blockwise(source, plan, tmp_path, kernel=ToyKernel(), source_id="a")
    assert again.computed["covariance"] == 0
    # another data source (e.g. another BOSS experiment) in the same work folder: recompute
    other = run_blockwise(source, plan, tmp_path, kernel=ToyKernel(), source_id="b")
    assert other.computed["covariance"] == plan.n_blocks
    # a parameter that changes the answer: recompute
    kernel = ToyKernel()
    kernel.min_size = 1
    changed = run_blockwise(source, plan, tmp_path, kernel=kernel, source_id="b")
    assert changed.computed["covariance"] == plan.n_blocks


class FlakySource(ArraySource):
    """Fails the first read of one box, like a Spot interruption or a BOSS hiccup."""

    def __init__(self, pre, post, fail_box: Box):
        super().__init__(pre, post)
        self.fail_box = fail_box
        self.reads: list[Box] = []
        self.failed = False

    def read(self, box: Box):
        self.reads.append(box)
        if not self.failed and box == self.fail_box:
            self.failed = True
            raise ConnectionError("simulated interruption")
        return super().read(box)


def test_one_failing_block_is_retried_without_redoing_others(tmp_path) -> None:
    pre, post = toy_volume((8, 12, 12), seed=6)
    plan = plan_request(Box.from_shape(pre.shape), block_shape=(4, 6, 6), alignment=(1, 1, 1))
    fail_box = extended_box(plan.block(2), plan.box).grow((1, 1, 1), within=plan.box)
    source = FlakySource(pre, post, fail_box=fail_box)
    out = np.zeros(pre.shape, np.uint32)
    res = run_blockwise(
        source, plan, tmp_path, kernel=ToyKernel(), sink=array_sink(out, source.box)
    )
    assert res.retried["covariance"] == 1 and res.computed["covariance"] == plan.n_blocks
    # each block is read once per map pass (covariance, label), the failed one once more:
    # nothing else is redone
    assert len(source.reads) == 2 * plan.n_blocks + 1
    single, _ = run(pre, post, pre.shape, tmp_path / "single")
    np.testing.assert_array_equal(out, single)


def test_reduce_refuses_missing_blocks(tmp_path) -> None:
    from synapse_pipelines.blockwise import passes

    pre, post = toy_volume((4, 8, 8), seed=7)
    source = ArraySource(pre, post)
    plan = plan_request(source.box, block_shape=(2, 4, 4), alignment=(1, 1, 1))
    ctx = passes.PassContext(
        plan=plan,
        store=__import__("synapse_pipelines.blockwise.store", fromlist=["LocalStore"]).LocalStore(
            tmp_path
        ),
        kernel=ToyKernel(),
        source=source,
    )
    for i in range(plan.n_blocks - 1):
        passes.run_covariance_block(ctx, i)
    with pytest.raises(passes.MissingBlockError, match=r"block 7 .*covariance"):
        passes.reduce_threshold(ctx)


def test_reference_labels_helper_matches_scipy_order() -> None:
    mask = np.zeros((3, 3, 9), bool)
    mask[1, 1, 0:4] = True
    mask[1, 1, 6:9] = True
    ref = reference_labels(mask, min_size=2)
    assert ref[1, 1, 0] == 1 and ref[1, 1, 6] == 2


def test_the_runner_runs_the_detect_stages_of_the_table() -> None:
    from synapse_pipelines.blockwise.runner import _LocalRun
    from synapse_pipelines.blockwise.stages import DETECT, stages_of

    assert list(_LocalRun.STAGES) == [s.name for s in stages_of(DETECT)]
