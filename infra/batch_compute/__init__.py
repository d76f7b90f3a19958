"""Batch compute component: the network, the Spot compute environments and job queues, the
container image and one job definition per Batch step.

The image is built from ``batch_image/Dockerfile`` at the repository top (``infra.REPO_ROOT``)
with the repository as a reduced build context; the steps' commands, parameters and retry
rules come from the package (``synapse_pipelines.workflow.wiring.BATCH_JOBS``).

- ``batch_compute_construct``: :class:`~infra.batch_compute.batch_compute_construct.BatchCompute`
  and the image's build-context rules.
"""
