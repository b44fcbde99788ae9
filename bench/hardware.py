"""The CPU a run trains on: its model, torch's CPU capability, and whether bf16 arithmetic is native.

bf16 autocast on a CPU is fast only where the CPU has bf16 instructions (x86: AVX512_BF16 or
AMX_BF16; Arm: the BF16 extension); elsewhere torch emulates it. Measured on an AVX2-only AMD EPYC
(torch CPU capability AVX2), quiet machine, 2 threads: `pgnn_con` training steps at MIRFlickr
shapes (batch 100) ran at 300-310 samples/s in fp32 and 6 samples/s in bf16, 50x slower.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

EMULATED_BF16 = ("emulated (no avx512_bf16 / amx_bf16 / bf16 instructions): about 50x slower than fp32 "
                 "(6 vs 300 samples/s measured for pgnn_con training on an AVX2-only CPU)")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 (/proc/cpuinfo flags) and Arm (Features)
X86 = frozenset({"x86_64", "amd64", "i386", "i686"})


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpuinfo_field(*names: str) -> str:
    """The value of the first /proc/cpuinfo line whose key is one of `names` ('' when none)."""
    for line in _cpuinfo().splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in names:
            return value.strip()
    return ""


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (x86 `flags`, Arm `Features`); empty when unreadable."""
    return set(_cpuinfo_field("flags", "features").lower().split())


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else the platform's processor string)."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_capability() -> str:
    """torch's CPU capability: the widest vector instruction set its kernels use (e.g. AVX2, AVX512)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def native_bf16() -> bool | None:
    """True when the CPU computes bf16 natively, False when torch would emulate it, None if unknown.

    From the /proc/cpuinfo flags where Linux provides them; on other x86 systems from torch's own
    CPU probes; otherwise unknown (then nothing is refused).
    """
    flags = cpu_flags()
    if flags:
        return bool(flags & BF16_FLAGS)
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if platform.machine().lower() in X86 and all(callable(probe) for probe in probes):
        return any(bool(probe()) for probe in probes)
    return None


def cpu_summary() -> str:
    """One line for benchmark output: CPU model, torch capability, and whether bf16 is native."""
    native = native_bf16()
    bf16 = {True: "native bf16", False: "bf16 emulated", None: "bf16 support unknown"}[native]
    return f"CPU: {cpu_model()}; torch CPU capability {cpu_capability()}; {bf16}"


def precision_note() -> str:
    """Which `precision` values train at full speed on this machine, per device, in one line."""
    native = native_bf16()
    if native is False:
        cpu = f"cpu fp32 only (bf16 is {EMULATED_BF16})"
    else:
        cpu = "cpu fp32, bf16" + ("" if native else " (native bf16 not confirmed)")
    if torch.cuda.is_available():
        cuda = "cuda fp32, fp16" + (", bf16" if torch.cuda.is_bf16_supported() else "")
    else:
        cuda = "fp16 needs a CUDA device (none here)"
    return f"{cpu}; {cuda} [{cpu_model()}, capability {cpu_capability()}]"


__all__ = ["EMULATED_BF16", "cpu_capability", "cpu_flags", "cpu_model", "cpu_summary", "native_bf16",
           "precision_note"]
