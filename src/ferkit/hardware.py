"""What the machine can compute fast, recorded next to every figure ferkit publishes.

Training speed and even the numbers a run reaches depend on the CPU: bf16 autocast is a
large win where the CPU computes bf16 natively (AVX-512 BF16, AMX) and a large loss where
it is emulated. The CPU model changes from machine to machine, so metrics.csv, checkpoints,
model cards and benchmark results carry these flags instead of assuming them.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

# The instruction sets that change ferkit's speed or numbers, in order of capability.
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) from /proc/cpuinfo; ("", {}) where there is none (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return "", frozenset()
    name, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return name, flags


def cpu_flags() -> str:
    """The relevant instruction sets this CPU has, e.g. "avx2 avx512f avx512_bf16 amx_bf16"."""
    flags = _cpuinfo()[1]
    return " ".join(flag for flag in RELEVANT_FLAGS if flag in flags) or "unknown"


def cpu_summary() -> str:
    """One line for reports: model name, core count and the relevant flags."""
    name = _cpuinfo()[0] or platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} CPU cores, flags: {cpu_flags()}"
