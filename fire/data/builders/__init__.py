"""TFDS builders written in this repo; importing this package registers them with TFDS."""

from fire.data.builders.shakespeare import Shakespeare
from fire.data.builders.text_dir import TextDir

__all__ = ["Shakespeare", "TextDir"]
