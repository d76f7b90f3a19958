"""State machine component: the Step Functions state machine, its role and its execution logs.

The definition is the ASL file at the repository top, ``state_machines/`` (read through the
package's ``synapse_pipelines.workflow.wiring``, which names its substitutions); the local
runtime executes the very same file.

- ``state_machine_construct``:
  :class:`~infra.state_machine.state_machine_construct.SynapseDetectionStateMachine`.
- ``state_machine_policies``: what the role may do (CDK cannot see inside the ASL file).
"""
