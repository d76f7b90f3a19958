"""Pure science: arrays in, arrays out.

Detection, the synapse table, evaluation, synthetic data.
"""
