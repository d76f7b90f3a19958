"""The workflow: its wiring and the code of each step, shared by the Lambdas, the Batch jobs
and the local runtime.

- :mod:`.wiring` — the one definition of the state machine's wiring (ASL, tasks, names).
- :mod:`.events` — the Lambda tasks' typed events; StartFromEvent, ``start_execution``.
- :mod:`.run_record` — the validated request and the steps' error records in S3.
- Lambda steps (no science stack): :mod:`.validate_step`, :mod:`.publish_s3_step`,
  :mod:`.failure_step`, and their texts :mod:`.notification_text`.
- Batch steps: :mod:`.batch_run` (what they open), :mod:`.detect_step`, :mod:`.report_step`,
  :mod:`.publish_boss_step`, and the blockwise stages' jobs :mod:`.blockwise_job`.
"""
