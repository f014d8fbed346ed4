"""File helpers shared by every layer: fingerprints for provenance (stores, checkpoints,
exports, model cards) and the one atomic write, so a crash or Ctrl-C never leaves a
half-written store, checkpoint, report or plot where a finished one is expected."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks (fine for multi-GB files)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path` (same suffix, so writers that infer the
    format from it still work); it replaces `path` only when the block finishes without
    error, and is removed otherwise. Parent folders are created. The temporary file is left
    for the writer to create, so it gets the usual permissions (mkstemp's are owner-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
