"""Careless use of the CLI ends in one clear line, not a traceback or a quiet surprise:
a truncated video says where it stopped, and `export --int8` without calibration images
refuses instead of writing a slow dynamically quantised model."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ferkit.cli import app
from ferkit.infer.frames import load_source
from ferkit.models.checkpoint import save_checkpoint
from ferkit.models.registry import create_model
from ferkit.preprocess import Preprocessing


@pytest.fixture
def truncated_video(tmp_path):
    """A 60-frame MJPEG AVI cut in half (its header still promises 60 frames)."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(60):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_video_lists_where_it_stopped(truncated_video, tmp_path):
    source = load_source(str(truncated_video))
    frames = sum(1 for _ in source)
    assert 0 < frames < 59
    assert source.failures == [
        (str(truncated_video), f"stopped at frame {frames} of 60: the rest could not be decoded")
    ]
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "ferkit", "predict", str(truncated_video), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == frames and "stopped at frame" in summary["failures"][0]["error"]


def test_export_int8_without_calibration_images_refuses(tmp_path, monkeypatch):
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "m.pt", create_model("seed_cnn"), arch="seed_cnn",
                                 arch_kwargs={}, preprocessing=Preprocessing())  # fmt: skip
    monkeypatch.chdir(tmp_path)  # no data/fer2013.h5 here
    result = CliRunner().invoke(app, ["export", str(checkpoint), "--int8"])
    assert result.exit_code == 1
    assert "--int8-method dynamic" in str(result.exception or result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # nothing written
