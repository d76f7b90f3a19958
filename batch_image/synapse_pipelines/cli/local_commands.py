"""Local commands: ``synapse-pipelines demo`` and ``synapse-pipelines run request.json --local``.

Both run the real workflow (the ASL, the Lambda handlers, the Batch step CLI) on this machine
through :mod:`synapse_pipelines.local.runtime`; this module only parses options, calls it and
formats progress and summaries.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from synapse_pipelines.core.artefacts import REPORT
from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.geometry import parse_zyx
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.io.outputs import existing_results

console = Console(highlight=False)


class _Progress:
    """Per-step progress lines plus a spinner naming what is running now."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.running: dict[str, float] = {}
        self.last_line = ""
        self._lock = threading.Lock()
        self._status: Any = None

    def __enter__(self) -> _Progress:
        self._status = console.status("starting", spinner="dots")
        self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._status.__exit__(*exc)

    def _refresh(self) -> None:
        if self._status is None:
            return
        names = ", ".join(self.running) or "waiting"
        tail = f"  [dim]{escape(self.last_line[:80])}[/]" if self.last_line else ""
        self._status.update(f"running: [bold]{escape(names)}[/]{tail}")

    def phase(self, text: str) -> None:
        console.print(f"[cyan]•[/] {escape(text)}")
        if self._status is not None:
            self._status.update(escape(text))

    def job_line(self, job_name: str, job_id: str, line: str) -> None:
        with self._lock:
            self.last_line = line.strip()
            if self.verbose:
                console.print(f"    [dim]{escape(job_name[:24])} | {escape(line)}[/]")
            self._refresh()

    def event(self, ev: Any) -> None:
        with self._lock:
            if ev.kind == "entered":
                if ev.is_step:
                    self.running[ev.state] = time.monotonic()
            elif ev.kind == "job":
                console.print(f"  [dim]{escape(ev.state)}: Batch job {escape(ev.detail)}[/]")
            elif ev.kind == "error":
                console.print(f"  [yellow]![/] {escape(ev.state)}: {escape(str(ev.detail))}")
            elif ev.kind == "succeeded" and ev.is_step:
                self.running.pop(ev.state, None)
                console.print(f"  [green]✓[/] {ev.state:<16} {ev.seconds:6.1f} s")
            elif ev.kind == "failed":
                self.running.pop(ev.state, None)
                secs = f"{ev.seconds:6.1f} s" if ev.seconds is not None else ""
                console.print(
                    f"  [red]✗[/] {escape(ev.state):<16} {secs} [red]{escape(str(ev.detail))}[/]"
                )
            self.last_line = ""
            self._refresh()


def _step_table(steps: list[tuple[str, float]]) -> Table:
    """Every step that ran (blockwise stages and Maps included), in the order they started."""
    table = Table(title="time per step", show_header=True, header_style="bold")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for name, seconds in steps:
        table.add_row(name, f"{seconds:.1f}")
    return table


def _print_failure(result: Any) -> None:
    console.print(f"[bold red]workflow {result.status}[/]: {escape(str(result.error))}")
    if result.cause:
        console.print(escape(str(result.cause)))


def _files_table(files: dict[str, Path]) -> Table:
    """One row per file, and one per chunked store (``x.zarr/...``: its objects summed)."""
    rows: dict[str, list[int]] = {}
    for name, path in files.items():
        parts = name.split("/")
        store = next((i for i, p in enumerate(parts[:-1]) if p.endswith(".zarr")), None)
        key = "/".join(parts[: store + 1]) + "/" if store is not None else name
        rows.setdefault(key, [0, 0])
        rows[key][0] += path.stat().st_size
        rows[key][1] += 1
    table = Table(title="result files", show_header=True, header_style="bold")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    for key, (size, count) in sorted(rows.items()):
        table.add_row(key + (f" ({count} objects)" if key.endswith("/") else ""), f"{size:,}")
    return table


def demo(
    size: Annotated[
        str,
        typer.Option(
            "--size",
            "--shape",
            help="Synthetic volume size z,y,x in voxels (e.g. 16,512,512).",
        ),
    ] = "16,512,512",
    seed: Annotated[int, typer.Option(help="Seed of the synthetic experiment.")] = 0,
    out: Annotated[
        Path,
        typer.Option(
            help="Results go to OUT/<results_key>/, replacing an earlier demo's results there.",
            file_okay=False,
        ),
    ] = Path("results"),
    keep_server: Annotated[
        bool,
        typer.Option(
            "--keep-server/--no-keep-server",
            help="Keep the local BOSS server running afterwards (Ctrl-C stops it), so "
            "links.csv and the summary's BOSS URL stay reachable.",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every line the Batch jobs print.")
    ] = False,
) -> None:
    """Run the whole pipeline locally on a synthetic experiment: no AWS account needed.

    Starts a local BOSS with a synthetic collman15v2-like experiment, runs the real state
    machine in moto (Lambda handlers in-process, Batch steps as local processes), pushes the
    predictions to the local BOSS and copies the results to OUT/<results_key>/.
    """
    # local/* is imported when the command runs: it needs moto and waitress, of the [local]
    # extra, and the Batch image (which loads this module too) installs neither
    from synapse_pipelines.local.demo import (
        DEMO_OUTPUT_COLLECTION,
        DEMO_OUTPUT_EXPERIMENT,
        WORKFLOW_PHASE,
        Demo,
    )

    shape = parse_zyx(size, field="--size")
    t0 = time.perf_counter()
    progress = _Progress(verbose=verbose)
    with Demo(shape=shape, seed=seed, out=out, job_log_sink=progress.job_line) as d:
        if d.replaces_results:
            console.print(
                f"[yellow]note:[/] {escape(str(d.results_dir))} holds an earlier demo's results; "
                "this demo replaces the whole folder"
            )
        with progress:
            d.setup(on_phase=progress.phase)
            progress.phase("running the state machine")
            result = d.run(on_event=progress.event)
            d.stop_aws()
        total = time.perf_counter() - t0
        ex = result.execution
        if not ex.succeeded:
            _print_failure(ex)
        console.print()
        console.print(_step_table(ex.steps()))
        if result.files:
            console.print(_files_table(result.files))
        summary = Table(title="synapse-pipelines demo", show_header=False)
        summary.add_column(style="bold", no_wrap=True)
        summary.add_column(overflow="fold")  # paths and URIs in full, never truncated
        summary.add_row("volume", f"{'x'.join(map(str, shape))} voxels (z,y,x), seed {seed}")
        summary.add_row(WORKFLOW_PHASE, f"{ex.status} in {ex.seconds:.1f} s")
        if result.synapses is not None:
            summary.add_row("synapses found", f"{result.synapses} (truth: {result.true_synapses})")
        ev = result.evaluation
        if ev is not None:
            summary.add_row(
                "F1 vs synthetic truth",
                f"{ev.f1:.3f}  (precision {ev.precision:.3f}, recall {ev.recall:.3f}; centroids"
                f" within {result.max_distance:g} {result.voxel_unit})",
            )
        for phase, secs in result.phase_seconds.items():
            if phase != WORKFLOW_PHASE:  # the "workflow" row above says it
                summary.add_row(phase, f"{secs:.1f} s")
        summary.add_row("total", f"{total:.1f} s")
        replaced = " (replaced the earlier demo's results)" if result.replaced else ""
        summary.add_row("results", f"{result.results_dir}{replaced}")
        predictions = f"{result.boss_url} {DEMO_OUTPUT_COLLECTION}/{DEMO_OUTPUT_EXPERIMENT}"
        if keep_server:
            summary.add_row("predictions in BOSS", predictions)
        else:
            summary.add_row(
                "predictions in BOSS",
                f"{predictions}: that local BOSS stopped with the demo, and links.csv's "
                "links point at it; run the demo with --keep-server to browse them",
            )
        console.print(summary)
        report = result.files.get(REPORT)
        if report is not None:
            # on its own line, outside the table: a command to paste, never wrapped
            console.print("open the report:")
            console.print(
                f"python -m webbrowser {report.resolve().as_uri()}",
                soft_wrap=True,
                highlight=False,
            )
        if keep_server and d.boss is not None:
            token_file = d.data_dir / "token"
            token_file.write_text(d.boss_token)
            token_file.chmod(0o600)
            console.print(
                f"local BOSS still running at [bold]{d.boss.url}[/] (data in {d.data_dir}; "
                f"token in {token_file}). Ctrl-C stops it."
            )
            _wait_for_interrupt()
            console.print("stopping the local BOSS")
        if not ex.succeeded:
            raise typer.Exit(1)


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM (a service manager's stop) - then clean up normally."""

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _token(request: Any) -> str:
    """BOSS_TOKEN, the request's literal token (local runs), or a hidden prompt."""
    token = os.environ.get("BOSS_TOKEN")
    if token:
        return token
    if request.token is not None and request.token.get_secret_value():
        return request.token.get_secret_value()
    if not sys.stdin.isatty():
        raise SynapsePipelinesError(
            "no BOSS token", field="BOSS_TOKEN", hint="set BOSS_TOKEN or run from a terminal"
        )
    token = getpass.getpass(f"BOSS token for {request.boss_host} (not echoed): ")
    if not token:
        raise SynapsePipelinesError("no BOSS token given", field="BOSS_TOKEN")
    return token


def run(
    request_file: Annotated[
        Path, typer.Argument(help="The request (JSON).", exists=True, dir_okay=False)
    ],
    local: Annotated[
        bool,
        typer.Option("--local", help="Run on this machine (moto + local Batch processes)."),
    ] = False,
    out: Annotated[
        Path, typer.Option(help="Results go to OUT/<results_key>/.", file_okay=False)
    ] = Path("results"),
    via_events: Annotated[
        bool,
        typer.Option(
            "--via-events", help="Start it with an EventBridge event, as automation does."
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every line the Batch jobs print.")
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Keep the local AWS endpoint up afterwards, for list, cancel, retry, logs, "
            "status and results with --stack synapse-pipelines-local (Ctrl-C stops it).",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace results already in OUT/<results_key>/ (the whole folder: no file "
            "of the earlier run is kept)."
        ),
    ] = False,
) -> None:
    """Run a request through the real workflow on this machine, against any BOSS.

    The token comes from BOSS_TOKEN or a hidden prompt; it is stored only in the emulated
    Secrets Manager, never in the execution input, a log or a result file.
    """
    # local/* is imported when the command runs (see demo)
    from synapse_pipelines.local.runtime import LocalRuntime

    if not local:
        raise SynapsePipelinesError(
            "`run` executes locally only",
            field="--local",
            hint="add --local, or use `synapse-pipelines submit` to run on AWS",
        )
    request = parse_request(request_file)
    # an occupied results folder fails before the token prompt and the run
    folder = LocalRuntime.check_results_folder(out, request.results_key, overwrite=overwrite)
    replacing = existing_results(folder)
    token = _token(request)
    if request.token_secret:
        console.print(
            "[dim]note: token_secret is ignored locally (the token is kept in the "
            "local runtime's own secret)[/]"
        )
    t0 = time.perf_counter()
    progress = _Progress(verbose=verbose)
    with LocalRuntime(job_log_sink=progress.job_line, quiet_lambdas=True) as rt:
        with progress:
            progress.phase("local AWS (moto) ready; starting the state machine")
            rt.set_token(token)
            if via_events:
                rt.put_request_event(LocalRuntime.execution_input(request))
                arn = _wait_for_event_execution(rt)
            else:
                sub = rt.submit(request)
                arn = sub.execution_arn
            result = rt.wait(arn, on_event=progress.event)
            files = rt.download_results(request.results_key, out, overwrite=overwrite)
            notices = rt.notifications()
        if replacing and files:
            console.print(f"replaced the earlier results in {escape(str(folder))}")
        if serve:
            _report_run(result, files, notices, t0)
            _serve(rt)
    if serve:
        if not result.succeeded:
            raise typer.Exit(1)
        return
    _report_run(result, files, notices, t0)
    if not result.succeeded:
        raise typer.Exit(1)
    if isinstance(result.output, dict):
        console.print(escape(json.dumps({k: result.output.get(k) for k in ("synapses",)})))


def _report_run(result: Any, files: dict[str, Path], notices: list[Any], t0: float) -> None:
    console.print(_step_table(result.steps()))
    if files:
        console.print(_files_table(files))
    for notice in notices:
        console.print(f"[bold]notification:[/] {escape(str(notice.get('Subject')))}")
    console.print(f"{result.status} in {time.perf_counter() - t0:.1f} s")
    if not result.succeeded:
        _print_failure(result)


def _serve(rt: Any) -> None:
    """Keep the local endpoint up until Ctrl-C; say how other shells reach it."""
    # local/* is imported when the command runs (see demo)
    from synapse_pipelines.local.deployment import STACK_NAME

    env = rt.aws.environment()
    console.print("local AWS endpoint still running; in another shell:")
    for name, value in env.items():
        console.print(f"  export {name}={value}")
    console.print(f"  synapse-pipelines list --stack {STACK_NAME}")
    console.print("Ctrl-C stops it (and every run still going).")
    _wait_for_interrupt()
    console.print("stopping the local AWS endpoint")


def _wait_for_event_execution(rt: Any, timeout: float = 30) -> str:
    # local/* is imported when the command runs (see demo)
    from synapse_pipelines.local.moto_events import ASYNC_FAILURES

    start_fn = rt.res.functions["StartFromEvent"]
    seen = len(ASYNC_FAILURES)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        executions = rt.executions()
        if executions:
            return str(executions[0]["executionArn"])
        failures = [f for f in ASYNC_FAILURES[seen:] if f["function"] == start_fn]
        if failures:  # StartFromEvent refused the event: say why, as its logs would
            payload = failures[-1]["payload"]
            raise SynapsePipelinesError(
                f"the event was refused ({payload.get('errorType')}): {payload.get('errorMessage')}"
            )
        time.sleep(0.1)
    raise SynapsePipelinesError("the event started no execution", hint="check the request")


def register(app: typer.Typer) -> None:
    """Add ``demo`` and ``run`` to the root app."""
    app.command("demo")(demo)
    app.command("run")(run)
