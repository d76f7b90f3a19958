"""Deployment settings from CDK context (``cdk.json`` key ``synapse-pipelines``), validated.

Override one value at deploy time with ``-c``, e.g.::

    cdk deploy -c synapse-pipelines='{"notificationEmail": "me@example.org"}'

(a JSON object given with ``-c`` is merged over the ``cdk.json`` defaults key by key).
Every mistake raises :class:`ConfigError` naming the context key and the fix, before any
resource is defined. Owns the validation of every value, including which Fargate and EC2
sizes a Batch job may ask for; CDK-free.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from synapse_pipelines.workflow import wiring as wf

CONTEXT_KEY = "synapse-pipelines"

#: Fargate task sizes AWS accepts: vCPU -> (min MiB, max MiB, step MiB).
FARGATE_MEMORY: dict[float, tuple[int, int, int]] = {
    0.25: (512, 2048, 512),
    0.5: (1024, 4096, 1024),
    1: (2048, 8192, 1024),
    2: (4096, 16384, 1024),
    4: (8192, 30720, 1024),
    8: (16384, 61440, 4096),
    16: (32768, 122880, 8192),
}
FARGATE_512_CHOICES = (512, 1024, 2048)  # 0.25 vCPU takes exactly these

#: Largest size of each allowed EC2 instance class: (vCPU, GiB). A job must fit on one.
EC2_CLASS_LIMITS: dict[str, tuple[int, int]] = {
    "r5": (96, 768),
    "r5a": (96, 768),
    "r6i": (128, 1024),
    "r6a": (192, 1536),
    "r7i": (192, 1536),
    "x2idn": (128, 2048),
    "x2iedn": (128, 4096),
    "m6i": (128, 512),
    "c6i": (128, 256),
}
#: Memory the ECS agent and the OS keep on an instance (a job asking the whole RAM never runs).
EC2_RESERVED_FRACTION = 0.06

VALID_LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
    2557, 2922, 3288, 3653,
)  # fmt: skip

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")


class ConfigError(ValueError):
    """A CDK context value is wrong; the message names the key and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(f"cdk context {CONTEXT_KEY}.{key}: {problem}. Fix: {fix}")


@dataclass(frozen=True)
class JobSize:
    """vCPU and memory of a Batch job (``{"vcpu", "memoryMiB"}`` in context)."""

    vcpu: float
    memory_mib: int


@dataclass(frozen=True)
class ExistingVpc:
    """A VPC to run the jobs in instead of a new one (``existingVpc``)."""

    vpc_id: str
    availability_zones: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    """Every deployment setting, validated."""

    stack_name: str
    notification_email: str | None
    existing_vpc: ExistingVpc | None
    max_azs: int
    nat_gateways: int
    fargate_max_vcpus: int
    detect_job: JobSize
    report_job: JobSize
    publish_job: JobSize
    large_detect_job: JobSize
    large_instance_classes: tuple[str, ...]
    large_max_vcpus: int
    job_timeout_hours: int
    log_retention_days: int
    results_noncurrent_version_days: int
    results_infrequent_access_days: int
    presign_expiry_seconds: int
    neuroglancer_url: str
    #: numeric ASL settings by substitution name (e.g. BlockwiseMaxConcurrency); checked by
    #: synapse_pipelines.workflow.wiring.setting_substitutions
    asl_settings: dict[str, int | float]
    #: ValidateRequest refuses a request estimated above this many USD (None: no cap)
    budget_usd: float | None = None


def check_fargate_size(key: str, size: JobSize) -> None:
    """Raise ConfigError unless (vcpu, memory) is a Fargate task size."""
    if size.vcpu not in FARGATE_MEMORY:
        choices = ", ".join(str(v) for v in FARGATE_MEMORY)
        raise ConfigError(f"{key}.vcpu", f"{size.vcpu} is not a Fargate size", f"use {choices}")
    low, high, step = FARGATE_MEMORY[size.vcpu]
    valid = (
        size.memory_mib in FARGATE_512_CHOICES
        if size.vcpu == 0.25
        else low <= size.memory_mib <= high and (size.memory_mib - low) % step == 0
    )
    if not valid:
        raise ConfigError(
            f"{key}.memoryMiB",
            f"{size.memory_mib} MiB is not valid with {size.vcpu} vCPU on Fargate",
            f"use {low}..{high} MiB in steps of {step} MiB, or change vcpu",
        )


def check_ec2_size(key: str, size: JobSize, classes: tuple[str, ...]) -> None:
    """Raise ConfigError unless the job fits the largest instance of some allowed class."""
    if size.vcpu < 1 or size.vcpu != int(size.vcpu):
        raise ConfigError(f"{key}.vcpu", f"{size.vcpu} is not a whole number ≥ 1", "use e.g. 32")
    fits = []
    for cls in classes:
        vcpus, gib = EC2_CLASS_LIMITS[cls]
        usable = int(gib * 1024 * (1 - EC2_RESERVED_FRACTION))
        if size.vcpu <= vcpus and size.memory_mib <= usable:
            fits.append(cls)
    if not fits:
        raise ConfigError(
            key,
            f"{int(size.vcpu)} vCPU / {size.memory_mib} MiB fits no instance of "
            f"{', '.join(classes)} (largest sizes: "
            + ", ".join(
                f"{c} {EC2_CLASS_LIMITS[c][0]} vCPU/{EC2_CLASS_LIMITS[c][1]} GiB" for c in classes
            )
            + f", minus {EC2_RESERVED_FRACTION:.0%} kept by ECS)",
            "ask for less, or add a larger class to largeInstanceClasses",
        )


def _size(raw: Mapping[str, Any], key: str) -> JobSize:
    value = raw.get(key)
    if not isinstance(value, Mapping) or {"vcpu", "memoryMiB"} - set(value):
        raise ConfigError(
            key,
            f"expected {{vcpu, memoryMiB}}, got {value!r}",
            'e.g. {"vcpu": 4, "memoryMiB": 30720}',
        )
    try:
        vcpu = float(value["vcpu"])
        memory = int(value["memoryMiB"])
    except (TypeError, ValueError):
        raise ConfigError(key, f"non-numeric size {value!r}", "give numbers") from None
    if vcpu == int(vcpu):
        vcpu = int(vcpu)
    return JobSize(vcpu=vcpu, memory_mib=memory)


def _int(raw: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            key, f"{value!r} is not a whole number in {low}..{high}", f"use {low}..{high}"
        )
    return value


def _json_object(value: Any) -> Any:
    """A context value given with ``-c`` as JSON text, parsed; anything else unchanged."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise ConfigError("", "is not a JSON object", "pass -c synapse-pipelines='{...}'") from None


def load_settings(context: Mapping[str, Any] | str) -> Settings:
    """Settings from the CDK context value (a mapping, or JSON text given with ``-c``)."""
    raw = _json_object(context)
    if not isinstance(raw, Mapping):
        raise ConfigError("", f"expected an object, got {type(raw).__name__}", "see cdk.json")

    stack_name = str(raw.get("stackName", "SynapsePipelines"))
    if not _STACK_NAME.match(stack_name):
        raise ConfigError(
            "stackName", f"{stack_name!r} is not a stack name", "letters, digits, '-'"
        )
    email = raw.get("notificationEmail") or None
    if email is not None and not _EMAIL.match(str(email)):
        raise ConfigError(
            "notificationEmail",
            f"{email!r} is not an email address",
            "e.g. me@example.org, or leave it empty",
        )

    vpc_raw = raw.get("existingVpc") or None
    existing = None
    if vpc_raw is not None:
        if not isinstance(vpc_raw, Mapping) or not vpc_raw.get("vpcId"):
            raise ConfigError(
                "existingVpc",
                "needs vpcId, availabilityZones and privateSubnetIds",
                "give all three, or null for a new VPC",
            )
        azs = tuple(vpc_raw.get("availabilityZones") or ())
        subnets = tuple(vpc_raw.get("privateSubnetIds") or ())
        if not azs or len(azs) != len(subnets):
            raise ConfigError(
                "existingVpc",
                "availabilityZones and privateSubnetIds must be non-empty lists of equal length",
                "one private subnet per AZ, with a route to the internet (NAT) for BOSS and ECR",
            )
        existing = ExistingVpc(str(vpc_raw["vpcId"]), azs, subnets)

    classes = tuple(raw.get("largeInstanceClasses") or ())
    unknown = [c for c in classes if c not in EC2_CLASS_LIMITS]
    if not classes or unknown:
        raise ConfigError(
            "largeInstanceClasses",
            f"unknown or empty: {unknown or classes}",
            f"choose from {', '.join(EC2_CLASS_LIMITS)}",
        )

    settings = Settings(
        stack_name=stack_name,
        notification_email=str(email) if email else None,
        existing_vpc=existing,
        max_azs=_int(raw, "maxAzs", 1, 6),
        nat_gateways=_int(raw, "natGateways", 0, 6),
        fargate_max_vcpus=_int(raw, "fargateMaxvCpus", 1, 10_000),
        detect_job=_size(raw, "detectJob"),
        report_job=_size(raw, "reportJob"),
        publish_job=_size(raw, "publishJob"),
        large_detect_job=_size(raw, "largeDetectJob"),
        large_instance_classes=classes,
        large_max_vcpus=_int(raw, "largeMaxvCpus", 1, 10_000),
        job_timeout_hours=_int(raw, "jobTimeoutHours", 1, 336),
        log_retention_days=_int(raw, "logRetentionDays", 1, 3653),
        results_noncurrent_version_days=_int(raw, "resultsNoncurrentVersionDays", 1, 3650),
        results_infrequent_access_days=_int(raw, "resultsInfrequentAccessDays", 30, 3650),
        presign_expiry_seconds=_int(raw, "presignExpirySeconds", 60, 604800),
        neuroglancer_url=str(raw.get("neuroglancerUrl") or wf.DEFAULT_NEUROGLANCER_URL),
        asl_settings=_asl_settings(raw.get("stateMachineSettings")),
        budget_usd=_budget(raw.get("budgetUsd")),
    )
    for key in ("detectJob", "reportJob", "publishJob"):
        check_fargate_size(key, getattr(settings, _attr(key)))
    check_ec2_size("largeDetectJob", settings.large_detect_job, classes)
    if settings.large_detect_job.memory_mib <= settings.detect_job.memory_mib:
        raise ConfigError(
            "largeDetectJob.memoryMiB",
            "is not larger than detectJob.memoryMiB",
            "give the large-memory job more memory than the Fargate one",
        )
    if settings.log_retention_days not in VALID_LOG_RETENTION_DAYS:
        raise ConfigError(
            "logRetentionDays",
            f"{settings.log_retention_days} is not a CloudWatch retention",
            f"use one of {VALID_LOG_RETENTION_DAYS}",
        )
    if existing is None and settings.nat_gateways == 0:
        raise ConfigError(
            "natGateways",
            "0 leaves private subnets without internet (BOSS, ECR)",
            "use at least 1, or bring an existingVpc",
        )
    for key, limit in (
        ("detectJob", settings.fargate_max_vcpus),
        ("largeDetectJob", settings.large_max_vcpus),
    ):
        if getattr(settings, _attr(key)).vcpu > limit:
            raise ConfigError(
                key + ".vcpu",
                "exceeds its compute environment's maxvCpus",
                "raise fargateMaxvCpus / largeMaxvCpus",
            )
    return settings


def _asl_settings(value: Any) -> dict[str, int | float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
    ):
        raise ConfigError(
            "stateMachineSettings",
            f"expected an object of numbers, got {value!r}",
            'e.g. {"BlockwiseMaxConcurrency": 100}',
        )
    return dict(value)


def _budget(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        raise ConfigError(
            "budgetUsd",
            f"{value!r} is not a positive number of US dollars",
            "e.g. 25 (the most one request may be estimated to cost), or null for no cap",
        )
    return float(value)


def _attr(key: str) -> str:
    """The Settings field of a context key (``detectJob`` -> ``detect_job``)."""
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)


class ContextNode(Protocol):
    """What settings need of a construct node (``app.node``): its context values."""

    def try_get_context(self, key: str) -> Any: ...


def settings_from_app_context(
    node: ContextNode, defaults: Mapping[str, Any] | None = None
) -> Settings:
    """Settings from a construct node's context (cdk.json + ``-c``), over ``defaults``.

    ``cdk deploy -c synapse-pipelines='{"notificationEmail": "..."}'`` replaces the whole
    context value; merging it over the cdk.json block keeps the other keys.
    """
    value = _json_object(node.try_get_context(CONTEXT_KEY))
    if value is None and defaults is None:
        raise ConfigError("", "missing", f"add the {CONTEXT_KEY!r} block from cdk.json")
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError("", f"expected an object, got {type(value).__name__}", "see cdk.json")
    return load_settings({**(defaults or {}), **(value or {})})
