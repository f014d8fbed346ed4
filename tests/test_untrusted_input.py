"""Hostile and careless input to `predict` and `data prepare`: header bombs, zip bombs,
CSVs that are not UTF-8 or not CSV at all, unwritable outputs, full disks and interrupts.
Every case is a one-line ferkit error naming the file and the limit, memory stays bounded
(tracemalloc), and an interrupted write leaves the old output and no temporary file."""

from __future__ import annotations

import errno
import io
import signal
import struct
import subprocess
import sys
import tarfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest

from ferkit.data import prepare
from ferkit.data import readers as data_readers
from ferkit.errors import DataError, ImageTooLarge, OutputError
from ferkit.files import Interrupted, atomic_path
from ferkit.infer.frames import load_source, read_image
from test_data_prepare import csv_rows, kaggle_files, write_csv, write_folder


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width × height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


BOMB = png_header(60_000, 60_000)  # 45 bytes declaring 3.6 gigapixels


def test_header_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(BOMB)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge, match=r"bomb.png: .* megapixel limit"):
            read_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
    path.write_bytes(png_header(8000, 6000))  # under Pillow's own limit, over ferkit's
    with pytest.raises(ImageTooLarge, match=r"image is 8000×6000 = 48.0 megapixels, more than"):
        read_image(path)


def test_a_bomb_in_a_folder_is_listed_and_the_rest_recognised(tmp_path):
    write_folder(tmp_path, {"a.png": kaggle_files(1)["train/angry/Training_0.png"]})
    (tmp_path / "b.png").write_bytes(BOMB)
    source = load_source(str(tmp_path))
    assert [frame.name for frame in source] == [str(tmp_path / "a.png")]
    [(name, reason)] = source.failures
    assert name.endswith("b.png") and "megapixel limit" in reason


def test_cli_predict_on_a_bomb_is_one_line(tmp_path):
    (tmp_path / "bomb.png").write_bytes(BOMB)
    result = run_cli("predict", str(tmp_path / "bomb.png"), "--out", str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "megapixel limit" in result.stderr


def test_prepare_drops_a_bomb_with_its_reason_or_fails_naming_it(tmp_path):
    files = kaggle_files(7)
    files["train/happy/Training_bomb.png"] = BOMB
    root = write_folder(tmp_path / "src", files)
    result = prepare(root, tmp_path / "s.h5")
    [dropped] = [e for e in result.report["removed"] if e["source_id"].endswith("bomb.png")]
    assert dropped["reason"] == "undecodable" and "megapixel limit" in dropped["detail"]
    from ferkit.data import CleanOptions

    with pytest.raises(DataError, match="Training_bomb.png: .* megapixel limit"):
        prepare(root, tmp_path / "t.h5", clean=CleanOptions(drop_undecodable=False))


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archive_member_over_the_size_cap_is_refused_in_bounded_memory(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(data_readers, "MAX_MEMBER_BYTES", 2**20)
    big = b"\0" * (8 * 2**20)  # compresses to a few kB: a small zip bomb
    archive = tmp_path / f"bomb.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("train/happy/Training_1.png", big)
    else:
        with tarfile.open(archive, "w:gz") as t:
            info = tarfile.TarInfo("train/happy/Training_1.png")
            info.size = len(big)
            t.addfile(info, io.BytesIO(big))
    del big
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"Training_1.png: 8,388,608 bytes, over the 1,048,576"):
            prepare(archive, tmp_path / "s.h5")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 2**20
    assert not (tmp_path / "s.h5").exists()


def test_a_member_longer_than_it_declared_is_still_capped(monkeypatch):
    monkeypatch.setattr(data_readers, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(DataError, match="x.png: 1,001 bytes, over the 1,000-byte limit"):
        data_readers.read_capped(io.BytesIO(b"1" * 5000), "x.png", declared=10)


@pytest.mark.parametrize(
    ("mangle", "words"),
    [
        (lambda text: text.replace(b"PublicTest", "PublicTést".encode("latin-1"), 1),
         "rows.csv row 9: not UTF-8 text (byte 0xe9"),
        (lambda text: text.replace(b"Training", b"T" + b"x" * 200_000, 1),
         "rows.csv: malformed CSV (field larger than field limit"),
        (lambda text: text + b"1," + b"9" * (2**20 + 10),
         "rows.csv row 23: line longer than the 1,048,576-byte limit"),
    ],
)  # fmt: skip
def test_bad_csv_text_is_a_one_line_error(tmp_path, mangle, words):
    path = write_csv(tmp_path / "rows.csv", csv_rows())
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(DataError) as error:
        prepare(path, tmp_path / "s.h5")
    assert words in str(error.value)


def test_a_folder_of_only_bad_images_is_a_one_line_error(tmp_path):
    root = write_folder(tmp_path / "src", {"train/happy/Training_1.png": b"junk"})
    result = run_cli("data", "prepare", str(root), "--out", str(tmp_path / "s.h5"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"ferkit: error: {root}: every image was removed by " \
        "cleaning; see the options"  # fmt: skip


def test_unwritable_output_fails_before_reading(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(data_readers.SourceReader, "items", lambda *a, **k: pytest.fail("read"))
    with pytest.raises(OutputError, match=r"cannot write .*file/s.h5"):
        prepare(write_csv(tmp_path / "rows.csv", csv_rows()), blocker / "s.h5")


def test_full_disk_is_an_output_error_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    target.write_text("old")
    with pytest.raises(OutputError, match=r"cannot write .*out.bin: No space left on device"):
        with atomic_path(target) as tmp:
            tmp.write_text("new, partly")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    torch = pytest.importorskip("torch")
    with pytest.raises(OutputError, match="the write failed"):  # torch.save's own error
        with atomic_path(tmp_path / "model.pt"):
            torch.save({"w": torch.zeros(1000)}, "/dev/full")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_during_a_write_keeps_the_old_file(tmp_path, signum):
    target = tmp_path / "store.h5"
    target.write_text("old")
    with pytest.raises(Interrupted):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            signal.raise_signal(signum)
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_an_interrupt_swallowed_by_an_extension_still_stops_the_write(tmp_path):
    """h5py catches the KeyboardInterrupt raised inside its callbacks and goes on."""
    target = tmp_path / "store.h5"
    target.write_text("old")
    with pytest.raises(Interrupted, match="SIGINT"):
        with atomic_path(target) as tmp:
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                pass  # swallowed, as h5py does
            tmp.write_text("finished anyway")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_prepare_interrupted_while_writing_exits_130(tmp_path, signum):
    """`ferkit data prepare --force` over an existing store, signalled while h5py writes."""
    source = write_csv(tmp_path / "rows.csv", csv_rows())
    store = tmp_path / "s.h5"
    store.write_bytes(b"the old store")
    script = (
        "import signal, sys, h5py\n"
        "create = h5py.Group.create_dataset\n"
        "def interrupted(self, *a, **k):\n"
        f"    signal.raise_signal({int(signum)})\n"
        "    return create(self, *a, **k)\n"
        "h5py.Group.create_dataset = interrupted\n"
        "from ferkit.cli import app\n"
        "sys.argv = ['ferkit'] + sys.argv[1:]\n"
        "app()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "data", "prepare", str(source), "--out", str(store),
         "--force"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 130, result.stderr
    assert store.read_bytes() == b"the old store"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv", "s.h5"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ferkit", *args], capture_output=True, text=True, timeout=300,
        cwd=Path(__file__).parent,
    )  # fmt: skip
