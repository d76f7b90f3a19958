"""Run the real workflow on one machine: the ASL file, the Lambda handlers, the Batch step CLI.

Owns :class:`LocalRuntime`: it starts the emulated AWS endpoint
(:class:`~synapse_pipelines.local.moto_server.LocalAws`, moto made to execute), deploys the
local stack (:func:`~synapse_pipelines.local.deployment.deploy`), starts executions (named
from the request, so a duplicate request does not run twice), streams progress per state as
the execution history grows (read by
:class:`~synapse_pipelines.workflow.execution_history.HistoryReader`), and fetches results
from the emulated S3. SNS notifications and the workflow's EventBridge events are captured
(SQS subscriptions) so callers and tests can read them.

The token: :meth:`LocalRuntime.set_token` stores it in the emulated Secrets Manager; Lambdas
read it from there and Batch jobs get it through their job definition's ``secrets``, exactly
as on AWS. It is never part of an execution input, a state, a job command or a log line here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.request import SynapseRequest, parse_request
from synapse_pipelines.io.outputs import check_results_folder
from synapse_pipelines.local import moto_batch
from synapse_pipelines.local.deployment import STACK_NAME, LocalResources, deploy, function_name
from synapse_pipelines.local.moto_lambda import unregister_lambda_handler
from synapse_pipelines.local.moto_server import LocalAws
from synapse_pipelines.workflow import run_names, wiring as wf
from synapse_pipelines.workflow.events import start_execution
from synapse_pipelines.workflow.execution_history import HistoryReader, ProgressEvent, read_history
from synapse_pipelines.workflow.job_logs import DEFAULT_JOB_LOG_GROUP
from synapse_pipelines.workflow.runs import Deployment, history


@dataclass
class ExecutionResult:
    """The end of an execution, with its history and time per state."""

    arn: str
    name: str
    status: str  # SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    error: str | None
    cause: str | None
    output: Any
    seconds: float
    step_seconds: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    def states_entered(self) -> list[str]:
        return [visit.name for visit in read_history(self.history).visits]

    def steps(self) -> list[tuple[str, float]]:
        """Every step that ran (Task, Map and Parallel states, blockwise stages included) with
        its time, in the order they were first entered; a state entered more than once (an
        inline Map's iterations) has its times summed (:attr:`step_seconds`)."""
        names = read_history(self.history).step_names()
        return [(name, self.step_seconds[name]) for name in names if name in self.step_seconds]


@dataclass(frozen=True)
class Submission:
    """A started (or already running/finished) execution."""

    execution_arn: str
    name: str
    duplicate: bool
    results_key: str


class LocalRuntime:
    """The workflow's AWS side emulated in this process (see the module docstring).

    >>> with LocalRuntime() as rt:
    ...     rt.set_token(token)
    ...     sub = rt.submit(request)
    ...     result = rt.wait(sub.execution_arn, on_event=print)
    ...     rt.download_results(sub.results_key, Path("results"))
    """

    def __init__(
        self,
        *,
        job_log_sink: Callable[[str, str, str], None] | None = None,
        quiet_lambdas: bool = False,
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.aws = LocalAws()
        self._job_log_sink = job_log_sink
        self._quiet_lambdas = quiet_lambdas
        self._workdir = None if workdir is None else str(workdir)
        self.resources: LocalResources | None = None
        self._saved_env: dict[str, str | None] = {}
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> LocalRuntime:
        env = {
            # X-Ray has no daemon here; EMF metrics would only print JSON to stdout
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
        if self._quiet_lambdas:
            env["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        self._saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        self.aws.start()
        moto_batch.BATCH.log_sink = self._job_log_sink
        moto_batch.BATCH.cwd = self._workdir
        moto_batch.BATCH.entrypoint = wf.IMAGE_ENTRYPOINT
        try:
            self.resources = deploy(self.client, self.aws.region)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        moto_batch.BATCH.log_sink = None
        moto_batch.BATCH.cwd = None
        moto_batch.BATCH.entrypoint = ()
        for logical_id in wf.LAMBDA_FUNCTIONS:
            unregister_lambda_handler(function_name(logical_id))
        self.aws.stop()
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._saved_env = {}
        self._clients.clear()

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, service: str) -> Any:
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = self.aws.client(service)
            return self._clients[service]

    @property
    def res(self) -> LocalResources:
        if self.resources is None:
            raise RuntimeError("LocalRuntime is not started")
        return self.resources

    def deployment(self) -> Deployment:
        """The local stack as the run commands see a deployment (``list``, ``cancel``,
        ``retry``, ``logs`` take it: the functions behind them serve both)."""
        res = self.res
        return Deployment(
            state_machine_arn=res.state_machine_arn,
            bucket=res.bucket,
            job_queues=tuple(res.job_queues.values()),
            job_log_group=DEFAULT_JOB_LOG_GROUP,
            stack_name=STACK_NAME,
            client=self.client,
            topic_arn=res.topic_arn,
            event_bus=res.event_bus,
        )

    # -- token ------------------------------------------------------------------------------

    def set_token(self, token: str) -> None:
        """Store the BOSS token in the emulated Secrets Manager (the only place it lives)."""
        if not token:
            raise SynapsePipelinesError(
                "empty BOSS token", field="token", hint="set BOSS_TOKEN or type it at the prompt"
            )
        self.client("secretsmanager").put_secret_value(
            SecretId=self.res.secret_arn, SecretString=token
        )

    # -- executions -------------------------------------------------------------------------

    @staticmethod
    def execution_input(request: SynapseRequest) -> dict[str, Any]:
        """The execution input: the public request, minus any secret reference (the local
        stack's Lambdas and jobs read the token from its own secret)."""
        data = request.public_dict()
        data.pop("token_secret", None)
        return data

    def submit(self, request: Mapping[str, Any] | SynapseRequest | str | Path) -> Submission:
        """Start the state machine for a request; a duplicate request starts nothing."""
        req = request if isinstance(request, SynapseRequest) else parse_request(request)
        data = self.execution_input(req)
        name = run_names.execution_name(data, req.results_key)
        started = start_execution(
            self.client("stepfunctions"), self.res.state_machine_arn, name, data
        )
        return Submission(
            execution_arn=started["execution_arn"],
            name=name,
            duplicate=bool(started["duplicate"]),
            results_key=req.results_key,
        )

    def put_request_event(self, detail: Mapping[str, Any]) -> str:
        """Put a "Synapse Detection Requested" event on the bus (the EventBridge route)."""
        (entry,) = self.client("events").put_events(
            Entries=[
                {
                    "Source": wf.EVENT_SOURCE,
                    "DetailType": wf.DETAIL_TYPE_REQUESTED,
                    "Detail": json.dumps(dict(detail)),
                    "EventBusName": self.res.event_bus,
                }
            ]
        )["Entries"]
        if "EventId" not in entry:
            raise SynapsePipelinesError(f"event refused: {entry.get('ErrorMessage')}")
        return str(entry["EventId"])

    def executions(self) -> list[dict[str, Any]]:
        return self.client("stepfunctions").list_executions(
            stateMachineArn=self.res.state_machine_arn
        )["executions"]

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        return history(self.client("stepfunctions"), execution_arn)

    def watch(self, execution_arn: str, *, poll: float = 0.2) -> Iterator[ProgressEvent]:
        """Progress per state, as it happens, until the execution ends."""
        sfn = self.client("stepfunctions")
        seen = 0
        reader = HistoryReader()
        while True:
            status = sfn.describe_execution(executionArn=execution_arn)["status"]
            events = self.history(execution_arn)
            for ev in events[seen:]:
                yield from reader.feed(ev)
            seen = len(events)
            if status != "RUNNING":
                return
            time.sleep(poll)

    def wait(
        self,
        execution_arn: str,
        *,
        on_event: Callable[[ProgressEvent], None] | None = None,
        timeout: float | None = None,
    ) -> ExecutionResult:
        """Stream progress to ``on_event`` until the execution ends; return its result."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in self.watch(execution_arn):
            if on_event is not None:
                on_event(event)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still running after {timeout} s")
        desc = self.client("stepfunctions").describe_execution(executionArn=execution_arn)
        output = desc.get("output")
        stop = desc.get("stopDate") or desc["startDate"]
        events = self.history(execution_arn)
        return ExecutionResult(
            arn=execution_arn,
            name=desc["name"],
            status=desc["status"],
            error=desc.get("error"),
            cause=desc.get("cause"),
            output=json.loads(output) if output else None,
            seconds=(stop - desc["startDate"]).total_seconds(),
            step_seconds=read_history(events).step_seconds(),
            history=events,
        )

    # -- results ----------------------------------------------------------------------------

    def result_keys(self, results_key: str) -> list[str]:
        s3 = self.client("s3")
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.res.bucket, Prefix=wf.results_prefix(results_key)
        ):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    @staticmethod
    def results_folder(dest: str | os.PathLike[str], results_key: str) -> Path:
        """Where :meth:`download_results` puts a request's results: ``dest/<results_key>/``."""
        return Path(dest) / results_key

    @staticmethod
    def check_results_folder(
        dest: str | os.PathLike[str], results_key: str, *, overwrite: bool
    ) -> Path:
        """Refuse (before a run) when ``dest/<results_key>/`` already holds results and
        ``overwrite`` is false; the folder."""
        folder = LocalRuntime.results_folder(dest, results_key)
        check_results_folder(folder, overwrite=overwrite, option="--out")
        return folder

    def download_results(
        self,
        results_key: str,
        dest: str | os.PathLike[str],
        *,
        include_workflow: bool = False,
        overwrite: bool = False,
    ) -> dict[str, Path]:
        """Copy ``s3://<bucket>/<results_key>/`` into ``dest/<results_key>/``; name -> path.

        A folder that already holds results is refused unless ``overwrite``; with it, the
        folder is replaced as a whole, so no file of an earlier run stays among the new ones.
        The files are downloaded next to it first: a failed download, or a run that left no
        results, leaves the folder as it was.
        """
        folder = self.check_results_folder(dest, results_key, overwrite=overwrite)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{results_key}.incoming-", dir=folder.parent))
        try:
            rels = self._download_into(staging, results_key, include_workflow)
            if rels and overwrite and folder.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{results_key}.replaced-", dir=folder.parent))
                folder.rename(old / results_key)
                staging.rename(folder)
                shutil.rmtree(old)
            elif rels:
                for entry in staging.iterdir():  # a new or result-free folder: add the files
                    target = folder / entry.name
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    folder.mkdir(parents=True, exist_ok=True)
                    entry.replace(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return {rel: folder / rel for rel in rels}

    def _download_into(self, folder: Path, results_key: str, include_workflow: bool) -> list[str]:
        s3 = self.client("s3")
        prefix = wf.results_prefix(results_key)
        rels: list[str] = []
        for key in self.result_keys(results_key):
            rel = key[len(prefix) :]
            if not include_workflow and rel.split("/", 1)[0] == wf.WORKFLOW_PREFIX:
                continue
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(self.res.bucket, key, str(path))
            rels.append(rel)
        return rels

    def _drain(self, queue_url: str) -> list[dict[str, Any]]:
        sqs = self.client("sqs")
        out: list[dict[str, Any]] = []
        while True:
            msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not msgs:
                return out
            for m in msgs:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])

    def notifications(self) -> list[dict[str, Any]]:
        """SNS messages published since the last call (SNS envelope: Subject, Message...)."""
        return self._drain(self.res.notices_queue_url)

    def emitted_events(self) -> list[dict[str, Any]]:
        """The workflow's EventBridge events since the last call (requested/succeeded/failed)."""
        return self._drain(self.res.events_queue_url)

    def job_logs(self) -> dict[str, list[str]]:
        """Output of every local Batch job (CloudWatch Logs, /aws/batch/job), by stream."""
        logs = self.client("logs")
        try:
            streams = logs.describe_log_streams(logGroupName="/aws/batch/job")["logStreams"]
        except logs.exceptions.ResourceNotFoundException:
            return {}
        return {
            s["logStreamName"]: [
                e["message"]
                for e in logs.get_log_events(
                    logGroupName="/aws/batch/job", logStreamName=s["logStreamName"]
                )["events"]
            ]
            for s in streams
        }

    def batch_jobs(self) -> list[dict[str, Any]]:
        """Every Batch job this runtime ran (describe-jobs shape)."""
        batch = self.client("batch")
        ids = [
            j["jobId"]
            for q in self.res.job_queues.values()
            for status in ("SUCCEEDED", "FAILED", "RUNNING", "SUBMITTED")
            for j in batch.list_jobs(jobQueue=q, jobStatus=status)["jobSummaryList"]
        ]
        return batch.describe_jobs(jobs=ids)["jobs"] if ids else []
