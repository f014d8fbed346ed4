"""prepare(): every source format, the cleaning steps, and every kind of bad input."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferkit.data import CleanOptions, open_store, prepare
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS

from conftest import load_script, synthetic_faces

KAGGLE = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
PREFIX = {0: "Training", 1: "PublicTest", 2: "PrivateTest"}


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def write_csv(path: Path, rows, header=("emotion", "pixels", "Usage")) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def csv_rows(n: int = 21, seed: int = 0):
    usage = ["Training", "PublicTest", "PrivateTest"]
    images = synthetic_faces(n, seed)
    return [(i % 7, " ".join(map(str, images[i].ravel())), usage[(i // 7) % 3]) for i in range(n)]


def kaggle_files(n_per_split: int = 14, prefixes: bool = True, seed: int = 0) -> dict[str, bytes]:
    """relative path → PNG bytes, in the Kaggle train/<class>/, test/<class>/ layout."""
    images = synthetic_faces(3 * n_per_split, seed)
    files = {}
    for k, image in enumerate(images):
        split, label = k // n_per_split, k % 7
        folder = "train" if split == 0 else "test"
        name = f"{PREFIX[split]}_{k}.png" if prefixes else f"img_{k}.png"
        files[f"{folder}/{KAGGLE[label]}/{name}"] = png(image)
    return files


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for rel, data in files.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for rel, data in files.items():
            archive.writestr(rel, data)
    return path


def assert_no_leftovers(folder: Path, expected: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == expected


# ------------------------------------------------------------------ formats
def test_csv_round_trip(tmp_path):
    rows = csv_rows()
    source = write_csv(tmp_path / "fer2013.csv", rows)
    result = prepare(source, tmp_path / "s.h5")
    assert result.counts == {"train": 7, "val": 7, "test": 7}
    with open_store(result.store) as store:
        images, labels = store.split_arrays("val")
        expected = np.array([r[1].split() for r in rows[7:14]], dtype=np.uint8).reshape(-1, 48, 48)
        np.testing.assert_array_equal(images, expected)
        np.testing.assert_array_equal(labels, [r[0] for r in rows[7:14]])
        assert store.class_names == EMOTIONS
        assert store.source_sha256 == result.report["source"]["sha256"]
        assert len(store.source_sha256) == 64


@pytest.mark.parametrize("kind", ["folder", "tar", "zip"])
def test_kaggle_layout_all_containers(tmp_path, kind):
    files = kaggle_files()
    if kind == "folder":
        source = write_folder(tmp_path / "src", files)
    elif kind == "tar":
        source = write_tar(tmp_path / "fer.tar.gz", files)
    else:
        source = write_zip(tmp_path / "fer.zip", files)
    result = prepare(source, tmp_path / "s.h5")
    assert result.counts == {"train": 14, "val": 14, "test": 14}
    with open_store(result.store) as store:
        ids = store.source_ids("test")
        assert all("PrivateTest_" in i for i in ids)
        images, labels = store.split_arrays("test")
        # folder name → FER index order: happy is 3 in FER, 3rd (0-based) in Kaggle order
        for source_id, label in zip(ids, labels):
            assert EMOTIONS[label] == source_id.split("/")[1]
        original = cv2.imdecode(np.frombuffer(files[ids[0]], np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(images[0], original)


def test_csv_inside_archive(tmp_path):
    csv_path = write_csv(tmp_path / "fer2013.csv", csv_rows())
    source = write_tar(tmp_path / "fer.tar.gz", {"fer2013/fer2013.csv": csv_path.read_bytes()})
    assert prepare(source, tmp_path / "s.h5").counts == {"train": 7, "val": 7, "test": 7}


def test_folder_without_split_names_gets_stratified_val(tmp_path):
    files = kaggle_files(n_per_split=70, prefixes=False)
    source = write_folder(tmp_path / "src", files)
    result = prepare(source, tmp_path / "s.h5", val_fraction=0.2, seed=3)
    assert result.counts == {"train": 56, "val": 14, "test": 140}
    assert result.report["summary"]["val_carved_from_train"] == 14
    with open_store(result.store) as store:
        _, val_labels = store.split_arrays("val")
        assert np.bincount(val_labels, minlength=7).tolist() == [2] * 7  # stratified
    again = prepare(source, tmp_path / "t.h5", val_fraction=0.2, seed=3)
    with open_store(result.store) as a, open_store(again.store) as b:
        assert a.source_ids("val") == b.source_ids("val")  # seeded


def test_class_map_and_synonyms(tmp_path):
    files = {
        "train/happiness/a.png": png(synthetic_faces(1, 1)[0]),
        "train/grumpy/b.png": png(synthetic_faces(1, 2)[0]),
    }
    source = write_folder(tmp_path / "src", files)
    with pytest.raises(
        DataError, match=r"train/grumpy/b.png: unknown class folder 'grumpy'.*angry"
    ):
        prepare(source, tmp_path / "s.h5", val_fraction=0)
    result = prepare(source, tmp_path / "s.h5", val_fraction=0, class_map={"grumpy": "angry"})
    with open_store(result.store) as store:
        _, labels = store.split_arrays("train")
        assert sorted(EMOTIONS[i] for i in labels) == ["angry", "happy"]


# ------------------------------------------------------------------ cleaning
def test_cleaning_steps_are_counted_and_listed(tmp_path):
    images = synthetic_faces(20, 5)
    near = np.clip(images[3].astype(int) + 2, 0, 255).astype(np.uint8)
    good = png(images[0])
    files = {f"train/happy/Training_{i}.png": png(images[i]) for i in range(10)}
    files.update({
        "train/happy/Training_broken.png": b"not an image at all",
        "train/happy/Training_truncated.png": good[: len(good) // 2],
        "train/sad/Training_big.png": png(cv2.resize(images[11], (96, 96))),
        "train/sad/Training_color.png": png(cv2.cvtColor(images[12], cv2.COLOR_GRAY2BGR)),
        "train/sad/Training_blank.png": png(np.full((48, 48), 7, np.uint8)),
        "train/sad/Training_dup.png": png(images[1]),
        "train/sad/Training_near.png": png(near),
        "train/sad/notes.txt": b"a stray text file",
        "test/happy/PrivateTest_leak.png": png(images[2]),
        "test/fear/PrivateTest_a.png": png(images[15]),
        "test/fear/PrivateTest_blank.png": png(np.zeros((48, 48), np.uint8)),
        "test/fear/PublicTest_b.png": png(images[16]),
    })  # fmt: skip
    source = write_folder(tmp_path / "src", files)
    result = prepare(source, tmp_path / "s.h5")
    summary = result.report["summary"]
    assert summary["read"] == 21
    assert summary["removed"] == {
        "undecodable": 2, "wrong_size": 0, "blank": 1, "duplicate": 1, "leak": 0
    }  # fmt: skip
    assert summary["converted"] == 2
    assert summary["blank_kept"] == 1  # the test split stays canonical
    assert summary["leaks_found"] == 1
    assert summary["near_duplicate_pairs"] >= 1
    removed = {e["source_id"]: e["reason"] for e in result.report["removed"]}
    assert removed == {
        "train/happy/Training_broken.png": "undecodable",
        "train/happy/Training_truncated.png": "undecodable",
        "train/sad/Training_blank.png": "blank",
        "train/sad/Training_dup.png": "duplicate",
    }
    near_pairs = {frozenset((p["a"], p["b"])) for p in result.report["findings"]["near_duplicates"]}
    assert frozenset(("train/happy/Training_3.png", "train/sad/Training_near.png")) in near_pairs
    assert result.report["findings"]["skipped_files"] == ["train/sad/notes.txt"]
    on_disk = json.loads(result.report_path.read_text())
    assert on_disk["removed"] == result.report["removed"]
    assert result.counts == {"train": 13, "val": 1, "test": 3}

    strict = CleanOptions(wrong_size="drop", drop_leaks=True, drop_blank=False)
    result = prepare(source, tmp_path / "t.h5", clean=strict)
    summary = result.report["summary"]
    assert summary["removed"]["wrong_size"] == 2
    assert summary["removed"]["leak"] == 1
    assert summary["removed"]["blank"] == 0

    with pytest.raises(DataError, match="Training_broken.png: cannot decode"):
        prepare(source, tmp_path / "u.h5", clean=CleanOptions(drop_undecodable=False))


# ------------------------------------------------------------------ bad input
def test_missing_path_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        prepare(tmp_path / "nope.csv", tmp_path / "s.h5")
    (tmp_path / "data.parquet").write_bytes(b"x")
    with pytest.raises(DataError, match="unknown source format"):
        prepare(tmp_path / "data.parquet", tmp_path / "s.h5")


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([(0, "1 2 3", "Training")], ("emotion", "Usage"), "missing column.*pixels"),
        ([(0, "1 2 3", "Training")], None, r"row 5: 3 pixel values, expected 2304"),
        (
            [(0, " ".join(["7"] * 2303 + ["x"]), "Training")],
            None,
            r"row 5: pixel value 'x'",
        ),
        (
            [(0, " ".join(["300"] * 2304), "Training")],
            None,
            r"row 5: pixel values must lie",
        ),
        ([(9, " ".join(["7"] * 2304), "Training")], None, r"row 5: emotion 9 is outside"),
        (
            [("happy", " ".join(["7"] * 2304), "Training")],
            None,
            "row 5: emotion 'happy' is not",
        ),
        ([(1, " ".join(["7"] * 2304), "Holdout")], None, "row 5: Usage 'Holdout'"),
    ],
)
def test_bad_csv_rows_name_the_row(tmp_path, rows, header, message):
    good = csv_rows(3)
    source = write_csv(tmp_path / "bad.csv", good + rows, header or ("emotion", "pixels", "Usage"))
    with pytest.raises(DataError, match=message):
        prepare(source, tmp_path / "s.h5")
    assert_no_leftovers(tmp_path, {"bad.csv"})


def test_empty_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        prepare(tmp_path / "empty", tmp_path / "s.h5")
    write_csv(tmp_path / "header_only.csv", [])
    with pytest.raises(DataError, match="no images found"):
        prepare(tmp_path / "header_only.csv", tmp_path / "s.h5")
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(DataError, match="empty CSV"):
        prepare(tmp_path / "blank.csv", tmp_path / "s.h5")


def test_corrupt_archive(tmp_path):
    archive = write_tar(tmp_path / "fer.tar.gz", kaggle_files())
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="fer.tar.gz: unreadable archive"):
        prepare(archive, tmp_path / "s.h5")
    assert_no_leftovers(tmp_path, {"fer.tar.gz"})


def test_existing_output_needs_force(tmp_path):
    source = write_csv(tmp_path / "fer2013.csv", csv_rows())
    out = tmp_path / "s.h5"
    out.write_bytes(b"precious")
    with pytest.raises(DataError, match="already exists; pass --force"):
        prepare(source, out)
    assert out.read_bytes() == b"precious"
    prepare(source, out, force=True)
    with open_store(out) as store:
        assert len(store) == 21


def test_archive_without_public_test_gets_a_random_val_split_from_train(tmp_path):
    """scripts/random_val_archive.py: PublicTest is left out, so prepare carves val out of
    the training images (the originals' likely protocol) and PrivateTest stays the test."""
    script = load_script("random_val_archive")
    source = write_tar(tmp_path / "fer.tar.gz", kaggle_files(n_per_split=14))
    dest = tmp_path / "randval.tar.gz"
    script.main([str(source), str(dest)])
    assert_no_leftovers(tmp_path, {"fer.tar.gz", "randval.tar.gz"})
    with tarfile.open(dest) as archive:
        names = [Path(m).name for m in archive.getnames()]
    assert len(names) == 28 and not any(n.startswith("PublicTest_") for n in names)

    prepare(dest, tmp_path / "randval.h5", val_fraction=0.5)
    with open_store(tmp_path / "randval.h5") as store:
        ids = {split: store.source_ids(split) for split in ("train", "val", "test")}
    assert {split: len(i) for split, i in ids.items()} == {"train": 7, "val": 7, "test": 14}
    assert all("Training_" in i for i in ids["train"] + ids["val"])
    assert all("PrivateTest_" in i for i in ids["test"])
