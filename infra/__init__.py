"""The CDK app of synapse-pipelines: one stack composed of one construct per concern."""
