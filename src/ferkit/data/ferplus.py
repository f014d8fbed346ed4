"""FER+ crowd votes (Barsoum et al. 2016): read either votes file and join it to a source.

FER+ gave every FER-2013 image the votes of 10 taggers over 10 categories. Two files
carry them (see `../shared/data/ferplus/README.md`):

    kaggle_votes.csv   file,usage,status,ferplus_rows,<votes>: one line per image of the
                       Kaggle image archive, keyed by its path in the archive; duplicate
                       images hold the summed votes of all their FER-2013 rows; unmatched
                       lines have no votes, and blank_image lines (uniform images) carry the
                       summed votes of FER-2013's blank rows, which say nothing about the
                       image, so both count as without votes
    fer2013new.csv     Usage,Image name,<votes>: data row i belongs to row i of the original
                       fer2013.csv, so it joins by row position, and only to that file

Votes keep the files' column order (`VOTE_COLUMNS`, also the order of the store's
`ferplus_votes`). Images without votes are kept with zero votes and flagged unmatched. A
file that cannot be joined is refused before any store is written: a wrong header, votes
that are not integers, a line naming an image the source does not have, a usage that
contradicts the source's split, or no match at all — each named by file and line.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ferkit.data.store import SPLITS, FerPlusVotes
from ferkit.errors import DataError

VOTE_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger",
    "disgust", "fear", "contempt", "unknown", "NF",
)  # fmt: skip
KAGGLE_HEADER = ("file", "usage", "status", "ferplus_rows", *VOTE_COLUMNS)
ROWS_HEADER = ("usage", "image name", *VOTE_COLUMNS)
USAGES = {"training": 0, "publictest": 1, "privatetest": 2}
# kaggle_votes.csv status → whether the line's votes belong to its image
STATUSES = {
    "unique": True, "ambiguous": True, "unique_shared": True,
    "unmatched": False, "blank_image": False,
}  # fmt: skip
FERPLUS_ENV = "FERKIT_FERPLUS"


def locate_ferplus() -> Path:
    """Where the joined FER+ votes are expected: $FERKIT_FERPLUS, else the shared default
    `../shared/data/ferplus/kaggle_votes.csv` beside the repository (tests skip without it)."""
    if os.environ.get(FERPLUS_ENV):
        return Path(os.environ[FERPLUS_ENV])
    repo_root = Path(__file__).resolve().parents[3]
    return repo_root.parent / "shared" / "data" / "ferplus" / "kaggle_votes.csv"


@dataclass
class VotesFile:
    """A parsed votes file: one entry per data line (line number = index + 2).

    `keys` are image paths (kaggle_votes.csv) or None (fer2013new.csv, joined by row);
    `has_votes` is False for lines with empty votes; `usage` is each line's split index.
    """

    path: Path
    keys: list[str] | None
    votes: np.ndarray  # (M, 10) uint8
    has_votes: np.ndarray  # (M,) bool
    usage: np.ndarray  # (M,) uint8
    sha256: str

    @property
    def join(self) -> str:
        return "file path" if self.keys is not None else "row position"


def read_votes(path: str | Path) -> VotesFile:
    """Parse kaggle_votes.csv or fer2013new.csv (told apart by their headers)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read the FER+ votes file ({error.strerror})") from None
    rows = csv.reader(data.decode("utf-8", errors="replace").splitlines())
    header = tuple(c.strip().lower() for c in next(rows, []))
    if header == tuple(c.lower() for c in KAGGLE_HEADER):
        kind, first_vote = "kaggle", 4
    elif header == tuple(c.lower() for c in ROWS_HEADER):
        kind, first_vote = "rows", 2
    else:
        raise DataError(
            f"{path} line 1: not a FER+ votes header; expected {','.join(KAGGLE_HEADER)} "
            f"(kaggle_votes.csv) or Usage,Image name,{','.join(VOTE_COLUMNS)} (fer2013new.csv)"
        )
    keys: list[str] = []
    votes, has_votes, usage = [], [], []
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        where = f"{path} line {line}"
        if len(row) != len(header):
            raise DataError(f"{where}: {len(row)} fields, expected {len(header)}")
        usage_cell = row[1 if kind == "kaggle" else 0]
        split = USAGES.get(usage_cell.strip().lower())
        if split is None:
            raise DataError(
                f"{where}: usage {usage_cell!r} is not Training, PublicTest or PrivateTest"
            )
        usable = True
        if kind == "kaggle":
            usable = STATUSES.get(row[2].strip())
            if usable is None:
                raise DataError(f"{where}: status {row[2]!r} is not one of {', '.join(STATUSES)}")
        cells = [c.strip() for c in row[first_vote:]]
        counts = [0] * len(VOTE_COLUMNS)
        if usable:
            counts = [_vote(c, where, name) for c, name in zip(cells, VOTE_COLUMNS, strict=True)]
        keys.append(row[0].strip())
        votes.append(counts)
        has_votes.append(sum(counts) > 0)
        usage.append(split)
    return VotesFile(
        path=path,
        keys=keys if kind == "kaggle" else None,
        votes=np.asarray(votes, dtype=np.uint8).reshape(-1, len(VOTE_COLUMNS)),
        has_votes=np.asarray(has_votes, dtype=bool),
        usage=np.asarray(usage, dtype=np.uint8),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _vote(text: str, where: str, column: str) -> int:
    if not text.isdigit() or int(text) > 255:
        raise DataError(f"{where}: {column} vote {text!r} is not an integer in 0..255")
    return int(text)


def join_votes(
    votes: VotesFile,
    read_ids: Sequence[str],
    read_splits: Sequence[int | None],
    kept_ids: Sequence[str],
    kept_splits: np.ndarray,
    source: str | Path,
) -> FerPlusVotes:
    """Votes for each kept image (after cleaning), in their order; zeros where unmatched.

    `read_ids`/`read_splits` are every item the source held, cleaned away or not: a votes
    line must name one of them, and its usage must agree with that item's split.
    """
    lines = _lines_by_id(votes, read_ids, source)
    for source_id, split in zip(read_ids, read_splits, strict=True):
        line = lines.get(source_id)
        if line is not None and split is not None and votes.usage[line] != split:
            raise DataError(
                f"{votes.path} line {line + 2}: usage {SPLITS[votes.usage[line]]} but "
                f"{source} has {source_id} in {SPLITS[split]}"
            )
    rows = np.array([lines.get(i, -1) for i in kept_ids], dtype=np.int64)
    matched = rows >= 0
    matched[matched] = votes.has_votes[rows[matched]]
    joined = np.zeros((len(kept_ids), len(VOTE_COLUMNS)), dtype=np.uint8)
    joined[matched] = votes.votes[rows[matched]]
    kept_splits = np.asarray(kept_splits)
    info = {
        "file": str(votes.path),
        "sha256": votes.sha256,
        "join": votes.join,
        "columns": list(VOTE_COLUMNS),
        "matched": {s: int(np.sum(matched & (kept_splits == k))) for k, s in enumerate(SPLITS)},
        "unmatched": {s: int(np.sum(~matched & (kept_splits == k))) for k, s in enumerate(SPLITS)},
    }
    return FerPlusVotes(joined, matched, info)


def _lines_by_id(votes: VotesFile, read_ids: Sequence[str], source) -> dict[str, int]:
    """Source id → votes line index, checking that every line names an image of the source."""
    if votes.keys is None:
        lines = _row_positions(votes, read_ids, source)
    else:
        index = {key: line for line, key in enumerate(votes.keys)}
        lines = {}
        for source_id in read_ids:
            line = _tail_match(source_id, index)
            if line is not None:
                lines[source_id] = line
    if not lines:
        raise DataError(
            f"{votes.path}: no image of {source} has a line here (joined by {votes.join}; "
            f"e.g. {read_ids[0] if read_ids else 'nothing read'!r})"
        )
    if votes.keys is not None:
        found = set(lines.values())
        missing = next((line for line in range(len(votes.keys)) if line not in found), None)
        if missing is not None:
            raise DataError(
                f"{votes.path} line {missing + 2}: {votes.keys[missing]} is not an image of "
                f"{source}"
            )
    return lines


def _tail_match(source_id: str, index: dict[str, int]) -> int | None:
    """The line of the longest tail of `source_id` that is a key: an archive or folder may
    nest the Kaggle layout (`fer2013/test/angry/x.jpg` matches `test/angry/x.jpg`)."""
    parts = PurePosixPath(source_id).parts
    for k in range(len(parts)):
        line = index.get("/".join(parts[k:]))
        if line is not None:
            return line
    return None


def _row_positions(votes: VotesFile, read_ids: Sequence[str], source) -> dict[str, int]:
    """fer2013new.csv: the source must be one original fer2013.csv with as many rows."""
    rows: dict[str, int] = {}
    csv_names = Counter()
    for source_id in read_ids:
        name, _, number = source_id.rpartition(":")
        if not name.lower().endswith(".csv") or not number.isdigit():
            raise DataError(
                f"{votes.path} joins by row position and needs the original fer2013.csv as "
                f"source, but {source} holds {source_id}; use kaggle_votes.csv for image files"
            )
        csv_names[name] += 1
        rows[source_id] = int(number) - 2  # row numbers count the header as row 1
    if len(csv_names) > 1:
        raise DataError(
            f"{source} holds several CSV files ({', '.join(sorted(csv_names))}); "
            f"{votes.path} joins by row position to one fer2013.csv"
        )
    last = max(rows.values())
    if last >= len(votes.votes) or len(rows) != len(votes.votes):
        raise DataError(
            f"{votes.path} has {len(votes.votes):,} data rows but {source} has {len(rows):,} "
            f"(last row {last + 2}); row-position joins need the original fer2013.csv"
        )
    return rows
