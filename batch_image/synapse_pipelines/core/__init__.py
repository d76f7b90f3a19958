"""The request model, errors, geometry, S3 keys and sizing policy.

numpy-free: the Lambdas import it.
"""
