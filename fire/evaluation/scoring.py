"""The scorer: the weighted negative log-likelihood of a model on evaluation windows.

One scoring function serves the length sweep and the validation inside training
(:func:`make_score_fn`). It returns the loss summed over the batch *per position*, so the
sweep can also report the loss by position in the window. The logits come from the hidden
states in chunks of tokens inside ``lax.map``, so the ``[tokens, vocab]`` logits never exist
at once, whatever the vocabulary.

For one length of one run (:func:`score_length`), windows are batched to about
``batch_tokens`` tokens, so long windows go one at a time, and the attention path is chosen
per length (:func:`compile_scorer`).
"""

import dataclasses
import math
import os
import time
from typing import Callable, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fire import data as fire_data
from fire import xla
from fire.config import max_position as run_max_position
from fire.data import Protocol
from fire.encodings import LengthError
from fire.evaluation.runs import EvalError, TrainedRun
from fire.model import Transformer, token_nll
from fire.utils import ceil_div, peak_rss_bytes, reset_peak_rss, round_up, to_mib

ATTENTION = ("auto", "dense", "blockwise")  # auto: dense for one-tile windows that fit, else blockwise
POSITIONS = ("ordinary", "randomized")  # 0..T-1, or a seeded sorted sample of [0, max_position)
EVAL_POSITIONS = 0x65766170  # the first word of the evaluation positions' seed sequences
LOGITS_CHUNK_BYTES = 256 << 20  # f32 logits of one loss chunk: bounds memory for any vocab
# What a row's numbers mean; rows of another version are recomputed, not reused. 2: bits per
# byte leaves special tokens out of the loss as well as the bytes.
SCORER_VERSION = 2


@dataclasses.dataclass(frozen=True)
class Settings:
    """How every length is scored: the protocol (which tokens, with what context; the key of
    the sweep's reuse) and how the work is done (which does not change the numbers beyond
    float32 tolerance)."""

    protocol: Protocol = Protocol()
    batch_tokens: int = 32768  # tokens per batch: batch size max(1, batch_tokens // length)
    attention: str = "auto"  # auto: dense for one-tile windows that fit, else blockwise
    block_size: int = 0  # blockwise attention tile (0: the run's)
    memory_limit: int = 0  # bytes the eval step may plan (0: from the device)
    positions: str = "ordinary"  # POSITIONS: part of the reuse key when randomized
    position_seed: int = 0  # the seed of randomized positions

    def key(self) -> dict:
        """What the numbers depend on: the protocol, and randomized positions with their
        seed (ordinary positions add nothing, so earlier rows keep their keys)."""
        key = self.protocol.key()
        if self.positions == "randomized":
            key.update(positions="randomized", position_seed=self.position_seed)
        return key

    def __post_init__(self):
        """Raises EvalError for settings that cannot score: a batch budget below one token, an
        unknown attention path, a negative tile or memory limit."""
        if self.batch_tokens < 1:
            raise EvalError(f"batch_tokens must be at least 1, got {self.batch_tokens}.")
        if self.attention not in ATTENTION:
            raise EvalError(f"attention must be one of {', '.join(ATTENTION)}, got {self.attention!r}.")
        if self.block_size < 0:
            raise EvalError(f"block_size must be >= 0 (0: the run's), got {self.block_size}.")
        if self.memory_limit < 0:
            raise EvalError(f"memory_limit must be >= 0 bytes (0: from the device), got {self.memory_limit}.")
        check_positions(self.positions, self.position_seed)


def check_positions(positions: str, seed: int) -> None:
    """Raises EvalError for an unknown positions mode or a negative seed."""
    if positions not in POSITIONS:
        raise EvalError(f"positions must be one of {', '.join(POSITIONS)}, got {positions!r}.")
    if seed < 0:
        raise EvalError(f"position_seed must be >= 0, got {seed}.")


def check_randomized_length(run: TrainedRun, length: int) -> None:
    """Raises EvalError when ``length`` distinct position ids cannot come from the run's
    ``[0, max_position)``."""
    bound = run_max_position(run.config)
    if length > bound:
        how = ("its train_positions.max_position" if run.config.train_positions.randomize
               else "its train_len: it was trained without randomized positions")  # fmt: skip
        raise EvalError(
            f"{run.label or run.workdir}: randomized positions draw {length} distinct ids from [0, {bound}) ({how}), "
            f"and {length} > {bound}: test at lengths up to {bound}, or with --positions=ordinary."
        )


def randomized_positions(seed: int, length: int, rows, max_position: int) -> np.ndarray:
    """int32 ``[len(rows), length]``: for each row index ``r``, a sorted sample without
    replacement of ``length`` ids from ``[0, max_position)``, drawn from the seed sequence
    ``(seed, length, r)`` alone (Ruoss et al. 2023 randomize at test time as in training;
    google-deepmind/randomized_positional_encodings issue 1): every run and every batch size
    meets the same ids."""
    draw = lambda r: np.sort(np.random.default_rng([EVAL_POSITIONS, seed, length, r]).choice(
        max_position, length, replace=False))  # fmt: skip
    return np.stack([draw(int(r)) for r in rows]).astype(np.int32)


def positions_label(positions: str, seed: int, max_position: int) -> str:
    """How a row's position ids were chosen, in words."""
    if positions == "ordinary":
        return "0..T-1"
    return f"randomized (sorted sample of [0, {max_position}), seed {seed})"


def logits_chunk_tokens(vocab_size: int) -> int:
    """Tokens per loss chunk, so that one chunk's float32 logits take ``LOGITS_CHUNK_BYTES``."""
    return max(1, LOGITS_CHUNK_BYTES // (4 * vocab_size))


def make_score_fn(
    model: Transformer, impl: str, chunk_tokens: int, special_ids=None, per_row: bool = False
) -> Callable:
    """``(params, inputs_BxT, targets_BxT, weights_BxT[, positions_BxT]) -> (nll_T,
    weight_T)``: the weighted loss in nats and the weights, each summed over the batch, per
    position (float32). ``positions_BxT``: the inputs' position ids (default ``0..T-1``).

    With ``special_ids`` (the ids that stand for no text: EOS, BOS, PAD) a third output,
    ``text_nll``: the weighted loss summed over the targets that are text, the numerator of
    bits per byte (log-perplexity per token counts every scored target, EOS included).

    With ``per_row``, two more outputs summed per row instead: ``correct_B``, the weighted
    targets that are the model's most likely token, and ``weight_B``. A row whose
    ``correct_B`` equals its ``weight_B`` is one whose greedy decoding yields its targets
    (teacher forcing and greedy decoding agree while every prediction is right), so this is
    the exact match of a task's answer in one forward pass."""

    def score(params, inputs_BxT, targets_BxT, weights_BxT, positions_BxT=None):
        hidden_BxTxD = model.apply({"params": params}, inputs_BxT, positions_BxT, impl=impl, return_hidden=True)
        B, T, D = hidden_BxTxD.shape
        chunk = min(chunk_tokens, B * T)
        n = ceil_div(B * T, chunk)
        pad = n * chunk - B * T
        hidden_NxCxD = jnp.pad(hidden_BxTxD.reshape(B * T, D), ((0, pad), (0, 0))).reshape(n, chunk, D)
        targets_NxC = jnp.pad(targets_BxT.reshape(B * T), (0, pad)).reshape(n, chunk)

        def chunk_nll(xs):
            h_CxD, t_C = xs
            logits_CxV = model.apply({"params": params}, h_CxD, method=Transformer.logits)
            if not per_row:
                return token_nll(logits_CxV, t_C)
            return token_nll(logits_CxV, t_C), jnp.argmax(logits_CxV, -1) == t_C

        mapped = jax.lax.map(chunk_nll, (hidden_NxCxD, targets_NxC))
        nll_NxC, hit_NxC = mapped if per_row else (mapped, None)
        nll_BxT = nll_NxC.reshape(-1)[: B * T].reshape(B, T)
        sums = ((nll_BxT * weights_BxT).sum(0), weights_BxT.sum(0))
        if special_ids is not None:
            text_BxT = ~jnp.isin(targets_BxT, jnp.asarray(special_ids, targets_BxT.dtype))
            sums += ((nll_BxT * weights_BxT * text_BxT).sum(),)
        if per_row:
            hit_BxT = hit_NxC.reshape(-1)[: B * T].reshape(B, T)
            sums += ((hit_BxT * weights_BxT).sum(1), weights_BxT.sum(1))
        return sums

    return score


def padded_batches(windows, batch: int) -> Iterator[tuple]:
    """``(inputs, targets, weights)`` numpy batches of ``batch`` windows; the last is padded
    with rows of weight 0, which are not scored."""
    n = round_up(len(windows.inputs), batch)
    pad = lambda x: np.concatenate([x, np.zeros((n - len(x), *x.shape[1:]), x.dtype)])
    inputs, targets, weights = pad(windows.inputs), pad(windows.targets), pad(windows.weights)
    for i in range(0, n, batch):
        yield inputs[i : i + batch], targets[i : i + batch], weights[i : i + batch]


def default_memory_limit() -> int:
    """What one eval step may plan: 90% of an accelerator's memory, half the host's RAM."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(0.9 * stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def planned_bytes(compiled) -> Optional[int]:
    """XLA's buffer plan for the step: arguments + outputs + temporaries."""
    m = compiled.memory_analysis()
    if m is None:
        return None
    return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes


@dataclasses.dataclass
class CompiledScorer:
    """The score function compiled for one length: its path, batch size and memory plan."""

    compiled: object
    impl: str
    batch: int
    planned: Optional[int]
    compile_s: float


def compile_scorer(run: TrainedRun, length: int, n_windows: int, settings: Settings) -> CompiledScorer:
    """Compiles the score function for one length. ``auto`` takes the dense path only for
    windows of one tile whose plan fits: past a tile the blockwise path holds O(T) memory
    rather than O(T^2), and skips the masked tiles."""
    batch = min(n_windows, max(1, settings.batch_tokens // length))
    tokens = jax.ShapeDtypeStruct((batch, length), jnp.int32)
    args = (run.abstract_params, tokens, tokens, jax.ShapeDtypeStruct((batch, length), jnp.float32))
    if settings.positions == "randomized":
        args += (tokens,)
    limit = settings.memory_limit or default_memory_limit()
    chunk = logits_chunk_tokens(run.model_cfg.vocab_size)

    def compile_(impl):
        t0 = time.perf_counter()
        score = make_score_fn(run.model, impl, chunk, fire_data.special_ids(run.tokenizer))
        compiled = xla.jit(score).lower(*args).compile()
        return CompiledScorer(compiled, impl, batch, planned_bytes(compiled), time.perf_counter() - t0)

    if settings.attention != "auto":
        return compile_(settings.attention)
    if length <= run.model_cfg.block_size:
        scorer = compile_("dense")
        if scorer.planned is None or scorer.planned <= limit:
            return scorer
    return compile_("blockwise")


def position_bins(length: int, per_octave: int = 4) -> np.ndarray:
    """Bin edges ``0, 1, 2, 3, 4, 5, 6, 7, 8, 10, ..., length``: log-spaced, as the curve is
    read on a log axis."""
    powers = np.round(2.0 ** (np.arange(per_octave * math.log2(length) + 1) / per_octave)).astype(int)
    return np.unique(np.concatenate([[0], powers[powers < length], [length]]))


def score_length(run: TrainedRun, windows, settings: Settings) -> dict:
    """Scores ``windows`` (one length) with ``run``: one results row (``fire.evaluation.report``
    lists its fields), with the loss by position in the window."""
    L = windows.length
    reset_peak_rss()
    randomized = settings.positions == "randomized"
    max_position = run_max_position(run.config)
    row = {
        **run.info(), "eval_len": L, "protocol": windows.protocol + (", randomized positions" if randomized else ""),
        "stride": windows.stride, "eval_tokens": settings.protocol.eval_tokens, "n_tokens": windows.n_tokens,
        "positions": positions_label(settings.positions, settings.position_seed, max_position),
    }  # fmt: skip
    try:
        run.model_cfg.check_length(L)
    except LengthError as e:  # e.g. pe=learned past its table: this cell does not exist
        return {**row, "loss": None, "ppl": None, "bits_per_byte": None, "note": f"n/a: {e}"}
    if randomized:
        check_randomized_length(run, L)
    scorer = compile_scorer(run, L, len(windows.inputs), settings)
    params = run.params()
    t0 = time.perf_counter()
    batches = list(padded_batches(windows, scorer.batch))
    if randomized:
        batches = [(*b, randomized_positions(settings.position_seed, L, range(i * scorer.batch, (i + 1) * scorer.batch),
                                             max_position)) for i, b in enumerate(batches)]  # fmt: skip
    outputs = [scorer.compiled(params, *batch) for batch in batches]
    outputs = jax.device_get(outputs)
    time_s = time.perf_counter() - t0
    nll_T = np.sum([o[0] for o in outputs], axis=0, dtype=np.float64)
    weight_T = np.sum([o[1] for o in outputs], axis=0, dtype=np.float64)
    text_nll = float(np.sum([o[2] for o in outputs], dtype=np.float64))  # EOS/BOS/PAD targets left out
    total = float(nll_T.sum())
    loss = total / windows.n_tokens
    edges = position_bins(L)
    bin_nll, bin_weight = np.add.reduceat(nll_T, edges[:-1]), np.add.reduceat(weight_T, edges[:-1])
    device_stats = jax.devices()[0].memory_stats() or {}
    return {
        **row,
        "loss": loss,
        "ppl": math.exp(loss) if loss < 700 else math.inf,
        "bits_per_byte": fire_data.bits_per_byte(text_nll, windows.n_bytes) if windows.n_bytes else None,
        "scorer": SCORER_VERSION,
        "time_s": round(time_s, 3),
        "compile_s": round(scorer.compile_s, 3),
        "impl": scorer.impl,
        "batch_size": scorer.batch,
        "n_windows": len(windows.inputs),
        "xla_mib": to_mib(scorer.planned),
        "peak_rss_mib": to_mib(peak_rss_bytes()),
        "device_peak_mib": to_mib(device_stats.get("peak_bytes_in_use")),
        "note": "",
        "position_loss": {
            "edges": edges.tolist(),
            "tokens": bin_weight.astype(int).tolist(),
            "loss": [float(s / w) if w else None for s, w in zip(bin_nll, bin_weight)],
        },
    }
