"""Position encodings by name, behind one registry.

``build_encoding(name, options, ...)`` returns an unbound Flax module implementing the
hooks of :class:`fire.encodings.base.PositionEncoding`, after its ``check`` against the run
(training length and largest training position id). ``options`` are the module's own
fields (e.g. FIRE's ``mlp_width`` or ``log_transform``); unknown ones fail loudly.

To add an encoding: write a ``PositionEncoding`` subclass in a module of its own (its
options are its dataclass fields; see ``base.py`` for the hooks, checks and capabilities)
and add one ``register`` line below; list the name in the README's encodings table and in
``configs/lm.py``'s docstring (a test checks both) and record its golden step
(``python tests/test_golden.py --regenerate pe=NAME``). Configs, training, evaluation and the
benchmarks find it by name from then on.
"""

import dataclasses
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
from fire.errors import UserError
from fire.keys import Key, check, suggest, values_of_default
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
    Unknown options fail with the valid ones listed (and the one most likely meant)."""
    options = dict(options or {})
    valid = encoding_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UnknownEncodingError(
            f"pe={name} has no option(s) {', '.join(unknown)}.{suggest(unknown[0], valid)} "
            f"Valid: {', '.join(sorted(valid)) or 'none'}."
        )
    return {**valid, **options}


def option_keys(name: str) -> dict:
    """The encoding's block of the run config, one :class:`fire.keys.Key` per option: its
    default (the class field's, or the name's fixed value), its meaning (the comment on the
    field, :meth:`PositionEncoding.option_help`) and the values it takes: its default's type
    (an integer serves a float option), finite and >= 0 (0 often means "from the run"), and
    > 0 for the class's ``positive_options``."""
    cls = encoding_class(name)
    meanings = cls.option_help()
    table = {}
    for key, default in encoding_options(name).items():
        values = values_of_default(default, positive=key in cls.positive_options)
        table[key] = Key(default, meanings.get(key, f"an option of {cls.__name__}"), values)
    return table


def check_options(name: str, options: Mapping) -> None:
    """Raises ConfigError for an option value that its key (:func:`option_keys`) does not
    accept: of the wrong kind, not finite, negative, or zero for a positive option."""
    check(options, option_keys(name), f"pe={name} option ")


def check_encoding(
    name: str, options: Optional[Mapping], train_len: int, head_dim: int, max_position: Optional[int] = None
) -> None:
    """Whether ``name`` with ``options`` can serve a run trained at ``train_len`` with position
    ids in ``[0, max_position)`` (None: ``train_len``) and heads ``head_dim`` wide: the options
    exist, each value is one its key accepts, and the class's own :meth:`PositionEncoding.check`
    holds.

    Raises:
      UnknownEncodingError: an unknown name or option.
      ConfigError: a value or combination the encoding cannot honour.
    """
    options = resolved_options(name, options)
    check_options(name, options)
    encoding_class(name).check(options, train_len, train_len if max_position is None else max_position, head_dim)


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
        ``train_len`` or ``max_position``): :func:`check_encoding`.
    """
    check_encoding(name, options, train_len, head_dim, max_position)
    return encoding_class(name)(
        num_heads=num_heads, head_dim=head_dim, d_model=d_model, train_len=train_len,
        **resolved_options(name, options), name=module_name,
    )  # fmt: skip


__all__ = [
    "NAMES", "REGISTRY", "PositionEncoding", "Rotation", "LengthError", "UnknownEncodingError",
    "build_encoding", "check_encoding", "check_length", "check_options", "encoding_class", "encoding_options",
    "is_shared", "lookup", "option_keys", "register", "resolved_options", "alibi_slopes", "t5_bucket",
    "NoPE", "Learned", "Sinusoidal", "RoPE", "RoPEPI", "YaRN", "T5Bias", "ALiBi",
    "KerpleLog", "KerplePower", "Sandwich", "FIRE",
]  # fmt: skip
