"""The Lambda handlers, one folder each (``app.handler``).

Installed as ``synapse_pipelines.functions`` (pyproject maps this folder into the package).
"""
