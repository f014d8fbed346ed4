"""ferkit's exceptions.

Every error caused by input (a file, a row, a frame, an option) raises a `FerkitError`
whose message names what was wrong and where. The CLI prints that message on one line
and exits non-zero; anything else is a bug and keeps its traceback.
"""


class FerkitError(Exception):
    """Base class of every error ferkit raises on purpose."""


class DataError(FerkitError):
    """A data source, row, file or store is missing, malformed or inconsistent."""


class ConfigError(FerkitError):
    """A configuration key or value is unknown or invalid."""


class ModelError(FerkitError):
    """A model name, checkpoint or weight file cannot be used."""


class SourceError(FerkitError):
    """An image, video, stream or camera cannot be opened or read."""


class ImageTooLarge(SourceError):
    """An image whose header declares more pixels than allowed (a decompression bomb)."""


class OutputError(FerkitError):
    """An output file or folder cannot be written (no permission, read-only, disk full)."""
