"""Resolve `data.name` to a corpus of documents read with `tfds.data_source`.

Built-in names (`shakespeare`, `text_dir`) are prepared by this repo's TFDS builders to
array_record; any other name is a TFDS catalog name (`c4/en:3.1.0`, `pg19`, `lm1b`)
that must already be prepared in array_record format. All three are then read by the
same call, `tfds.data_source(...)`, without TensorFlow.
"""

import contextlib
import dataclasses
import hashlib
import logging
import pathlib
from typing import Iterator

import tensorflow_datasets as tfds

from fire.data import builders
from fire.data.config import cache_root
from fire.data.errors import DataError

BUILTIN = ("shakespeare", "text_dir")
# The text feature of catalog datasets whose text is not under 'text'.
_TEXT_KEYS = {"pg19": "book_text"}
_READ_CHUNK = 256  # documents per array_record batch read


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A prepared dataset: what to pass to `tfds.data_source` and how to name caches."""

    tfds_name: str
    data_dir: str | None
    dataset_id: str  # file-name-safe identity, keys the token and tokenizer caches
    text_key: str

    def documents(self, split: str) -> "Documents":
        try:
            source = tfds.data_source(self.tfds_name, split=split, data_dir=self.data_dir, download=False)
        except ValueError as e:  # unknown split names, bad slices
            raise DataError(f"{self.tfds_name}: cannot read split {split!r}: {e}") from None
        return Documents(source, self.text_key, f"{self.tfds_name}[{split}]")


@dataclasses.dataclass(frozen=True)
class Documents:
    """The texts of one split, in their stored order."""

    source: object  # a tfds ArrayRecordDataSource
    text_key: str
    name: str

    def __len__(self) -> int:
        return len(self.source)

    def chunks(self, size: int = _READ_CHUNK) -> Iterator[list[str]]:
        for start in range(0, len(self), size):
            records = self.source.__getitems__(list(range(start, min(start + size, len(self)))))
            yield [self._text(start + i, r) for i, r in enumerate(records)]

    def _text(self, index, record) -> str:
        text = record[self.text_key]
        if isinstance(text, str):
            return text.removeprefix("\ufeff")  # a byte-order mark is not text
        try:
            return bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise DataError(f"{self.name} document {index} is not UTF-8 text (offset {e.start}).") from None


def open_corpus(data_cfg) -> Corpus:
    """Prepares the dataset if needed (idempotent) and returns how to read it."""
    name = data_cfg.name
    if name == "shakespeare":
        data_dir = cache_root(data_cfg)
        _prepare(builders.Shakespeare(data_dir=data_dir, file_format="array_record"))
        return Corpus("shakespeare", str(data_dir), "shakespeare-1.0.0", "text")
    if name == "text_dir":
        fp = builders.text_dir.fingerprint(data_cfg.path)
        data_dir = cache_root(data_cfg) / "text_dir" / fp
        _prepare(builders.TextDir(path=data_cfg.path, data_dir=data_dir, file_format="array_record"))
        return Corpus("text_dir", str(data_dir), f"text_dir-{fp}", "text")
    return _catalog(name, data_cfg.data_dir or None, data_cfg.text_key)


def _prepare(builder):
    with _quiet():
        if builder.is_prepared():
            return
        try:
            builder.download_and_prepare()
        except OSError:
            # Another process renamed its finished copy into place first: use that one.
            if not (pathlib.Path(builder.data_dir) / "dataset_info.json").exists():
                raise


@contextlib.contextmanager
def _quiet():
    """No TFDS progress bars or warnings about its own half-written folders."""
    from tensorflow_datasets.core.utils import tqdm_utils

    bars, log = getattr(tqdm_utils, "_active", True), logging.getLogger("absl")
    level = log.level
    tfds.display_progress_bar(False)
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tfds.display_progress_bar(bars)
        log.setLevel(level)


def _catalog(name: str, data_dir: str | None, text_key: str) -> Corpus:
    # TFDS registers its older text builders (c4, wikipedia, ...) only on this import.
    import tensorflow_datasets.text  # noqa: F401

    unknown = DataError(
        f"unknown dataset {name!r}: expected one of {', '.join(BUILTIN)} or a TFDS catalog "
        f"name such as c4/en:3.1.0, pg19, lm1b (tfds.list_builders() lists them)."
    )
    if not name:
        raise unknown
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise unknown from None
    except (ValueError, AssertionError) as e:  # a bad config or version, a malformed name
        reason = " ".join(str(e).split()).split('": ', 1)[-1]  # drop TFDS's kwargs preamble
        raise DataError(f"cannot load TFDS dataset {name!r}: {reason[:500]}") from None
    where = builder.data_dir
    with _quiet():
        prepared = builder.is_prepared()
    if not prepared:
        raise DataError(
            f"TFDS dataset {name!r} is not prepared under {where}. These loaders never download: "
            f"prepare it once in array_record format, e.g. tfds.builder({name!r}, data_dir=...)"
            f".download_and_prepare(file_format='array_record'), then set data.data_dir."
        )
    fmt = builder.info.file_format
    if fmt is None or fmt.value != "array_record":
        raise DataError(
            f"TFDS dataset {name!r} under {where} is stored as "
            f"{getattr(fmt, 'value', fmt)}; random access needs array_record."
        )
    features = builder.info.features.keys()
    if text_key not in features and text_key == "text" and builder.name in _TEXT_KEYS:
        text_key = _TEXT_KEYS[builder.name]
    if text_key not in features:
        raise DataError(
            f"TFDS dataset {name!r} has no feature {text_key!r} (data.text_key); "
            f"its features are {', '.join(sorted(features))}."
        )
    digest = hashlib.sha256(f"{where}\0{text_key}".encode()).hexdigest()[:12]
    safe = builder.info.full_name.replace("/", "-")
    return Corpus(name, data_dir, f"tfds-{safe}-{digest}", text_key)


def dataset_cache_dir(data_cfg, corpus: Corpus) -> pathlib.Path:
    """Where this corpus's token caches and trained tokenizers live."""
    return cache_root(data_cfg) / "cache" / corpus.dataset_id
