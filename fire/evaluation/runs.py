"""Trained runs as the evaluation sees them: loaded from their workdirs, checked, labelled."""

import dataclasses
import functools
import glob
import os
from typing import Callable, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fire.checkpoint import abstract_like, latest_step, restore_params
from fire.config import task_of, tokenizer_of
from fire.encodings import encoding_options as default_options
from fire.encodings import resolved_options
from fire.errors import UserError
from fire.model import ModelConfig, Transformer, abstract_params, count_params, encoding_scopes
from fire.workdir import Workdir


class EvalError(UserError, ValueError):
    """Bad sweep input (a workdir, a length, the output folder): reported as one line."""


@dataclasses.dataclass
class TrainedRun:
    """A trained workdir, loaded lazily: the parameters only when a length is scored."""

    workdir: str  # as given
    path: str  # absolute: part of the reuse key
    config: ml_collections.ConfigDict
    tokenizer: object
    model_cfg: ModelConfig
    step: Optional[int]  # latest checkpoint; None if it has none
    description: str = ""  # what the run is: describe(config) as trained
    variant: str = ""  # evaluation-time encoding options, as " [key=value, ...]"
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

    def params(self, log: Callable[[str], None] = print):
        """The weights of the newest usable checkpoint. A newer step that cannot be used
        (damaged, non-finite) is skipped with a message to ``log``, and :attr:`step` becomes
        the step read. Raises CheckpointError if none can be used."""
        if self._params is None:
            self._params, self.step = restore_params(self.path, self.abstract_params, step=self.step, log=log)
        return self._params

    def release(self):
        self._params = None

    def info(self) -> dict:
        """The fields every row of this run carries (what the report's header needs)."""
        c, m = self.config, self.model_cfg
        model = f"{c.size}: {m.num_layers} layers, d_model {m.d_model}, {m.num_heads} heads"
        return dict(
            run=self.workdir, label=self.label, pe=c.pe, train_len=c.train_len, model=model,
            n_params=count_params(self.abstract_params), step=self.step,
            train_tokens=(self.step or 0) * c.batch_size * c.train_len, data=c.data.name,
            tokenizer=self.tokenizer.fingerprint, run_path=self.path, **self.task_info(),
        )  # fmt: skip

    def task_info(self) -> dict:
        """A task run's task and training range (``task``, ``task_options``, ``length_unit``,
        ``train_min_len``, ``train_max_len``, ``train_examples``: examples seen); empty for language modelling."""
        task = task_of(self.config)
        if task is None:
            return {}
        return dict(
            task=task.name, task_options=dataclasses.asdict(task), length_unit=task.length_unit,
            train_min_len=self.config.task.min_len, train_max_len=self.config.task.max_len,
            train_examples=(self.step or 0) * self.config.batch_size,
        )  # fmt: skip


def load_run(
    workdir: str, block_size: int = 0, encoding_options: Optional[Mapping] = None, pe: Optional[str] = None
) -> TrainedRun:
    """The run in ``workdir``.

    ``encoding_options`` evaluates it with encoding options changed (e.g. FIRE's
    ``normalizer_cap``, a RoPE scale), and ``pe`` with another encoding of the same parameters
    (``rope_pi`` or ``yarn`` on a ``rope`` run, which trains bit-identically: the interpolations
    take their scale from the evaluation length): an evaluation-time variant, labelled with
    them. The new encoding keeps the trained options it shares. Changes that would add or
    remove parameters are refused.

    Raises:
      EvalError: not a training run, or a variant that changes the parameters.
      UnknownEncodingError: an encoding or option that does not exist.
      WorkdirError: a ``config.json`` that cannot be read.
    """
    paths = Workdir(workdir)
    if not paths.is_run():
        raise EvalError(f"{workdir} is not a training run: it has no {os.path.basename(paths.config)}.")
    config = paths.read_config()
    description = describe(config)
    tokenizer = tokenizer_of(config)
    trained = ModelConfig.from_run_config(config, tokenizer.vocab_size)
    model_cfg = trained
    changes = {}
    if pe and pe != config.pe:
        kept = {k: v for k, v in config.encoding.items() if k in default_options(pe)}
        config.pe, config.encoding = pe, ml_collections.ConfigDict({**default_options(pe), **kept})
        changes["pe"] = pe
    if encoding_options:
        options = dict(encoding_options)
        resolved_options(config.pe, options)  # unknown options fail here
        config.encoding.update(options)  # the variant's config: part of the sweep's reuse key
        changes.update(options)
    variant = ""
    if changes:
        model_cfg = ModelConfig.from_run_config(config, tokenizer.vocab_size)
        if _param_shapes(model_cfg) != _param_shapes(trained):
            what = ", ".join(f"{k}={v}" for k, v in changes.items())
            raise EvalError(f"{workdir}: the variant {what} changes the model's parameters; an evaluation-time "
                            f"variant may only change what adds or removes none.")  # fmt: skip
        variant = " [" + ", ".join(f"{k}={v}" for k, v in changes.items()) + "]"
    if block_size:
        model_cfg = dataclasses.replace(model_cfg, block_size=block_size)
    return TrainedRun(
        workdir=os.path.normpath(workdir), path=paths.path, config=config, tokenizer=tokenizer,
        model_cfg=model_cfg, step=latest_step(paths.path), description=description, variant=variant,
    )  # fmt: skip


def _param_shapes(model_cfg: ModelConfig) -> dict:
    return jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), abstract_params(model_cfg))


def expand_workdirs(patterns) -> list:
    """Workdirs and globs of them; a glob keeps only training runs, and ``**`` matches any
    depth (``runs/**`` finds ``runs/tiny_128/fire``)."""
    workdirs = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            found = sorted(p for p in glob.glob(pattern, recursive=True) if Workdir(p).is_run())
            if not found:
                raise EvalError(
                    f"--workdir={pattern} matches no training run (a folder holding a run config); "
                    f"'**' matches folders at any depth, e.g. --workdir='runs/**'."
                )
            workdirs += found
        else:
            workdirs.append(pattern)
    unique = {os.path.abspath(w): w for w in reversed(workdirs)}  # first spelling wins
    return [w for w in workdirs if unique.get(os.path.abspath(w)) is w]


def describe(config) -> str:
    """A run's label: its config's ``name`` if it has one, else ``pe@train_len`` (a task
    run's: ``pe@min_len-max_len``, its training range in the task's unit), then the encoding
    options that differ from the encoding's defaults (an option whose default 0 stands for the
    training length counts as default at that value), e.g. ``fire@128 (interpolate=False)``."""
    if config.get("name"):
        return config.name
    defaults = default_options(config.pe)
    changed = [
        f"{k}={v}"
        for k, v in sorted(config.encoding.items())
        if k in defaults and v != defaults[k] and not (defaults[k] == 0 and v == config.train_len)
    ]
    trained = f"{config.task.min_len}-{config.task.max_len}" if task_of(config) else config.train_len
    return f"{config.pe}@{trained}" + (f" ({', '.join(changed)})" if changed else "")


def load_runs(patterns, block_size: int = 0, need_checkpoints: bool = True, encoding_options=None) -> list:
    """Every run, checked before any compute: a checkpoint each, one tokenizer for all;
    labelled by :func:`describe` (and the folder where that is ambiguous)."""
    runs = [load_run(w, block_size, encoding_options) for w in expand_workdirs(patterns)]
    if not runs:
        raise EvalError("no --workdir given.")
    check_runs(runs, need_checkpoints)
    labels = [r.description for r in runs]
    for run, label in zip(runs, labels):
        # Runs that share encoding and length (seeds, ablations) are told apart by folder.
        run.label = (label if labels.count(label) == 1 else f"{label} ({os.path.basename(run.path)})") + run.variant
    return runs


def check_runs(runs: list, need_checkpoints: bool = True) -> None:
    """A checkpoint in each run (unless ``need_checkpoints`` is off) and one tokenizer for all."""
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


def encoding_bias(run: TrainedRun, query_positions) -> tuple:
    """The additive bias of each layer's encoding for the given queries against every key
    at or before them: ``{layer: float32 [n_queries, H, max_query + 1]}`` by distance
    ``i - j = 0 .. i``, NaN past the query; and each layer's learned threshold ``{layer: L}``
    where the encoding has one (FIRE). Both empty for encodings without a bias."""
    enc = run.model_cfg.build_encoding()
    if not enc.additive:
        return {}, {}
    width = max(query_positions) + 1

    def bias_1xHx1xK(module, i):
        q_pos, k_pos = jnp.array([[i]], jnp.int32), jnp.arange(i + 1, dtype=jnp.int32)[None]
        return module.bias_fn(i + 1)(q_pos, k_pos)

    curves, thresholds = {}, {}
    for layer, enc_params in encoding_scopes(run.params()).items():
        rows = []
        for i in query_positions:
            bias = enc.apply({"params": enc_params}, i, method=bias_1xHx1xK)
            row = np.full((bias.shape[1], width), np.nan, np.float32)
            row[:, : i + 1] = np.asarray(bias)[0, :, 0, ::-1]
            rows.append(row)
        curves[layer] = np.stack(rows)
        summary = enc.apply({"params": enc_params}, method=lambda m: m.summary())
        if "L" in summary:
            thresholds[layer] = float(summary["L"])
    return curves, thresholds
