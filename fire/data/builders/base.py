"""What the repo's TFDS builders share."""

import tensorflow_datasets as tfds


class QuietBuilder(tfds.core.GeneratorBasedBuilder):
    """A generator builder that keeps stdout clean (TFDS prints a banner per prepare)."""

    def _log_download_bytes(self):
        pass

    def _log_download_done(self):
        pass
