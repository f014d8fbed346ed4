"""`ferkit data ...` on the command line: results, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

from test_data_prepare import csv_rows, write_csv


def ferkit(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "ferkit", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_prepare_and_inspect(tmp_path):
    source = write_csv(tmp_path / "fer2013.csv", csv_rows())
    out = tmp_path / "store.h5"
    done = ferkit("data", "prepare", source, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "train 7, val 7, test 7" in done.stdout
    shown = ferkit("data", "inspect", out, "--plot", "--out", tmp_path / "plots")
    assert shown.returncode == 0, shown.stderr
    assert "happy" in shown.stdout and "total" in shown.stdout
    assert (tmp_path / "plots" / "store_classes.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "store_samples.png").stat().st_size > 1000


def test_bad_input_prints_one_line_and_exits_nonzero(tmp_path):
    source = write_csv(tmp_path / "bad.csv", csv_rows(2) + [(3, "1 2", "Training")])
    failed = ferkit("data", "prepare", source, "--out", tmp_path / "s.h5")
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        "ferkit: error: bad.csv row 4: 2 pixel values, expected 2304 (48×48)"
    ]
    assert not (tmp_path / "s.h5").exists()
    missing = ferkit("data", "inspect", tmp_path / "none.h5")
    assert missing.returncode == 1 and "no such store" in missing.stderr
