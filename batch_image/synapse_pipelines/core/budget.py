"""The budget cap: ValidateRequest refuses a request whose estimate
(:class:`~.cost_estimate.CostEstimate`) exceeds ``SYNAPSE_PIPELINES_BUDGET_USD`` (set by the
CDK context setting ``budgetUsd``; unset: no cap), with the estimate, the cap and the two
fixes; ``synapse-pipelines estimate --budget`` applies the same check.

numpy-free: the validation Lambda imports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from synapse_pipelines.core.cost_estimate import CostEstimate, usd
from synapse_pipelines.core.errors import SynapsePipelinesError

#: ValidateRequest's environment: refuse a request whose estimate exceeds this many USD
#: (unset or empty: no cap). The CDK context setting ``budgetUsd`` sets it.
ENV_BUDGET_USD = "SYNAPSE_PIPELINES_BUDGET_USD"


class BudgetExceededError(SynapsePipelinesError):
    """The request's estimated cost is above the deployment's budget cap."""

    error_type = "BudgetExceeded"


def parse_budget(value: object, *, field: str = ENV_BUDGET_USD) -> float | None:
    """A budget cap in USD: ``None`` (or empty) for no cap, else a positive number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        cap = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        cap = math.nan
    if not math.isfinite(cap) or cap <= 0:
        raise SynapsePipelinesError(
            f"{value!r} is not a budget: it must be a positive number of US dollars",
            field=field,
            hint="set it to e.g. 25 (USD per request), or leave it unset for no cap",
        )
    return cap


def budget_from_environment(environ: Mapping[str, str]) -> float | None:
    """The cap ``SYNAPSE_PIPELINES_BUDGET_USD`` sets (``None``: no cap)."""
    return parse_budget(environ.get(ENV_BUDGET_USD))


def check_budget(cost: CostEstimate, cap: float | None, *, source: str = ENV_BUDGET_USD) -> None:
    """Refuse an estimate above ``cap`` (set by ``source``) with the estimate, the cap and
    the two fixes."""
    if cap is None or cost.total_usd <= cap:
        return
    fits = int(cost.plan.voxel_count * cap / cost.total_usd)
    raise BudgetExceededError(
        f"the estimated cost of this request, {usd(cost.total_usd)} (Batch "
        f"{usd(cost.batch_usd)}, NAT gateway {usd(cost.nat_usd)}, other services "
        f"{usd(cost.total_usd - cost.batch_usd - cost.nat_usd)}; {cost.plan.voxel_count:,} "
        f"voxels, {cost.plan.describe(cost.sizes)}; prices {cost.prices.region} of "
        f"{cost.prices.date}), exceeds the budget cap of {usd(cap)} per request "
        f"({source})",
        field="z_range/y_range/x_range",
        hint=f"request a smaller box (roughly {fits:,} voxels fit the cap; "
        "`synapse-pipelines estimate` prices one), or raise the cap"
        + (
            f" (CDK context budgetUsd, which sets {ENV_BUDGET_USD})"
            if source == ENV_BUDGET_USD
            else f" ({source})"
        ),
    )
