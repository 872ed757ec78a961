"""Comparison algorithms, each composed from the framework's registered components."""
