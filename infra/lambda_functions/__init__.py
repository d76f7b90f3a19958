"""Lambda functions component: the workflow's Lambda handlers, their shared dependencies
layer, their log groups, environment and permissions.

The handler sources live at the repository top in ``functions/<name>/app.py`` (one asset
each; the list is the package's ``synapse_pipelines.workflow.wiring.LAMBDA_FUNCTIONS``). The
layer holds the package (``batch_image/synapse_pipelines``) and pyproject's ``lambda`` extra,
bundled offline by the wheelhouse tooling (``infra.tooling.wheelhouse``).

- ``lambda_functions_construct``:
  :class:`~infra.lambda_functions.lambda_functions_construct.LambdaFunctions`, the functions
  and their environment.
- ``dependencies_layer``: the layer, its runtime and its Docker-free bundler.
- ``function_policies``: what each function may do.
"""
