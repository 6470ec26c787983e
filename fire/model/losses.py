"""Per-token losses, shared by training, validation and the length sweep."""

import jax.numpy as jnp
import optax


def token_nll(logits_BxTxV, targets_BxT):
    """Negative log-likelihood in nats, float32 ``BxT``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV.astype(jnp.float32), targets_BxT)
