"""The one-command demo: a synthetic experiment in a local BOSS, run by the local runtime.

Owns :class:`Demo` (``synapse-pipelines demo``: generate, serve, deploy, run, copy, score),
its request (:func:`demo_request`) and its data (:func:`seed_synthetic_experiment`, a
collman15v2-like synthetic experiment loaded into a BOSS).
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from synapse_pipelines.core.request import parse_request
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.boss_resources import CoordinateFrame
from synapse_pipelines.io.outputs import existing_results
from synapse_pipelines.local.boss_loading import load_experiment
from synapse_pipelines.local.boss_process import LocalBossServer
from synapse_pipelines.local.runtime import ExecutionResult, LocalRuntime
from synapse_pipelines.science.evaluation import EvaluationResult, evaluate_centroids
from synapse_pipelines.science.synthetic import MATCH_NM, SyntheticExperiment, make_experiment
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.execution_history import ProgressEvent

DEMO_COLLECTION = "synthetic"
DEMO_EXPERIMENT = "collman15v2_synthetic"
DEMO_OUTPUT_COLLECTION = "collman_nomads"
DEMO_OUTPUT_EXPERIMENT = "nomads_predictions"
#: the ground-truth channel, named as in collman15v2
ANNOTATION_CHANNEL = "annotation"
#: the phase (of ``Demo.phase_seconds``) that runs the state machine
WORKFLOW_PHASE = "workflow"


def seed_synthetic_experiment(
    client: BossClient, collection: str, experiment: str, experiment_data: SyntheticExperiment
) -> CoordinateFrame:
    """Create ``collection/experiment`` in BOSS and upload every synthetic channel (uint8
    image channels named like collman15v2) plus the uint64 ``annotation`` ground truth, whose
    source is the first (presynaptic) channel."""
    return load_experiment(
        client,
        collection,
        experiment,
        experiment_data.channels,
        voxel_size=experiment_data.voxel_size,
        voxel_unit=str(experiment_data.voxel_unit),
        annotations={ANNOTATION_CHANNEL: experiment_data.annotation},
    ).frame


def demo_request(
    boss_host: str,
    shape: tuple[int, int, int],
    *,
    collection: str = DEMO_COLLECTION,
    experiment: str = DEMO_EXPERIMENT,
) -> dict[str, Any]:
    """The demo's request: the whole synthetic volume, results to the original's output."""
    z, y, x = shape
    return {
        "boss_host": boss_host,
        "boss_protocol": "http",
        "collection": collection,
        "experiment": experiment,
        "z_range": [0, z],
        "y_range": [0, y],
        "x_range": [0, x],
        "output_collection": DEMO_OUTPUT_COLLECTION,
        "output_experiment": DEMO_OUTPUT_EXPERIMENT,
    }


@dataclass
class DemoResult:
    """What ``synapse-pipelines demo`` reports."""

    execution: ExecutionResult
    results_key: str
    results_dir: Path
    files: dict[str, Path]
    synapses: int | None
    true_synapses: int
    evaluation: EvaluationResult | None  # None when the run failed
    max_distance: float
    voxel_unit: str
    phase_seconds: dict[str, float]
    boss_url: str
    notifications: list[dict[str, Any]]
    replaced: bool = False  # an earlier demo's results were in results_dir, now replaced


class Demo:
    """The one-command demo: a synthetic experiment in a local BOSS, the workflow run by
    :class:`LocalRuntime`, results copied to ``out/<results_key>/`` and scored against the
    synthetic truth. Use as a context manager; :meth:`close` stops both servers."""

    def __init__(
        self,
        *,
        shape: tuple[int, int, int],
        seed: int,
        out: str | os.PathLike[str],
        data_dir: str | os.PathLike[str] | None = None,
        job_log_sink: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.shape = shape
        self.seed = seed
        self.out = Path(out)
        # the request's results key does not depend on the BOSS host; a file in the way of
        # the results folder fails here, before any work
        self.results_key = parse_request(demo_request("localhost", shape)).results_key
        self.results_dir = LocalRuntime.check_results_folder(
            self.out, self.results_key, overwrite=True
        )
        self._tmp = None if data_dir is not None else tempfile.TemporaryDirectory(prefix="boss-")
        self.data_dir = Path(data_dir) if data_dir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        # a fresh token per demo: it lives in this process, the BOSS server and the emulated
        # Secrets Manager only
        self._token = secrets.token_urlsafe(32)
        self._job_log_sink = job_log_sink
        self.boss: LocalBossServer | None = None
        self.runtime: LocalRuntime | None = None
        self.experiment: SyntheticExperiment | None = None
        self.phase_seconds: dict[str, float] = {}

    @property
    def replaces_results(self) -> bool:
        """True when ``results_dir`` holds results (an earlier demo's): a demo re-run
        replaces the whole folder, never mixing its files with the earlier ones."""
        return bool(existing_results(self.results_dir))

    def _timed(self, phase: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.phase_seconds[phase] = time.perf_counter() - t0

    def setup(self, on_phase: Callable[[str], None] | None = None) -> None:
        """Generate the experiment, start the local BOSS and load it, start local AWS."""

        def phase(name: str) -> None:
            if on_phase is not None:
                on_phase(name)

        phase("generating the synthetic experiment")
        experiment = self._timed(
            "generate experiment", lambda: make_experiment(self.shape, seed=self.seed)
        )
        self.experiment = experiment
        phase("starting the local BOSS and loading the experiment")

        def boss() -> None:
            self.boss = LocalBossServer(self.data_dir, self._token).start()
            client = BossClient(self.boss.host, "http", self._token)
            seed_synthetic_experiment(client, DEMO_COLLECTION, DEMO_EXPERIMENT, experiment)

        self._timed("load local BOSS", boss)
        phase("starting local AWS (moto) and deploying the workflow")

        def aws() -> None:
            self.runtime = LocalRuntime(job_log_sink=self._job_log_sink, quiet_lambdas=True)
            self.runtime.start()
            self.runtime.set_token(self._token)

        self._timed("deploy local AWS", aws)

    def run(self, on_event: Callable[[ProgressEvent], None] | None = None) -> DemoResult:
        """Run the state machine end to end; copy and score the results."""
        rt, boss, exp = self.runtime, self.boss, self.experiment
        if rt is None or boss is None or exp is None:
            raise RuntimeError("call setup() first")
        request = demo_request(boss.host, self.shape)
        sub = rt.submit(request)
        execution = self._timed(
            WORKFLOW_PHASE, lambda: rt.wait(sub.execution_arn, on_event=on_event)
        )
        replaced = self.replaces_results
        files = self._timed(
            "copy results",
            lambda: rt.download_results(sub.results_key, self.out, overwrite=True),
        )
        max_distance = MATCH_NM  # nm, as `synapse-pipelines synth` suggests
        evaluation = None
        synapses = None
        if wf.SYNAPSES_CSV in files:
            table = pd.read_csv(files[wf.SYNAPSES_CSV])
            synapses = len(table)
            predicted = table[["centroid_z", "centroid_y", "centroid_x"]].to_numpy(float)
            evaluation = evaluate_centroids(
                predicted,
                exp.synapse_centroids,
                max_distance=max_distance,
                voxel_size=exp.voxel_size,
            )
        return DemoResult(
            execution=execution,
            results_key=sub.results_key,
            results_dir=LocalRuntime.results_folder(self.out, sub.results_key),
            files=files,
            synapses=synapses,
            true_synapses=int(exp.n_synapses),
            evaluation=evaluation,
            max_distance=max_distance,
            voxel_unit=str(exp.voxel_unit),
            phase_seconds=dict(self.phase_seconds),
            boss_url=boss.url,
            notifications=rt.notifications(),
            replaced=replaced and bool(files),
        )

    @property
    def boss_token(self) -> str:
        """For --keep-server only: the token a user needs to browse the local BOSS."""
        return self._token

    def stop_aws(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None

    def close(self) -> None:
        self.stop_aws()
        if self.boss is not None:
            self.boss.stop()
            self.boss = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
