"""FIRE: length generalization of Transformer language models in JAX/Flax.

Position encodings (FIRE and its baselines), a decoder-only LM with a dense and a
blockwise attention path, data pipelines, training and length-sweep evaluation.
"""

__version__ = "0.1.0"
