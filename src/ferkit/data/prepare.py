"""`prepare()`: any FER-2013 release → cleaned, reported, atomically written HDF5 store.

It streams the source once (no unpacking to disk), holding only the decoded 48×48 images
in memory, then runs the whole-dataset checks, assigns a val split where the source has
none, joins the FER+ votes when a votes file is given (read first, so a bad one fails
before the long read), and writes the store and `<store>.clean_report.json` beside it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ferkit.data.clean import Cleaner, CleanOptions
from ferkit.data.ferplus import join_votes, read_votes
from ferkit.data.readers import SourceReader
from ferkit.data.store import SPLITS, write_store
from ferkit.errors import DataError
from ferkit.files import atomic_path, check_writable, refuse_existing

log = logging.getLogger(__name__)


@dataclass
class PrepareResult:
    """What `prepare()` wrote and found; `summary()` is what the CLI prints."""

    store: Path
    report_path: Path
    counts: dict[str, int]
    report: dict = field(repr=False)
    seconds: float = 0.0

    def summary(self) -> str:
        s = self.report["summary"]
        removed = ", ".join(f"{k} {v}" for k, v in s["removed"].items())
        return "\n".join([
            f"wrote {self.store} in {self.seconds:.1f} s: "
            + ", ".join(f"{k} {v:,}" for k, v in self.counts.items()),
            f"read {s['read']:,} images; removed: {removed}; converted {s['converted']}",
            f"cross-split duplicates (leaks) found: {s['leaks_found']}; near-duplicate pairs: "
            f"{s['near_duplicate_pairs']} ({s['near_duplicate_pairs_cross_split']} across splits)",
            *self._ferplus_lines(),
            f"report: {self.report_path}",
        ])  # fmt: skip

    def _ferplus_lines(self) -> list[str]:
        info = self.report.get("ferplus")
        if not info:
            return []
        matched = ", ".join(f"{k} {v:,}" for k, v in info["matched"].items())
        unmatched = sum(info["unmatched"].values())
        return [
            f"FER+ votes ({info['file']}, joined by {info['join']}): {matched}; "
            f"{unmatched:,} image(s) without votes kept and flagged"
        ]


def report_path_for(store: Path) -> Path:
    """`data/fer2013.h5` → `data/fer2013.clean_report.json`."""
    return store.with_name(store.stem + ".clean_report.json")


def prepare(
    source: str | Path,
    out: str | Path,
    *,
    force: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
    class_map: Mapping[str, str] | None = None,
    clean: CleanOptions | None = None,
    ferplus: str | Path | None = None,
    progress: bool = False,
) -> PrepareResult:
    """Read, clean and store `source` (csv | image folder | .tar.gz/.zip) as `out` (HDF5).

    ferplus: a FER+ votes file (kaggle_votes.csv, or fer2013new.csv for the original
    fer2013.csv) whose votes are stored beside the labels (`ferkit.data.ferplus`)."""
    start = time.perf_counter()
    out = Path(out)
    refuse_existing(out, force)
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    check_writable(out)  # a read-only folder fails now, not after the whole source is read
    votes = read_votes(ferplus) if ferplus is not None else None
    reader = SourceReader(source, class_map)
    cleaner = Cleaner(clean)
    read_ids, read_splits = [], []
    for item in _with_progress(reader, progress):
        read_ids.append(item.source_id)
        read_splits.append(item.split)
        cleaner.add(item)
    if cleaner.read == 0:
        raise DataError(f"{source}: no images found (empty source)")
    cleaned = cleaner.finish()
    if len(cleaned.images) == 0:
        raise DataError(f"{source}: every image was removed by cleaning; see the options")
    splits = assign_splits(cleaned.splits, cleaned.labels, val_fraction, seed, cleaned.report)
    report = cleaned.report
    report["source"] = {"path": str(source), "sha256": reader.sha256, "kind": reader.kind}
    report["findings"]["skipped_files"] = reader.skipped
    joined = None
    if votes is not None:
        joined = join_votes(
            votes, read_ids, read_splits, cleaned.source_ids, splits, source=reader.path
        )
        report["ferplus"] = joined.info
    write_store(
        out,
        cleaned.images,
        cleaned.labels,
        splits,
        cleaned.source_ids,
        source=str(source),
        source_sha256=reader.sha256,
        clean_report=report,
        ferplus=joined,
        force=force,
    )
    report_path = report_path_for(out)
    with atomic_path(report_path) as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    counts = {name: int(np.sum(splits == i)) for i, name in enumerate(SPLITS)}
    return PrepareResult(out, report_path, counts, report, time.perf_counter() - start)


def assign_splits(
    splits: list[int | None], labels: np.ndarray, val_fraction: float, seed: int, report: dict
) -> np.ndarray:
    """Unassigned items join train; without any val item, a seeded stratified share of
    train becomes val (FER-2013's own PublicTest is used whenever the source has it)."""
    result = np.array([0 if s is None else s for s in splits], dtype=np.uint8)
    carved = 0
    if not np.any(result == 1) and val_fraction > 0:
        from sklearn.model_selection import train_test_split

        train_rows = np.flatnonzero(result == 0)
        stratify = labels[train_rows]
        _, per_class = np.unique(stratify, return_counts=True)
        if len(per_class) == 0 or per_class.min() < 2 or len(train_rows) * val_fraction < 1:
            stratify = None
        if len(train_rows) >= 2:
            _, val_rows = train_test_split(
                train_rows, test_size=val_fraction, random_state=seed, stratify=stratify
            )
            result[val_rows] = 1
            carved = len(val_rows)
    report["summary"]["val_carved_from_train"] = carved
    return result


def _with_progress(reader: SourceReader, enabled: bool):
    """The reader's items, with a byte-based progress bar when enabled."""
    if not enabled:
        yield from reader.items()
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("reading {task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(reader.path.name, total=reader.size_bytes)
        yield from reader.items(on_read=lambda n: bar.advance(task, n))
