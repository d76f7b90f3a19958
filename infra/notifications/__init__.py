"""Notifications component: the SNS topic (success and failure messages) and the custom
EventBridge bus (requests in, completion and failure events out).

- ``notifications_construct``: :class:`~infra.notifications.notifications_construct.Notifications`.
  The messages themselves are written by the workflow's steps (the package).
"""
