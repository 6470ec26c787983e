"""Length sweep: score trained runs on evaluation windows of many lengths.

One length of one run (:func:`score_length`): the eval split is cut into windows under a
named protocol (``fire.data.eval_windows``) and batched to about ``batch_tokens`` tokens, so
long windows go one at a time. The attention path is chosen per length (:func:`plan_step`).
The loss comes from the hidden states in chunks of tokens, so the ``[tokens, vocab]`` logits
never exist at once, whatever the vocabulary. The result is one row of the length-sweep
contract (DESIGN.md) plus the loss by position in the window.

The sweep (:func:`sweep`) checks every input before any compute, reuses rows that earlier
sweeps into the same folder computed (``cache.jsonl``, keyed by :func:`row_key`) and rewrites
the results after every length, so an interrupted sweep loses at most the length in flight.
"""

import dataclasses
import functools
import glob
import json
import math
import os
import resource
import sys
import time
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fire import data as fire_data
from fire import report, xla
from fire.checkpoint import abstract_like, latest_step, restore_params
from fire.encodings import LengthError
from fire.losses import token_nll
from fire.model import ModelConfig, Transformer, count_params, encoding_scopes
from fire.trainer import model_config

DEFAULT_FACTORS = (1, 2, 4, 8, 16)  # default eval lengths: the training length times these
LOGITS_CHUNK_BYTES = 256 << 20  # f32 logits of one loss chunk: bounds memory for any vocab
MiB = 1 << 20


class EvalError(ValueError):
    """Bad sweep input (a workdir, a length, the output folder): reported as one line."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """How every length is scored; the fields in :func:`row_key` change the numbers."""

    protocol: str = "stream"
    eval_tokens: int = 65536  # tokens scored per length (whole windows, capped by the split)
    stride: int = 0  # sliding protocol: tokens between window starts (0: length // 2)
    batch_tokens: int = 32768  # tokens per batch: batch size max(1, batch_tokens // length)
    attention: str = "auto"  # auto: dense for one-tile windows that fit, else blockwise
    block_size: int = 0  # blockwise attention tile (0: the run's)
    memory_limit: int = 0  # bytes the eval step may plan (0: from the device)


# ----------------------------------------------------------------------------- runs


@dataclasses.dataclass
class Run:
    """A trained workdir, loaded lazily: the parameters only when a length is scored."""

    workdir: str  # as given
    path: str  # absolute: part of the cache key
    config: ml_collections.ConfigDict
    tokenizer: object
    model_cfg: ModelConfig
    step: Optional[int]  # latest checkpoint; None if it has none
    label: str = ""
    _params: Optional[dict] = None

    @property
    def model(self) -> Transformer:
        return Transformer(self.model_cfg)

    @functools.cached_property
    def abstract_params(self):
        tokens = jnp.zeros((1, self.config.train_len), jnp.int32)
        boxed = jax.eval_shape(lambda: self.model.init(jax.random.key(0), tokens)["params"])
        params = nn.meta.unbox(boxed)
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        return abstract_like(params, jax.tree_util.tree_map(lambda _: device, params))

    def params(self):
        if self._params is None:
            self._params, _ = restore_params(self.path, self.abstract_params, step=self.step)
        return self._params

    def release(self):
        self._params = None

    def info(self) -> dict:
        """The fields every row of this run carries (what the report's header needs)."""
        c, m = self.config, self.model_cfg
        model = f"{c.size}: {m.num_layers} layers, d_model {m.d_model}, {m.num_heads} heads"
        return dict(
            run=self.workdir,
            label=self.label,
            pe=c.pe,
            train_len=c.train_len,
            model=model,
            n_params=count_params(self.abstract_params),
            step=self.step,
            train_tokens=(self.step or 0) * c.batch_size * c.train_len,
            data=c.data.name,
            tokenizer=self.tokenizer.fingerprint,
            run_path=self.path,
        )


def load_run(workdir: str, block_size: int = 0) -> Run:
    path = os.path.abspath(workdir)
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise EvalError(f"{workdir} is not a training run: it has no config.json.")
    with open(config_path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    tokenizer = fire_data.get_tokenizer(config.data)
    model_cfg = model_config(config, tokenizer.vocab_size)
    if block_size:
        model_cfg = dataclasses.replace(model_cfg, block_size=block_size)
    return Run(
        workdir=os.path.normpath(workdir),
        path=path,
        config=config,
        tokenizer=tokenizer,
        model_cfg=model_cfg,
        step=latest_step(path),
    )


def expand_workdirs(patterns) -> list:
    """Workdirs and globs of them (a glob keeps only folders holding a config.json)."""
    workdirs = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            found = sorted(p for p in glob.glob(pattern) if os.path.isfile(os.path.join(p, "config.json")))
            if not found:
                raise EvalError(f"--workdir={pattern} matches no training run (a folder holding config.json).")
            workdirs += found
        else:
            workdirs.append(pattern)
    unique = {os.path.abspath(w): w for w in reversed(workdirs)}  # first spelling wins
    return [w for w in workdirs if unique.get(os.path.abspath(w)) is w]


def load_runs(patterns, block_size: int = 0, need_checkpoints: bool = True) -> list:
    """Every run, checked before any compute: a checkpoint each, one tokenizer for all."""
    runs = [load_run(w, block_size) for w in expand_workdirs(patterns)]
    if not runs:
        raise EvalError("no --workdir given.")
    missing = [r.workdir for r in runs if r.step is None]
    if need_checkpoints and missing:
        raise EvalError(
            f"no checkpoint in {', '.join(missing)}: train first (python train.py "
            f"--config=... --workdir={missing[0]}), or leave it out of the sweep."
        )
    fingerprints = {r.tokenizer.fingerprint for r in runs}
    if len(fingerprints) > 1:
        which = ", ".join(f"{r.workdir}: {r.tokenizer.fingerprint}" for r in runs)
        raise EvalError(
            f"the runs use different tokenizers ({which}); losses per token are not comparable "
            f"in one table. Sweep them into separate --output_dir folders."
        )
    labels = [f"{r.config.pe}@{r.config.train_len}" for r in runs]
    for run, label in zip(runs, labels):
        # Runs that share encoding and length (seeds, ablations) are told apart by folder.
        run.label = label if labels.count(label) == 1 else f"{label} ({os.path.basename(run.path)})"
    return runs


def parse_lengths(values) -> list:
    try:
        lengths = [int(v) for v in values]
    except ValueError:
        raise EvalError(f"--lengths must be integers, got {','.join(map(str, values))}.") from None
    if any(L < 1 for L in lengths):
        raise EvalError(f"--lengths must be positive, got {','.join(map(str, lengths))}.")
    return sorted(set(lengths))


def default_lengths(run: Run) -> list:
    return [run.config.train_len * k for k in DEFAULT_FACTORS]


# ----------------------------------------------------------------------------- one length


def make_score_fn(model: Transformer, impl: str, chunk_tokens: int) -> Callable:
    """``(params, inputs_BxT, targets_BxT, weights_BxT) -> (nll_T, weight_T)``: the weighted
    loss summed over the batch, per position. The logits are made ``chunk_tokens`` tokens at
    a time from the hidden states, inside ``lax.map``."""

    def score(params, inputs_BxT, targets_BxT, weights_BxT):
        hidden_BxTxD = model.apply({"params": params}, inputs_BxT, impl=impl, return_hidden=True)
        B, T, D = hidden_BxTxD.shape
        chunk = min(chunk_tokens, B * T)
        n = -(-B * T // chunk)
        pad = n * chunk - B * T
        hidden_NxCxD = jnp.pad(hidden_BxTxD.reshape(B * T, D), ((0, pad), (0, 0))).reshape(n, chunk, D)
        targets_NxC = jnp.pad(targets_BxT.reshape(B * T), (0, pad)).reshape(n, chunk)

        def chunk_nll(xs):
            h_CxD, t_C = xs
            return token_nll(model.apply({"params": params}, h_CxD, method=Transformer.logits), t_C)

        nll_BxT = jax.lax.map(chunk_nll, (hidden_NxCxD, targets_NxC)).reshape(-1)[: B * T].reshape(B, T)
        return (nll_BxT * weights_BxT).sum(0), weights_BxT.sum(0)

    return score


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
class Step:
    compiled: object
    impl: str
    batch: int
    planned: Optional[int]
    compile_s: float


def plan_step(run: Run, length: int, n_windows: int, settings: Settings) -> Step:
    """Compiles the eval step for one length. ``auto`` takes the dense path only for windows
    of one tile whose plan fits: past a tile the blockwise path holds O(T) memory rather than
    O(T^2), and skips the masked tiles (on 2 CPU cores it measured 3-5x faster from 2048)."""
    batch = min(n_windows, max(1, settings.batch_tokens // length))
    V = run.model_cfg.vocab_size
    chunk = max(1, LOGITS_CHUNK_BYTES // (4 * V))
    tokens = jax.ShapeDtypeStruct((batch, length), jnp.int32)
    args = (run.abstract_params, tokens, tokens, jax.ShapeDtypeStruct((batch, length), jnp.float32))
    limit = settings.memory_limit or default_memory_limit()

    def compile_(impl):
        t0 = time.perf_counter()
        compiled = xla.jit(make_score_fn(run.model, impl, chunk)).lower(*args).compile()
        return Step(compiled, impl, batch, planned_bytes(compiled), time.perf_counter() - t0)

    if settings.attention != "auto":
        return compile_(settings.attention)
    if length <= run.model_cfg.block_size:
        step = compile_("dense")
        if step.planned is None or step.planned <= limit:
            return step
    return compile_("blockwise")


def position_bins(length: int, per_octave: int = 4) -> np.ndarray:
    """Bin edges ``0, 1, 2, 3, 4, 5, 6, 7, 8, 10, ..., length``: log-spaced, as the curve is
    read on a log axis."""
    powers = np.round(2.0 ** (np.arange(per_octave * math.log2(length) + 1) / per_octave)).astype(int)
    return np.unique(np.concatenate([[0], powers[powers < length], [length]]))


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _reset_peak_rss():
    """Restarts the process's RSS high-water mark (Linux), so each length reports its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _mib(n):
    return None if n is None else round(n / MiB, 1)


def score_length(run: Run, windows, settings: Settings) -> dict:
    """Scores ``windows`` (one length) with ``run``: a results row."""
    L = windows.length
    _reset_peak_rss()
    row = {
        **run.info(),
        "eval_len": L,
        "protocol": windows.protocol,
        "stride": windows.stride,
        "eval_tokens": settings.eval_tokens,
        "n_tokens": windows.n_tokens,
    }
    try:
        step = plan_step(run, L, len(windows.inputs), settings)
    except LengthError as e:  # e.g. pe=learned past its table: this cell does not exist
        return {**row, "loss": None, "ppl": None, "bits_per_byte": None, "note": f"n/a: {e}"}
    params = run.params()
    B = step.batch
    n = -(-len(windows.inputs) // B) * B
    pad = lambda x: np.concatenate([x, np.zeros((n - len(x), L), x.dtype)])  # weight 0: not scored
    inputs, targets, weights = pad(windows.inputs), pad(windows.targets), pad(windows.weights)
    t0 = time.perf_counter()
    outputs = [step.compiled(params, inputs[i : i + B], targets[i : i + B], weights[i : i + B]) for i in range(0, n, B)]
    outputs = jax.device_get(outputs)
    time_s = time.perf_counter() - t0
    nll_T = np.sum([o[0] for o in outputs], axis=0, dtype=np.float64)
    weight_T = np.sum([o[1] for o in outputs], axis=0, dtype=np.float64)
    total = float(nll_T.sum())
    loss = total / windows.n_tokens
    edges = position_bins(L)
    bin_nll, bin_weight = np.add.reduceat(nll_T, edges[:-1]), np.add.reduceat(weight_T, edges[:-1])
    device_stats = jax.devices()[0].memory_stats() or {}
    return {
        **row,
        "loss": loss,
        "ppl": math.exp(loss) if loss < 700 else math.inf,
        "bits_per_byte": fire_data.bits_per_byte(total, windows.n_bytes),
        "time_s": round(time_s, 3),
        "compile_s": round(step.compile_s, 3),
        "impl": step.impl,
        "batch_size": B,
        "n_windows": len(windows.inputs),
        "xla_mib": _mib(step.planned),
        "peak_rss_mib": _mib(_peak_rss_bytes()),
        "device_peak_mib": _mib(device_stats.get("peak_bytes_in_use")),
        "note": "",
        "position_loss": {
            "edges": edges.tolist(),
            "tokens": bin_weight.astype(int).tolist(),
            "loss": [float(s / w) if w else None for s, w in zip(bin_nll, bin_weight)],
        },
    }


def encoding_bias(run: Run, query_positions) -> dict:
    """The additive bias of each layer's encoding for the given queries against every key
    at or before them: ``{layer: float32 [n_queries, H, max_query + 1]}``, NaN past the query.
    Empty for encodings without a bias."""
    scopes = encoding_scopes(run.params())
    enc = run.model_cfg.build_encoding()
    width = max(query_positions) + 1
    curves = {}

    def bias_1xHx1xK(module, i):
        bias_fn = module.bias_fn(i + 1)
        q_pos, k_pos = jnp.array([[i]], jnp.int32), jnp.arange(i + 1, dtype=jnp.int32)[None]
        return None if bias_fn is None else bias_fn(q_pos, k_pos)

    for layer, enc_params in scopes.items():
        rows = []
        for i in query_positions:
            bias = enc.apply({"params": enc_params}, i, method=bias_1xHx1xK)
            if bias is None:
                return {}
            row = np.full((bias.shape[1], width), np.nan, np.float32)
            row[:, : i + 1] = np.asarray(bias)[0, :, 0, ::-1]  # by distance i - j = 0 .. i
            rows.append(row)
        curves[layer] = np.stack(rows)
    return curves


# ----------------------------------------------------------------------------- the sweep


def row_key(row: dict) -> tuple:
    """What makes two rows the same measurement."""
    return (row["run_path"], row["step"], row["eval_len"], row["protocol"], row["stride"], row["eval_tokens"])


class Cache:
    """Every row computed into an output folder, one JSON line each, appended as it is made."""

    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, "cache.jsonl")
        self.rows = {}
        if os.path.exists(self.path):
            with open(self.path) as f:
                for line in f:
                    try:
                        row = json.loads(line)
                        self.rows[row_key(row)] = row
                    except (ValueError, KeyError):
                        pass  # a line cut off by an interrupted write

    def get(self, key) -> Optional[dict]:
        return self.rows.get(key)

    def add(self, row: dict):
        self.rows[row_key(row)] = row
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def check_writable(output_dir: str):
    try:
        os.makedirs(output_dir, exist_ok=True)
        probe = os.path.join(output_dir, ".write_test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise EvalError(f"cannot write to the output folder {output_dir}: {e.strerror or e}.") from None


def _gib(mib):
    return "?" if mib is None else f"{mib / 1024:.2f} GiB"


def progress_line(i: int, total: int, row: dict, reused: bool) -> str:
    head = f"[{i}/{total}] {row['label']} | len {row['eval_len']} | {row['protocol']}"
    if row["loss"] is None:
        return f"{head} | {row['note']}"
    scores = f"loss {row['loss']:.4f} ppl {row['ppl']:.3g} bpb {row['bits_per_byte']:.4f}"
    if reused:
        return f"{head} | {row['n_tokens']:,} tokens | {scores} | reused"
    return (
        f"{head} | {row['n_tokens']:,} tokens | {scores} | {row['impl']} {row['batch_size']}x{row['eval_len']} "
        f"| {row['time_s']:.1f}s (+{row['compile_s']:.1f}s compile) | XLA plan {_gib(row['xla_mib'])}, "
        f"peak RSS {_gib(row['peak_rss_mib'])}"
    )


def sweep(
    patterns, lengths, settings: Settings, output_dir: Optional[str], dry_run: bool = False, log: Callable = print
) -> list:
    """Evaluates every run at every length; writes ``output_dir`` (see fire/report.py).
    Returns the rows. ``dry_run`` compiles each length and prints its memory plan instead."""
    runs = load_runs(patterns, settings.block_size, need_checkpoints=not dry_run)
    lengths = parse_lengths(lengths) if lengths else None
    plan = [(run, L) for run in runs for L in (lengths or default_lengths(run))]
    # Every window set is cut before any compute: a length the data cannot give fails now.
    windows = {}
    for run, L in plan:
        key = (run.config.data.to_json(), L)
        if key not in windows:
            windows[key] = fire_data.eval_windows(
                run.config.data, run.tokenizer, L, settings.protocol, settings.eval_tokens, settings.stride
            )
    windows_for = lambda run, L: windows[(run.config.data.to_json(), L)]
    if dry_run:
        for i, (run, L) in enumerate(plan, 1):
            log(dry_run_line(i, len(plan), run, windows_for(run, L), settings))
        return []

    from fire import plots  # matplotlib only when writing

    check_writable(output_dir)
    cache = Cache(output_dir)
    rows, biases = [], {}
    for i, (run, L) in enumerate(plan, 1):
        w = windows_for(run, L)
        row = cache.get(
            row_key(
                dict(
                    run_path=run.path,
                    step=run.step,
                    eval_len=L,
                    protocol=w.protocol,
                    stride=w.stride,
                    eval_tokens=settings.eval_tokens,
                )
            )
        )
        reused = row is not None
        if not reused:
            row = score_length(run, w, settings)
        row = {**row, "label": run.label, "run": run.workdir}
        rows.append(row)
        log(progress_line(i, len(plan), row, reused))
        try:
            if not reused and row["loss"] is not None:  # n/a cells cost nothing to recompute
                cache.add(row)
            report.write_results(output_dir, rows)
        except OSError as e:
            raise EvalError(
                f"could not write results to {output_dir}: {e.strerror or e}. Rows computed so far are in {cache.path}."
            ) from None
        if i == len(plan) or plan[i][0] is not run:  # the run's last length
            if run.config.pe in ("fire", "fire_s"):
                queries = bias_queries(run, [L for r, L in plan if r is run])
                biases[run.label] = dict(
                    train_len=run.config.train_len, queries=queries, curves=encoding_bias(run, queries)
                )
            run.release()
    try:
        written = plots.write_plots(output_dir, rows, biases)
    except OSError as e:
        raise EvalError(f"could not write plots to {output_dir}: {e.strerror or e}.") from None
    log(f"Wrote {', '.join(['results.csv', 'results.json', 'results.md', *written])} to {output_dir}")
    return rows


def bias_queries(run: Run, lengths) -> list:
    """Query positions for the bias figure: inside, at and beyond the training length."""
    L = run.config.train_len
    longest = max(lengths)
    return sorted({q - 1 for q in (L // 2, L, 4 * L, longest) if 1 < q <= max(longest, L)})


def dry_run_line(i: int, total: int, run: Run, windows, settings: Settings) -> str:
    head = f"[{i}/{total}] {run.label} | len {windows.length} | {windows.protocol}"
    try:
        step = plan_step(run, windows.length, len(windows.inputs), settings)
    except LengthError as e:
        return f"{head} | n/a: {e}"
    n_batches = -(-len(windows.inputs) // step.batch)
    return (
        f"{head} | {windows.n_tokens:,} tokens in {n_batches} batch(es) of {step.batch}x{windows.length} | "
        f"{step.impl} | XLA plan {_gib(_mib(step.planned))} | compiled in {step.compile_s:.1f}s"
    )
