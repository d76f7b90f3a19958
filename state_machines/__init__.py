"""The state machine definition (ASL); installed as ``synapse_pipelines.state_machines``."""
