"""Storage component: where results and the BOSS token live.

Deploys the private, versioned results bucket (with its access-log bucket) and the Secrets
Manager secret holding the BOSS token. What is stored comes from the workflow at run time;
the S3 key layout is the package's (``synapse_pipelines.workflow.wiring``).

- ``storage_construct``: :class:`~infra.storage.storage_construct.Storage`, the buckets and
  the secret.
- ``results_bucket_policies``: the results keys each principal may touch and the IAM
  statements granting them (used by the Batch, Lambda and state machine components).
"""
