"""FER+ votes: both files joined to their sources, stored, inspected, and every bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from ferkit.data import inspect_table, open_store, prepare
from ferkit.data.ferplus import KAGGLE_HEADER, VOTE_COLUMNS, read_votes
from ferkit.data.targets import MAJORITY_NAMES, VOTE_CODES, majority
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS
from test_data_prepare import csv_rows, kaggle_files, write_csv, write_folder


def votes_for(emotion: str, n: int = 8, other: str = "neutral") -> list[int]:
    """10 vote counts (file column order): n for `emotion`, the rest of 10 for `other`."""
    votes = [0] * len(VOTE_COLUMNS)
    column = {name: j for j, name in enumerate(VOTE_COLUMNS)}
    names = dict(zip(MAJORITY_NAMES, VOTE_CODES.argsort()))  # class name → column
    votes[names.get(emotion, column.get(emotion, 0))] += n
    votes[names.get(other, column.get(other, 0))] += 10 - n
    return votes


def usage_of(path: str) -> str:
    return Path(path).name.split("_")[0]


def write_kaggle_votes(path: Path, lines: dict[str, list[int] | None], header=KAGGLE_HEADER):
    """kaggle_votes.csv with one line per file: votes, or None for an unmatched line."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for name, votes in lines.items():
            status = "unique" if votes is not None else "unmatched"
            cells = votes if votes is not None else [""] * len(VOTE_COLUMNS)
            writer.writerow([name, usage_of(name), status, "", *cells])
    return path


@pytest.fixture
def kaggle(tmp_path):
    """A Kaggle-layout folder and votes agreeing with its folder labels, except: one image
    FER+ calls angry, one not-a-face, one unmatched line and one image without a line."""
    files = kaggle_files()
    source = write_folder(tmp_path / "src", files)
    lines = {name: votes_for(name.split("/")[1]) for name in files}
    names = sorted(files)
    lines[names[0]] = votes_for("angry") if "angry" not in names[0] else votes_for("fear")
    lines[names[1]] = votes_for("NF", 9)
    lines[names[2]] = None
    del lines[names[3]]
    return source, write_kaggle_votes(tmp_path / "votes.csv", lines), names, lines


def test_votes_are_stored_by_file_and_the_unmatched_flagged(kaggle, tmp_path):
    source, votes_file, names, lines = kaggle
    result = prepare(source, tmp_path / "s.h5", ferplus=votes_file)
    info = result.report["ferplus"]
    assert info["join"] == "file path" and info["file"] == str(votes_file)
    assert sum(info["matched"].values()) == len(names) - 2
    assert sum(info["unmatched"].values()) == 2
    assert "2 image(s) without votes kept and flagged" in result.summary()
    with open_store(result.store) as store:
        assert store.has_ferplus and store.ferplus_info() == info
        for split in ("train", "val", "test"):
            votes, matched = store.ferplus_votes(split)
            assert votes.shape == (len(matched), 10) and votes.dtype == np.uint8
            for source_id, row, flag in zip(store.source_ids(split), votes, matched):
                expected = lines.get(source_id)
                assert flag == (expected is not None)
                assert row.tolist() == (expected or [0] * 10)


def test_a_store_without_votes_says_how_to_add_them(tmp_path):
    source = write_folder(tmp_path / "src", kaggle_files())
    with open_store(prepare(source, tmp_path / "s.h5").store) as store:
        assert not store.has_ferplus and store.ferplus_info() == {}
        with pytest.raises(DataError, match="no FER\\+ votes in this store.*--ferplus"):
            store.ferplus_votes("train")


def test_nested_archive_paths_match_by_their_tail(tmp_path):
    files = {f"fer2013/{name}": data for name, data in kaggle_files().items()}
    source = write_folder(tmp_path / "src", files)
    lines = {name.removeprefix("fer2013/"): votes_for("happy") for name in files}
    votes = write_kaggle_votes(tmp_path / "votes.csv", lines)
    result = prepare(source, tmp_path / "s.h5", ferplus=votes)
    assert sum(result.report["ferplus"]["unmatched"].values()) == 0


def write_rows_votes(path: Path, rows, votes) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Usage", "Image name", *VOTE_COLUMNS])
        for k, (row, v) in enumerate(zip(rows, votes)):
            writer.writerow([row[2], f"fer{k:07d}.png", *v])
    return path


def test_fer2013new_joins_the_original_csv_by_row_position(tmp_path):
    rows = csv_rows()
    source = write_csv(tmp_path / "fer2013.csv", rows)
    # row k: FER+ says the emotion after its FER-2013 label, so every row is told apart
    votes = [votes_for(EMOTIONS[(r[0] + 1) % 7], n=7 + k % 3) for k, r in enumerate(rows)]
    votes_file = write_rows_votes(tmp_path / "fer2013new.csv", rows, votes)
    result = prepare(source, tmp_path / "s.h5", ferplus=votes_file)
    assert result.report["ferplus"]["join"] == "row position"
    with open_store(result.store) as store:
        for split in ("train", "val", "test"):
            stored, matched = store.ferplus_votes(split)
            assert matched.all()
            for source_id, row in zip(store.source_ids(split), stored):
                assert row.tolist() == votes[int(source_id.rpartition(":")[2]) - 2]


def test_bad_votes_files_name_the_file_and_line_and_write_nothing(kaggle, tmp_path):
    source, votes_file, names, _ = kaggle
    header = ",".join(KAGGLE_HEADER)
    good = votes_file.read_text().splitlines()[1]
    name, usage = names[5], usage_of(names[5])
    votes = "9,1,0,0,0,0,0,0,0,0"
    cases = {
        "wrong header": ("file,votes", " line 1: not a FER+"),
        "unknown usage": (f"{header}\n{good}\n{name},x,unique,,{votes}", " line 3: usage 'x'"),
        "vote not integer": (
            f"{header}\n{name},{usage},unique,,1,2.5,0,0,0,0,0,0,0,0",
            " line 2: happiness vote '2.5' is not an integer",
        ),
        "unknown file": (
            f"{header}\n{good}\ntrain/sad/Training_999.png,Training,unique,,{votes}",
            " line 3: train/sad/Training_999.png is not an image of",
        ),
        "no match": (f"{header}\nother/x.png,Training,unique,,{votes}", ": no image of"),
        "usage contradicts the split": (
            f"{header}\n{names[-1]},PrivateTest,unique,,{votes}",
            " line 2: usage test but .* has train/",
        ),
    }
    for (what, (text, message)), stem in zip(cases.items(), "hnvumc"):
        path = tmp_path / f"{stem}.csv"
        path.write_text(text + "\n")
        with pytest.raises(DataError, match=rf"{stem}\.csv{message}"):
            prepare(source, tmp_path / "out.h5", ferplus=path)
        assert not (tmp_path / "out.h5").exists(), what


def test_fer2013new_needs_the_original_csv(kaggle, tmp_path):
    source = kaggle[0]
    rows = csv_rows()
    votes = write_rows_votes(tmp_path / "fer2013new.csv", rows, [votes_for("sad")] * len(rows))
    with pytest.raises(DataError, match="joins by row position and needs the original"):
        prepare(source, tmp_path / "out.h5", ferplus=votes)
    shorter = write_csv(tmp_path / "fer2013.csv", rows[:14])
    with pytest.raises(DataError, match="has 21 data rows but .* has 14"):
        prepare(shorter, tmp_path / "out.h5", ferplus=votes)
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize(
    "votes, expected",
    [
        ([8, 2, 0, 0, 0, 0, 0, 0, 0, 0], "neutral"),
        ([5, 4, 1, 0, 0, 0, 0, 0, 0, 0], "neutral"),  # the single surprise vote is dropped
        ([4, 4, 2, 0, 0, 0, 0, 0, 0, 0], "unknown"),  # no category holds more than half
        ([0, 0, 0, 0, 6, 0, 0, 0, 4, 0], "angry"),
        ([0, 0, 0, 0, 0, 0, 0, 6, 4, 0], "contempt"),
        ([1, 0, 0, 0, 0, 0, 0, 0, 0, 9], "not_a_face"),
        ([2, 0, 0, 0, 0, 0, 0, 0, 8, 0], "unknown"),
        ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "unknown"),  # every vote single
        ([0] * 10, "no_votes"),
        ([3, 14, 0, 0, 2, 0, 1, 0, 0, 0], "happy"),  # summed votes of duplicate images
    ],
)
def test_majority_rule_of_the_paper(votes, expected):
    assert MAJORITY_NAMES[majority(np.array([votes]))[0]] == expected


def test_inspect_reports_agreement_and_lists_not_a_face(kaggle, tmp_path):
    source, votes_file, names, _ = kaggle
    result = prepare(source, tmp_path / "s.h5", ferplus=votes_file)
    console = Console(record=True, width=300)
    with open_store(result.store) as store:
        console.print(inspect_table(store))
    text = console.export_text()
    assert "FER-2013 label vs FER+ majority" in text
    assert "FER+ not-a-face images (1):" in text and names[1] in text
    # 42 images: 2 without votes, 1 not-a-face, 1 disagreeing → 38 of 39 agree
    assert "38/39 97.4 %" in text


def test_real_fer2013new_majority_counts_match_the_ferplus_readme(ferplus_votes):
    rows = read_votes(ferplus_votes.parent / "fer2013new.csv")
    counts = np.bincount(majority(rows.votes), minlength=len(MAJORITY_NAMES))
    assert dict(zip(MAJORITY_NAMES, counts.tolist())) == {
        "angry": 2_660, "disgust": 161, "fear": 677, "happy": 9_045, "sad": 3_749,
        "surprise": 3_960, "neutral": 11_012, "contempt": 148, "unknown": 4_299,
        "not_a_face": 176, "no_votes": 0,
    }  # fmt: skip
    kaggle = read_votes(ferplus_votes)
    assert len(kaggle.votes) == 35_887
    assert int((~kaggle.has_votes).sum()) == 234 + 12  # unmatched + blank_image lines


def test_cli_prepare_with_votes_inspect_and_a_bad_votes_file(kaggle, tmp_path):
    from test_data_cli import ferkit

    source, votes_file, names, _ = kaggle
    out = tmp_path / "store.h5"
    done = ferkit("data", "prepare", source, "--out", out, "--ferplus", votes_file)
    assert done.returncode == 0, done.stderr
    assert "FER+ votes" in done.stdout and "joined by file path" in done.stdout
    shown = ferkit("data", "inspect", out, "--plot", "--out", tmp_path / "plots")
    assert shown.returncode == 0, shown.stderr
    assert "FER+ not-a-face images (1)" in shown.stdout
    assert (tmp_path / "plots" / "store_ferplus_agreement.png").stat().st_size > 1000
    broken = tmp_path / "broken.csv"
    broken.write_text("file,votes\n")
    failed = ferkit("data", "prepare", source, "--out", tmp_path / "x.h5", "--ferplus", broken)
    assert failed.returncode == 1 and not (tmp_path / "x.h5").exists()
    assert failed.stderr.strip().splitlines() == [
        f"ferkit: error: {broken} line 1: not a FER+ votes header; expected "
        "file,usage,status,ferplus_rows,neutral,happiness,surprise,sadness,anger,disgust,fear,"
        "contempt,unknown,NF (kaggle_votes.csv) or Usage,Image name,neutral,happiness,surprise,"
        "sadness,anger,disgust,fear,contempt,unknown,NF (fer2013new.csv)"
    ]
