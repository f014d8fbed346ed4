"""File helpers shared by every layer: fingerprints for provenance (stores, checkpoints,
exports, model cards) and the one atomic write, so a crash, Ctrl-C or `kill` never leaves
a half-written store, checkpoint, report or plot where a finished one is expected, nor a
temporary file beside it, and a full disk or a read-only folder is one clear error."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ferkit.errors import DataError, OutputError

# errors that mean "this output cannot be written", as opposed to a bug or a bad input
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}
# how torch.save reports a failed write (e.g. a full disk) from its zip writer
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter failed", "unexpected pos")


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while a file was being written (the CLI exits 130)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks (fine for multi-GB files)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path` (same suffix, so writers that infer the
    format from it still work); it replaces `path` only when the block finishes without
    error or interrupt, and is removed otherwise. Parent folders are created. The temporary
    file is left for the writer to create, so it gets the usual permissions (mkstemp's are
    owner-only). A write that fails for lack of space or permission is an `OutputError`
    naming `path`; SIGINT or SIGTERM during the block is an `Interrupted`, even when a C
    extension (h5py) swallows the exception its signal handler raised."""
    path = Path(path)
    check_writable(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    with _signals_interrupt() as received:
        try:
            yield tmp
            if received:  # raised inside an extension that swallowed it: stop all the same
                raise Interrupted(received[0])
            os.replace(tmp, path)
        except (OSError, RuntimeError) as error:
            failure = _write_failure(error, path)
            if failure is None:
                raise
            raise failure from error
        finally:
            tmp.unlink(missing_ok=True)


def atomic_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically (see `atomic_path`); returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **options) -> Iterator[IO]:
    """`open(path, mode)` whose file appears at `path` only once the block has finished
    (see `atomic_path`): for writers that take a file handle (csv, pickle-free dumps)."""
    with atomic_path(path) as tmp, open(tmp, mode, **options) as handle:
        yield handle


def save_figure(fig, path: str | Path, **savefig) -> Path:
    """Write a matplotlib figure atomically and close it (also when saving fails); the
    format follows the suffix, `savefig` options (dpi, bbox_inches) go to matplotlib."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, **savefig)
    finally:
        plt.close(fig)
    return path


def refuse_existing(path: str | Path, force: bool) -> None:
    """A one-line error when `path` exists and `force` was not given: checked before the
    minutes of reading or encoding that would precede the write."""
    if Path(path).exists() and not force:
        raise DataError(f"{path} already exists; pass --force (force=True) to overwrite it")


def check_writable(path: str | Path) -> None:
    """Create `path`'s folder and make sure a file can be written there, so a read-only
    or missing output folder fails at once, not after minutes of reading or training."""
    folder = Path(path).parent
    probe = folder / f".{Path(path).name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.probe"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None


def _write_failure(error: Exception, path: Path) -> OutputError | None:
    """The OutputError a failed write amounts to, or None if `error` is something else."""
    if isinstance(error, OSError):
        if error.errno not in _WRITE_ERRNOS:
            return None
        reason = os.strerror(error.errno)
    elif any(text in str(error) for text in _TORCH_WRITE_FAILURES):
        reason = "the write failed"
    else:
        return None
    free = shutil.disk_usage(path.parent).free
    return OutputError(f"cannot write {path}: {reason} ({free / 2**20:,.1f} MiB free there)")


@contextmanager
def _signals_interrupt() -> Iterator[list[int]]:
    """While the block runs, SIGINT and SIGTERM raise `Interrupted` and are recorded in
    the yielded list (only in the main thread, the one Python delivers signals to)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def interrupt(signum, _frame):
        received.append(signum)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
