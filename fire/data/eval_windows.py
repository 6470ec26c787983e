"""Evaluation windows of one length L under a named protocol.

The validation documents, each preceded by EOS (the separator the model saw before
every document in training), form the stream EOS doc_0 EOS doc_1 EOS ...
  stream   non-overlapping windows of L cut from the stream; every token scored once.
  docs     non-overlapping windows inside single documents of at least L tokens, each
           document starting with its EOS: no window mixes documents.
  sliding  windows of L every S tokens; a window scores only its last S targets (the
           first window scores all L), so each token is scored once, with >= L - S of
           context.
Each length scores the first ~token_budget tokens (at least the budget, whole windows,
capped by the split), so every length is scored on the same start of the text.
"""

import dataclasses
import math

import numpy as np

from fire.data.errors import DataError
from fire.data.tokenizers import special_ids

PROTOCOLS = ("stream", "docs", "sliding")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How a split is cut into scored windows, whatever the length: everything that changes
    which tokens are scored with what context. It is also the key under which the length
    sweep reuses rows, so a field added here can never be silently ignored by the reuse.

    Attributes:
      name: one of ``PROTOCOLS``.
      eval_tokens: tokens scored per length (whole windows, capped by the split).
      stride: sliding only: tokens between window starts (0: half the length).

    Raises:
      DataError: an unknown name, a budget below 1, a negative stride, or a stride for a
        protocol other than ``sliding``.
    """

    name: str = "stream"
    eval_tokens: int = 65536
    stride: int = 0

    def __post_init__(self):
        if self.name not in PROTOCOLS:
            raise DataError(f"unknown eval protocol {self.name!r}; expected one of {', '.join(PROTOCOLS)}.")
        if self.eval_tokens < 1 or self.stride < 0:
            raise DataError(f"eval_tokens ({self.eval_tokens}) must be positive and stride ({self.stride}) >= 0.")
        if self.stride and self.name != "sliding":
            raise DataError(f"stride {self.stride} applies to the sliding protocol only, not {self.name!r}.")

    def key(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class EvalWindows:
    inputs: np.ndarray  # int32 [N, L]
    targets: np.ndarray  # int32 [N, L]: inputs shifted by one
    weights: np.ndarray  # float32 [N, L]: 1.0 where the loss counts
    n_tokens: int  # scored tokens, weights.sum()
    n_bytes: int  # UTF-8 bytes of the scored text targets (special tokens stand for none), for bits per byte
    protocol: str
    length: int
    stride: int  # tokens between window starts (L for stream and docs)


def make_eval_windows(
    split_tokens, tokenizer, length: int, protocol: str, token_budget: int, stride: int = 0
) -> EvalWindows:
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown eval protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}.")
    L = int(length)
    if L < 1 or token_budget < 1:
        raise DataError(f"eval length ({L}) and token budget ({token_budget}) must be positive.")
    tokens, offsets = split_tokens.tokens, split_tokens.offsets
    if protocol == "docs":
        starts, stride = _doc_window_starts(split_tokens.doc_lengths, offsets, L, token_budget), L
        first_scored = 0
    else:
        stride = L if protocol == "stream" else (int(stride) or L // 2)
        if not 1 <= stride <= L:
            raise DataError(f"sliding stride {stride} must be in [1, {L}].")
        n_stream = len(tokens) + 1  # with the leading EOS
        if n_stream < L + 1:
            raise DataError(
                f"eval length {L} needs {L + 1} tokens; the {split_tokens.meta['split']} "
                f"split has {n_stream} (EOS separators included)."
            )
        max_windows = 1 + (n_stream - L - 1) // stride
        wanted = 1 + math.ceil(max(0, token_budget - L) / stride)
        starts = stride * np.arange(min(wanted, max_windows), dtype=np.int64)
        first_scored = L - stride  # later windows score their last `stride` targets
    # Stream position p is tokens[p - 1] (position 0 is the leading EOS).
    pos_NxT = starts[:, None] + np.arange(L + 1)
    eos = tokenizer.eos_id
    seq_NxT = np.where(pos_NxT == 0, eos, tokens[np.maximum(pos_NxT - 1, 0)]).astype(np.int32)
    weights_NxL = np.ones((len(starts), L), np.float32)
    weights_NxL[1:, :first_scored] = 0.0
    targets_NxL = seq_NxT[:, 1:]
    return EvalWindows(
        inputs=np.ascontiguousarray(seq_NxT[:, :-1]),
        targets=np.ascontiguousarray(targets_NxL),
        weights=weights_NxL,
        n_tokens=int(np.count_nonzero(weights_NxL)),
        n_bytes=tokenizer.n_bytes(_text(targets_NxL[weights_NxL > 0], tokenizer)),
        protocol=protocol,
        length=L,
        stride=stride,
    )


def _text(ids, tokenizer) -> np.ndarray:
    """The ids that are text: special tokens (EOS, BOS, PAD) left out of bits per byte."""
    return ids[~np.isin(ids, special_ids(tokenizer))]


def _doc_window_starts(doc_lengths, offsets, L, token_budget) -> np.ndarray:
    """Stream positions of docs-protocol windows, documents in order, until the budget."""
    long_docs = np.flatnonzero(doc_lengths >= L)
    if not len(long_docs):
        raise DataError(
            f"eval length {L} is longer than every document under the docs "
            f"protocol: the longest of {len(doc_lengths)} has {int(doc_lengths.max())} "
            f"tokens."
        )
    wanted, starts = math.ceil(token_budget / L), []
    for d in long_docs:
        # Document d's EOS sits at stream position offsets[d]; windows need L + 1 tokens.
        n = min(int(doc_lengths[d]) // L, wanted - len(starts))
        starts.extend(int(offsets[d]) + L * np.arange(n))
        if len(starts) == wanted:
            break
    return np.asarray(starts, np.int64)
