"""Small helpers used across the package: arithmetic, formatting, memory, hints."""

import ctypes
import difflib
import functools
import inspect
import re
import resource
import sys
from typing import Iterable

MiB = 1 << 20
GiB = 1 << 30


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for integers."""
    return -(-a // b)


def round_up(a: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is at least ``a``."""
    return ceil_div(a, multiple) * multiple


def format_bytes(n, missing: str = "?") -> str:
    """``'1.50 GiB'`` or ``'12 MiB'``; ``missing`` for None."""
    if n is None:
        return missing
    return f"{n / GiB:.2f} GiB" if abs(n) >= GiB else f"{n / MiB:.0f} MiB"


def format_count(n) -> str:
    """``'13.1B'``, ``'2.0M'``, ``'476.2k'`` or ``'12'``."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def to_mib(n):
    """Bytes as MiB rounded to 0.1, or None."""
    return None if n is None else round(n / MiB, 1)


def format_duration(seconds: float) -> str:
    """``'1h02m'``, ``'3m05s'`` or ``'42s'``."""
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def peak_rss_bytes() -> int:
    """The process's peak resident memory since start (or since :func:`reset_peak_rss`)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def reset_peak_rss() -> bool:
    """Restarts the kernel's RSS high-water mark (Linux) from the current RSS, after handing
    freed memory back to the OS (else later work reuses it unseen). False where the kernel
    does not allow it."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """``' Did you mean a, b?'`` for the choices close to ``word``, else ``''``."""
    close = difflib.get_close_matches(word, list(choices), n=n)
    return f" Did you mean {', '.join(close)}?" if close else ""


# Read once per class: reading a class's source takes milliseconds, and every build of an
# encoding (per layer, per trace) checks its options against the comments.
@functools.lru_cache(maxsize=None)
def field_comments(cls, base) -> dict:
    """``{field: comment}`` for the fields of ``cls`` and of its bases that subclass ``base``,
    each written ``name: type = default  # comment`` in the class's source (a subclass's
    comment wins); a class whose source cannot be read adds nothing."""
    meanings = {}
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, base)):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for name, meaning in re.findall(r"^\s+(\w+): [^=\n]+=[^#\n]+#\s*(.+)$", source, re.M):
            meanings[name] = meaning.strip()
    return meanings
