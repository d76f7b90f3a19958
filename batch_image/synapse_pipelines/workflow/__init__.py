"""The workflow's steps and wiring, shared by the Lambdas, the Batch jobs and the local runtime."""
