"""The `fer` package (the peer of benchmarks/runtime.py) in its own virtualenv, made on demand.

`fer` needs TensorFlow and `setuptools<81` (it imports pkg_resources), which ferkit's own
environment must not carry, so it lives in benchmarks/peers/.venv-fer (git-ignored). Only
the benchmark calls this; `make test` never does. `fer` is installed without its declared
dependencies: they include facenet-pytorch, whose unpinned torch pulls gigabytes of CUDA
wheels, and moviepy/pandas, none of which its emotion classifier needs.

    python benchmarks/peers/fer_env.py     # create or check it; prints its python
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV = HERE / ".venv-fer"
REQUIREMENTS = [
    "tensorflow-cpu==2.21.0",
    "setuptools<81",
    "opencv-python-headless>=4.10,<5",
    "requests",
    "pillow",
]
FER = "fer==25.10.3"


def ensure_env() -> Path:
    """The peer virtualenv's python, installing it first when it is missing or outdated."""
    python = ENV / "bin" / "python"
    stamp = ENV / ".installed"
    wanted = "\n".join([*REQUIREMENTS, FER])
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"creating the peer environment {ENV} (TensorFlow: a few minutes) ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(ENV)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *REQUIREMENTS], check=True)
    subprocess.run([*pip, "--no-deps", FER], check=True)
    stamp.write_text(wanted)
    return python


if __name__ == "__main__":
    print(ensure_env())
    sys.exit(0)
