"""`run_batch`: recognise emotions in many files, in parallel, resumably, into Parquet.

    from ferkit.batch import recognizer_settings, run_batch
    report = run_batch(["interviews/", "more.txt"], "out/", recognizer_settings("default"),
                       engine="local", workers=2)
    report.failures        # [(file, error), ...]

The driver plans (`ferkit.batch.plan`), skips files already done with the same content
and settings, hands tasks to an engine (`ferkit.batch.engines`), writes a `_done` record as
each file finishes (joining the time ranges of a long video first), and at the end the
summary tables and the manifest (`ferkit.batch.output`). One progress bar counts frames
over the whole run as the workers process them, with the files done, failed and skipped,
frames/s and an ETA (`ferkit.batch.progress`).
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ferkit.batch import engines, output, plan
from ferkit.batch.progress import BatchProgress
from ferkit.batch.settings import fingerprint, model_identity

log = logging.getLogger(__name__)

DEFAULT_CHUNK_S = 300.0  # a video longer than this is split into ranges of this length
DEFAULT_OVERLAP_S = 2.0  # ... each decoded from this much earlier, to join the tracks


@dataclass
class BatchReport:
    """What a run did: files processed, skipped (done before) and failed (with errors)."""

    out: Path
    run_id: str
    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    worker_peak_rss_mb: float = 0.0
    interrupted: bool = False

    @property
    def succeeded(self) -> int:
        return len(self.processed) + len(self.skipped)

    @property
    def exit_code(self) -> int:
        """0 when at least one file is done (now or before); 1 when none is."""
        return 0 if self.succeeded else 1


def run_batch(
    sources: list[str],
    out: str | Path,
    settings: dict,
    *,
    engine: str = "local",
    workers: int = 1,
    address: str | None = None,
    chunk_s: float | None = DEFAULT_CHUNK_S,
    overlap_s: float = DEFAULT_OVERLAP_S,
    progress: bool | BatchProgress = False,
) -> BatchReport:
    """Process every file `sources` names into `out` (see `ferkit.batch.output`).

    progress: True for a bar on the terminal, or a `BatchProgress` to show it on (its
    numbers can be read afterwards)."""
    from ferkit import __version__
    from ferkit.errors import ConfigError
    from ferkit.files import check_writable

    if chunk_s is not None and chunk_s <= 0 or overlap_s < 0:
        raise ConfigError(f"chunk must be > 0 and overlap >= 0 s, got {chunk_s}, {overlap_s}")
    out = Path(out)
    model = model_identity(settings["model"])
    settings_hash = fingerprint(settings, model["sha256"], chunk_s, overlap_s)
    report = BatchReport(out, run_id=uuid.uuid4().hex[:12])
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    check_writable(out / "manifest.json")
    done = output.read_done(out)
    by_path = {r.get("resolved"): r for r in done.values()}

    files: list[plan.SourceFile] = []
    first_path: dict[str, str] = {}  # key → the first path with that name and content
    rows: dict[str, dict] = {}  # summary row per source, in order
    for item in plan.expand(sources):
        found = item if isinstance(item, plan.Missing) else plan.identify(item, by_path)
        if isinstance(found, plan.Missing):
            report.failures.append((found.path, found.error))
            rows[found.path] = {"source": found.path, "status": "failed", "error": found.error}
            continue
        if found.key in first_path:
            rows[found.path] = {"source": found.path, "file": found.key, "status": "duplicate",
                                "sha256": found.sha256,
                                "error": f"same content as {first_path[found.key]}"}  # fmt: skip
            continue
        first_path[found.key] = found.path
        files.append(found)
        if output.is_done(out, done.get(found.key), found.sha256, settings_hash):
            report.skipped.append(found.path)
            rows[found.path] = {"source": found.path, "file": found.key, "status": "done before"}
        else:
            rows[found.path] = {"source": found.path, "file": found.key, "status": "pending"}

    job = {"recognizer": settings}
    pending = [f for f in files if rows[f.path]["status"] == "pending"]
    tasks = [t for f in pending for t in plan.split(f, str(out), job, chunk_s, overlap_s)]
    by_key = {f.key: f for f in pending}
    for file in pending:
        output.clear_leftovers(out, file.key)
    parts: dict[str, list] = {}
    bar = None
    if progress and tasks:
        bar = progress if isinstance(progress, BatchProgress) else BatchProgress()
        expected = {(t.key, t.part): t.frames or 1 for t in tasks}
        bar.start(len(pending), len(report.skipped), expected)
    start = time.perf_counter()
    try:
        on_frames = bar.frames if bar else None
        for result in engines.results(tasks, engine, workers, address, on_frames):
            report.worker_peak_rss_mb = max(report.worker_peak_rss_mb, result.peak_rss_mb)
            if bar:
                bar.task_done((result.key, result.part), result.frames, result.ok)
            parts.setdefault(result.key, []).append(result)
            if len(parts[result.key]) < result.parts:
                continue
            file, results = by_key[result.key], parts.pop(result.key)
            _finish(out, file, results, settings_hash, report, rows)
            if bar:
                failed = rows[file.path]["status"] == "failed"
                bar.file_done(failed, sum(r.frames for r in results if r.ok) if failed else 0)
    except KeyboardInterrupt:
        report.interrupted = True
        log.warning("interrupted: files in flight will be processed again on the next run")
    finally:
        report.seconds = time.perf_counter() - start
        if bar:
            bar.stop()
        for row in rows.values():
            if row["status"] == "pending":
                row.update(status="not processed", error="the run stopped before this file")
        _write_summaries(out, rows, output.read_done(out))
        output.write_json(out / "manifest.json", {
            "ferkit_version": __version__, "format": 1, "run_id": report.run_id,
            "started": started,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "model": model, "detector": settings["detector"], "settings": settings,
            "settings_sha256": settings_hash, "chunk_s": chunk_s, "overlap_s": overlap_s,
            "engine": engine, "workers": workers, "address": address,
            "python": platform.python_version(), "versions": _versions(),
            "files": {"processed": len(report.processed), "skipped": len(report.skipped),
                      "failed": len(report.failures)},
            "interrupted": report.interrupted,
        })  # fmt: skip
    return report


def _finish(out: Path, file: plan.SourceFile, results: list, settings_hash: str,
            report: BatchReport, rows: dict) -> None:  # fmt: skip
    """A file's tasks are all back: join its ranges, record it as done (or failed)."""
    errors = [r.error for r in sorted(results, key=lambda r: r.part) if not r.ok]
    if errors:
        if len(results) > 1:
            output.clear_leftovers(out, file.key)
        report.failures.append((file.path, errors[0]))
        rows[file.path].update(status="failed", error=errors[0])
        return
    first = results[0]
    if len(results) > 1:
        tracks, labels = output.merge_parts(out, file.key, results)
    else:
        tracks, labels = first.tracks, first.labels
    warning = "; ".join(r.warning for r in results if r.warning) or None
    frames = sum(r.frames for r in results)
    faces = sum(r.faces for r in results)
    last = max((r.last_time_s for r in results if r.last_time_s is not None), default=None)
    duration = None if last is None or not first.fps else last + 1 / first.fps
    names = first.class_names
    total = sum(labels.values())
    summary = {
        "file": file.key, "source": file.path, "sha256": file.sha256,
        "status": "partial" if warning else "ok", "error": warning,
        "duration_s": duration, "fps": first.fps if first.is_video else None,
        "frames": frames, "faces": faces, "tracks": len(tracks),
        "dominant": max(labels, key=labels.get) if labels else None,
        **{f"share_{n}": (labels.get(n, 0) / total if total else None) for n in names},
    }  # fmt: skip
    output.write_json(output.done_path(out, file.key), {
        "key": file.key, "source": file.path, "resolved": str(Path(file.path).resolve()),
        "sha256": file.sha256, "size": file.size, "mtime_ns": file.mtime_ns,
        "settings": settings_hash, "run_id": report.run_id, "class_names": list(names),
        "summary": summary, "tracks": output.track_rows(file.key, file.path, tracks, names),
    })  # fmt: skip
    report.processed.append(file.path)
    report.frames += frames
    report.faces += faces
    if warning:
        report.warnings.append((file.path, warning))
    rows[file.path].update(status=summary["status"], error=warning)


def _write_summaries(out: Path, rows: dict[str, dict], done: dict[str, dict]) -> None:
    """files.parquet / tracks.parquet of this run's sources: finished ones from their
    `_done` records (so files done by an earlier run are included), the rest by status."""
    files, tracks, names = [], [], None
    for row in rows.values():
        record = done.get(row.get("file"))
        if record and row["status"] in ("ok", "partial", "done before"):
            names = names or tuple(record["class_names"])
            files.append(record["summary"])
            tracks += record["tracks"]
        else:
            files.append({k: row.get(k) for k in ("file", "source", "sha256", "status", "error")})
    if names is None:
        from ferkit.labels import EMOTIONS

        names = EMOTIONS
    output.write_tables(out, files, tracks, names)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "onnxruntime", "opencv-python-headless", "pyarrow", "ray"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found
