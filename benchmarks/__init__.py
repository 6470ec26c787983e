"""Benchmarks of the ``fire`` library, kept outside the installed package: run each as a
module from the repository root, e.g. ``python -m benchmarks.forward``. BENCHMARKS.md has
what they measured."""
