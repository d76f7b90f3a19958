"""Run the real workflow on one machine: the ASL file, the Lambda handlers, the Batch step CLI.

:class:`LocalRuntime` builds, in moto (made to execute by
:mod:`synapse_pipelines.local.moto_adapters`), the resources the CDK stack builds - results
bucket, SNS topic, the BOSS token secret, the custom event bus with the "Synapse Detection
Requested" rule, one Lambda function per
:data:`~synapse_pipelines.workflow.wiring.LAMBDA_FUNCTIONS` entry (calling the real handler in
``functions/<name>/app.py`` in-process), the job queues and one job definition per
:data:`~synapse_pipelines.workflow.wiring.BATCH_JOBS` entry (run as local subprocesses of the same
``synapse-pipelines step ...`` command the container runs), and the state machine from
:data:`~synapse_pipelines.workflow.wiring.ASL_PATH` with every substitution filled. Names, commands,
handler paths, environment variable names and substitution keys all come from
:mod:`synapse_pipelines.workflow.wiring`; nothing here re-describes the workflow.

It starts executions (named from the request, so a duplicate request does not run twice),
streams progress per state from the execution history, and fetches results from the emulated
S3. SNS notifications and the workflow's EventBridge events are captured (SQS subscriptions)
so callers and tests can read them.

The token: :meth:`LocalRuntime.set_token` stores it in the emulated Secrets Manager; Lambdas
read it from there and Batch jobs get it through their job definition's ``secrets``, exactly
as on AWS. It is never part of an execution input, a state, a job command or a log line here.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.request import SynapseRequest, parse_request
from synapse_pipelines.local import moto_adapters
from synapse_pipelines.workflow import wiring as wf

#: the names of the local resources (one local "stack" per process)
STACK_NAME = "synapse-pipelines-local"
#: a placeholder secret value until :meth:`LocalRuntime.set_token` stores the real one
_NO_TOKEN = "no-token-set"


@dataclass(frozen=True)
class LocalResources:
    """What the local "stack" consists of (the CDK stack outputs' local counterparts)."""

    bucket: str
    topic_arn: str
    secret_arn: str
    event_bus: str
    rule_name: str
    state_machine_arn: str
    functions: dict[str, str]  # logical id -> function ARN
    job_queues: dict[str, str]  # "standard" / "large" -> ARN
    job_definitions: dict[str, str]  # logical id -> ARN
    notices_queue_url: str  # SQS subscribed to the topic (raw=False: subject + attributes)
    events_queue_url: str  # SQS target of a rule capturing the workflow's own events


@dataclass(frozen=True)
class StepEvent:
    """One step of progress, derived from the execution history."""

    # "entered" | "succeeded" | "failed" (time spent, error) | "error" (a task attempt failed;
    # the state may retry or catch it) | "job" (Batch job submitted: detail is the job id)
    kind: str
    state: str
    timestamp: datetime
    seconds: float | None = None  # for succeeded/failed: time spent in the state
    detail: str | None = None  # error name for failures, job id for "job"


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
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.history
            if "stateEnteredEventDetails" in e
        ]


@dataclass(frozen=True)
class Submission:
    """A started (or already running/finished) execution."""

    execution_arn: str
    name: str
    duplicate: bool
    results_key: str


def _memory_mib() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024))
    except (ValueError, OSError, AttributeError):
        return 4096


def _zip_stub() -> bytes:
    """Lambda needs a code package; the handler itself runs from functions/ in-process."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README.txt", "local runtime: handler runs in-process from functions/\n")
    return buf.getvalue()


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
        self.aws = moto_adapters.LocalAws()
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
        moto_adapters.BATCH.log_sink = self._job_log_sink
        moto_adapters.BATCH.cwd = self._workdir
        moto_adapters.BATCH.entrypoint = wf.IMAGE_ENTRYPOINT
        try:
            self.resources = self._deploy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        moto_adapters.BATCH.log_sink = None
        moto_adapters.BATCH.cwd = None
        moto_adapters.BATCH.entrypoint = ()
        for logical_id in wf.LAMBDA_FUNCTIONS:
            moto_adapters.unregister_lambda_handler(self._function_name(logical_id))
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

    # -- the local "stack" ------------------------------------------------------------------

    @staticmethod
    def _function_name(logical_id: str) -> str:
        return f"{STACK_NAME}-{logical_id}"

    def _deploy(self) -> LocalResources:
        account, region = moto_adapters.DEFAULT_ACCOUNT, self.aws.region
        iam = self.client("iam")
        role = iam.create_role(
            RoleName=f"{STACK_NAME}-role",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]

        bucket = f"{STACK_NAME}-results"
        self.client("s3").create_bucket(Bucket=bucket)
        topic_arn = self.client("sns").create_topic(Name=f"{STACK_NAME}-notifications")["TopicArn"]
        secret_arn = self.client("secretsmanager").create_secret(
            Name=f"{STACK_NAME}/boss-token", SecretString=_NO_TOKEN
        )["ARN"]
        events = self.client("events")
        bus = f"{STACK_NAME}-bus"
        events.create_event_bus(Name=bus)

        # capture what users and automation would receive: SNS messages and our own events
        sqs = self.client("sqs")
        notices_url = sqs.create_queue(QueueName=f"{STACK_NAME}-notices")["QueueUrl"]
        events_url = sqs.create_queue(QueueName=f"{STACK_NAME}-events")["QueueUrl"]

        def queue_arn(url: str) -> str:
            return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]

        self.client("sns").subscribe(
            TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn(notices_url)
        )
        events.put_rule(
            Name=f"{STACK_NAME}-capture",
            EventBusName=bus,
            EventPattern=json.dumps({"source": [wf.EVENT_SOURCE]}),
        )
        events.put_targets(
            Rule=f"{STACK_NAME}-capture",
            EventBusName=bus,
            Targets=[{"Id": "capture", "Arn": queue_arn(events_url)}],
        )

        # Batch: one compute environment (this machine), the two queues, a job definition per step
        batch = self.client("batch")
        ce = batch.create_compute_environment(
            computeEnvironmentName=f"{STACK_NAME}-ce", type="UNMANAGED", serviceRole=role
        )["computeEnvironmentArn"]
        queues = {
            kind: batch.create_job_queue(
                jobQueueName=f"{STACK_NAME}-{kind}",
                state="ENABLED",
                priority=1,
                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
            )["jobQueueArn"]
            for kind in ("standard", "large")
        }
        memory = _memory_mib()
        env_values: dict[str, str] = {
            wf.ENV_RESULTS_BUCKET: bucket,
            wf.ENV_BOSS_TOKEN_SECRET: secret_arn,
            wf.ENV_TOPIC_ARN: topic_arn,
            # both queues are this machine: what ValidateRequest may plan a Detect job with
            wf.ENV_DETECT_MEMORY_MIB: str(int(memory * 0.6)),
            wf.ENV_LARGE_DETECT_MEMORY_MIB: str(int(memory * 0.8)),
            wf.ENV_PRESIGN_SECONDS: str(wf.DEFAULT_PRESIGN_SECONDS),
            wf.ENV_NEUROGLANCER_URL: wf.DEFAULT_NEUROGLANCER_URL,
        }
        job_definitions: dict[str, str] = {}
        for logical_id, spec in wf.BATCH_JOBS.items():
            job_definitions[logical_id] = batch.register_job_definition(
                jobDefinitionName=f"{STACK_NAME}-{logical_id}",
                type="container",
                parameters={},
                containerProperties={
                    "image": "synapse-pipelines:local",
                    "command": list(spec.command),
                    "resourceRequirements": [
                        {"type": "VCPU", "value": "1"},
                        {"type": "MEMORY", "value": env_values[wf.ENV_DETECT_MEMORY_MIB]},
                    ],
                    "environment": [
                        {"name": name, "value": env_values[name]} for name in spec.environment
                    ],
                    "secrets": [{"name": name, "valueFrom": secret_arn} for name in spec.secrets],
                },
                retryStrategy=wf.batch_retry_strategy(spec.attempts),
            )["jobDefinitionArn"]

        # Lambda functions (the state machine's ARN is known before it exists: it is named)
        state_machine_name = f"{STACK_NAME}-workflow"
        state_machine_arn = f"arn:aws:states:{region}:{account}:stateMachine:{state_machine_name}"
        env_values[wf.ENV_STATE_MACHINE_ARN] = state_machine_arn
        lam = self.client("lambda")
        functions: dict[str, str] = {}
        for logical_id, spec in wf.LAMBDA_FUNCTIONS.items():
            name = self._function_name(logical_id)
            moto_adapters.register_lambda_handler(name, wf.load_handler(logical_id))
            functions[logical_id] = lam.create_function(
                FunctionName=name,
                Runtime="python3.11",
                Role=role,
                Handler=spec.handler,
                Code={"ZipFile": _zip_stub()},
                Description=spec.description,
                Timeout=spec.timeout_seconds,
                MemorySize=spec.memory_mib,
                Environment={
                    "Variables": {
                        **{n: env_values[n] for n in spec.environment},
                        "POWERTOOLS_SERVICE_NAME": wf.POWERTOOLS_SERVICE,
                    }
                },
            )["FunctionArn"]

        values: dict[str, str] = {
            "JobQueueArn": queues["standard"],
            "LargeJobQueueArn": queues["large"],
            "NotificationTopicArn": topic_arn,
            "EventBusName": bus,
            "ResultsBucket": bucket,
        }
        for logical_id, spec in wf.LAMBDA_FUNCTIONS.items():
            if spec.substitution:
                values[spec.substitution] = functions[logical_id]
        for logical_id, spec in wf.BATCH_JOBS.items():
            values[spec.substitution] = job_definitions[logical_id]
        # the numeric ASL settings (blockwise Distributed Map), with their env overrides
        values.update(wf.setting_substitutions(environ=os.environ))
        definition = wf.render_definition(
            {k: v for k, v in values.items() if k in wf.SUBSTITUTION_NAMES}
        )
        created = self.client("stepfunctions").create_state_machine(
            name=state_machine_name, definition=definition, roleArn=role
        )["stateMachineArn"]
        if created != state_machine_arn:
            raise RuntimeError(f"state machine ARN {created} != expected {state_machine_arn}")

        # the "Synapse Detection Requested" rule -> StartFromEvent (which names the execution)
        rule = f"{STACK_NAME}-requested"
        events.put_rule(
            Name=rule, EventBusName=bus, EventPattern=json.dumps(wf.REQUESTED_EVENT_PATTERN)
        )
        events.put_targets(
            Rule=rule,
            EventBusName=bus,
            Targets=[{"Id": "start", "Arn": functions["StartFromEvent"]}],
        )
        return LocalResources(
            bucket=bucket,
            topic_arn=topic_arn,
            secret_arn=secret_arn,
            event_bus=bus,
            rule_name=rule,
            state_machine_arn=state_machine_arn,
            functions=functions,
            job_queues=queues,
            job_definitions=job_definitions,
            notices_queue_url=notices_url,
            events_queue_url=events_url,
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
        from synapse_pipelines.workflow import steps

        req = request if isinstance(request, SynapseRequest) else parse_request(request)
        data = self.execution_input(req)
        name = wf.execution_name(data, req.results_key)
        started = steps.start_execution(
            self.client("stepfunctions"), self.res.state_machine_arn, name, data
        )
        return Submission(
            execution_arn=started["execution_arn"],
            name=name,
            duplicate=bool(started["duplicate"]),
            results_key=req.results_key,
        )

    def start_raw(self, execution_input: Mapping[str, Any], name: str) -> str:
        """Start an execution with an arbitrary input (tests: a request the CLI would refuse)."""
        return self.client("stepfunctions").start_execution(
            stateMachineArn=self.res.state_machine_arn,
            name=name,
            input=json.dumps(dict(execution_input)),
        )["executionArn"]

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
        return self.client("stepfunctions").get_execution_history(
            executionArn=execution_arn, maxResults=1000
        )["events"]

    def watch(self, execution_arn: str, *, poll: float = 0.2) -> Iterator[StepEvent]:
        """Progress per state, as it happens, until the execution ends."""
        sfn = self.client("stepfunctions")
        seen = 0
        tracker = _HistoryTracker()
        while True:
            status = sfn.describe_execution(executionArn=execution_arn)["status"]
            events = self.history(execution_arn)
            for ev in events[seen:]:
                yield from tracker.feed(ev)
            seen = len(events)
            if status != "RUNNING":
                return
            time.sleep(poll)

    def wait(
        self,
        execution_arn: str,
        *,
        on_event: Callable[[StepEvent], None] | None = None,
        timeout: float | None = None,
    ) -> ExecutionResult:
        """Stream progress to ``on_event`` until the execution ends; return its result."""
        deadline = None if timeout is None else time.monotonic() + timeout
        step_seconds: dict[str, float] = {}
        for event in self.watch(execution_arn):
            if event.seconds is not None:
                step_seconds[event.state] = step_seconds.get(event.state, 0.0) + event.seconds
            if on_event is not None:
                on_event(event)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still running after {timeout} s")
        desc = self.client("stepfunctions").describe_execution(executionArn=execution_arn)
        output = desc.get("output")
        stop = desc.get("stopDate") or desc["startDate"]
        return ExecutionResult(
            arn=execution_arn,
            name=desc["name"],
            status=desc["status"],
            error=desc.get("error"),
            cause=desc.get("cause"),
            output=json.loads(output) if output else None,
            seconds=(stop - desc["startDate"]).total_seconds(),
            step_seconds=step_seconds,
            history=self.history(execution_arn),
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

    def download_results(
        self, results_key: str, dest: str | os.PathLike[str], *, include_workflow: bool = False
    ) -> dict[str, Path]:
        """Copy ``s3://<bucket>/<results_key>/`` into ``dest/<results_key>/``; name -> path."""
        s3 = self.client("s3")
        prefix = wf.results_prefix(results_key)
        folder = Path(dest) / results_key
        files: dict[str, Path] = {}
        for key in self.result_keys(results_key):
            rel = key[len(prefix) :]
            if not include_workflow and rel.split("/", 1)[0] == wf.WORKFLOW_PREFIX:
                continue
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(self.res.bucket, key, str(path))
            files[rel] = path
        return files

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


class _HistoryTracker:
    """Turns history events into :class:`StepEvent`; events are attributed to their state by
    following ``previousEventId`` back to the state's ``...StateEntered`` event, which stays
    right when Parallel branches interleave."""

    def __init__(self) -> None:
        self.state_of: dict[int, str] = {}
        self.entered_at: dict[str, datetime] = {}
        self.failed: dict[str, str | None] = {}

    def feed(self, ev: dict[str, Any]) -> Iterator[StepEvent]:
        ts: datetime = ev["timestamp"]
        kind: str = ev["type"]
        state = self.state_of.get(int(ev.get("previousEventId") or 0))
        if "stateEnteredEventDetails" in ev:
            state = ev["stateEnteredEventDetails"]["name"]
            self.entered_at[state] = ts
            self.failed.pop(state, None)
            self.state_of[int(ev["id"])] = state
            yield StepEvent("entered", state, ts)
            return
        if state is not None:
            self.state_of[int(ev["id"])] = state
        details = next((v for k, v in ev.items() if k.endswith("EventDetails")), {}) or {}
        if "stateExitedEventDetails" in ev:
            state = ev["stateExitedEventDetails"]["name"]
            seconds = (ts - self.entered_at.get(state, ts)).total_seconds()
            if state in self.failed:  # a caught failure still exits the state
                yield StepEvent("failed", state, ts, seconds, self.failed.pop(state))
            else:
                yield StepEvent("succeeded", state, ts, seconds)
        elif kind == "TaskSubmitted" and state is not None:
            job_id = json.loads(details.get("output") or "{}").get("JobId")
            if job_id:
                yield StepEvent("job", state, ts, detail=str(job_id))
        elif kind in ("TaskFailed", "TaskTimedOut", "LambdaFunctionFailed") and state:
            self.failed[state] = details.get("error")
            yield StepEvent("error", state, ts, detail=details.get("error"))
        elif kind in ("ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
            for name, error in list(self.failed.items()):  # failures nobody caught
                seconds = (ts - self.entered_at.get(name, ts)).total_seconds()
                yield StepEvent("failed", name, ts, seconds, error)
            self.failed.clear()
            yield StepEvent("failed", "execution", ts, None, details.get("error"))


# -- the demo's data: a synthetic experiment in a local BOSS ------------------------------------

DEMO_COLLECTION = "synthetic"
DEMO_EXPERIMENT = "collman15v2_synthetic"
DEMO_OUTPUT_COLLECTION = "collman_nomads"
DEMO_OUTPUT_EXPERIMENT = "nomads_predictions"
#: the ground-truth channel, named as in collman15v2
ANNOTATION_CHANNEL = "annotation"


def seed_synthetic_experiment(
    client: Any, collection: str, experiment: str, experiment_data: Any
) -> None:
    """Create ``collection/experiment`` in BOSS and upload every synthetic channel (uint8
    image channels named like collman15v2) plus the uint64 ``annotation`` ground truth."""
    from synapse_pipelines.core.geometry import Box
    from synapse_pipelines.io.boss_resources import CoordinateFrame

    shape = tuple(int(s) for s in experiment_data.shape)
    box = Box((0, 0, 0), shape)
    frame = CoordinateFrame(
        extent=box,
        voxel_size=tuple(float(v) for v in experiment_data.voxel_size),  # type: ignore[arg-type]
        voxel_unit=str(experiment_data.voxel_unit),
        name=f"{collection}_{experiment}_frame",
    )
    volumes: list[tuple[str, str, str, Any]] = [
        (name, "uint8", "image", data) for name, data in experiment_data.channels.items()
    ]
    volumes.append((ANNOTATION_CHANNEL, "uint64", "annotation", experiment_data.annotation))
    for name, datatype, kind, data in volumes:
        client.ensure_channel(
            collection,
            experiment,
            name,
            datatype=datatype,
            type=kind,
            sources=[experiment_data.presynaptic] if kind == "annotation" else [],
            frame=frame,
        )
        client.push(collection, experiment, name, box, data)


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
    evaluation: Any  # evaluation.EvaluationResult, or None when the run failed
    max_distance: float
    voxel_unit: str
    phase_seconds: dict[str, float]
    boss_url: str
    notifications: list[dict[str, Any]]


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
        import secrets
        import tempfile

        self.shape = shape
        self.seed = seed
        self.out = Path(out)
        self._tmp = None if data_dir is not None else tempfile.TemporaryDirectory(prefix="boss-")
        self.data_dir = Path(data_dir) if data_dir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        # a fresh token per demo: it lives in this process, the BOSS server and the emulated
        # Secrets Manager only
        self._token = secrets.token_urlsafe(32)
        self._job_log_sink = job_log_sink
        self.boss: Any = None
        self.runtime: LocalRuntime | None = None
        self.experiment: Any = None
        self.phase_seconds: dict[str, float] = {}

    def _timed(self, phase: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.phase_seconds[phase] = time.perf_counter() - t0

    def setup(self, on_phase: Callable[[str], None] | None = None) -> None:
        """Generate the experiment, start the local BOSS and load it, start local AWS."""
        from synapse_pipelines.io.boss_client import BossClient
        from synapse_pipelines.local.boss_process import LocalBossServer
        from synapse_pipelines.science.synthetic import make_experiment

        def phase(name: str) -> None:
            if on_phase is not None:
                on_phase(name)

        phase("generating the synthetic experiment")
        self.experiment = self._timed(
            "generate experiment", lambda: make_experiment(self.shape, seed=self.seed)
        )
        phase("starting the local BOSS and loading the experiment")

        def boss() -> None:
            self.boss = LocalBossServer(self.data_dir, self._token).start()
            client = BossClient(self.boss.host, "http", self._token)
            seed_synthetic_experiment(client, DEMO_COLLECTION, DEMO_EXPERIMENT, self.experiment)

        self._timed("load local BOSS", boss)
        phase("starting local AWS (moto) and deploying the workflow")

        def aws() -> None:
            self.runtime = LocalRuntime(job_log_sink=self._job_log_sink, quiet_lambdas=True)
            self.runtime.start()
            self.runtime.set_token(self._token)

        self._timed("deploy local AWS", aws)

    def run(self, on_event: Callable[[StepEvent], None] | None = None) -> DemoResult:
        """Run the state machine end to end; copy and score the results."""
        from synapse_pipelines.science.evaluation import evaluate_centroids

        assert self.runtime is not None and self.boss is not None, "call setup() first"
        rt = self.runtime
        request = demo_request(self.boss.host, self.shape)
        sub = rt.submit(request)
        execution = self._timed("workflow", lambda: rt.wait(sub.execution_arn, on_event=on_event))
        files = self._timed("copy results", lambda: rt.download_results(sub.results_key, self.out))
        exp = self.experiment
        max_distance = 2 * float(max(exp.voxel_size))  # as `synapse-pipelines synth` suggests
        evaluation = None
        synapses = None
        if wf.SYNAPSES_CSV in files:
            import pandas as pd

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
            results_dir=self.out / sub.results_key,
            files=files,
            synapses=synapses,
            true_synapses=int(exp.n_synapses),
            evaluation=evaluation,
            max_distance=max_distance,
            voxel_unit=str(exp.voxel_unit),
            phase_seconds=dict(self.phase_seconds),
            boss_url=self.boss.url,
            notifications=rt.notifications(),
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
