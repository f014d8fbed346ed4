"""The output folder of `ferkit batch` and everything that reads or writes it.

    DIR/faces/file=<key>/part-0.parquet   one row per face per frame (hive-partitioned by file)
    DIR/files.parquet                     one row per source: status, error, duration, frames,
                                          faces, tracks, dominant emotion and its shares
    DIR/tracks.parquet                    one row per track: file, frames, first/last second,
                                          dominant emotion, share of frames per emotion
    DIR/manifest.json                     model (name, sha256), detector, settings, versions
    DIR/_done/<key>.json                  a file is finished: its hash, settings hash, summary
    DIR/_chunks/<key>/part-NNNN.parquet   time ranges of a long video until they are joined

Read the rows with `pyarrow.dataset.dataset(DIR / "faces", partitioning="hive")` or
`pandas.read_parquet(DIR / "faces")`: `file` comes from the folder names.

Every file is written under a temporary name and renamed when complete; a file counts as
done only when its `_done` record exists, which is written after its rows are in place, so
a run killed at any moment leaves either a finished file or one that is processed again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

ROWS_PER_GROUP = 8192


def faces_dir(out: Path, key: str) -> Path:
    return out / "faces" / f"file={key}"


def part_path(out: Path, key: str, part: int, parts: int) -> Path:
    """Where a task writes: the file's partition, or a chunk folder for a time range."""
    if parts == 1:
        return faces_dir(out, key) / "part-0.parquet"
    return out / "_chunks" / key / f"part-{part:04d}.parquet"


def done_path(out: Path, key: str) -> Path:
    return out / "_done" / f"{key}.json"


def row_schema(class_names: tuple[str, ...]):
    import pyarrow as pa

    fields = [
        ("source", pa.string()), ("frame", pa.int64()), ("time_s", pa.float64()),
        ("track_id", pa.int32()), ("x", pa.int32()), ("y", pa.int32()), ("w", pa.int32()),
        ("h", pa.int32()), ("label", pa.string()), ("score", pa.float32()),
        *((f"p_{name}", pa.float32()) for name in class_names),
    ]  # fmt: skip
    return pa.schema(fields)


class RowWriter:
    """Face rows → one Parquet file, flushed every `ROWS_PER_GROUP` rows (bounded memory)."""

    def __init__(self, path: Path, class_names: tuple[str, ...]) -> None:
        import pyarrow.parquet as pq

        self.class_names = class_names
        self.schema = row_schema(class_names)
        self._writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")
        self._columns: dict[str, list] = {name: [] for name in self.schema.names}
        self.rows = 0

    def add(self, result) -> None:
        c = self._columns
        for face in result.faces:
            c["source"].append(result.source)
            c["frame"].append(result.index)
            c["time_s"].append(result.time_s)
            c["track_id"].append(face.track_id)
            for name, value in zip("xywh", face.box, strict=True):
                c[name].append(value)
            c["label"].append(face.label)
            c["score"].append(face.score)
            for name in self.class_names:
                c[f"p_{name}"].append(face.probs[name])
            self.rows += 1
        if len(c["frame"]) >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        self._writer.write_table(pa.Table.from_pydict(self._columns, schema=self.schema))
        self._columns = {name: [] for name in self.schema.names}

    def close(self) -> None:
        """Flush the last rows; an empty file still carries the schema (a file without faces)."""
        if self._columns["frame"]:
            self._flush()
        self._writer.close()


def clear_leftovers(out: Path, key: str) -> None:
    """Remove what a killed run may have left of a file it did not finish: temporary part
    files and the write probes made before them (SIGKILL gives a worker no chance to
    remove them) and its unjoined ranges."""
    for pattern in (".*.tmp*", ".*.probe"):
        for stray in faces_dir(out, key).glob(pattern):
            stray.unlink(missing_ok=True)
    shutil.rmtree(out / "_chunks" / key, ignore_errors=True)


def write_json(path: Path, data: dict) -> None:
    from ferkit.files import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")


def read_done(out: Path) -> dict[str, dict]:
    """The `_done` records of `out` by key (unreadable ones are ignored: processed again)."""
    records = {}
    for path in sorted((out / "_done").glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        records[record.get("key", path.stem)] = record
    return records


def is_done(out: Path, record: dict | None, sha256: str, settings_hash: str) -> bool:
    """Whether a file with this content was finished under these settings and its rows
    are still there."""
    return (
        record is not None
        and record.get("sha256") == sha256
        and record.get("settings") == settings_hash
        and (faces_dir(out, record["key"]) / "part-0.parquet").is_file()
    )


# ------------------------------------------------------------------ joining time ranges
def join_tracks(previous: dict[int, dict[int, tuple]], overlap, min_iou: float = 0.5):
    """Map the local track ids of a time range onto the previous range's ids.

    previous: {frame: {track id: box}} of the previous range's last frames (ids already
    global); overlap: (frame, local id, box) of the same frames as this range saw them while
    warming up. A local track takes the id of the previous track whose boxes it overlaps
    most over their common frames (mean IoU at least `min_iou`), each id at most once."""
    from ferkit.infer.tracking import iou_matrix

    scores: dict[tuple[int, int], list[float]] = {}
    for frame, local, box in overlap:
        for glob_id, other in previous.get(frame, {}).items():
            iou = float(iou_matrix([box], [other])[0, 0])
            scores.setdefault((local, glob_id), []).append(iou)
    pairs = sorted(((np.mean(v), local, g) for (local, g), v in scores.items()), reverse=True)
    mapping, used = {}, set()
    for score, local, glob_id in pairs:
        if score >= min_iou and local not in mapping and glob_id not in used:
            mapping[local] = glob_id
            used.add(glob_id)
    return mapping


def merge_parts(out: Path, key: str, results: list) -> tuple[dict, dict]:
    """Join the time ranges of a file into its partition, one range in memory at a time:
    track ids become one sequence over the whole video (joined across the overlaps, new
    ones numbered in order of appearance). Returns the merged per-track tally and labels."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ferkit.files import atomic_path

    results = sorted(results, key=lambda r: r.part)
    tracks: dict[int, dict] = {}
    labels: dict[str, int] = {}
    next_id, tail = 1, {}
    with atomic_path(faces_dir(out, key) / "part-0.parquet") as tmp:
        writer = None
        for index, result in enumerate(results):
            mapping = join_tracks(tail, result.overlap)
            for local in sorted(result.tracks):
                if local not in mapping:
                    mapping[local] = next_id
                    next_id += 1
            table = pq.read_table(part_path(out, key, result.part, result.parts))
            ids = table.column("track_id").to_pylist()
            table = table.set_column(
                table.schema.get_field_index("track_id"), "track_id",
                pa.array([None if i is None else mapping[i] for i in ids], pa.int32()),
            )  # fmt: skip
            if writer is None:
                writer = pq.ParquetWriter(str(tmp), table.schema, compression="zstd")
            writer.write_table(table, row_group_size=ROWS_PER_GROUP)
            tail = {}
            if index + 1 < len(results) and table.num_rows:
                nxt = results[index + 1]
                first = nxt.start - nxt.warmup
                keep = table.filter(pc.greater_equal(table.column("frame"), first))
                names = ("frame", "track_id", "x", "y", "w", "h")
                for f, t, x, y, w, h in zip(*(keep.column(n).to_pylist() for n in names)):
                    if t is not None:
                        tail.setdefault(f, {})[t] = (x, y, w, h)
            for local, row in result.tracks.items():
                _merge_track(tracks, mapping[local], row)
            for name, n in result.labels.items():
                labels[name] = labels.get(name, 0) + n
        writer.close()
    shutil.rmtree(out / "_chunks" / key, ignore_errors=True)
    _remove_if_empty(out / "_chunks")
    return tracks, labels


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _merge_track(tracks: dict[int, dict], track_id: int, row: dict) -> None:
    have = tracks.get(track_id)
    if have is None:
        tracks[track_id] = {**row, "labels": dict(row["labels"]), "prob_sum": list(row["prob_sum"])}
        return
    have["frames"] += row["frames"]
    have["start_s"] = min(have["start_s"], row["start_s"])
    have["end_s"] = max(have["end_s"], row["end_s"])
    for name, n in row["labels"].items():
        have["labels"][name] = have["labels"].get(name, 0) + n
    have["prob_sum"] = [a + b for a, b in zip(have["prob_sum"], row["prob_sum"], strict=True)]


# ------------------------------------------------------------------ summary tables
def track_rows(key: str, source: str, tracks: dict[int, dict], class_names) -> list[dict]:
    """One summary row per track: dominant emotion (most frames) and the share of each."""
    rows = []
    for track_id in sorted(tracks):
        t = tracks[track_id]
        share = {n: t["labels"].get(n, 0) / t["frames"] for n in class_names}
        rows.append({
            "file": key, "source": source, "track_id": int(track_id), "frames": t["frames"],
            "start_s": t["start_s"], "end_s": t["end_s"], "dominant": max(share, key=share.get),
            **{f"share_{n}": share[n] for n in class_names},
            **{f"mean_p_{n}": s / t["frames"] for n, s in zip(class_names, t["prob_sum"])},
        })  # fmt: skip
    return rows


def write_tables(out: Path, files: list[dict], tracks: list[dict], class_names) -> None:
    """files.parquet and tracks.parquet (atomically), with fixed schemas even when empty."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ferkit.files import atomic_path

    file_schema = pa.schema([
        ("file", pa.string()), ("source", pa.string()), ("sha256", pa.string()),
        ("status", pa.string()), ("error", pa.string()), ("duration_s", pa.float64()),
        ("fps", pa.float64()), ("frames", pa.int64()), ("faces", pa.int64()),
        ("tracks", pa.int64()), ("dominant", pa.string()),
        *((f"share_{n}", pa.float64()) for n in class_names),
    ])  # fmt: skip
    track_schema = pa.schema([
        ("file", pa.string()), ("source", pa.string()), ("track_id", pa.int32()),
        ("frames", pa.int64()), ("start_s", pa.float64()), ("end_s", pa.float64()),
        ("dominant", pa.string()), *((f"share_{n}", pa.float64()) for n in class_names),
        *((f"mean_p_{n}", pa.float64()) for n in class_names),
    ])  # fmt: skip
    for name, rows, schema in (("files", files, file_schema), ("tracks", tracks, track_schema)):
        table = pa.Table.from_pylist(rows, schema=schema)
        with atomic_path(out / f"{name}.parquet") as tmp:
            pq.write_table(table, str(tmp), compression="zstd")
