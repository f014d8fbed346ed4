"""`ferkit batch` at archive scale: throughput of the engines, memory on a long video,
rows written per second, resume.

Generated 640×480 clips (the bundled astronaut head, 1–4 faces per clip drifting over a
gradient background; mp4, so decoding counts) and one long video. Measured side by side
in one run, on the same files and the same model:

- frames/s of `ferkit batch` with the local pool (1 and 2 workers) and on Ray (1 and 2
  CPUs), against `ferkit predict` run file by file (one process per file, as a shell loop
  would) — wall clock, including each engine's start-up; and, from the progress counts,
  the start-up (seconds to the first frame a worker counted) and the frames/s after it.
  Ray runs twice, each its own row: "batch ray" as `--engine ray` without `--address`
  (the run starts a one-machine cluster and stops it, both timed), and "batch ray,
  running cluster" as a cluster user runs it, `--address` of a head started before the
  clock starts (`ray start --head --num-cpus N`, `_ray_head`; its workers at the driver's
  priority and token authentication, as in the self-started one) and stopped after it
  stops: timed are joining it, its actors' start (a worker process each, importing ferkit
  and loading the model), the work and leaving it, not the cluster's start or stop
  (`--skip-ray` skips both rows);
- peak RSS of the worker (its ru_maxrss, a fresh one per run) on the long video processed
  whole (no split) against a `--seconds` clip: streaming keeps it flat;
- rows/s of the Parquet writer alone (synthetic results);
- resume: a second run over the finished folder (share of files skipped, its wall time).

    python benchmarks/batch.py [--clips 20] [--seconds 10] [--fps 30] [--long-minutes 10]
                               [--long-fps 30] [--model default] [--detector NAME]
                               [--workers 1 2] [--skip-ray] [--skip-predict] [--repeat 1]
                               [--out batch] [--results DIR]

Prints a Markdown table and writes benchmarks/results/OUT.json (or DIR/OUT.json). Run it
on a quiet machine for absolute numbers; on a shared one the ratios of one run are what to
compare, and --results keeps them apart from the stored quiet-machine figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from _common import report
from _ray_head import ray_head, use_token_auth
from ferkit.batch import recognizer_settings, run_batch
from ferkit.batch.progress import BatchProgress
from ferkit.errors import ConfigError
from ferkit.infer.demo import sample_image
from ferkit.infer.frames import read_image

SIZE = (640, 480)


def make_clip(path: Path, seconds: float, fps: float, faces: int, seed: int) -> int:
    """Write a clip with `faces` heads (each its own size, flip and drift); frames written."""
    rng = np.random.default_rng(seed)
    head = read_image(sample_image())[20:200, 90:270]
    yy, xx = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    base = np.stack([(xx * 0.2 + 60), (yy * 0.25 + 70), (xx + yy) * 0.1 + 90], -1)
    base = np.clip(base + rng.uniform(-30, 30, 3), 0, 255).astype(np.uint8)
    heads = []
    for k in range(faces):
        side = int(rng.integers(110, 170))
        image = cv2.resize(head, (side, side))
        heads.append((image[:, ::-1] if k % 2 else image, side, rng.uniform(-1.5, 1.5, 2)))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    frames = int(round(seconds * fps))
    for i in range(frames):
        frame = base.copy()
        for k, (image, side, drift) in enumerate(heads):
            cell = SIZE[0] // max(faces, 1)
            x0 = k * cell + (cell - side) // 2
            x = int(np.clip(x0 + drift[0] * (i % 60 - 30), 0, SIZE[0] - side))
            y = int(np.clip(150 + drift[1] * (i % 60 - 30), 0, SIZE[1] - side))
            frame[y : y + side, x : x + side] = image
        writer.write(frame)
    writer.release()
    return frames


class FirstFrames(BatchProgress):
    """An off-screen bar that notes when the workers counted their first frame: the
    engine's start-up (workers, torch, the model; Ray: its cluster) ends there."""

    def __init__(self) -> None:
        super().__init__(show=False)
        self.first: float | None = None
        self.first_count = 0

    def frames(self, task, count: int) -> None:
        if self.first is None:
            self.first, self.first_count = time.perf_counter(), count
        super().frames(task, count)


def timed_batch(sources, out, settings, **options) -> dict:
    bar = FirstFrames()
    start = time.perf_counter()
    result = run_batch([str(s) for s in sources], out, settings, progress=bar, **options)
    end = time.perf_counter()
    assert not result.failures, result.failures
    assert bar.completed == result.frames  # the bar ends at every frame processed
    start_up = (bar.first or end) - start
    return {"seconds": end - start, "frames": result.frames, "rows": result.faces,
            "peak_rss_mb": result.worker_peak_rss_mb, "skipped": len(result.skipped),
            "processed": len(result.processed), "start_up_s": start_up,
            "frames_per_s_after_start_up": (bar.completed - bar.first_count)
            / max(end - (bar.first or end), 1e-9)}  # fmt: skip


LOCAL, RAY, RUNNING = "local", "ray", "ray, running cluster"  # the rows' engines


def timed_engine(engine: str, sources, out, settings, workers: int) -> dict:
    """`timed_batch` on one engine; RUNNING joins a head started before the clock starts
    and stopped after it stops (as a cluster user's is already running)."""
    if engine != RUNNING:
        return timed_batch(sources, out, settings, engine=engine, workers=workers)
    with ray_head(workers) as address:
        return timed_batch(sources, out, settings, engine=RAY, workers=workers,
                           address=address)  # fmt: skip


def predict_file_by_file(sources, out: Path, model: str, detector: str) -> float:
    start = time.perf_counter()
    for i, source in enumerate(sources):
        command = [sys.executable, "-m", "ferkit", "predict", str(source), "--out",
                   str(out / str(i)), "--model", model, "--detector", detector,
                   "--no-video"]  # fmt: skip
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def writer_rows_per_s(path: Path, rows: int = 200_000) -> float:
    from ferkit.batch.output import RowWriter
    from ferkit.infer.results import Face, FrameResult
    from ferkit.labels import EMOTIONS

    rng = np.random.default_rng(0)
    faces = [Face.from_probs((10, 20, 60, 60), rng.dirichlet(np.ones(7)), EMOTIONS, k + 1)
             for k in range(4)]  # fmt: skip
    results = [FrameResult(i, i / 30, faces, source="clip.mp4") for i in range(rows // 4)]
    start = time.perf_counter()
    writer = RowWriter(path, EMOTIONS)
    for result in results:
        writer.add(result)
    writer.close()
    return rows / (time.perf_counter() - start)


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    flags = sorted({f for f in ("avx2", "avx512_bf16", "amx_bf16") if f" {f}" in text})
    return " ".join(flags) or "none of avx2/avx512_bf16/amx_bf16"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--long-fps", type=float, default=30.0)
    parser.add_argument("--model", default="default")
    parser.add_argument("--detector", default=None, help="[default: ferkit batch's]")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to run, each local then Ray")  # fmt: skip
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--skip-predict", action="store_true", help="no `ferkit predict` runs")
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine (fastest kept)")
    parser.add_argument("--out", default="batch", help="results/OUT.json")
    parser.add_argument("--results", default=None,
                        help="folder for OUT.json [default: benchmarks/results] (runs on a "
                        "busy machine, not comparable with the stored ones)")  # fmt: skip
    args = parser.parse_args()
    use_token_auth()  # the same for the clusters a run starts and those started for it
    chosen = {"detector": args.detector} if args.detector else {}
    settings = recognizer_settings(args.model, **chosen)
    rows, extra = [], {"cpu_flags": cpu_flags(), "load_avg_at_start": os.getloadavg(),
                       "args": vars(args), "detector": settings["detector"]}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ferkit-bench-batch-") as tmp:
        root = Path(tmp)
        clips = [root / "clips" / f"clip{i:02d}.mp4" for i in range(args.clips)]
        clips[0].parent.mkdir()
        frames = sum(
            make_clip(c, args.seconds, args.fps, 1 + i % 4, i) for i, c in enumerate(clips)
        )

        twins: dict = {}  # a Ray row's run → the pool's with as many workers

        def row(name, seconds, **more):
            rows.append({"run": name, "seconds": seconds, "frames/s": frames / seconds, **more})
            print(rows[-1], flush=True)

        # each Ray run right after the pool's with as many workers, so that all meet the
        # same load; --repeat runs the sequence again and keeps each one's fastest run
        ray_runs = () if args.skip_ray else (RAY, RUNNING)
        engines = [(e, w) for w in args.workers for e in (LOCAL, *ray_runs)]
        best: dict = {}
        for attempt in range(args.repeat):
            for engine, workers in engines:
                out = root / f"{engine.replace(' ', '')}{workers}-{attempt}"
                try:
                    got = timed_engine(engine, clips, out, settings, workers)
                except (ConfigError, RuntimeError) as error:  # e.g. Ray did not start
                    extra.setdefault("errors", {})[f"{engine} {workers}"] = str(error)
                    print(f"{engine}, {workers} worker(s): {error}", flush=True)
                    continue
                assert got["frames"] == frames
                print(engine, workers, got, flush=True)
                extra.setdefault("every_run", []).append(
                    {"engine": engine, "workers": workers, "attempt": attempt, **got}
                )
                kept = best.get((engine, workers))
                if kept is None or got["seconds"] < kept["seconds"]:
                    best[engine, workers] = got
                if (engine, workers, attempt) == (LOCAL, max(args.workers), 0):
                    again = timed_batch(clips, out, settings, engine=engine, workers=workers)
                    extra["resume"] = {"skipped_share": again["skipped"] / len(clips),
                                       "processed": again["processed"],
                                       "seconds": again["seconds"]}  # fmt: skip
        for (engine, workers), got in best.items():
            row(f"batch {engine}, {workers} worker(s)", got["seconds"], rows=got["rows"],
                peak_rss_mb=got["peak_rss_mb"], start_up_s=got["start_up_s"],
                frames_per_s_after_start_up=got["frames_per_s_after_start_up"])  # fmt: skip
            if engine != LOCAL:
                twins[rows[-1]["run"]] = f"batch {LOCAL}, {workers} worker(s)"
        if not args.skip_predict:
            detector = settings["detector"]
            seconds = predict_file_by_file(clips, root / "predict", args.model, detector)
            row("ferkit predict, file by file", seconds, rows="", peak_rss_mb="", start_up_s="",
                frames_per_s_after_start_up="")  # fmt: skip

        long = root / "long" / "long.mp4"
        long.parent.mkdir()
        long_frames = make_clip(long, args.long_minutes * 60, args.long_fps, 2, 99)
        memory = {}
        for name, source in (("short", clips[1]), ("long", long)):
            got = timed_batch([source], root / f"mem-{name}", settings, workers=1, chunk_s=None)
            memory[name] = got
        extra["memory"] = {
            "short_frames": memory["short"]["frames"], "long_frames": long_frames,
            "short_peak_rss_mb": memory["short"]["peak_rss_mb"],
            "long_peak_rss_mb": memory["long"]["peak_rss_mb"],
            "ratio": memory["long"]["peak_rss_mb"] / memory["short"]["peak_rss_mb"],
            "long_frames_per_s": long_frames / memory["long"]["seconds"],
        }  # fmt: skip
        extra["writer_rows_per_s"] = writer_rows_per_s(root / "rows.parquet")
    by = {r["run"]: r["frames/s"] for r in rows}
    one = by.get("batch local, 1 worker(s)")
    steady = {r["run"]: r["frames_per_s_after_start_up"] for r in rows}
    for r in rows:
        r["vs local 1 worker"] = r["frames/s"] / one if one else ""
        twin = twins.get(r["run"])
        ray = twin in by
        r["vs local, same workers"] = r["frames/s"] / by[twin] if ray else ""
        r["after start-up, vs local"] = (
            r["frames_per_s_after_start_up"] / max(steady[twin], 1e-9) if ray else ""
        )
    extra["load_avg_at_end"] = os.getloadavg()
    print(extra)
    if args.results:
        import _common

        _common.RESULTS = Path(args.results)
    report(args.out, rows, **extra)


if __name__ == "__main__":
    main()
