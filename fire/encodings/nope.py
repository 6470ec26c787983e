"""NoPE: no position information; the causal mask alone orders the tokens."""

from fire.encodings.base import PositionEncoding


class NoPE(PositionEncoding):
    """Contributes nothing: every hook keeps the base class's ``None``."""
