"""AWS Batch: network, compute environments, job queues, the image and one job definition per
step (``synapse_pipelines.workflow.wiring.BATCH_JOBS``).

- Fargate Spot (default queue): Detect, Report, PublishToBoss and the blockwise stages. Sizes
  from CDK context, validated as Fargate task sizes (``infra/stack_settings.py``).
- EC2 Spot (large-memory queue): DetectLarge, for boxes whose estimated working set exceeds
  the Fargate job (ValidateRequest chooses; the instance classes and size come from context).
- Job definitions: the command is the workflow's argv with ``Ref::results_key``; the token
  arrives only as the ``BOSS_TOKEN`` secret from Secrets Manager; retries only for Spot
  reclaims (``wiring.batch_retry_strategy``). Each spec's ``size`` names its deployed size.
- The image is built from ``batch_image/Dockerfile`` with the repository as context, reduced
  by :data:`IMAGE_CONTEXT_RULES`; synth only stages it (no Docker needed until deploy).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import (
    aws_batch as batch,
    aws_ec2 as ec2,
    aws_ecr_assets as ecr_assets,
    aws_ecs as ecs,
    aws_iam as iam,
    aws_logs as logs,
    aws_s3 as s3,
    aws_secretsmanager as secretsmanager,
)
from constructs import Construct

from infra import REPO_ROOT
from infra.log_groups import retained_log_group
from infra.stack_settings import JobSize, Settings
from infra.storage.results_bucket_policies import (
    EVERY_RESULT,
    listing_statement,
    objects_statement,
)
from infra.wiring_checks import require_values
from synapse_pipelines.workflow import wiring as wf

#: The Docker build context is the repository, reduced to what the image needs (the same
#: rules as the repository's .dockerignore, Docker semantics: later "!" lines re-include).
IMAGE_CONTEXT_RULES = [
    "*",
    "!pyproject.toml",
    "!README.md",
    "!batch_image",
    "!functions",
    "!state_machines",
    "batch_image/*.egg-info",
    "**/__pycache__",
    "**/*.pyc",
]

#: Scratch space of a Fargate task (results folder, downloads), GiB (Fargate: 21..200).
EPHEMERAL_STORAGE_GIB = 100


def job_sizes(settings: Settings) -> dict[str, JobSize]:
    """The deployed size of each ``BatchJobSpec.size`` name."""
    return {
        "detect": settings.detect_job,
        "large": settings.large_detect_job,
        "report": settings.report_job,
        "publish": settings.publish_job,
    }


def retry_strategies(attempts: int) -> tuple[int, list[batch.RetryStrategy]]:
    """The workflow's Batch retry strategy (``wiring.batch_retry_strategy``) in CDK's terms."""
    strategy = wf.batch_retry_strategy(attempts)
    rules = []
    for rule in strategy["evaluateOnExit"]:
        action = batch.Action.RETRY if rule["action"] == "RETRY" else batch.Action.EXIT
        reason = batch.Reason.custom(
            on_exit_code=rule.get("onExitCode"),
            on_status_reason=rule.get("onStatusReason"),
            on_reason=rule.get("onReason"),
        )
        rules.append(batch.RetryStrategy.of(action, reason))
    return strategy["attempts"], rules


class BatchCompute(Construct):
    """VPC, Spot compute environments and queues, the image, the job role and job definitions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        results: s3.IBucket,
        boss_token: secretsmanager.ISecret,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = self._vpc(settings, log_retention)
        subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        if settings.existing_vpc is not None:
            subnets = ec2.SubnetSelection(subnets=self.vpc.private_subnets)
        self.security_group = ec2.SecurityGroup(
            self,
            "JobsSecurityGroup",
            vpc=self.vpc,
            description="Batch jobs: no inbound; outbound HTTPS to BOSS, S3, ECR, Secrets Manager",
            allow_all_outbound=True,
        )

        fargate_spot = batch.FargateComputeEnvironment(
            self,
            "FargateSpot",
            vpc=self.vpc,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            spot=True,
            maxv_cpus=settings.fargate_max_vcpus,
        )
        self.ec2_spot = batch.ManagedEc2EcsComputeEnvironment(
            self,
            "LargeMemorySpot",
            vpc=self.vpc,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            spot=True,
            allocation_strategy=batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED,
            instance_classes=[
                getattr(ec2.InstanceClass, c.upper()) for c in settings.large_instance_classes
            ],
            use_optimal_instance_classes=False,
            minv_cpus=0,
            maxv_cpus=settings.large_max_vcpus,
            update_to_latest_image_version=True,
        )
        self.queue = batch.JobQueue(
            self,
            "JobQueue",
            compute_environments=[
                batch.OrderedComputeEnvironment(compute_environment=fargate_spot, order=1)
            ],
        )
        self.large_queue = batch.JobQueue(
            self,
            "LargeJobQueue",
            compute_environments=[
                batch.OrderedComputeEnvironment(compute_environment=self.ec2_spot, order=1)
            ],
        )

        # one image asset for every job definition (one build, one push)
        image_asset = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(REPO_ROOT),
            file="batch_image/Dockerfile",
            platform=ecr_assets.Platform.LINUX_AMD64,
            exclude=IMAGE_CONTEXT_RULES,
            ignore_mode=cdk.IgnoreMode.DOCKER,
        )
        self.image = ecs.ContainerImage.from_docker_image_asset(image_asset)
        self.log_group = retained_log_group(self, "JobLogs", log_retention)
        self.job_role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="synapse-pipelines Batch jobs: read and write the results bucket",
        )
        # the steps read inputs, write artefacts and clear their own error records
        self.job_role.add_to_policy(
            objects_statement(
                results,
                sid="ResultsObjects",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                keys=EVERY_RESULT,
            )
        )
        self.job_role.add_to_policy(listing_statement(results, sid="ResultsListing"))

        sizes = job_sizes(settings)
        self.job_definitions: dict[str, batch.EcsJobDefinition] = {}
        self.containers: dict[str, batch.IEcsContainerDefinition] = {}
        for logical_id, spec in wf.BATCH_JOBS.items():
            if spec.size not in sizes:
                raise ValueError(f"{logical_id}: unknown size {spec.size!r}; use {list(sizes)}")
            self.job_definitions[logical_id] = self._job_definition(
                spec, sizes[spec.size], results, boss_token, settings.job_timeout_hours
            )

    def _vpc(self, settings: Settings, log_retention: logs.RetentionDays) -> ec2.IVpc:
        if settings.existing_vpc is not None:
            existing = settings.existing_vpc
            return ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=existing.vpc_id,
                availability_zones=list(existing.availability_zones),
                private_subnet_ids=list(existing.private_subnet_ids),
            )
        vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=settings.max_azs,
            nat_gateways=settings.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="jobs", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                ),
            ],
            gateway_endpoints={
                # S3 traffic (the largest) skips the NAT gateway: faster and no NAT charges
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
        )
        flow_logs = retained_log_group(self, "VpcFlowLogs", log_retention)
        vpc.add_flow_log(
            "FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs)
        )
        return vpc

    def _job_definition(
        self,
        spec: wf.BatchJobSpec,
        size: JobSize,
        results: s3.IBucket,
        boss_token: secretsmanager.ISecret,
        timeout_hours: int,
    ) -> batch.EcsJobDefinition:
        environment = {wf.ENV_RESULTS_BUCKET: results.bucket_name}
        require_values(spec.logical_id, "environment", spec.environment, environment)
        secrets = {name: batch.Secret.from_secrets_manager(boss_token) for name in spec.secrets}
        logging = ecs.LogDriver.aws_logs(stream_prefix=spec.step, log_group=self.log_group)
        common = {
            "image": self.image,
            "cpu": size.vcpu,
            "memory": cdk.Size.mebibytes(size.memory_mib),
            "command": list(spec.command),
            "environment": environment,
            "secrets": secrets or None,
            "job_role": self.job_role,
            "logging": logging,
            "readonly_root_filesystem": False,  # steps write their results folder to /tmp
        }
        container: batch.IEcsContainerDefinition
        if spec.large:
            container = batch.EcsEc2ContainerDefinition(
                self, f"{spec.logical_id}Container", **common
            )
        else:
            container = batch.EcsFargateContainerDefinition(
                self,
                f"{spec.logical_id}Container",
                **common,
                fargate_cpu_architecture=ecs.CpuArchitecture.X86_64,
                fargate_operating_system_family=ecs.OperatingSystemFamily.LINUX,
                ephemeral_storage_size=cdk.Size.gibibytes(EPHEMERAL_STORAGE_GIB),
                assign_public_ip=False,
            )
        self.containers[spec.logical_id] = container
        attempts, retry = retry_strategies(spec.attempts)
        return batch.EcsJobDefinition(
            self,
            spec.logical_id,
            container=container,
            retry_attempts=attempts,
            retry_strategies=retry,
            timeout=cdk.Duration.hours(timeout_hours),
            propagate_tags=True,
        )
