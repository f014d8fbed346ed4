"""ferkit.tune on PostgreSQL: two worker processes share one study on a throwaway server.

The fixture runs Debian's initdb/pg_ctl into a temporary folder on a free port of
127.0.0.1 (as the `postgres` user when this is root, since initdb refuses root) and
removes it afterwards. Where no server can start the test skips, except under CI=true,
where it fails: CI must exercise the real thing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import optuna
import pytest

from ferkit.config import load_config
from test_tune import TINY, learnable_store

STUDY_TRIALS = 4


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL server unavailable under CI: {reason}")
    pytest.skip(f"PostgreSQL server unavailable ({reason}); `make test` installs postgresql")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        _unavailable("no /usr/lib/postgresql/*/bin/pg_ctl")
    bindir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="ferkit-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            _unavailable("running as root and there is no 'postgres' user to run the server")
        os.chown(folder, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    try:
        for command in (
            [bindir / "initdb", "-D", data, "-U", "ferkit", "--auth=trust", "--no-sync"],
            [bindir / "pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "-o", options,
             "start"],
        ):  # fmt: skip
            subprocess.run(run_as + command, check=True, capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError) as error:
        output = getattr(error, "stderr", b"") or b""
        log = folder / "server.log"
        detail = output.decode() + (log.read_text() if log.exists() else "")
        shutil.rmtree(folder, ignore_errors=True)
        _unavailable(f"{error}: {detail.strip()[-500:]}")
    yield f"postgresql://ferkit@127.0.0.1:{port}/postgres"
    stop = [bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]
    subprocess.run(run_as + stop, capture_output=True, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_postgres_study(postgres_url, tmp_path):
    store = learnable_store(tmp_path / "tiny.h5")

    def worker(name: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "ferkit", "tune", "--study", "shared",
                   "--trials", str(STUDY_TRIALS), "--storage", postgres_url,
                   "--data", str(store), "--out", str(tmp_path / name), "--epochs", "1",
                   "--no-plots", *TINY]  # fmt: skip
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    workers = {name: worker(name) for name in ("a", "b")}
    logs = {name: w.communicate(timeout=600)[0].decode() for name, w in workers.items()}
    for name, w in workers.items():
        assert w.returncode == 0, f"worker {name}:\n{logs[name][-3000:]}"

    trials = optuna.load_study(study_name="shared", storage=postgres_url).trials
    # each worker checks the count before it starts a trial, so two that check at the same
    # moment for the last slot may both start one: at most one trial over the budget
    assert STUDY_TRIALS <= len(trials) <= STUDY_TRIALS + 1
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert all(t.state in finished for t in trials), [t.state for t in trials]
    assert sum(bool(t.user_attrs.get("baseline")) for t in trials) == 1
    assert len(Counter(t.user_attrs["worker"] for t in trials)) == 2  # both did work
    sampled = [tuple(sorted(t.params.items())) for t in trials if t.params]
    assert len(set(sampled)) == len(sampled)  # no configuration ran twice
    for trial in trials:  # each trial trained exactly once, by exactly one worker
        folders = [tmp_path / name / "trials" / f"{trial.number:04d}" for name in workers]
        (folder,) = [f for f in folders if f.exists()]
        epochs = (folder / "metrics.csv").read_text().strip().splitlines()[1:]
        assert len(epochs) == len(trial.intermediate_values)
    for name in workers:  # every worker ends by writing the study's best so far
        assert load_config(tmp_path / name / "best.yaml").data.path == str(store)
