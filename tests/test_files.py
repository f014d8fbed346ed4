"""The shared file helpers: one atomic write for every store, checkpoint, report and plot."""

from __future__ import annotations

import pytest

from ferkit.files import atomic_path, sha256_file


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "report.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".json" and tmp != target
        tmp.write_text("first")
    assert target.read_text() == "first"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's owner-only

    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "first"  # the finished file survives the failed rewrite
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]  # no temp left


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    path = tmp_path / "blob.bin"
    path.write_bytes(b"ferkit" * 1000)
    assert sha256_file(path) == hashlib.sha256(b"ferkit" * 1000).hexdigest()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
