"""Which CPU a run trains on, whether bf16 is native there, and what `bench info` says about it."""

from __future__ import annotations

import pytest
import torch

from bench import hardware
from bench.info import method_info

X86_AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
X86_AMX = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Max\nflags\t\t: avx2 avx512f amx_tile amx_bf16\n"
X86_AVX512 = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold\nflags\t\t: avx2 avx512f avx512bw\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def _cpuinfo(monkeypatch, text, machine="x86_64"):
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: text)
    monkeypatch.setattr(hardware.platform, "machine", lambda: machine)


@pytest.mark.parametrize(("text", "native"), [(X86_AVX2, False), (X86_AVX512, False), (X86_AMX, True),
                                              (ARM_BF16, True)], ids=["avx2", "avx512", "amx", "arm-bf16"])
def test_native_bf16_comes_from_the_cpu_flags(monkeypatch, text, native):
    _cpuinfo(monkeypatch, text)
    assert hardware.native_bf16() is native


def test_without_cpu_flags_x86_asks_torch_and_anything_else_is_unknown(monkeypatch):
    _cpuinfo(monkeypatch, "")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert hardware.native_bf16() is True
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert hardware.native_bf16() is False
    _cpuinfo(monkeypatch, "", machine="arm64")
    assert hardware.native_bf16() is None


def test_the_cpu_summary_names_the_model_the_capability_and_bf16(monkeypatch):
    _cpuinfo(monkeypatch, X86_AVX2)
    monkeypatch.setattr(hardware, "cpu_capability", lambda: "AVX2")
    assert hardware.cpu_summary() == "CPU: AMD EPYC 7B13; torch CPU capability AVX2; bf16 emulated"


def test_bench_info_says_which_precisions_are_fast_here(monkeypatch):
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    (line,) = [x for x in method_info("pgnn_con") if x.startswith("precision")]
    assert line.startswith("precision, fast on this machine: cpu fp32 only (bf16 is emulated") and "50x" in line
    monkeypatch.setattr(hardware, "native_bf16", lambda: True)
    (line,) = [x for x in method_info("dagnn") if x.startswith("precision")]
    assert "cpu fp32, bf16;" in line and "emulated" not in line


def test_bench_info_has_no_precision_line_for_a_method_without_the_parameter():
    assert not any(x.startswith("precision") for x in method_info("cca"))
