"""The emulated AWS endpoint: moto's server on 127.0.0.1, executing, with the patches on.

moto's Step Functions port (LocalStack's interpreter) really runs a state machine when
``execute_state_machine`` is on, but the services it calls only pretend. This module owns
the patch table (which moto internal each adapter module replaces), :func:`install` /
:func:`uninstall` (checked by :func:`~synapse_pipelines.local.moto_internals.check_moto_internals`
first) and :class:`LocalAws`. Everything runs in *server mode* because Batch jobs are separate
processes that must reach the same emulated S3 / Secrets Manager over HTTP; the Step Functions
interpreter reaches it at ``localhost:$MOTO_PORT``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import boto3
import requests
from botocore.config import Config
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer

from synapse_pipelines.local.moto_batch import BATCH, batch_mark_job_as_finished, kill_running_jobs
from synapse_pipelines.local.moto_events import events_send_to_targets
from synapse_pipelines.local.moto_internals import ORIGINALS, check_moto_internals, internals
from synapse_pipelines.local.moto_lambda import lambda_invoke
from synapse_pipelines.local.moto_stepfunctions import (
    sfn_fail_eval_state,
    sfn_map_run,
    sfn_normalise_parameters,
    sfn_normalise_response,
    sfn_start_execution,
    sfn_stop_execution,
)

#: moto's executing mode: run the ASL, never Docker for Lambda or Batch
MOTO_CONFIG: dict[str, dict[str, bool]] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
    "batch": {"use_docker": False},
}

#: keys whose attribute was inherited (not in the owner's own __dict__): uninstall deletes ours
_INHERITED: set[str] = set()
#: PATCHED key -> its replacement
_PATCHES: dict[str, Callable[..., Any]] = {
    "lambda.invoke": lambda_invoke,
    "batch.mark_finished": batch_mark_job_as_finished,
    "sfn.batch.normalise_parameters": sfn_normalise_parameters,
    "sfn.batch.normalise_response": sfn_normalise_response,
    "events.send_to_targets": events_send_to_targets,
    "sfn.start_execution": sfn_start_execution,
    "sfn.stop_execution": sfn_stop_execution,
    "sfn.map_run": sfn_map_run,
    "sfn.fail.eval_state": sfn_fail_eval_state,
}
_INSTALL_LOCK = threading.Lock()


def install() -> None:
    """Check moto's internals, then patch them (idempotent)."""
    with _INSTALL_LOCK:
        if ORIGINALS:
            return
        check_moto_internals()
        for key, (owner, attr, _params) in internals().items():
            if attr not in owner.__dict__:
                _INHERITED.add(key)
            ORIGINALS[key] = getattr(owner, attr)
            setattr(owner, attr, _PATCHES[key])


def uninstall() -> None:
    """Restore moto's own methods."""
    with _INSTALL_LOCK:
        for key, (owner, attr, _params) in internals().items():
            if key in _INHERITED:
                delattr(owner, attr)
            elif key in ORIGINALS:
                setattr(owner, attr, ORIGINALS[key])
        ORIGINALS.clear()
        _INHERITED.clear()


def installed() -> bool:
    return bool(ORIGINALS)


# --------------------------------------------------------------------------------------------
# the emulated AWS endpoint
# --------------------------------------------------------------------------------------------

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"  # moto's default account id


class LocalAws:
    """moto in server mode on 127.0.0.1, with the patches above and executing mode on.

    One per process: moto's backends are process-global. ``MOTO_PORT`` is set in this
    process's environment while it runs, because the Step Functions interpreter addresses
    its service calls to ``localhost:$MOTO_PORT``.
    """

    def __init__(self, *, port: int = 0, region: str = DEFAULT_REGION) -> None:
        self.region = region
        self._port = port
        self._server: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._saved_config: dict[str, Any] = {}
        self._installed_here = False
        self.endpoint_url = ""

    # credentials are dummies: moto accepts anything, and real ones must never be used here
    def environment(self) -> dict[str, str]:
        """Environment a process needs to use this endpoint with boto3 (no real credentials)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def start(self) -> LocalAws:
        # leave moto as we found it on stop(): other code in this process (e.g. tests using
        # mock_aws) must not inherit executing mode or our patches
        self._saved_config = copy.deepcopy(dict(default_user_config))
        self._installed_here = not installed()
        install()
        # werkzeug logs every request to stderr: noise for users, and a place secrets could leak
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # the interpreter logs every caught task failure at ERROR with the component's repr;
        # the same facts are in the execution history, where callers read them
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
        with contextlib.redirect_stdout(io.StringIO()):
            server.start()
        self._server = server
        host, port = server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        env = {"MOTO_PORT": str(port), **self.environment()}
        self._saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        BATCH.environment = self.environment()
        # moto's backends are process-global and outlive a server: start from nothing
        self.reset()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        kill_running_jobs()
        self._server.stop()
        self._server = None
        default_user_config.clear()
        default_user_config.update(self._saved_config)  # type: ignore[typeddict-item]
        if self._installed_here:
            uninstall()
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        BATCH.environment = {}

    def reset(self) -> None:
        """Forget every emulated resource (moto's /moto-api/reset)."""
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=30).raise_for_status()
        requests.post(
            f"{self.endpoint_url}/moto-api/config", json=MOTO_CONFIG, timeout=10
        ).raise_for_status()

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        )

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
