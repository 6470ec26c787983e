"""What a sweep will cost before it runs (``sweep.py --dry_run``): each run's parameters,
tokens and FLOPs; with ``--memory`` the train step's compiled memory per device against an
accelerator's memory; with ``--measure_step`` its step timed on this machine.

Estimates are stated as what they are: the FLOP count is PaLM's (``train_flops_per_token``),
a device-hours figure assumes an MFU (``--mfu``), and a wall time comes from a step measured
here with random tokens (compile excluded), times the run's steps.
"""

import dataclasses
import re
import time
from typing import Callable, Optional

import numpy as np

from fire.config import task_of
from fire.model import ModelConfig, abstract_params, count_params, train_flops_per_token
from fire.sweeps.spec import RunSpec, SweepError, run_config
from fire.utils import GiB, MiB, format_bytes, format_count, format_duration

BYTES_VOCAB = 259  # fire.data's byte tokenizer: 256 bytes, PAD, BOS, EOS


@dataclasses.dataclass(frozen=True)
class Device:
    """An accelerator as the plan sees it: memory per device (what ``nvidia-smi`` or the TPU
    runtime reports as usable) and dense bfloat16 peak FLOP/s (the vendor's figure)."""

    name: str
    memory: int  # bytes
    peak_flops: float


# Memory as reported per device; peaks are dense bf16 without sparsity.
DEVICES = {
    d.name: d
    for d in (
        Device("a100-40gb", 40960 * MiB, 312e12),
        Device("a100-80gb", 81920 * MiB, 312e12),
        Device("h100-80gb", 81559 * MiB, 989e12),
        Device("h200", 143771 * MiB, 989e12),
        Device("tpu-v4", 32 * GiB, 275e12),
        Device("tpu-v5e", 16 * GiB, 197e12),
        Device("tpu-v5p", 95 * GiB, 459e12),
        Device("tpu-v6e", 32 * GiB, 918e12),
    )
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(GiB|GB|MiB|MB|TiB|TB)\s*$", re.IGNORECASE)
_UNITS = {"gib": GiB, "gb": 10**9, "mib": MiB, "mb": 10**6, "tib": 1 << 40, "tb": 10**12}


def parse_device(text: str) -> Device:
    """``'h100-80gb'`` (a name of :data:`DEVICES`) or a memory size (``'80GiB'``, ``'40GB'``).

    Raises:
      SweepError: neither, with the names."""
    name = text.strip().lower()
    if name in DEVICES:
        return DEVICES[name]
    match = _SIZE.match(text)
    if not match:
        raise SweepError(
            f"--device_memory={text!r}: give a size such as 80GiB or 40GB, or one of {', '.join(DEVICES)}."
        )
    size = float(match.group(1)) * _UNITS[match.group(2).lower()]
    return Device(text.strip(), int(size), 0.0)


@dataclasses.dataclass(frozen=True)
class Cost:
    """What a run will cost: parameters, tokens seen and training FLOPs (PaLM's count)."""

    n_params: int
    tokens: int
    flops: float
    steps: int


def vocab_size(config) -> int:
    """A task's vocabulary, the byte tokenizer's, or the configured SentencePiece size (no
    files read)."""
    task = task_of(config)
    if task is not None:
        return task.vocabulary.vocab_size
    return config.data.spm_vocab_size if config.data.tokenizer == "sentencepiece" else BYTES_VOCAB


def estimate(spec: RunSpec) -> Cost:
    """The run's cost from its config alone (no data, no compile)."""
    config = run_config(spec)
    cfg = ModelConfig.from_run_config(config, vocab_size(config))
    tokens = config.num_steps * config.batch_size * config.train_len
    flops = train_flops_per_token(cfg, config.train_len) * tokens
    return Cost(count_params(abstract_params(cfg)), tokens, flops, config.num_steps)


def compiled_memory(spec: RunSpec) -> dict:
    """The train step compiled for the run's shapes on this process's devices (its mesh from
    the config): XLA's plan per device in bytes, nothing allocated, no data read. ``total``
    is what is live at the peak: arguments, outputs and temporaries, less the outputs that
    reuse donated arguments."""
    from fire.training import build, compile_step

    config = run_config(spec)
    setup = build(config, vocab_size=vocab_size(config))
    m = compile_step(setup).memory_analysis()
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    return dict(mesh=dict(setup.mesh.shape), arguments=m.argument_size_in_bytes, temporaries=m.temp_size_in_bytes,
                total=total)  # fmt: skip


def measured_step_s(spec: RunSpec, steps: int = 3) -> float:
    """Seconds per train step of the run's shapes on this machine's devices, measured on
    random tokens: the median of ``steps`` steps after one warm-up step (compile excluded)."""
    import jax

    from fire.training import build, compile_step, global_batch

    config = run_config(spec)
    setup = build(config, vocab_size=vocab_size(config))
    state = setup.init_fn(jax.random.key(0))
    rows = config.batch_size // jax.process_count()
    tokens = np.random.default_rng(0).integers(0, vocab_size(config), (rows, config.train_len + 1), dtype=np.int32)
    batch = global_batch(setup, {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]})
    step = compile_step(setup, state, batch)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def _shape_key(spec: RunSpec) -> tuple:
    """What a step's cost depends on: the config and its overrides, seeds left out."""
    return spec.config_arg, tuple((k, v) for k, v in spec.overrides if k not in ("seed", "data_seed"))


def dry_run(
    specs: list,
    log: Callable = print,
    memory: bool = False,
    device: Optional[Device] = None,
    measure: bool = False,
    mfu: float = 0.4,
    status: Callable = lambda spec: "?",
) -> list:
    """Lists the runs with their status and cost (see the module docstring); returns the
    names of the runs whose compiled step does not fit ``device``'s memory (with ``memory``).

    Raises:
      SweepError: an MFU outside (0, 1]."""
    if not 0 < mfu <= 1:
        raise SweepError(f"--mfu must be in (0, 1], got {mfu}.")
    import jax

    n_devices = jax.device_count()
    tokens = flops = wall = 0.0
    too_big, step_s, plans = [], {}, {}
    for k, spec in enumerate(specs, 1):
        cost = estimate(spec)
        tokens, flops = tokens + cost.tokens, flops + cost.flops
        parts = [f"[{k}/{len(specs)}] {spec.name}", status(spec), f"{format_count(cost.n_params)} params",
                 f"{format_count(cost.tokens)} tokens", f"{cost.flops:.2e} FLOP"]  # fmt: skip
        if device is not None and device.peak_flops:
            hours = cost.flops / (device.peak_flops * mfu) / 3600
            parts.append(f"{hours:,.1f} {device.name}-hours at {mfu:.0%} MFU")
        key = _shape_key(spec)  # runs that differ in their seeds alone are measured once
        if measure:
            if key not in step_s:
                step_s[key] = measured_step_s(spec)
            wall += step_s[key] * cost.steps
            parts.append(f"step {step_s[key]:.3g}s here: {format_duration(step_s[key] * cost.steps)}")
        if memory:
            if key not in plans:
                plans[key] = compiled_memory(spec)
            m = plans[key]
            line = (f"mesh {m['mesh']}: per device {format_bytes(m['arguments'])} arguments, "
                    f"{format_bytes(m['temporaries'])} temporaries, {format_bytes(m['total'])} in all")  # fmt: skip
            if device is not None:
                fits = m["total"] <= device.memory
                line += f" | {'fits' if fits else 'DOES NOT FIT'} {format_bytes(device.memory)} ({device.name})"
                if not fits:
                    too_big.append(spec.name)
            parts.append(line)
        log(" | ".join(parts))
    summary = f"total: {len(specs)} runs, {format_count(tokens)} tokens, {flops:.2e} FLOP"
    if device is not None and device.peak_flops:
        summary += f", {flops / (device.peak_flops * mfu) / 3600:,.0f} {device.name}-hours at {mfu:.0%} MFU (assumed)"
    if measure:
        summary += f", {format_duration(wall)} of training on this machine's {n_devices} device(s) (measured steps)"
    log(summary)
    if too_big:
        log(f"{len(too_big)} of {len(specs)} runs do not fit {format_bytes(device.memory)} per device: "
            f"{', '.join(too_big)}. Lower the micro-batch (--config.grad_accum_steps), shard the state over more "
            f"devices (--config.mesh.fsdp), or plan on a device with more memory.")  # fmt: skip
    return too_big
