"""File fingerprints shared by every layer that records provenance (stores, checkpoints,
exports, model cards): one definition, so the same file always gets the same digest."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks (fine for multi-GB files)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
