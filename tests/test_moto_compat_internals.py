"""The moto adaptations (local/moto_*.py) against moto itself, without a running server:
the moto internals we patch are still there with the signatures we expect (an upgrade fails
loudly), install and uninstall patch and restore them, a LocalAws leaves moto's config as it
was, and the pure helpers (Batch's evaluateOnExit retry rules, the Map Run's tolerated
failure thresholds) follow AWS. The tiny ASL executed on moto: test_moto_compat_asl_runs.py.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from synapse_pipelines.local import (
    moto_batch,
    moto_internals,
    moto_lambda,
    moto_server,
    moto_stepfunctions,
)

# ------------------------------------------------------------------ internals (moto upgrades)


def test_moto_internals_are_what_we_patch() -> None:
    moto_internals.check_moto_internals()  # raises with a list of what moved
    import moto

    assert moto.__version__ == moto_internals.SUPPORTED_MOTO_VERSION
    from moto.batch.models import Job
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service as base,
    )

    # the port's normalisation is still the empty stub we replace for Batch
    src = inspect.getsource(base.StateTaskService._normalise_parameters)
    assert src.rstrip().endswith("pass")
    # Ref:: substitution is moto's, used as-is
    assert "Ref::" in inspect.getsource(Job._add_parameters_to_command)
    # moto's Rule.send_to_targets still refuses Step Functions targets (else drop our patch)
    from moto.events.models import Rule

    original = moto_internals.ORIGINALS.get("events.send_to_targets", Rule.send_to_targets)
    assert "NotImplementedError" in inspect.getsource(original)


def test_install_patches_and_uninstall_restores() -> None:
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (  # noqa: E501
        StateTaskServiceBatch,
    )

    was_installed = moto_server.installed()
    moto_server.install()
    assert LambdaSimpleBackend.invoke is moto_lambda.lambda_invoke
    assert (
        StateTaskServiceBatch._normalise_parameters is moto_stepfunctions.sfn_normalise_parameters
    )
    moto_server.uninstall()
    assert LambdaSimpleBackend.invoke is not moto_lambda.lambda_invoke
    assert "_normalise_parameters" not in StateTaskServiceBatch.__dict__
    if was_installed:
        moto_server.install()


def test_check_fails_loudly_when_a_signature_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.events.models import Rule

    def changed(self: Any, event: Any) -> None: ...

    monkeypatch.setitem(moto_internals.ORIGINALS, "events.send_to_targets", changed)
    with pytest.raises(moto_internals.MotoCompatError, match="send_to_targets"):
        moto_internals.check_moto_internals()
    assert Rule  # imported for the message above


def test_stop_leaves_moto_as_it_was() -> None:
    """Runs before the module's stack exists (one LocalAws at a time: backends are global)."""
    import copy

    from moto.core.config import default_user_config

    before = copy.deepcopy(dict(default_user_config))
    was_installed = moto_server.installed()
    with moto_server.LocalAws():
        assert default_user_config["stepfunctions"]["execute_state_machine"] is True
        assert default_user_config["batch"]["use_docker"] is False
        assert moto_server.installed()
    assert dict(default_user_config) == before
    assert moto_server.installed() == was_installed


# ------------------------------------------------------------------ pure helpers


@pytest.mark.parametrize(
    ("exit_code", "status_reason", "expected"),
    [
        (None, "Host EC2 (instance i-1) terminated.", "retry"),
        (75, "Essential container in task exited", "retry"),
        (1, "Essential container in task exited", "exit"),
    ],
)
def test_retry_action_follows_evaluate_on_exit(
    exit_code: int | None, status_reason: str, expected: str
) -> None:
    strategy = {
        "attempts": 3,
        "evaluateOnExit": [
            {"onStatusReason": "Host EC2*", "action": "retry"},
            {"onExitCode": "75", "action": "RETRY"},
            {"onReason": "*", "action": "EXIT"},
        ],
    }
    got = moto_batch.retry_action(
        strategy, exit_code=exit_code, status_reason=status_reason, reason=None
    )
    assert got == expected


def test_retry_action_without_rules_retries() -> None:
    assert (
        moto_batch.retry_action({"attempts": 2}, exit_code=1, status_reason="x", reason=None)
        == "retry"
    )
    rules = {"evaluateOnExit": [{"onExitCode": "2", "action": "exit"}]}
    assert moto_batch.retry_action(rules, exit_code=1, status_reason=None, reason=None) == "retry"


@pytest.mark.parametrize(
    ("failed", "total", "count", "percentage", "exceeded"),
    [
        (0, 8, 0, 0.0, False),  # the project's ASL: nothing tolerated, nothing failed
        (1, 8, 0, 0.0, True),  # one failed item fails the Map Run
        (1, 8, 1, 100.0, False),  # within both thresholds
        (2, 8, 1, 100.0, True),  # over the count
        (2, 8, 5, 20.0, True),  # 25 % over the percentage
        (2, 10, 5, 20.0, False),  # 20 % is not over 20 %
        (0, 0, 0, 0.0, False),  # no items
    ],
)
def test_map_run_fails_over_either_tolerated_threshold(
    failed: int, total: int, count: int, percentage: float, exceeded: bool
) -> None:
    assert moto_stepfunctions.threshold_exceeded(failed, total, count, percentage) is exceeded
