"""Position encodings by name, behind one registry.

``build_encoding(name, options, ...)`` returns an unbound Flax module implementing the
hooks of :class:`fire.encodings.base.PositionEncoding`. ``options`` are the module's own
fields (e.g. FIRE's ``mlp_width`` or ``log_transform``); unknown ones fail loudly.
"""

import dataclasses
import difflib
from typing import Mapping, Optional

from fire.encodings.absolute import Learned, LengthError, Sinusoidal
from fire.encodings.alibi import ALiBi, alibi_slopes
from fire.encodings.base import PositionEncoding
from fire.encodings.fire import FIRE
from fire.encodings.kerple import KerpleLog, KerplePower
from fire.encodings.nope import NoPE
from fire.encodings.rotary import RoPE, RoPEPI, YaRN
from fire.encodings.sandwich import Sandwich
from fire.encodings.t5 import T5Bias, t5_bucket

# name -> (module class, option overrides that define the name)
REGISTRY = {
    "nope": (NoPE, {}),
    "learned": (Learned, {}),
    "sinusoidal": (Sinusoidal, {}),
    "rope": (RoPE, {}),
    "rope_pi": (RoPEPI, {}),
    "yarn": (YaRN, {}),
    "t5": (T5Bias, {}),
    "alibi": (ALiBi, {}),
    "kerple_log": (KerpleLog, {}),
    "kerple_power": (KerplePower, {}),
    "sandwich": (Sandwich, {}),
    "fire": (FIRE, {}),
    "fire_s": (FIRE, {"shared": True}),
}
NAMES = tuple(REGISTRY)
_GEOMETRY = ("num_heads", "head_dim", "d_model", "train_len")


class UnknownEncodingError(ValueError):
    pass


def _lookup(name):
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, NAMES, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownEncodingError(f"Unknown position encoding {name!r}.{hint} Valid: {', '.join(NAMES)}.")
    return REGISTRY[name]


def encoding_options(name: str) -> dict:
    """The tunable options of an encoding with their defaults (for configs)."""
    cls, fixed = _lookup(name)
    fields = {f.name: f.default for f in dataclasses.fields(cls) if f.name not in _GEOMETRY + ("parent", "name")}
    return {k: fixed.get(k, v) for k, v in fields.items()}


def is_shared(name: str, options: Optional[Mapping] = None) -> bool:
    """Whether one instance serves every layer (a class attribute, or FIRE's option)."""
    cls, fixed = _lookup(name)
    return bool({**fixed, **dict(options or {})}.get("shared", cls.shared))


def build_encoding(
    name: str,
    options: Optional[Mapping] = None,
    *,
    num_heads: int,
    head_dim: int,
    d_model: int,
    train_len: int,
    module_name: Optional[str] = None,
) -> PositionEncoding:
    cls, fixed = _lookup(name)
    options = dict(options or {})
    valid = encoding_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UnknownEncodingError(
            f"pe={name} has no option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid)) or 'none'}."
        )
    return cls(
        num_heads=num_heads,
        head_dim=head_dim,
        d_model=d_model,
        train_len=train_len,
        **{**fixed, **options},
        name=module_name,
    )


__all__ = [
    "NAMES",
    "REGISTRY",
    "PositionEncoding",
    "LengthError",
    "UnknownEncodingError",
    "build_encoding",
    "encoding_options",
    "is_shared",
    "alibi_slopes",
    "t5_bucket",
    "NoPE",
    "Learned",
    "Sinusoidal",
    "RoPE",
    "RoPEPI",
    "YaRN",
    "T5Bias",
    "ALiBi",
    "KerpleLog",
    "KerplePower",
    "Sandwich",
    "FIRE",
]
