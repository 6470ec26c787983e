"""Text generation with a KV cache, for every encoding and past the training length.

    tokens_BxS = generate(model, params, prompt_BxP, 200, Sampling(temperature=0.8, top_k=40), jax.random.key(0))

Two compiled programs:

* :func:`prefill_program`: the ordinary forward over the prompt on either attention path (``impl``),
  keeping each layer's keys (after rotation) and values in a cache of ``max_len = P + n``
  slots (:meth:`Transformer.prefill`);
* :func:`decode_program`: one ``lax.fori_loop`` over the new tokens. The token at position ``t`` writes its
  keys and values at slot ``t`` and attends over slots ``0..t`` of the static-size cache,
  later slots masked (:meth:`Transformer.decode`), so the loop compiles once, not per token.

Each encoding enters exactly as in the full forward: rotary through ``Rotation.query/key``
at the token's position; additive biases through ``bias_fn(seq_len)(q_pos_1x1, k_pos_1xS)``,
one row per step (FIRE's depends on the query position), never per example; absolute
embeddings through ``embed(positions, seq_len)``. Every hook sees ``seq_len = max_len``,
the total length: the logits at each step are those of a full forward over ``max_len``
tokens, so ``rope_pi`` and ``yarn`` interpolate by ``max_len / train_len`` from the first
token on (the same prompt with a larger budget is, for them, a different model), and
``learned`` refuses a ``max_len`` past its table.
"""

import dataclasses
import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from fire import xla
from fire.encodings import LengthError, encoding_class, resolved_options
from fire.errors import UserError
from fire.model.config import IMPLEMENTATIONS, ModelConfig
from fire.model.transformer import Transformer


class GenerationError(UserError, ValueError):
    """A generation request the model cannot serve (sizes, sampling, attention path)."""


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How each new token is drawn from the logits.

    Attributes:
      temperature: 0 for greedy (the argmax), else a draw from ``softmax(logits / temperature)``.
      top_k: draw among the ``top_k`` most likely ids only (0: all).
      vocab_size: draw among ids below this only (0: all): a tokenizer's, where the model's
        vocabulary is padded past it.

    Raises:
      GenerationError: a negative temperature, top_k or vocab_size.
    """

    temperature: float = 0.0
    top_k: int = 0
    vocab_size: int = 0

    def __post_init__(self):
        bad = [f"{k}={v}" for k, v in dataclasses.asdict(self).items() if v < 0]
        if bad:
            raise GenerationError(f"sampling needs temperature, top_k and vocab_size >= 0, got {', '.join(bad)}.")


def sample(logits_BxV, rng, sampling: Sampling):
    """The next token of each row, ``B`` int32, from float32 ``logits_BxV``."""
    V = logits_BxV.shape[-1]
    if sampling.vocab_size and sampling.vocab_size < V:
        logits_BxV = jnp.where(jnp.arange(V) < sampling.vocab_size, logits_BxV, -jnp.inf)
    if sampling.temperature == 0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    logits_BxV = logits_BxV / sampling.temperature
    if sampling.top_k:
        kth_Bx1 = jax.lax.top_k(logits_BxV, min(sampling.top_k, V))[0][:, -1:]
        logits_BxV = jnp.where(logits_BxV >= kth_Bx1, logits_BxV, -jnp.inf)
    return jax.random.categorical(rng, logits_BxV).astype(jnp.int32)


def check_request(cfg: ModelConfig, prompt_len: int, max_new_tokens: int, impl: str) -> int:
    """The total length ``max_len = prompt_len + max_new_tokens``, checked before any compute.

    Raises:
      GenerationError: an empty prompt, no new tokens, or an unknown attention path.
      LengthError: ``max_len`` past what the encoding can model (``learned``'s table).
    """
    if prompt_len < 1:
        raise GenerationError("the prompt is empty: generation needs at least one token to start from.")
    if max_new_tokens < 1:
        raise GenerationError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
    if impl not in IMPLEMENTATIONS:
        raise GenerationError(f"unknown attention path {impl!r}; valid: {', '.join(IMPLEMENTATIONS)}.")
    max_len = prompt_len + max_new_tokens
    longest = encoding_class(cfg.pe).max_length(resolved_options(cfg.pe, cfg.pe_options), cfg.train_len)
    if longest is not None and max_len > longest:
        fix = f"ask for at most {longest - prompt_len} new tokens" if longest > prompt_len else "shorten the prompt"
        raise LengthError(
            f"pe={cfg.pe} models at most {longest} tokens, and a prompt of {prompt_len} plus {max_new_tokens} "
            f"new tokens is {max_len}: {fix}."
        )
    return max_len


@functools.lru_cache(maxsize=32)
def prefill_program(cfg: ModelConfig, max_len: int, impl: str) -> Callable:
    """``prefill(params, prompt_BxP) -> (logits_BxV, caches)``, jitted; cached, like
    :func:`decode_program`, so that generating again with the same shapes compiles nothing."""
    model = Transformer(cfg)

    def prefill(params, prompt_BxP):
        return model.apply({"params": params}, prompt_BxP, max_len, impl=impl, method=Transformer.prefill)

    return xla.jit(prefill)


@functools.lru_cache(maxsize=32)
def decode_program(cfg: ModelConfig, max_len: int, sampling: Sampling) -> Callable:
    """``decode(params, prompt_BxP, logits_BxV, caches, rng) -> tokens_BxS`` (S = max_len),
    jitted: the prompt, then a token sampled from the prefill's ``logits_BxV``, then one per
    step of the loop. The token at position ``t`` is drawn with ``fold_in(rng, t)``,
    whatever the batch."""
    model = Transformer(cfg)

    def decode(params, prompt_BxP, logits_BxV, caches, rng):
        B, P = prompt_BxP.shape
        tokens_BxS = jnp.zeros((B, max_len), jnp.int32).at[:, :P].set(prompt_BxP)
        tokens_BxS = tokens_BxS.at[:, P].set(sample(logits_BxV, jax.random.fold_in(rng, P), sampling))

        def step(t, carry):  # feeds the token at position t, samples the one at t + 1
            tokens_BxS, caches = carry
            token_Bx1 = jax.lax.dynamic_slice_in_dim(tokens_BxS, t, 1, axis=1)
            logits_BxV, caches = model.apply({"params": params}, token_Bx1, t, caches, method=Transformer.decode)
            next_B = sample(logits_BxV, jax.random.fold_in(rng, t + 1), sampling)
            return jax.lax.dynamic_update_slice_in_dim(tokens_BxS, next_B[:, None], t + 1, axis=1), caches

        # The last token is only sampled, never fed: max_len - 1 - P steps.
        return jax.lax.fori_loop(P, max_len - 1, step, (tokens_BxS, caches))[0]

    return xla.jit(decode)


def generate(
    model: Transformer,
    params,
    prompt_BxP,
    max_new_tokens: int,
    sampling: Sampling = Sampling(),
    rng: Optional[jax.Array] = None,
    impl: Optional[str] = None,
):
    """Continues each row of ``prompt_BxP`` (int token ids, positions ``0..P-1``) by
    ``max_new_tokens`` tokens.

    Args:
      sampling: greedy by default.
      rng: a ``jax.random.key`` (default ``key(0)``); the same key gives the same tokens.
      impl: the prefill's attention path, ``dense`` or ``blockwise`` (default the model's);
        decode steps attend densely over the cache either way.

    Returns:
      ``B x (P + max_new_tokens)`` int32: the prompt, then the new tokens.

    Raises:
      GenerationError: an empty prompt, no new tokens, an unknown path.
      LengthError: a total length past the encoding's reach (``learned``'s table).
    """
    prompt_BxP = jnp.asarray(prompt_BxP, jnp.int32)
    impl = impl or model.cfg.attention
    max_len = check_request(model.cfg, prompt_BxP.shape[1], max_new_tokens, impl)
    logits_BxV, caches = prefill_program(model.cfg, max_len, impl)(params, prompt_BxP)
    rng = jax.random.key(0) if rng is None else rng
    return decode_program(model.cfg, max_len, sampling)(params, prompt_BxP, logits_BxV, caches, rng)
