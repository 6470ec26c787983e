"""Text generation with a KV cache, for every encoding and past the training length.

    tokens_BxS, lengths_B = generate(model, params, prompt_BxP, 200, Sampling(temperature=0.8, top_p=0.9),
                                     jax.random.key(0), eos_id=258)

Two compiled programs, both carrying a :class:`DecodeState`:

* :func:`prefill_program`: the ordinary forward over the prompt on either attention path (``impl``),
  keeping each layer's keys (after rotation) and values in a cache of ``max_len = P + n``
  slots (:meth:`Transformer.prefill`), then the first new token sampled;
* :func:`decode_program`: one ``lax.while_loop`` over the new tokens. The token at position ``t``
  writes its keys and values at slot ``t`` and attends over slots ``0..t`` of the static-size
  cache, later slots masked (:meth:`Transformer.decode`), so the loop compiles once, not per
  token. Each row stops at its first ``eos_id`` (a traced scalar: one program serves any
  EOS); the loop ends when every row has, or at a position the caller names (``stop_at``,
  traced too: the host may decode in chunks with one program, as ``fire.evaluation.generation``
  does to look for stop strings between them).

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
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fire import xla
from fire.encodings import LengthError, encoding_class, resolved_options
from fire.errors import UserError
from fire.model.config import IMPLEMENTATIONS, ModelConfig
from fire.model.transformer import Transformer

# Temperatures below float32's smallest normal number, 2**-126 ~ 1.2e-38, are greedy. There
# softmax(logits / T) is one-hot to float32 precision: the runner-up's weight exp(-gap / T)
# is below float32's smallest subnormal, 2**-149, once gap > 149 ln 2 * T ~ 1.2e-36, a gap
# that any two distinct float32 logits exceed unless both lie within 2e-29 of zero (their
# spacing is at least 2**-24 of the larger). And such a T cannot be divided by: XLA flushes
# subnormal floats to zero on CPU and GPU. Above it, sampling divides logits shifted to a
# maximum of 0, which never overflows: a tiny T draws the argmax too, by arithmetic alone.
GREEDY_BELOW = float(np.finfo(np.float32).tiny)


class GenerationError(UserError, ValueError):
    """A generation request the model cannot serve (sizes, sampling, attention path)."""


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How each new token is drawn from the logits: temperature, then top-k, then top-p, in
    the order of Hugging Face's logits warpers.

    Attributes:
      temperature: 0 for greedy (the argmax), else a draw from ``softmax(logits / temperature)``;
        one below :data:`GREEDY_BELOW` (~1.2e-38) is stored as 0, greedy.
      top_k: draw among the ``top_k`` most likely ids only (0: all).
      top_p: nucleus sampling (Holtzman et al., 2020, "The Curious Case of Neural Text
        Degeneration"): draw among the most likely ids whose probabilities, after temperature
        and top-k, first sum to at least ``top_p`` (1: all).
      vocab_size: draw among ids below this only (0: all): a tokenizer's, where the model's
        vocabulary is padded past it.

    Raises:
      GenerationError: a temperature that is negative, NaN or infinite; a negative top_k or
        vocab_size; a top_p outside (0, 1] or NaN.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    vocab_size: int = 0

    def __post_init__(self):
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise GenerationError(f"temperature must be a finite number >= 0 (0: greedy), got {self.temperature}.")
        if not 0 < self.top_p <= 1:  # NaN fails every comparison
            raise GenerationError(f"top_p must be in (0, 1] (1: off), got {self.top_p}.")
        bad = [f"{k}={getattr(self, k)}" for k in ("top_k", "vocab_size") if getattr(self, k) < 0]
        if bad:
            raise GenerationError(f"sampling needs top_k and vocab_size >= 0, got {', '.join(bad)}.")
        if self.temperature < GREEDY_BELOW:  # one greedy program for all of them
            object.__setattr__(self, "temperature", 0.0)


def sample(logits_BxV, rng, sampling: Sampling):
    """The next token of each row, ``B`` int32, from float32 ``logits_BxV``: ids past
    ``vocab_size`` masked, then the argmax (greedy), or a draw after temperature, top-k and
    top-p, in that order (Hugging Face's ``TemperatureLogitsWarper``, ``TopKLogitsWarper``,
    ``TopPLogitsWarper``). Top-k keeps the ids tied with the k-th; top-p every id whose logit
    is at least that of the last id the nucleus needs, so neither depends on how a sort
    orders ties."""
    V = logits_BxV.shape[-1]
    if sampling.vocab_size and sampling.vocab_size < V:
        logits_BxV = jnp.where(jnp.arange(V) < sampling.vocab_size, logits_BxV, -jnp.inf)
    if sampling.temperature == 0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    # Shifted to a maximum of 0 first: a small temperature then sends the others towards -inf
    # and never overflows to +inf.
    logits_BxV = (logits_BxV - jnp.max(logits_BxV, axis=-1, keepdims=True)) / sampling.temperature
    if sampling.top_k and sampling.top_k < V:
        kth_Bx1 = jax.lax.top_k(logits_BxV, sampling.top_k)[0][:, -1:]
        logits_BxV = jnp.where(logits_BxV >= kth_Bx1, logits_BxV, -jnp.inf)
    if sampling.top_p < 1:
        sorted_BxV = jnp.sort(logits_BxV, axis=-1)[:, ::-1]  # most likely first
        mass_BxV = jnp.cumsum(jax.nn.softmax(sorted_BxV, axis=-1), axis=-1)
        before_BxV = jnp.pad(mass_BxV[:, :-1], ((0, 0), (1, 0)))  # of the ids strictly more likely
        last_Bx1 = jnp.min(jnp.where(before_BxV < sampling.top_p, sorted_BxV, jnp.inf), axis=-1, keepdims=True)
        logits_BxV = jnp.where(logits_BxV >= last_Bx1, logits_BxV, -jnp.inf)
    return jax.random.categorical(rng, logits_BxV).astype(jnp.int32)


class DecodeState(NamedTuple):
    """Generation so far, carried by the compiled programs (a pytree)."""

    tokens_BxS: jax.Array  # int32, S = max_len: the prompt, the new tokens, then eos_id (or 0)
    caches: tuple  # one KVCache per layer, slots 0..index-1 filled
    index: jax.Array  # int32 scalar: the position of the last token sampled
    lengths_B: jax.Array  # int32: each row's tokens through its end (its EOS included)
    done_B: jax.Array  # bool: the row has ended (it sampled eos_id)
    eos_id: jax.Array  # int32 scalar: the id that ends a row; -1: none (a traced value, not compiled in)


NO_EOS = -1  # the eos_id of a decode that runs every row to its budget


class Generation(NamedTuple):
    """What :func:`generate` returns."""

    tokens_BxS: jax.Array  # int32: the prompt, the new tokens, then eos_id past each row's end
    lengths_B: jax.Array  # int32: each row's prompt and new tokens, its EOS included


def _advance(state: DecodeState, logits_BxV, rng, sampling: Sampling) -> DecodeState:
    """Samples the token at ``state.index + 1`` of each row that has not ended."""
    t = state.index + 1
    next_B = sample(logits_BxV, jax.random.fold_in(rng, t), sampling)
    next_B = jnp.where(state.done_B, jnp.maximum(state.eos_id, 0), next_B)
    return state._replace(
        tokens_BxS=jax.lax.dynamic_update_slice_in_dim(state.tokens_BxS, next_B[:, None], t, axis=1),
        index=t,
        lengths_B=jnp.where(state.done_B, state.lengths_B, t + 1),
        done_B=state.done_B | (next_B == state.eos_id),
    )


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
def prefill_program(cfg: ModelConfig, max_len: int, impl: str, sampling: Sampling) -> Callable:
    """``prefill(params, prompt_BxP, rng, eos_id) -> DecodeState``, jitted: the prompt's forward,
    then the token at position ``P`` sampled from its last logits (``eos_id``: an int32 scalar,
    -1 for none). Cached, like :func:`decode_program`, so that generating again with the same
    shapes compiles nothing."""
    model = Transformer(cfg)

    def prefill(params, prompt_BxP, rng, eos_id):
        B, P = prompt_BxP.shape
        logits_BxV, caches = model.apply({"params": params}, prompt_BxP, max_len, impl=impl, method=Transformer.prefill)
        eos_id = jnp.asarray(eos_id, jnp.int32)
        tokens_BxS = jnp.full((B, max_len), jnp.maximum(eos_id, 0), jnp.int32).at[:, :P].set(prompt_BxP)
        lengths_B, done_B = jnp.full((B,), P, jnp.int32), jnp.zeros(B, bool)
        start = DecodeState(tokens_BxS, caches, jnp.int32(P - 1), lengths_B, done_B, eos_id)
        return _advance(start, logits_BxV, rng, sampling)

    return xla.jit(prefill)


@functools.lru_cache(maxsize=32)
def decode_program(cfg: ModelConfig, max_len: int, sampling: Sampling) -> Callable:
    """``decode(params, state, stop_at, rng) -> DecodeState``, jitted: one step per token, each
    feeding the token at ``index`` and sampling the one at ``index + 1``, until ``index`` reaches
    ``stop_at`` (clipped to ``max_len - 1``) or every row is done. The token at position ``t``
    is drawn with ``fold_in(rng, t)``, whatever the batch and however the decode is chunked."""
    model = Transformer(cfg)

    def decode(params, state: DecodeState, stop_at, rng):
        stop_at = jnp.minimum(stop_at, max_len - 1)

        def step(state):
            token_Bx1 = jax.lax.dynamic_slice_in_dim(state.tokens_BxS, state.index, 1, axis=1)
            logits_BxV, caches = model.apply(
                {"params": params}, token_Bx1, state.index, state.caches, method=Transformer.decode
            )
            return _advance(state._replace(caches=caches), logits_BxV, rng, sampling)

        going = lambda state: (state.index < stop_at) & ~jnp.all(state.done_B)
        return jax.lax.while_loop(going, step, state)

    return xla.jit(decode)


def generate(
    model: Transformer,
    params,
    prompt_BxP,
    max_new_tokens: int,
    sampling: Sampling = Sampling(),
    rng: Optional[jax.Array] = None,
    impl: Optional[str] = None,
    eos_id: Optional[int] = None,
) -> Generation:
    """Continues each row of ``prompt_BxP`` (int token ids, positions ``0..P-1``) by at most
    ``max_new_tokens`` tokens.

    Args:
      sampling: greedy by default.
      rng: a ``jax.random.key`` (default ``key(0)``); the same key gives the same tokens.
      impl: the prefill's attention path, ``dense`` or ``blockwise`` (default the model's);
        decode steps attend densely over the cache either way.
      eos_id: each row ends at its first new ``eos_id`` (kept), and the decode ends once
        every row has; None: every row runs to ``max_new_tokens``.

    Returns:
      ``Generation(tokens_BxS, lengths_B)``, ``S = P + max_new_tokens``: each row's prompt,
      its new tokens through its end, then ``eos_id`` to the end; ``lengths_B`` its tokens
      through its end.

    Raises:
      GenerationError: an empty prompt, no new tokens, an unknown path, an eos_id outside
        the vocabulary.
      LengthError: a total length past the encoding's reach (``learned``'s table).
    """
    prompt_BxP = jnp.asarray(prompt_BxP, jnp.int32)
    impl = impl or model.cfg.attention
    max_len = check_request(model.cfg, prompt_BxP.shape[1], max_new_tokens, impl)
    if eos_id is not None and not 0 <= eos_id < model.cfg.vocab_size:
        raise GenerationError(
            f"eos_id must be an id of the vocabulary (0 ... {model.cfg.vocab_size - 1}), got {eos_id}."
        )
    eos_id = NO_EOS if eos_id is None else int(eos_id)
    rng = jax.random.key(0) if rng is None else rng
    state = prefill_program(model.cfg, max_len, impl, sampling)(params, prompt_BxP, rng, eos_id)
    state = decode_program(model.cfg, max_len, sampling)(params, state, max_len - 1, rng)
    return Generation(state.tokens_BxS, state.lengths_B)
