"""`ferkit batch`: the local pool and a real local Ray cluster give the same rows as each
other and as `ferkit predict`; resuming skips finished files; a run killed with SIGKILL
loses only the files in flight and processes none twice; a long video split into time
ranges joins its tracks; bad input is named in the failure table.

Small on purpose: a few 2–3 second 320×240 clips and a small untrained checkpoint (the
pipeline is under test, not the model); every engine runs with at most 2 CPUs."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pa = pytest.importorskip(
    "pyarrow", reason="ferkit batch needs pyarrow (pip install 'ferkit[batch]')"
)
import pyarrow.parquet as pq  # noqa: E402

from ferkit.batch import recognizer_settings, run_batch  # noqa: E402
from ferkit.batch.progress import BatchProgress  # noqa: E402
from ferkit.infer.defaults import DETECTOR  # noqa: E402
from ferkit.infer.demo import sample_image  # noqa: E402
from ferkit.infer.frames import read_image  # noqa: E402
from ferkit.labels import EMOTIONS  # noqa: E402

from conftest import save_tiny_checkpoint  # noqa: E402

PROBS = [f"p_{e}" for e in EMOTIONS]
KEYS = ["frame", "track_id", "x", "y", "w", "h"]


def write_clip(path: Path, frames: int, faces: int = 1, fps: float = 10.0, fourcc="mp4v") -> Path:
    """A 320×240 clip: `faces` copies of the astronaut's head drifting slowly right."""
    head = cv2.resize(read_image(sample_image())[20:200, 90:270], (100, 100))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (320, 240))
    for i in range(frames):
        frame = np.full((240, 320, 3), (90, 120, 150), np.uint8)
        for k in range(faces):
            x, y = 10 + i + 150 * k, 40 + i // 3
            frame[y : y + 100, x : x + 100] = head if k == 0 else head[:, ::-1]
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    return [
        write_clip(folder / "one.mp4", 24, faces=1),
        write_clip(folder / "two.mp4", 20, faces=2),
        write_clip(folder / "three.mp4", 16, faces=1, fps=8.0),
    ]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained network whose head is scaled up so its probabilities differ from face
    to face (an untouched one says 1/7 for everything, and every label would be a tie)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", head_scale=300.0)


@pytest.fixture(scope="module")
def settings(checkpoint) -> dict:
    return recognizer_settings(str(checkpoint))


def quiet_bar() -> BatchProgress:
    """A progress bar drawn off screen, read back by the tests."""
    from rich.console import Console

    return BatchProgress(console=Console(file=io.StringIO(), width=160))


@pytest.fixture(scope="module")
def local_bar() -> BatchProgress:
    return quiet_bar()


@pytest.fixture(scope="module")
def local_run(clips, settings, tmp_path_factory, local_bar):
    """One run of the local pool with 2 workers, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("local")
    report = run_batch([str(c) for c in clips], out, settings, workers=2, progress=local_bar)
    return out, report


def rows_by_file(out: Path) -> dict[str, list[dict]]:
    """Face rows per source file, sorted by frame and track."""
    import pyarrow.dataset as ds

    table = ds.dataset(out / "faces", partitioning="hive").to_table()
    found: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        found.setdefault(Path(row["source"]).name, []).append(row)
    return {k: sorted(v, key=lambda r: (r["frame"], r["track_id"])) for k, v in found.items()}


def test_local_pool_rows_are_those_of_ferkit_predict(local_run, clips, checkpoint, tmp_path):
    from ferkit.cli import app

    out, report = local_run
    assert sorted(report.processed) == sorted(str(c) for c in clips) and not report.failures
    batch_rows = rows_by_file(out)
    for clip in clips:
        folder = tmp_path / clip.stem
        with pytest.raises(SystemExit) as done:
            app(args=["predict", str(clip), "--out", str(folder), "--model", str(checkpoint),
                      "--no-video"], prog_name="ferkit")  # fmt: skip
        assert (done.value.code or 0) == 0
        with open(folder / "faces.csv", newline="") as handle:
            expected = list(csv.DictReader(handle))
        got = batch_rows[clip.name]
        assert len(expected) > 0 and len(got) == len(expected)
        assert max(float(w[p]) for w in expected for p in PROBS) > 0.3  # not all 1/7
        for want, row in zip(expected, got, strict=True):
            assert [str(row[k]) for k in KEYS] == [want[k] for k in KEYS]
            top = sorted(float(want[p]) for p in PROBS)
            if top[-1] - top[-2] > 1e-3:  # not a tie that rounding could break either way
                assert row["label"] == want["label"]
            assert row["time_s"] == pytest.approx(float(want["time_s"]), abs=1e-4)
            for p in PROBS:  # predict's CSV rounds to 5 decimals
                assert row[p] == pytest.approx(float(want[p]), abs=1e-4)


def test_summary_tables_and_manifest(local_run, clips, checkpoint):
    from ferkit.files import sha256_file

    out, _ = local_run
    files = pq.read_table(out / "files.parquet").to_pylist()
    assert [Path(f["source"]).name for f in files] == [c.name for c in clips]
    rows = rows_by_file(out)
    for row in files:
        assert row["status"] == "ok" and row["frames"] > 0
        assert row["faces"] == len(rows[Path(row["source"]).name])
        shares = [row[f"share_{e}"] for e in EMOTIONS]
        assert sum(shares) == pytest.approx(1.0)
    tracks = pq.read_table(out / "tracks.parquet").to_pylist()
    by_file = {f["file"]: f["tracks"] for f in files}
    assert {k: sum(t["file"] == k for t in tracks) for k in by_file} == by_file
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["sha256"] == sha256_file(checkpoint)
    assert manifest["detector"] == DETECTOR and manifest["files"]["processed"] == len(clips)


CLIP_FRAMES = 24 + 20 + 16  # the frames written into the `clips`


def assert_bar_counted_every_frame(bar: BatchProgress, report, out: Path) -> None:
    """The bar ends at the frames of the files done: as many as the clips hold, as the
    summary table counts, as the workers reported one by one while they ran."""
    frames = sum(f["frames"] for f in pq.read_table(out / "files.parquet").to_pylist())
    assert bar.completed == bar.total == report.frames == frames == CLIP_FRAMES
    assert bar.streamed == CLIP_FRAMES  # counted in the workers, not only at each task's end
    assert (bar.done, bar.failed, bar.skipped) == (len(report.processed), 0, 0)


def test_progress_bar_counts_the_frames_of_every_worker(local_run, local_bar):
    out, report = local_run
    assert_bar_counted_every_frame(local_bar, report, out)
    assert "files 3/3" in local_bar.description()


def test_progress_bar_corrects_a_lying_header_and_drops_failed_files():
    bar = BatchProgress(show=False)
    bar.start(3, 1, {("a", 0): 10, ("a", 1): 10, ("b", 0): 5, ("c", 0): 1})
    assert bar.total == 26
    bar.frames(("a", 0), 4)
    bar.frames(("b", 0), 3)
    assert bar.completed == 7 and bar.total == 26
    bar.task_done(("a", 0), 12, ok=True)  # the header said 10: the bar takes the 12 read
    bar.frames(("a", 0), 2)  # a count arriving after its task: not counted twice
    assert (bar.completed, bar.total) == (15, 28)
    bar.task_done(("b", 0), 3, ok=False)  # failed: its frames leave the bar
    bar.file_done(failed=True)
    assert (bar.completed, bar.total) == (12, 23)
    bar.task_done(("a", 1), 8, ok=False)  # a range of "a" failed: "a" fails as a whole
    bar.file_done(failed=True, retract=12)
    bar.task_done(("c", 0), 1, ok=True)
    bar.file_done(failed=False)
    assert (bar.completed, bar.total, bar.done, bar.failed) == (1, 1, 3, 2)
    assert bar.description() == "files 3/3 · 2 failed · 1 done before"
    assert bar.streamed == 9


def test_rerun_skips_every_finished_file(local_run, clips, settings):
    out, first = local_run
    before = {p.name: p.read_text() for p in (out / "_done").glob("*.json")}
    report = run_batch([str(c.parent) for c in clips[:1]], out, settings, workers=1)
    assert report.processed == [] and sorted(report.skipped) == sorted(str(c) for c in clips)
    assert {p.name: p.read_text() for p in (out / "_done").glob("*.json")} == before
    assert all(json.loads(t)["run_id"] == first.run_id for t in before.values())


def test_other_settings_process_the_files_again(clips, checkpoint, tmp_path):
    out = tmp_path / "out"
    one = [str(clips[2])]
    assert run_batch(one, out, recognizer_settings(str(checkpoint))).processed == one
    again = run_batch(one, out, recognizer_settings(str(checkpoint), smoothing="none"))
    assert again.processed == one and again.skipped == []


def test_ray_cluster_gives_the_rows_of_the_local_pool(local_run, clips, settings, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'ferkit[ray]')")
    from ferkit.errors import ConfigError

    out, _ = local_run
    bar = quiet_bar()
    try:
        report = run_batch([str(c) for c in clips], tmp_path / "ray", settings, engine="ray",
                           workers=2, progress=bar)  # fmt: skip
    except ConfigError as error:  # Ray's own start-up limits, not ferkit's rows, failed
        if "could not start or join a local Ray cluster" not in str(error):
            raise
        pytest.skip(f"Ray's local cluster did not start on this machine: {error}")
    assert not report.failures and len(report.processed) == len(clips)
    import ray

    assert not ray.is_initialized()  # the cluster the run started is shut down
    assert rows_by_file(tmp_path / "ray") == rows_by_file(out)
    assert_bar_counted_every_frame(bar, report, tmp_path / "ray")


def test_a_running_ray_cluster_joined_by_address_gives_the_rows_of_the_local_pool(
    local_run, clips, checkpoint, tmp_path, monkeypatch
):
    """`--address` as a cluster user passes it, to a head started by `ray start --head`
    (the benchmark's `_ray_head`, which stops it however the block ends)."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'ferkit[ray]')")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _ray_head import HeadDidNotStart, ray_head, use_token_auth
    from ferkit.batch.engines import check_address
    from ferkit.errors import ConfigError

    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):  # use_token_auth's: restored afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    use_token_auth()
    out, _ = local_run
    with pytest.raises(KeyboardInterrupt):
        try:
            with ray_head(1) as address:  # 1 CPU: one actor, one torch import
                command = [sys.executable, "-m", "ferkit", "batch", *map(str, clips), "--out",
                           str(tmp_path / "ray"), "--model", str(checkpoint), "--engine",
                           "ray", "--address", address]  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True, timeout=600)
                raise KeyboardInterrupt  # a run stopped in the middle: the head goes too
        except HeadDidNotStart as error:  # Ray's own start-up limits, not ferkit, failed
            last = str(error).strip().splitlines()[-1]
            pytest.skip(f"Ray's head did not start on this machine: {last}")
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["files"]["processed"] == len(clips)
    assert rows_by_file(tmp_path / "ray") == rows_by_file(out)
    deadline = time.monotonic() + 60  # the head's processes exit a moment after it
    while time.monotonic() < deadline:
        try:
            check_address(address)
        except ConfigError:
            break
        time.sleep(0.5)
    with pytest.raises(ConfigError, match="cannot reach"):
        check_address(address)


def test_ray_actors_are_sent_one_video_or_a_few_dozen_images_at_a_time():
    """Each Ray actor has its own queue: a video queued behind another could leave one
    actor busy at the end of a run while the other idles, so a video goes only to an actor
    holding less than a video; short tasks (images) queue up to QUEUED_FRAMES."""
    from ferkit.batch.engines import QUEUED_FRAMES, _next_actor

    def fill(frames: int, actors: int = 2) -> list[int]:
        held = [0] * actors
        while (slot := _next_actor(held)) is not None:
            held[slot] += frames
        return held

    assert fill(300) == [300, 300]
    assert fill(1) == [QUEUED_FRAMES, QUEUED_FRAMES]
    assert _next_actor([300, 12]) == 1 and _next_actor([0, 300]) == 0


def test_a_long_video_in_time_ranges_joins_its_tracks(clips, settings, tmp_path):
    clip = str(clips[0])  # 24 frames at 10 fps: ranges of 8 frames, each warmed up by 5
    whole = run_batch([clip], tmp_path / "whole", settings)
    split = run_batch([clip], tmp_path / "split", settings, chunk_s=0.8, overlap_s=0.5)
    assert whole.processed == split.processed == [clip]
    assert not (tmp_path / "split" / "_chunks").exists()
    a, b = rows_by_file(tmp_path / "whole")["one.mp4"], rows_by_file(tmp_path / "split")["one.mp4"]
    assert [r["frame"] for r in b] == [r["frame"] for r in a]
    assert {r["track_id"] for r in b} == {r["track_id"] for r in a} == {1}  # one face, one id
    from ferkit.infer.tracking import iou_matrix

    for x, y in zip(a, b, strict=True):  # a track warmed up at a range's start moves alike
        assert iou_matrix([[x[k] for k in "xywh"]], [[y[k] for k in "xywh"]])[0, 0] > 0.7
    tracks = pq.read_table(tmp_path / "split" / "tracks.parquet").to_pylist()
    assert [t["frames"] for t in tracks] == [len(b)]


def test_bad_inputs_are_listed_and_the_rest_is_processed(clips, checkpoint, tmp_path):
    from ferkit.cli import app

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    truncated = write_clip(tmp_path / "cut.avi", 20, fourcc="MJPG")
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    listing = tmp_path / "files.txt"
    listing.write_text(f"# sources\n{clips[2]}\nnot-there.mp4\n{empty}\n{truncated.name}\n")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as done:
        app(args=["batch", str(listing), "--out", str(out), "--model", str(checkpoint)],
            prog_name="ferkit")  # fmt: skip
    assert (done.value.code or 0) == 0  # one file succeeded
    status = {Path(f["source"]).name: f for f in pq.read_table(out / "files.parquet").to_pylist()}
    assert status["three.mp4"]["status"] == "ok"
    assert status["not-there.mp4"]["status"] == "failed"
    assert "no such file" in status["not-there.mp4"]["error"]
    assert status["empty.mp4"]["status"] == "failed" and "empty.mp4" in status["empty.mp4"]["error"]
    assert status["cut.avi"]["status"] in ("partial", "failed") and status["cut.avi"]["error"]
    with pytest.raises(SystemExit) as done:  # nothing succeeds: exit code 1, earlier rows kept
        app(args=["batch", str(empty), "--out", str(out), "--model", str(checkpoint)],
            prog_name="ferkit")  # fmt: skip
    assert done.value.code == 1
    assert len(list((out / "faces").glob("file=three-*/part-0.parquet"))) == 1


def test_unreachable_ray_address_is_one_line(checkpoint, clips, tmp_path, capsys):
    import socket

    from ferkit.cli import app

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SystemExit) as done:
        app(args=["batch", str(clips[2]), "--out", str(tmp_path / "o"), "--model",
                  str(checkpoint), "--engine", "ray", "--address", f"127.0.0.1:{port}"],
            prog_name="ferkit")  # fmt: skip
    assert done.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in err[0]


def test_killed_run_resumes_without_losing_or_repeating_a_file(clips, checkpoint, tmp_path):
    sources = [str(write_clip(tmp_path / f"k{i}.mp4", 30, faces=1 + i % 2)) for i in range(4)]
    out = tmp_path / "out"
    command = [sys.executable, "-m", "ferkit", "batch", *sources, "--out", str(out),
               "--model", str(checkpoint), "--workers", "1"]  # fmt: skip
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 600  # a guard against a hung run, not a speed test
    try:
        while not list((out / "_done").glob("*.json")):
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no file finished"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and its pool's workers
        process.wait()
    first = {p.stem: json.loads(p.read_text())["run_id"] for p in (out / "_done").glob("*.json")}
    assert 1 <= len(first) < len(sources)
    report = run_batch(sources, out, recognizer_settings(str(checkpoint)), workers=1)
    assert len(report.skipped) == len(first) and not report.failures
    assert len(report.processed) == len(sources) - len(first)
    assert not set(report.processed) & set(report.skipped)
    records = {p.stem: json.loads(p.read_text()) for p in (out / "_done").glob("*.json")}
    assert len(records) == len(sources)
    for key, run_id in first.items():
        assert records[key]["run_id"] == run_id  # not processed a second time
    for key, record in records.items():
        parts = list((out / "faces" / f"file={key}").iterdir())
        assert [p.name for p in parts] == ["part-0.parquet"]  # no half-written leftovers
        assert pq.read_table(parts[0]).num_rows == record["summary"]["faces"] > 0
