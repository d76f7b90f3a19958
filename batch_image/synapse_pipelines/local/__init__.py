"""The local runtime.

The real ASL in moto, local Batch processes, the local BOSS-compatible server.
"""
