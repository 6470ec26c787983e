"""Publish prepared files all at once, so a crash or a concurrent process never leaves
something half-written that a later run would read as complete."""

import contextlib
import hashlib
import os
import pathlib
import re
import shutil
import tempfile


@contextlib.contextmanager
def publish_dir(final: pathlib.Path):
    """Yields an empty temporary folder beside `final`, renamed to `final` on success.

    When several processes prepare the same thing, the first rename wins and the
    others drop their copy (all copies are built deterministically from the same input).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.incomplete-", dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def publish_file(final: pathlib.Path):
    """Yields a temporary path beside `final`, linked to `final` on success (first wins)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.incomplete-", dir=final.parent)
    os.close(fd)
    tmp = pathlib.Path(tmp)
    try:
        yield tmp
        try:
            os.link(tmp, final)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def safe_name(text: str) -> str:
    """A file name for an arbitrary string (a split like 'train[:10%]'), still unique."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
    if safe != text:
        safe += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return safe
