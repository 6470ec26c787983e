"""FIRE: length generalization of Transformer language models in JAX/Flax.

Position encodings (FIRE and its baselines, ``fire.encodings``), a decoder-only LM with a
dense and a blockwise attention path (``fire.model``), data pipelines (``fire.data``),
training (``fire.training``) and length-sweep evaluation (``fire.evaluation``). Modules
import only from their own floor or below; the README's Layout section lists the floors.
"""

__version__ = "0.1.0"
