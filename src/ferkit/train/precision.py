"""Mixed precision: which dtype a run computes in on this CPU or GPU, and the autocast that
applies it.

`amp: auto` is bf16 on a GPU that has it (fp16, with the trainer's loss scaler, on one that
has not) and bf16 on a CPU only where the CPU computes bf16 in hardware: emulated bf16 is
several times slower than float32, so a CPU without it trains in float32. The training
step, the validation pass and distillation's teachers all compute under `autocast`, so a
run's numbers come from one precision.
"""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch

from ferkit.errors import ConfigError


def bf16_is_native_on_cpu() -> bool:
    """True when the CPU computes bf16 in hardware; emulated bf16 is several times slower.

    `FERKIT_CPU_BF16=0` (or `1`) overrides the detection: `amp: auto` then behaves as on a CPU
    without (with) native bf16. The test suite sets 0, so its numbers do not depend on the CPU.
    """
    forced = os.environ.get("FERKIT_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp` on `device` (None: full fp32)."""
    if amp == "off":
        return None
    if amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and bf16_is_native_on_cpu() else None
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("amp=bf16 asked for, but this GPU has no bf16; use amp=fp16")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """A context computing in `dtype` on `device`'s type; with None, one that does nothing."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
