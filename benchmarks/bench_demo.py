"""Wall time of the local demo, and what the orchestration costs over one process.

Runs the demo's workflow (the real ASL in moto: Lambda handlers in-process, each Batch step a
separate ``synapse-pipelines step`` process) on a synthetic experiment, then - in the same run,
against the same local BOSS and emulated S3 - the original nomads_cloud approach: every step
one after the other in a single process (what one ``driver.py`` Batch job did). The
difference is what Step Functions + per-step Batch jobs cost locally (process start-up and
imports per job, S3 round trips between steps, the 0.5 s .sync polling). The single-process
run comes second, so its imports and caches are warm: it is the lower bound, not a rival.

    python benchmarks/bench_demo.py                     # default 16x512x512
    python benchmarks/bench_demo.py --size 16,256,256 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any


def _single_process(demo: Any, request: dict[str, Any]) -> dict[str, float]:
    """The same steps, in this process, in order (the original's one-job shape)."""
    from synapse_pipelines.core.request import parse_request
    from synapse_pipelines.workflow import wiring as wf
    from synapse_pipelines.workflow.detect_step import detect
    from synapse_pipelines.workflow.publish_boss_step import publish_boss
    from synapse_pipelines.workflow.publish_s3_step import publish_s3
    from synapse_pipelines.workflow.report_step import report
    from synapse_pipelines.workflow.validate_step import validate

    rt = demo.runtime
    bucket = rt.res.bucket
    req = parse_request(request)
    env = {
        **os.environ,
        wf.ENV_BOSS_TOKEN: demo.boss_token,
        wf.ENV_BOSS_TOKEN_SECRET: rt.res.secret_arn,
        wf.ENV_RESULTS_BUCKET: bucket,
    }
    times: dict[str, float] = {}

    def timed(name: str, fn: Any) -> None:
        t0 = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - t0

    quiet = lambda *a, **k: None  # noqa: E731
    name = "single-process"
    timed(
        "validate",
        lambda: validate(
            {"request": rt.execution_input(req), "execution_name": name}, bucket=bucket, environ=env
        ),
    )
    timed("detect", lambda: detect(bucket, req.results_key, environ=env, log=quiet))
    timed("report", lambda: report(bucket, req.results_key, log=quiet))
    timed("publish_boss", lambda: publish_boss(bucket, req.results_key, environ=env, log=quiet))
    timed("publish_s3", lambda: publish_s3(bucket, req.results_key, environ=env))
    times["total"] = sum(times.values())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="16,512,512", help="z,y,x voxels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.size.split(","))

    from synapse_pipelines.local.demo import Demo, demo_request

    cpus = os.cpu_count()
    load = os.getloadavg()[0]
    print(f"bench_demo: size {shape}, seed {args.seed}, {cpus} CPUs, load {load:.1f}")
    workflow_s: list[float] = []
    single_s: list[float] = []
    with TemporaryDirectory() as out:
        for i in range(args.repeat):
            t0 = time.perf_counter()
            with Demo(shape=shape, seed=args.seed, out=Path(out) / str(i)) as demo:
                demo.setup()
                result = demo.run()
                assert result.execution.succeeded, result.execution.cause
                total = time.perf_counter() - t0
                ev = result.evaluation
                print(
                    f"  run {i}: demo total {total:.1f} s = "
                    + ", ".join(f"{k} {v:.1f} s" for k, v in result.phase_seconds.items())
                )
                print(
                    "    workflow steps: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in result.execution.step_seconds.items())
                )
                print(f"    synapses {result.synapses}, F1 {ev.f1:.3f}")
                workflow_s.append(result.phase_seconds["workflow"])
                single = _single_process(demo, demo_request(demo.boss.host, shape))
                print(
                    "    single process (original shape): "
                    + ", ".join(f"{k} {v:.1f}" for k, v in single.items())
                )
                single_s.append(single["total"])
    w, s = statistics.median(workflow_s), statistics.median(single_s)
    print(
        f"median workflow {w:.1f} s vs single process {s:.1f} s: orchestration adds "
        f"{w - s:.1f} s ({w / s:.2f}x)"
    )


if __name__ == "__main__":
    main()
