"""``synapse-pipelines submit | status | results``: use a deployed stack.

The stack is found by name; its CloudFormation outputs (names in
``synapse_pipelines.workflow.wiring.OUTPUT_*``) give the state machine, bucket and event bus.

- ``submit request.json --stack NAME [--wait] [--via-events] [--dry-run]``: validates the
  request locally (same model and messages as everywhere; the pipeline parameters with
  ValidateRequest's own check), then StartExecution with the
  execution name derived from the request, so submitting the same request twice never starts
  a second run; or puts a "Synapse Detection Requested" event on the stack's bus
  (``--via-events``), whose rule starts the same named execution. ``--wait`` follows the
  execution step by step; ``--dry-run`` prints the plan and its estimated cost
  (``cost_commands``) and starts nothing.
- ``status [EXECUTION|request.json] --stack NAME``: state, current/failed step, error and
  cause; for a failed run the failing job's log stream, the command that prints it and the
  failed blocks; for a cancelled one when and what was terminated. A request file names its
  latest attempt (a retry's execution, ``run_commands``).
- ``results RESULTS_KEY|request.json --stack NAME``: the manifest and fresh presigned links,
  signed with your own credentials (the links in the notification expire with the signing
  session).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import typer

from synapse_pipelines.core.errors import SynapsePipelinesError, aws_error_code
from synapse_pipelines.core.pipelines import checked_parameters
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.io.s3_objects import get_json, s3_client
from synapse_pipelines.workflow import run_names, wiring as wf
from synapse_pipelines.workflow.events import start_execution
from synapse_pipelines.workflow.execution_history import execution_steps
from synapse_pipelines.workflow.run_status import read_run_status
from synapse_pipelines.workflow.runs import (
    Deployment,
    failure_notice_of,
    find_execution,
    history,
    request_of,
    shown_status,
)

from . import cost_commands

STACK = typer.Option(..., "--stack", help="Name of the deployed CloudFormation stack.")
REGION = typer.Option(None, "--region", help="AWS region (default: your AWS configuration).")

#: Execution states that end an execution.
DONE = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


class StackError(SynapsePipelinesError):
    error_type = "StackError"


class NoRegionError(SynapsePipelinesError):
    error_type = "NoRegionError"


def _session(region: str | None) -> Any:
    """A boto3 session of ``region`` (default: the AWS configuration's); no region anywhere
    is a clear error naming ``--region`` (botocore would raise NoRegionError at the first
    client)."""
    import boto3  # start-up time: ~0.5 s to import; only the commands that call AWS need it

    session = boto3.session.Session(region_name=region)
    if not session.region_name:
        raise NoRegionError(
            "no AWS region configured",
            field="--region",
            hint="pass --region REGION (the stack's region, e.g. us-east-1), or set "
            "AWS_DEFAULT_REGION, or run `aws configure set region REGION`",
        )
    return session


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    """The stack's outputs by key; a clear error when the stack is missing or incomplete."""
    try:
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    except Exception as exc:
        code = aws_error_code(exc) or type(exc).__name__
        raise StackError(
            f"cannot read stack {stack!r} ({code})",
            field="--stack",
            hint="give the name of a deployed synapse-pipelines stack (cdk deploy prints it) "
            "and check your AWS credentials and --region",
        ) from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    missing = [
        k for k in (wf.OUTPUT_STATE_MACHINE_ARN, wf.OUTPUT_RESULTS_BUCKET) if k not in outputs
    ]
    if missing:
        raise StackError(
            f"stack {stack!r} has no output {', '.join(missing)}",
            field="--stack",
            hint="is it a synapse-pipelines stack, completely deployed?",
        )
    return outputs


def deployment_of(stack: str, region: str | None) -> Deployment:
    """The deployment a stack's outputs describe, with clients of ``region``."""
    session = _session(region)
    outputs = stack_outputs(session.client("cloudformation"), stack)

    def client(service: str) -> Any:
        return s3_client(session=session) if service == "s3" else session.client(service)

    return Deployment.from_outputs(outputs, stack=stack, client=client)


def load_request(path: Path) -> Any:
    """The request of a JSON file (refused if it holds a literal token)."""
    return _load_request(path)


def _load_request(path: Path) -> Any:
    data = _read_json(path)
    if data.get("token") not in (None, ""):
        raise SynapsePipelinesError(
            "the request holds a literal token; never send it to AWS (it would be kept in "
            "the execution history)",
            field="token",
            hint="remove it and store the token in the stack's secret (output BossTokenSecretArn)",
        )
    return parse_request(data)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SynapsePipelinesError(
            f"no such file: {path}", field="request", hint="give a JSON request file"
        )
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise SynapsePipelinesError(
            f"{path} is not valid JSON ({exc})", field="request", hint="fix the JSON syntax"
        ) from None
    if not isinstance(data, dict):
        raise SynapsePipelinesError(f"{path} is not a JSON object", field="request")
    return data


def submit_request(
    request: Any,
    outputs: Mapping[str, str],
    *,
    sfn: Any,
    events: Any | None = None,
    via_events: bool = False,
) -> dict[str, Any]:
    """Start (or find) the named execution for ``request``; or put the request event."""
    public = request.public_dict()
    name = run_names.execution_name(public, request.results_key)
    arn = outputs[wf.OUTPUT_STATE_MACHINE_ARN]
    execution_arn = arn.replace(":stateMachine:", ":execution:") + f":{name}"
    if via_events:
        bus = outputs.get(wf.OUTPUT_EVENT_BUS_NAME)
        if not bus or events is None:
            raise StackError("the stack has no event bus output", field="--via-events")
        response = events.put_events(
            Entries=[
                {
                    "EventBusName": bus,
                    "Source": wf.EVENT_SOURCE,
                    "DetailType": wf.DETAIL_TYPE_REQUESTED,
                    "Detail": json.dumps(public),
                }
            ]
        )
        if response.get("FailedEntryCount"):
            entry = response["Entries"][0]
            raise StackError(
                f"EventBridge refused the event: {entry.get('ErrorCode')} "
                f"{entry.get('ErrorMessage')}",
                field="--via-events",
            )
        return {"name": name, "execution_arn": execution_arn, "duplicate": False, "event": True}
    return start_execution(sfn, arn, name, public)


def execution_summary(sfn: Any, execution_arn: str) -> dict[str, Any]:
    """Status, the step it is in (or failed at), error and cause, output."""
    described = sfn.describe_execution(executionArn=execution_arn)
    summary: dict[str, Any] = {
        "name": described.get("name"),
        "status": described["status"],
        "execution_arn": execution_arn,
        "started": str(described.get("startDate", "")),
    }
    if described.get("stopDate"):
        summary["stopped"] = str(described["stopDate"])
    if described.get("error"):
        summary["error"] = described["error"]
    if described.get("cause"):
        summary["cause"] = described["cause"]
    if described.get("output"):
        try:
            summary["output"] = json.loads(described["output"])
        except ValueError:
            summary["output"] = described["output"]
    steps_seen = _steps(sfn, execution_arn, summary["status"])
    if steps_seen:
        summary["steps"] = steps_seen
    return summary


def run_summary(deployment: Deployment, description: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`execution_summary` plus how a failed or cancelled run ended: DescribeFailure's
    notice (failing job's log stream, the command printing it, failed blocks) or the cancel
    record."""
    sfn = deployment.client("stepfunctions")
    arn = str(description["executionArn"])
    summary = execution_summary(sfn, arn)
    if summary["status"] in ("FAILED", "TIMED_OUT"):
        notice = failure_notice_of(history(sfn, arn)) or {}
        detail = notice.get("detail") or {}
        for key in ("log_group", "log_stream", "logs_command", "failed_blocks"):
            if detail.get(key):
                summary[key] = detail[key]
    request = request_of(description)
    if summary["status"] == "ABORTED" and request is not None:
        record = read_run_status(deployment.client("s3"), deployment.bucket, request.results_key)
        if record and record.get("execution_arn") == arn:
            summary["cancelled"] = record
    return summary


def _steps(sfn: Any, execution_arn: str, status: str) -> list[dict[str, str]]:
    """Each state entered, in order, with how it ended (:func:`execution_steps`)."""
    return execution_steps(history(sfn, execution_arn), status)


def wait_for(
    sfn: Any,
    execution_arn: str,
    *,
    poll_seconds: float = 10.0,
    timeout_seconds: float | None = None,
    on_step: Callable[[str, str], None] | None = None,
) -> dict[str, Any]:
    """Poll until the execution ends, reporting each step once as it starts and ends."""
    reported: dict[int, str] = {}
    started = time.monotonic()
    while True:
        summary = execution_summary(sfn, execution_arn)
        for index, step in enumerate(summary.get("steps", [])):
            if reported.get(index) != step["state"] and on_step is not None:
                on_step(step["step"], step["state"])
            reported[index] = step["state"]
        if summary["status"] in DONE:
            return summary
        if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
            return summary
        time.sleep(poll_seconds)


def results_links(
    s3: Any, bucket: str, results_key: str, *, expires: int = wf.DEFAULT_PRESIGN_SECONDS
) -> dict[str, Any]:
    """The manifest and fresh presigned links of a finished request."""
    # start-up time: PublishToS3's module loads the BOSS client (intern), ~1 s
    from synapse_pipelines.workflow.publish_s3_step import presigned_urls

    key = wf.artefact_key(results_key, wf.MANIFEST)
    try:
        manifest = get_json(s3, bucket, key)
    except Exception as exc:
        code = aws_error_code(exc) or type(exc).__name__
        raise SynapsePipelinesError(
            f"no results at s3://{bucket}/{key} ({code})",
            field="results_key",
            hint="check the key (`synapse-pipelines status` shows it) or wait for the run to "
            "finish",
        ) from None
    links = presigned_urls(s3, bucket, results_key, expires=expires)
    return {"manifest": manifest, "links": links}


def _results_key(value: str) -> str:
    path = Path(value)
    if value.endswith(".json") and path.is_file():
        return _load_request(path).results_key
    return value


def register(app: typer.Typer) -> None:
    """Add submit, status and results."""

    @app.command()
    def submit(
        request_file: Path = typer.Argument(..., help="JSON request (see docs/aws.md)."),
        stack: str = STACK,
        wait: bool = typer.Option(False, "--wait", help="Follow the run until it ends."),
        via_events: bool = typer.Option(
            False, "--via-events", help="Put a 'Synapse Detection Requested' event instead."
        ),
        poll: float = typer.Option(10.0, "--poll", help="Seconds between progress checks."),
        region: str | None = REGION,
        dry_run: bool = typer.Option(
            False,
            "--dry-run",
            help="Print the plan and its estimated cost (prices of --region, default "
            "us-east-1; see `estimate`) and start nothing.",
        ),
        channels: int | None = cost_commands.CHANNELS,
        channel_bytes: int | None = cost_commands.CHANNEL_BYTES,
    ) -> None:
        """Start a run on AWS (the same request twice starts one run)."""
        request = _load_request(request_file)
        checked_parameters(request)  # ValidateRequest's check and message, before anything runs
        if dry_run:
            cost = cost_commands.request_estimate(
                request, region=region, channels=channels, channel_bytes=channel_bytes
            )
            cost_commands.print_estimate(request, cost, None)
            typer.echo("dry run: nothing started")
            return
        session = _session(region)
        outputs = stack_outputs(session.client("cloudformation"), stack)
        sfn = session.client("stepfunctions")
        started = submit_request(
            request,
            outputs,
            sfn=sfn,
            events=session.client("events") if via_events else None,
            via_events=via_events,
        )
        if started.get("event"):
            typer.echo(f"event sent; the rule starts execution {started['name']}")
        elif started["duplicate"]:
            typer.echo(f"already submitted: {started['execution_arn']} (no second run)")
        else:
            typer.echo(f"started {started['execution_arn']}")
        typer.echo(f"results key: {request.results_key}")
        if wait:
            _wait_and_report(sfn, started["execution_arn"], poll, via_events)

    @app.command()
    def status(
        execution: str = typer.Argument(
            ..., help="Execution ARN, execution name, or the request JSON file."
        ),
        stack: str = STACK,
        region: str | None = REGION,
    ) -> None:
        """Show a run's state, its steps, and the error and cause if it failed."""
        deployment = deployment_of(stack, region)
        path = Path(execution)
        request = _load_request(path) if execution.endswith(".json") and path.is_file() else None
        found = find_execution(deployment, execution, request=request)
        summary = run_summary(deployment, found)
        _print_summary(summary)

    @app.command()
    def results(
        key: str = typer.Argument(..., help="Results key, or the request JSON file."),
        stack: str = STACK,
        expires: int = typer.Option(
            wf.DEFAULT_PRESIGN_SECONDS, "--expires", help="Link lifetime, seconds (max 7 days)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        region: str | None = REGION,
    ) -> None:
        """Print the manifest summary and fresh presigned download links."""
        session = _session(region)
        outputs = stack_outputs(session.client("cloudformation"), stack)
        s3 = s3_client(session=session)
        found = results_links(
            s3, outputs[wf.OUTPUT_RESULTS_BUCKET], _results_key(key), expires=expires
        )
        if as_json:
            typer.echo(json.dumps(found, indent=2))
            return
        manifest = found["manifest"]
        typer.echo(f"results key: {manifest.get('results_key')}")
        if manifest.get("status"):  # failed or cancelled: the folder is not a finished run's
            run = manifest.get("run") or {}
            typer.echo(f"status:      {manifest['status']} ({run.get('at')}; incomplete results)")
        typer.echo(f"synapses:    {manifest.get('counts', {}).get('synapses')}")
        for name, url in (manifest.get("links") or {}).items():
            if name == "all":
                typer.echo(f"neuroglancer: {url}")
        for name, url in found["links"].items():
            typer.echo(f"{name}: {url}")


def _wait_and_report(sfn: Any, execution_arn: str, poll: float, via_events: bool) -> None:
    if via_events:  # the starter Lambda needs a moment to create the execution
        for _ in range(30):
            try:
                sfn.describe_execution(executionArn=execution_arn)
                break
            except Exception:
                time.sleep(2)
    started = time.monotonic()

    def show(step: str, state: str) -> None:
        typer.echo(f"[{time.monotonic() - started:7.1f}s] {step}: {state}")

    summary = wait_for(sfn, execution_arn, poll_seconds=poll, on_step=show)
    _print_summary({k: v for k, v in summary.items() if k != "steps"})
    if summary["status"] != "SUCCEEDED":
        raise typer.Exit(1)


def _print_summary(summary: Mapping[str, Any]) -> None:
    typer.echo(f"{summary.get('name')}: {shown_status(str(summary['status']))}")
    for step in summary.get("steps", []):
        typer.echo(f"  {step['step']}: {step['state']}")
    if summary.get("error"):
        typer.echo(f"error: {summary['error']}")
    if summary.get("cause"):
        typer.echo(f"cause: {summary['cause']}")
    for block in summary.get("failed_blocks") or []:
        typer.echo(
            f"failed block: {block.get('step')} {block.get('block')} job {block.get('job_name')}"
            f" ({block.get('status_reason') or 'failed'}), log stream {block.get('log_stream')}"
        )
    if summary.get("log_stream"):
        typer.echo(f"log stream: {summary.get('log_group')} {summary['log_stream']}")
    if summary.get("logs_command"):
        typer.echo(f"print it: {summary['logs_command']}")
    cancelled = summary.get("cancelled")
    if cancelled:
        jobs = cancelled.get("terminated_jobs") or []
        typer.echo(f"cancelled at {cancelled.get('at')}: {len(jobs)} Batch job(s) terminated")
    output = summary.get("output")
    if isinstance(output, Mapping):
        for key in ("results_key", "synapses", "neuroglancer_url"):
            if output.get(key) is not None:
                typer.echo(f"{key}: {output[key]}")
