"""`text_dir`: every `*.txt` file under a folder is one document.

Splits come from `train/` and `validation/` subfolders when the folder has them; else
each file goes to validation when the hash of its relative path falls in the first
VALIDATION_FRACTION of the hash range (at least one file), so the split never depends
on listing order and adding a file never moves the others.
"""

import hashlib
import os
import pathlib

import tensorflow_datasets as tfds

from fire.data.builders.base import QuietBuilder
from fire.data.errors import DataError

VALIDATION_FRACTION = 0.1
SPLIT_FOLDERS = ("train", "validation")
# How files become documents; part of the fingerprint, so a change re-prepares every folder.
# 2: a UTF-8 byte-order mark at the start of a file is not text.
DECODING = 2


def _hash_fraction(name: str) -> float:
    return int(hashlib.sha256(name.encode()).hexdigest()[:15], 16) / 16**15


def _given(path) -> str:
    """``path``, unless it is empty: an empty path must never mean the current folder."""
    if not str(path or "").strip():
        raise DataError("data=text_dir needs --config.data.path=DIR, a folder of *.txt files; none was given.")
    return str(path)


def split_files(path) -> dict[str, list[pathlib.Path]]:
    """{'train': [...], 'validation': [...]} of `*.txt` files under `path` (sorted).

    Raises:
      DataError: an empty or missing path (never the current folder by default), a folder
        with too few files to split, or split subfolders of which one is empty.
    """
    root = pathlib.Path(_given(path)).expanduser()
    if not root.is_dir():
        raise DataError(f"text_dir needs an existing folder as data.path; got {str(path)!r}.")
    subfolders = [s for s in SPLIT_FOLDERS if (root / s).is_dir()]
    if subfolders:
        splits = {s: sorted((root / s).rglob("*.txt")) for s in SPLIT_FOLDERS if s in subfolders}
        empty = [s for s in SPLIT_FOLDERS if not splits.get(s)]
        if empty:
            found = ", ".join(f"{s}/: {len(splits.get(s, []))} .txt files" for s in SPLIT_FOLDERS)
            raise DataError(f"text_dir {root} has split subfolders but {empty[0]}/ has no *.txt files ({found}).")
        return splits
    files = sorted(root.rglob("*.txt"))
    if len(files) < 2:
        raise DataError(
            f"text_dir {root} has {len(files)} *.txt files; it needs at least 2 "
            f"(or train/ and validation/ subfolders) to split into train and "
            f"validation."
        )
    rel = {f: f.relative_to(root).as_posix() for f in files}
    validation = [f for f in files if _hash_fraction(rel[f]) < VALIDATION_FRACTION]
    validation = validation or [min(files, key=lambda f: _hash_fraction(rel[f]))]
    return {"train": [f for f in files if f not in validation], "validation": validation}


def fingerprint(path) -> str:
    """Identifies the folder's current content (names, sizes, mtimes) for caching."""
    root = pathlib.Path(_given(path)).expanduser().absolute()
    h = hashlib.sha256(f"{root}\0decoding {DECODING}".encode())
    for split, files in split_files(root).items():
        for f in files:
            st = f.stat()
            h.update(f"{split}\0{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def read_text(file: pathlib.Path) -> str:
    """The file's text: UTF-8, without a leading byte-order mark (a marker, not text).

    Raises DataError for bytes that are not UTF-8 (a binary file), naming the offset."""
    data = file.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{file} is not UTF-8 text: byte {data[e.start]:#04x} at offset {e.start} of {len(data)} cannot be decoded."
        ) from None


class TextDir(QuietBuilder):
    """A folder of *.txt files; prepared once per folder content (see `fingerprint`)."""

    name = "text_dir"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "One document per *.txt file."}

    def __init__(self, *, path=None, **kwargs):
        """`path`: the folder to prepare; not needed to read a prepared copy."""
        self._path = path
        super().__init__(**kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "path": tfds.features.Text(),
                    "text": tfds.features.Text(),
                }
            ),
            disable_shuffling=True,  # keep file order: eval streams start at a fixed text
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        root = pathlib.Path(self._path).expanduser()
        # A DataError raised while generating propagates as is, and TFDS then deletes its
        # incomplete folder: nothing half-written is left.
        return {s: self._generate_examples(root, files) for s, files in split_files(root).items()}

    def _generate_examples(self, root, files):
        for f in files:
            rel = os.path.relpath(f, root)
            yield rel, {"path": rel, "text": read_text(f)}
