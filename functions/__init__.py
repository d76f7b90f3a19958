"""The Lambda handlers, one folder each (``<name>/<name>.py``, handler ``<name>.handler``),
and what they share (``handler_support``: powertools, the decorator stack, user errors).

Installed as ``synapse_pipelines.functions`` (pyproject maps this folder into the package).
"""
