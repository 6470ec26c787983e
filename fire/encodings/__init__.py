"""Position encodings by name, behind one registry.

``build_encoding(name, options, ...)`` returns an unbound Flax module implementing the
hooks of :class:`fire.encodings.base.PositionEncoding`, after its ``check`` against the run
(training length and largest training position id). ``options`` are the module's own
fields (e.g. FIRE's ``mlp_width`` or ``log_transform``); unknown ones fail loudly.

To add an encoding: write a ``PositionEncoding`` subclass in a module of its own (its
options are its dataclass fields; see ``base.py`` for the hooks, checks and capabilities)
and add one ``register`` line below. Configs, training, evaluation and the benchmarks find
it by name from then on.
"""

import dataclasses
import math
from typing import Mapping, Optional, Type

from fire.encodings.absolute import Learned, Sinusoidal
from fire.encodings.alibi import ALiBi, alibi_slopes
from fire.encodings.base import LengthError, PositionEncoding, Rotation
from fire.encodings.fire import FIRE
from fire.encodings.kerple import KerpleLog, KerplePower
from fire.encodings.nope import NoPE
from fire.encodings.rotary import RoPE, RoPEPI, YaRN
from fire.encodings.sandwich import Sandwich
from fire.encodings.t5 import T5Bias, t5_bucket
from fire.errors import ConfigError, UserError
from fire.utils import did_you_mean

# name -> (module class, option values that define the name)
REGISTRY: dict = {}
_GEOMETRY = ("num_heads", "head_dim", "d_model", "train_len")


class UnknownEncodingError(UserError, ValueError):
    pass


def register(name: str, cls: Type[PositionEncoding], **fixed_options) -> None:
    """Makes ``cls`` (with ``fixed_options`` set) available as ``pe=name``."""
    REGISTRY[name] = (cls, dict(fixed_options))


register("nope", NoPE)
register("learned", Learned)
register("sinusoidal", Sinusoidal)
register("rope", RoPE)
register("rope_pi", RoPEPI)
register("yarn", YaRN)
register("t5", T5Bias)
register("alibi", ALiBi)
register("kerple_log", KerpleLog)
register("kerple_power", KerplePower)
register("sandwich", Sandwich)
register("fire", FIRE)
register("fire_s", FIRE, shared=True)
NAMES = tuple(REGISTRY)  # the built-in encodings


def lookup(name: str):
    """``(module class, fixed options)`` of a registered encoding."""
    if name not in REGISTRY:
        raise UnknownEncodingError(
            f"Unknown position encoding pe={name}.{did_you_mean(name, REGISTRY)} Valid: {', '.join(REGISTRY)}."
        )
    return REGISTRY[name]


def encoding_class(name: str) -> Type[PositionEncoding]:
    return lookup(name)[0]


def encoding_options(name: str) -> dict:
    """The tunable options of an encoding with their defaults (for configs)."""
    cls, fixed = lookup(name)
    fields = {f.name: f.default for f in dataclasses.fields(cls) if f.name not in _GEOMETRY + ("parent", "name")}
    return {k: fixed.get(k, v) for k, v in fields.items()}


def resolved_options(name: str, options: Optional[Mapping] = None) -> dict:
    """Every option of ``name``: its defaults, the name's fixed values, then ``options``.
    Unknown options fail with the valid ones listed."""
    options = dict(options or {})
    valid = encoding_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UnknownEncodingError(
            f"pe={name} has no option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid)) or 'none'}."
        )
    return {**valid, **options}


def check_options(name: str, options: Mapping) -> None:
    """Raises ConfigError for an option value of the wrong kind (each option takes its
    default's type; an integer serves a float option), a numeric value that is not finite or
    is negative, or zero for one of the class's ``positive_options``."""
    cls, defaults = encoding_class(name), encoding_options(name)
    for key, value in options.items():
        default = defaults[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            continue
        if not ok:
            raise ConfigError(f"pe={name} option {key} must be a {type(default).__name__}, got {value!r}.")
        if isinstance(default, bool):
            continue
        if value < 0 or (key in cls.positive_options and value == 0):
            bound = "> 0" if key in cls.positive_options else ">= 0"
            raise ConfigError(f"pe={name} option {key} must be {bound}, got {value!r}.")


def is_shared(name: str, options: Optional[Mapping] = None) -> bool:
    """Whether one instance serves every layer (a class attribute, or FIRE's option)."""
    cls, fixed = lookup(name)
    return bool({**fixed, **dict(options or {})}.get("shared", cls.shared))


def check_length(name: str, options: Optional[Mapping], train_len: int, seq_len: int) -> None:
    """Raises :class:`LengthError` if ``name`` cannot model a window of ``seq_len`` tokens."""
    encoding_class(name).check_length(resolved_options(name, options), train_len, seq_len)


def build_encoding(
    name: str,
    options: Optional[Mapping] = None,
    *,
    num_heads: int,
    head_dim: int,
    d_model: int,
    train_len: int,
    max_position: Optional[int] = None,
    module_name: Optional[str] = None,
) -> PositionEncoding:
    """The encoding's module, checked against the run (``cls.check``). ``max_position`` is the
    exclusive upper bound of the position ids the run trains with; None: ``train_len``.

    Raises:
      UnknownEncodingError: an unknown name or option.
      ConfigError: options the run cannot honour (e.g. a ``learned`` table shorter than
        ``train_len`` or ``max_position``).
    """
    cls = encoding_class(name)
    options = resolved_options(name, options)
    check_options(name, options)
    cls.check(options, train_len, train_len if max_position is None else max_position)
    return cls(
        num_heads=num_heads, head_dim=head_dim, d_model=d_model, train_len=train_len, **options, name=module_name
    )


__all__ = [
    "NAMES", "REGISTRY", "PositionEncoding", "Rotation", "LengthError", "UnknownEncodingError",
    "build_encoding", "check_length", "check_options", "encoding_class", "encoding_options", "is_shared", "lookup", "register",
    "resolved_options", "alibi_slopes", "t5_bucket",
    "NoPE", "Learned", "Sinusoidal", "RoPE", "RoPEPI", "YaRN", "T5Bias", "ALiBi",
    "KerpleLog", "KerplePower", "Sandwich", "FIRE",
]  # fmt: skip
