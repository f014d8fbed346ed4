"""load_source: every kind of input becomes frames; bad input raises SourceError naming it."""

import cv2
import numpy as np
import pytest

from ferkit.errors import SourceError
from ferkit.infer.frames import load_source


def _write_video(path, frames=12, size=(160, 120), fps=10.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 10 * i, np.uint8))
    writer.release()
    return path


def test_image_array_video_and_folder(tmp_path):
    image = np.zeros((30, 40, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    single = load_source(tmp_path / "a.png")
    frames = list(single)
    assert len(frames) == 1 and frames[0].image.shape == (30, 40, 3) and not single.is_video
    assert list(load_source(image))[0].name == "array"

    video = load_source(_write_video(tmp_path / "v.mp4"))
    frames = list(video)
    assert video.is_video and video.fps == pytest.approx(10.0) and video.frame_count == 12
    assert [f.index for f in frames] == list(range(12))
    assert frames[3].time_s == pytest.approx(0.3)
    with pytest.raises(SourceError, match="already consumed"):
        list(video)


def test_folder_with_bad_files_processes_the_rest(tmp_path):
    for name in ("b.jpg", "a.png", "sub/c.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / name), np.full((20, 20, 3), 200, np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    source = load_source(tmp_path)
    names = [f.name.split("/")[-1] for f in source]
    assert names == ["a.png", "b.jpg", "c.png"]
    assert [f.split("/")[-1] for f, _ in source.failures] == ["broken.jpg"]
    assert "cannot decode image" in source.failures[0][1]
    glob_names = [f.name.split("/")[-1] for f in load_source(str(tmp_path / "*.png"))]
    assert glob_names == ["a.png"]


def test_bad_inputs_name_what_failed(tmp_path):
    with pytest.raises(SourceError, match="no such file.*missing.jpg"):
        load_source(tmp_path / "missing.jpg")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(SourceError, match="cannot decode image .*bad.png"):
        load_source(tmp_path / "bad.png")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="bad.mp4"):
        load_source(tmp_path / "bad.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        load_source(tmp_path / "empty")


def test_camera_that_does_not_open():
    with pytest.raises(SourceError, match="camera 97 could not be opened"):
        load_source(None, camera=97)


def test_web_page_without_yt_dlp_says_how_to_get_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_yt_dlp(name, *args, **kwargs):
        if name == "yt_dlp":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_yt_dlp)
    with pytest.raises(SourceError, match=r"ferkit\[video\]"):
        load_source("https://example.org/watch?v=abc")
