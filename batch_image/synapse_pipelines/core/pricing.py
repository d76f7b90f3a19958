"""The prices a run pays, per AWS region: one documented, dated table.

What a request costs (:mod:`.cost_estimate` before a run, ``workflow.job_costs`` after it) is
priced from :data:`PRICE_TABLES`, one :class:`PriceTable` per region. Every price is USD,
Linux/x86, without free tiers or taxes. The table was compiled on :data:`PRICE_TABLE_DATE`
from the public pricing pages below, as this project recorded them in November 2026
(``docs/aws.md``, ``docs/scale.md``); it is a snapshot, not a live price list: check the
pages before relying on a figure, and update the table (and its date) when they change.

* AWS Batch has no charge of its own: a job pays for what it runs on.

  - **Fargate Spot** (the standard queue): per vCPU-hour and per GiB-hour of the job's size.
    Fargate Spot prices move with supply and demand, at "up to 70 % off" Fargate on demand
    (https://aws.amazon.com/fargate/pricing/). The table assumes that 70 %: on-demand
    $0.04048 per vCPU-hour and $0.004445 per GB-hour (us-east-1) give $0.012144 and
    $0.0013335 (docs/aws.md recorded ≈ $0.0122 / $0.00134 for November 2026).
  - **EC2 Spot** (the large-memory queue, instance classes ``largeInstanceClasses``, default
    r6i and r5): the Spot price of the class's reference size (``r6i.8xlarge``: 32 vCPU,
    256 GiB), assumed :data:`EC2_SPOT_FRACTION` (35 %) of its on-demand price ($2.016/h in
    us-east-1, https://aws.amazon.com/ec2/pricing/on-demand/), i.e. $0.71/h: the middle of
    the $0.60-0.80 docs/aws.md recorded for r6i.8xlarge Spot in us-east-1 (Spot prices
    change every few minutes: https://aws.amazon.com/ec2/spot/pricing/). Spot prices within
    a class scale with the size, so a job pays for the share of an instance it occupies:
    ``max(vCPU, GiB / GiB-per-vCPU)`` instance vCPUs at the class's price per vCPU-hour
    (:meth:`Ec2SpotClass.job_hour`).

* **Step Functions** Standard: per state transition ($0.025 per 1,000,
  https://aws.amazon.com/step-functions/pricing/); a Distributed Map's child executions
  are Standard executions, their transitions count too.
* **Lambda**: per GB-second (x86: $0.0000166667) and per request ($0.20 per million,
  https://aws.amazon.com/lambda/pricing/).
* **S3** Standard: per GB-month ($0.023, first 50 TB), per PUT/COPY/POST/LIST ($0.005 per
  1,000) and GET ($0.0004 per 1,000) (https://aws.amazon.com/s3/pricing/).
* **NAT gateway** data processing, per GB (https://aws.amazon.com/vpc/pricing/): the jobs
  reach BOSS through it (S3 does not: the VPC has an S3 gateway endpoint).

Only the regions below are priced; :func:`price_table` refuses any other one with the list.
numpy-free: ValidateRequest's Lambda prices the budget check with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from synapse_pipelines.core.errors import SynapsePipelinesError

#: The day this table was compiled (ISO date); every cost record names it.
PRICE_TABLE_DATE = "2026-11-30"
#: Region priced when nothing else is said (BOSS, api.bossdb.io, runs in us-east-1).
DEFAULT_REGION = "us-east-1"
#: Environment override of the region a Lambda prices with (default: its own AWS_REGION).
ENV_PRICE_REGION = "SYNAPSE_PIPELINES_PRICE_REGION"

#: Fargate Spot price as a fraction of Fargate on demand: AWS's "up to 70 % off".
FARGATE_SPOT_FRACTION = 0.30
#: EC2 Spot price assumed for the large-memory classes, as a fraction of on demand (the
#: middle of the $0.60-0.80/h recorded for r6i.8xlarge in us-east-1 against $2.016).
EC2_SPOT_FRACTION = 0.35

FARGATE_SPOT = "fargate-spot"
EC2_SPOT = "ec2-spot"
PLATFORM_NAMES = {FARGATE_SPOT: "Fargate Spot", EC2_SPOT: "EC2 Spot"}


class PricingError(SynapsePipelinesError):
    """A region or instance class the price table does not know."""

    error_type = "PricingError"


@dataclass(frozen=True)
class Ec2SpotClass:
    """The Spot price of one EC2 instance class, from its reference size."""

    reference: str  # the instance type priced, e.g. "r6i.8xlarge"
    vcpu: int
    gib: int
    on_demand_hour: float
    spot_hour: float  # assumed: on_demand_hour * EC2_SPOT_FRACTION

    @property
    def gib_per_vcpu(self) -> float:
        return self.gib / self.vcpu

    @property
    def spot_vcpu_hour(self) -> float:
        """Spot price of one instance vCPU (with its share of the memory) for an hour."""
        return self.spot_hour / self.vcpu

    def job_hour(self, vcpu: float, memory_gib: float) -> float:
        """What a job of this size pays per hour: the instance vCPUs it occupies (by vCPU or
        by memory, whichever is more) at the class's Spot price per vCPU-hour."""
        return max(vcpu, memory_gib / self.gib_per_vcpu) * self.spot_vcpu_hour


@dataclass(frozen=True)
class PriceTable:
    """Every price a run pays in one region (USD; see the module docstring for sources)."""

    region: str
    fargate_on_demand_vcpu_hour: float
    fargate_on_demand_gib_hour: float
    fargate_spot_vcpu_hour: float
    fargate_spot_gib_hour: float
    ec2_spot: Mapping[str, Ec2SpotClass]
    sfn_transition: float  # one Standard state transition
    lambda_gb_second: float
    lambda_request: float
    s3_gb_month: float
    s3_put: float  # one PUT/COPY/POST/LIST request
    s3_get: float  # one GET request
    nat_gb: float  # one GB through the NAT gateway
    date: str = PRICE_TABLE_DATE

    def ec2_class(self, name: str) -> Ec2SpotClass:
        """The Spot price of an instance class; a clear error naming the known ones."""
        if name not in self.ec2_spot:
            raise PricingError(
                f"no EC2 Spot price for instance class {name!r} in {self.region}",
                field="largeInstanceClasses",
                hint=f"use one of {', '.join(sorted(self.ec2_spot))}, or add the class to "
                "synapse_pipelines/core/pricing.py",
            )
        return self.ec2_spot[name]

    def ec2_job_hour(self, vcpu: float, memory_gib: float, classes: tuple[str, ...]) -> float:
        """A large-memory job's price per hour: the dearest of the allowed classes (Batch
        picks among them; an estimate, and the budget cap, should not be too low)."""
        return max(self.ec2_class(c).job_hour(vcpu, memory_gib) for c in classes)

    def fargate_job_hour(self, vcpu: float, memory_gib: float) -> float:
        """A Fargate Spot job's price per hour."""
        return vcpu * self.fargate_spot_vcpu_hour + memory_gib * self.fargate_spot_gib_hour

    def record(self) -> dict[str, str]:
        """What a cost record says of the prices it used (``manifest["cost"]["price_table"]``)."""
        return {"date": self.date, "region": self.region}


def _region(
    region: str,
    *,
    fargate_vcpu_hour: float,
    fargate_gb_hour: float,
    r_8xlarge_hour: float,
    sfn_per_1000: float = 0.025,
    lambda_gb_second: float = 0.0000166667,
    lambda_per_million: float = 0.20,
    s3_gb_month: float = 0.023,
    s3_put_per_1000: float = 0.005,
    s3_get_per_1000: float = 0.0004,
    nat_gb: float = 0.045,
) -> PriceTable:
    """A region's table from its list prices (on demand) and the two Spot assumptions."""
    spot = r_8xlarge_hour * EC2_SPOT_FRACTION
    classes = {
        # r6i and r5 are the default large-memory classes (cdk.json largeInstanceClasses);
        # both have 8 GiB per vCPU and the same on-demand price in these regions
        name: Ec2SpotClass(f"{name}.8xlarge", 32, 256, r_8xlarge_hour, spot)
        for name in ("r6i", "r5")
    }
    return PriceTable(
        region=region,
        fargate_on_demand_vcpu_hour=fargate_vcpu_hour,
        fargate_on_demand_gib_hour=fargate_gb_hour,
        fargate_spot_vcpu_hour=fargate_vcpu_hour * FARGATE_SPOT_FRACTION,
        fargate_spot_gib_hour=fargate_gb_hour * FARGATE_SPOT_FRACTION,
        ec2_spot=classes,
        sfn_transition=sfn_per_1000 / 1000,
        lambda_gb_second=lambda_gb_second,
        lambda_request=lambda_per_million / 1_000_000,
        s3_gb_month=s3_gb_month,
        s3_put=s3_put_per_1000 / 1000,
        s3_get=s3_get_per_1000 / 1000,
        nat_gb=nat_gb,
    )


#: List prices (on demand) shared by us-east-1, us-east-2 and us-west-2: Fargate per vCPU-hour
#: and per GB-hour, r6i.8xlarge / r5.8xlarge per hour.
_US_PRICES: dict[str, float] = {
    "fargate_vcpu_hour": 0.04048,
    "fargate_gb_hour": 0.004445,
    "r_8xlarge_hour": 2.016,
}
#: The priced regions. eu-west-1 (Ireland) differs from the US ones in EC2 ($2.256/h for
#: r6i.8xlarge and r5.8xlarge) and NAT ($0.048 per GB).
PRICE_TABLES: dict[str, PriceTable] = {
    table.region: table
    for table in (
        _region("us-east-1", **_US_PRICES),
        _region("us-east-2", **_US_PRICES),
        _region("us-west-2", **_US_PRICES),
        _region("eu-west-1", **{**_US_PRICES, "r_8xlarge_hour": 2.256}, nat_gb=0.048),
    )
}


def known_regions() -> tuple[str, ...]:
    return tuple(sorted(PRICE_TABLES))


def price_table(region: str | None = None, *, field: str = "--region") -> PriceTable:
    """The prices of ``region`` (default us-east-1); an unknown region is a clear error that
    names ``field`` (where the region came from) and lists the priced regions."""
    name = (region or DEFAULT_REGION).strip()
    if name not in PRICE_TABLES:
        raise PricingError(
            f"no price table for region {name!r} (priced: {', '.join(known_regions())})",
            field=field,
            hint="choose one of the priced regions (the nearest one gives an approximate "
            "estimate), or add the region to synapse_pipelines/core/pricing.py",
        )
    return PRICE_TABLES[name]


def region_from_environment(environ: Mapping[str, str]) -> tuple[str, str]:
    """The region a Lambda prices with, and the variable it came from: the override
    ``SYNAPSE_PIPELINES_PRICE_REGION``, else the function's own ``AWS_REGION`` (or
    ``AWS_DEFAULT_REGION``), else us-east-1."""
    for name in (ENV_PRICE_REGION, "AWS_REGION", "AWS_DEFAULT_REGION"):
        if environ.get(name):
            return environ[name], name
    return DEFAULT_REGION, ENV_PRICE_REGION
