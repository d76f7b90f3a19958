"""What the four Lambda handlers share: powertools, the decorator stack and user errors.

One powertools :data:`logger`, :data:`tracer` and :data:`metrics` (service
``synapse-pipelines``; X-Ray only where a daemon is), :func:`lambda_handler` (their
decorators, in one order), :func:`count` (a Count metric) and :func:`reject` (a user error
logged, counted and turned into the exception Step Functions shows, :func:`task_error`).
Each handler parses its typed event (``synapse_pipelines.workflow.events``), calls its step
and formats the answer.

Installed as ``synapse_pipelines.functions.handler_support``; on AWS the Lambda layer ships
the whole package, so a handler (its own code asset) imports this module from the layer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.workflow import wiring as wf

#: A Lambda handler: ``handler(event, context) -> result``.
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

logger = Logger(service=wf.POWERTOOLS_SERVICE)
tracer = Tracer(service=wf.POWERTOOLS_SERVICE, disabled=not wf.tracing_enabled(os.environ))
metrics = Metrics(namespace=wf.METRICS_NAMESPACE, service=wf.POWERTOOLS_SERVICE)


def lambda_handler(*, log_event: bool) -> Callable[[Handler], Handler]:
    """powertools around a handler: the Lambda context in every log line (the event too only
    with ``log_event``: most events hold a request, never logged raw), an X-Ray trace without
    the response (it may hold presigned URLs), the metrics flushed at the end."""

    def decorate(handler: Handler) -> Handler:
        traced = tracer.capture_lambda_handler(metrics.log_metrics(handler), capture_response=False)
        return logger.inject_lambda_context(traced, log_event=log_event)

    return decorate


def count(metric: str, value: float = 1) -> None:
    """Add ``value`` to the Count metric ``metric``."""
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=value)


def task_error(exc: SynapsePipelinesError) -> Exception:
    """The exception a Lambda handler raises for a user error.

    The Lambda runtime reports ``type(exc).__name__`` as the error name that Step Functions
    matches and shows; the project's subclasses do not all carry their ``error_type`` as class
    name, so re-raise under a class named exactly ``error_type``, with the clear message.
    """
    cls = type(exc.error_type, (SynapsePipelinesError,), {"error_type": exc.error_type})
    err = cls.__new__(cls)
    Exception.__init__(err, str(exc))
    err.message, err.field, err.hint = str(exc), None, None
    return err


def reject(exc: SynapsePipelinesError, what: str, metric: str | None = None) -> Exception:
    """A user error: logged as a warning (type and message, never the event), counted under
    ``metric`` if given, and returned as the exception the handler raises (:func:`task_error`)."""
    if metric is not None:
        count(metric)
    logger.warning(what, extra={"error_type": exc.error_type, "reason": str(exc)})
    return task_error(exc)
