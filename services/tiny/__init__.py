"""Tiny random checkpoints of the real architectures, built offline for tests and demos."""
