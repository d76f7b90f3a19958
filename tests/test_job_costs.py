"""After a run: finding a request's Batch jobs (ListJobs by name prefix on every queue,
DescribeJobs), each job's measured duration and cost, the manifest's cost record, and
PublishToS3 keeping its publish when Batch cannot be read."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from synapse_pipelines.core import pricing
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.workflow import job_costs, run_names
from synapse_pipelines.workflow.publish_s3_step import recorded_costs
from synapse_pipelines.workflow.run_record import ValidatedRequest

US = pricing.price_table("us-east-1")
KEY = "nomads-unsupervised_collman_collman15v2_z_0_27_y_0_1024_x_0_1024"
STEM = run_names.job_name_stem(KEY)


def _job(name: str, *, vcpu: str = "4", memory: str = "30720", **extra: Any) -> dict[str, Any]:
    job = {
        "jobName": name,
        "jobId": f"id-{name}",
        "status": "SUCCEEDED",
        "createdAt": 1_000_000,
        "container": {
            "resourceRequirements": [
                {"type": "VCPU", "value": vcpu},
                {"type": "MEMORY", "value": memory},
            ]
        },
    }
    job.update(extra)
    return job


def test_job_step_reads_the_asl_names() -> None:
    assert job_costs.job_step(f"detect-{STEM}", STEM) == "detect"
    assert job_costs.job_step(f"publish-boss-{STEM}", STEM) == "publish-boss"
    assert job_costs.job_step(f"detect-bc-17-{STEM}", STEM) == "detect-bc"
    assert job_costs.job_step(f"publish-bb-16-24-{STEM}", STEM) == "publish-bb"
    assert job_costs.job_step(f"detect-bt-{STEM}", STEM) == "detect-bt"
    assert job_costs.job_step(f"detect-{STEM}x", STEM) is None  # another request
    assert job_costs.job_step(f"detect-other-{STEM}", STEM) is None
    assert job_costs.job_step("detect-" + run_names.job_name_stem(KEY + "0"), STEM) is None


def test_duration_sums_the_attempts_and_falls_back_to_the_job() -> None:
    reclaimed = _job(
        f"detect-{STEM}",
        attempts=[
            {"startedAt": 0, "stoppedAt": 30_000, "statusReason": "Host EC2 terminated"},
            {"startedAt": 40_000, "stoppedAt": 130_000},
        ],
    )
    assert job_costs.job_duration(reclaimed) == 120.0  # both attempts were paid for
    assert job_costs.job_duration(_job("x", startedAt=1000, stoppedAt=61_000)) == 60.0
    assert job_costs.job_duration(_job("x", status="RUNNING", startedAt=1000)) is None
    assert job_costs.job_duration(_job("x", attempts=[{"startedAt": 5}])) is None


def test_job_cost_prices_the_measured_hours() -> None:
    record = job_costs.job_cost(
        _job(f"detect-{STEM}", startedAt=0, stoppedAt=3_600_000), STEM, US, detect_mode="standard"
    )
    assert record["step"] == "detect" and record["platform"] == pricing.FARGATE_SPOT
    assert record["duration_s"] == 3600 and record["vcpu_hours"] == 4
    assert record["gib_hours"] == 30
    assert record["usd"] == pytest.approx(
        4 * US.fargate_spot_vcpu_hour + 30 * US.fargate_spot_gib_hour
    )
    # the large queue's Detect job is EC2 Spot (moto's shape: vcpus/memory, no capabilities)
    large = {"jobName": f"detect-{STEM}", "jobId": "l", "status": "SUCCEEDED",
             "startedAt": 0, "stoppedAt": 1_800_000,
             "container": {"vcpus": 32, "memory": 245760}}  # fmt: skip
    record = job_costs.job_cost(large, STEM, US, detect_mode="large")
    assert record["platform"] == pricing.EC2_SPOT
    assert record["usd"] == pytest.approx(0.5 * US.ec2_class("r6i").spot_hour)
    # platformCapabilities wins where Batch reports it (AWS)
    fargate = dict(large, platformCapabilities=["FARGATE"])
    assert job_costs.job_cost(fargate, STEM, US, detect_mode="large")["platform"] == "fargate-spot"


def test_unfinished_job_has_no_duration_and_a_note() -> None:
    running = _job(f"publish-boss-{STEM}", status="RUNNING", startedAt=5)
    record = job_costs.job_cost(running, STEM, US, detect_mode="standard")
    assert record["duration_s"] is None and record["usd"] is None
    assert "duration unknown" in record["note"] and "RUNNING" in record["note"]


def test_run_costs_total_counts_unmeasured_jobs_at_their_estimate() -> None:
    request = parse_request(
        {"collection": "collman", "experiment": "collman15v2",
         "z_range": [0, 27], "y_range": [0, 1024], "x_range": [0, 1024]},
        environ={},
    )  # fmt: skip
    planned = job_costs.estimate_request(
        request, US, channels=13, bytes_per_channel=1, environ={}
    ).record()
    jobs = [
        _job(f"detect-{STEM}", startedAt=0, stoppedAt=120_000),
        _job(f"report-{STEM}", vcpu="2", memory="8192", startedAt=0, stoppedAt=60_000),
        _job(f"publish-boss-{STEM}", status="RUNNABLE"),
    ]
    cost = job_costs.run_costs(jobs, STEM, US, detect_mode="standard", planned=planned)
    assert [j["step"] for j in cost["jobs"]] == ["detect", "report", "publish-boss"]
    measured = cost["jobs"][0]["usd"] + cost["jobs"][1]["usd"]
    assert cost["batch_measured_usd"] == pytest.approx(measured)
    publish = next(g for g in planned["jobs"] if g["step"] == "publish-boss")
    assert cost["batch_planned_usd"] == pytest.approx(publish["usd"])
    services = {k: v for k, v in planned["services_usd"].items() if not k.startswith("batch")}
    assert cost["services_planned_usd"] == services
    assert cost["total_usd"] == pytest.approx(
        measured + publish["usd"] + sum(services.values()), abs=1e-6
    )
    assert cost["price_table"] == {"date": pricing.PRICE_TABLE_DATE, "region": "us-east-1"}
    assert any("publish-boss (1 of 1)" in n for n in cost["notes"])
    # no estimate recorded at validation: the jobs, but no total (never a partial sum)
    bare = job_costs.run_costs(jobs, STEM, US, detect_mode="standard", planned=None)
    assert "total_usd" not in bare and bare["batch_measured_usd"] == cost["batch_measured_usd"]


# -- ListJobs / DescribeJobs in moto ------------------------------------------------------------


@pytest.fixture
def batch(aws: Any) -> Any:
    client = aws.client("batch")
    role = aws.client("iam").create_role(RoleName="batch", AssumeRolePolicyDocument="{}")
    env = client.create_compute_environment(
        computeEnvironmentName="costs-ce", type="UNMANAGED", serviceRole=role["Role"]["Arn"]
    )["computeEnvironmentArn"]
    for name in ("standard", "large"):
        client.create_job_queue(
            jobQueueName=name,
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env}],
        )
    client.register_job_definition(
        jobDefinitionName="step",
        type="container",
        containerProperties={
            "image": "x",
            "command": ["true"],
            "resourceRequirements": [
                {"type": "VCPU", "value": "4"},
                {"type": "MEMORY", "value": "30720"},
            ],
            "environment": [{"name": "RESULTS_BUCKET", "value": "ours"}],
        },
    )
    return client


def test_find_request_jobs_lists_every_queue_by_name(batch: Any) -> None:
    names = {
        "standard": [f"detect-bc-3-{STEM}", f"report-{STEM}", f"detect-{STEM}-other", "report-x"],
        "large": [f"detect-{STEM}", "detect-" + run_names.job_name_stem(KEY + "0")],
    }
    for queue, jobs in names.items():
        for name in jobs:
            batch.submit_job(jobName=name, jobQueue=queue, jobDefinition="step")
    found = job_costs.find_request_jobs(batch, STEM)
    assert sorted(j["jobName"] for j in found) == sorted(
        [f"detect-bc-3-{STEM}", f"report-{STEM}", f"detect-{STEM}"]
    )
    assert all(j["jobId"] for j in found)
    # another deployment's bucket, or jobs from before this run, are not this run's
    assert job_costs.find_request_jobs(batch, STEM, results_bucket="theirs") == []
    assert len(job_costs.find_request_jobs(batch, STEM, results_bucket="ours")) == 3
    future = max(int(j["createdAt"]) for j in found) + 60_000
    assert job_costs.find_request_jobs(batch, STEM, since_ms=future) == []


def _validated(**extra: Any) -> ValidatedRequest:
    return ValidatedRequest(
        request={"collection": "collman", "experiment": "collman15v2",
                 "z_range": [0, 27], "y_range": [0, 1024], "x_range": [0, 1024]},
        results_key=KEY, presynaptic_channel="a", postsynaptic_channel="b", channels=["a", "b"],
        voxel_size=(1.0, 1.0, 1.0), voxel_unit="nanometers", frame_name="f",
        frame_extent=((0, 0, 0), (27, 1024, 1024)), pipeline_parameters={},
        detect_mode="standard", validated_at="2020-01-01T00:00:00+00:00", **extra,
    )  # fmt: skip


class _DeniedBatch:
    def get_paginator(self, name: str) -> Any:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, name)


def test_publish_keeps_going_when_costs_cannot_be_recorded() -> None:
    cost = recorded_costs("ours", _validated(), environ={}, batch=_DeniedBatch())
    assert cost["price_table"]["region"] == "us-east-1" and "total_usd" not in cost
    assert (
        "AccessDeniedException" in cost["notes"][0]
        and "batch:DescribeJobQueues" in cost["notes"][0]
    )
    unpriced = recorded_costs("ours", _validated(), environ={"AWS_REGION": "ap-south-1"})
    assert "ap-south-1" in unpriced["notes"][0] and "us-east-1" in unpriced["notes"][0]


def test_recorded_costs_of_a_run_in_moto(batch: Any) -> None:
    batch.submit_job(jobName=f"detect-{STEM}", jobQueue="standard", jobDefinition="step")
    cost = recorded_costs("ours", _validated(cost_estimate=None), environ={}, batch=batch)
    assert [j["step"] for j in cost["jobs"]] == ["detect"]
    assert cost["jobs"][0]["vcpu"] == 4 and cost["jobs"][0]["memory_mib"] == 30720
