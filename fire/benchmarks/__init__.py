"""Benchmarks: run as modules, e.g. ``python -m fire.benchmarks.forward``."""
