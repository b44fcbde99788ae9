"""The CUDA paths: run on a machine with a GPU (benchmarks/gpu_check.sh runs them there), skipped
on machines without one (CI has none).

What they check: a complete-data training step of the GNN family never synchronises with the
host (torch's sync debug mode turns any synchronisation into an error), in fp32, bf16 and fp16;
fp16 with its grad scaler and bf16 train to finite losses close to fp32; every registered method
trains on the GPU end to end through `bench run` and its test mAP is close to the CPU run's;
and `device: auto` on Dask workers picks a GPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, builtin_plugin, write_sweep

from bench.data import make_data
from bench.method import FitContext
from bench.params import build
from bench.registry import get_method, method_entries, origin_of

GNNCon = builtin_plugin("methods.gnn_con").GNNCon

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")
GNN = sorted(name for name, e in method_entries().items() if issubclass(e.cls, GNNCon))


def _data(n=64, c=6, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.35).astype(np.uint8)
    y[:, 0] |= (y.sum(1) == 0).astype(np.uint8)
    return make_data("tiny", rng.normal(size=(n, 48)).astype(np.float32),
                     np.abs(rng.normal(size=(n, 20))).astype(np.float32), y,
                     label_embeddings=rng.normal(size=(c, 7)))


def _method(name, **params):
    entry = get_method(name)
    return entry.cls(build(entry.cls.Params, {"D": 32, "layers": 2, **params, **entry.fixed}, name))


def _stepper(name, device, **params):
    data = _data()
    m = _method(name, **params)
    m.build(data, FitContext(seed=0, device=device)).train()
    opt = m.optimizer()
    amp, scaler = m._precision(device)
    loss_fn = m._loss_fn(device)
    rows = slice(0, 32)
    x, t, y = (torch.as_tensor(data.image[rows], device=device), torch.as_tensor(data.text[rows], device=device),
               torch.as_tensor(data.labels[rows], device=device).float())
    return lambda: m.train_step(x, t, y, opt, amp_dtype=amp, scaler=scaler, loss_fn=loss_fn)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("name", GNN)
def test_a_complete_data_step_on_the_gpu_never_synchronises(name, precision):
    step = _stepper(name, CUDA, precision=precision)
    step()  # warm-up: lazy optimizer state, cuBLAS handles, the scaler's first scale
    step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    # the check can fail: reading a loss on the host is a synchronisation
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError):
            float(step()["loss"].detach())
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _losses(name, device, steps=5, **params):
    step = _stepper(name, device, **params)
    return [{k: float(v.detach()) for k, v in step().items()} for _ in range(steps)]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name", ["pgnn_con", "ignn_con", "dagnn"])
def test_mixed_precision_on_the_gpu_trains_close_to_fp32(name, precision):
    ref = _losses(name, CUDA)
    got = _losses(name, CUDA, precision=precision)
    for r, g in zip(ref, got):
        assert all(np.isfinite(v) for v in g.values())
        assert g["loss"] == pytest.approx(r["loss"], rel=5e-2, abs=2e-2)
    assert got[0]["loss"] != ref[0]["loss"]  # autocast really ran in low precision


def test_fp32_on_the_gpu_gives_the_cpu_losses():
    cpu = _losses("pgnn_con", torch.device("cpu"), steps=3)
    gpu = _losses("pgnn_con", CUDA, steps=3)
    for c, g in zip(cpu, gpu):
        for key in c:
            assert g[key] == pytest.approx(c[key], rel=1e-3, abs=1e-4), key


def _all_methods():
    """Every built-in method family (the tests' own fixture methods left out)."""
    return sorted({e.family for e in method_entries().values() if origin_of("method", e.family).kind == "built-in"})


def test_every_method_trains_on_the_gpu_through_bench_run(tmp_path):
    import yaml

    from bench.cli import main
    from bench.records import iter_records

    names = _all_methods()
    methods = [{"name": n, "params": get_method(n).cls.test_params} for n in names]
    maps = {}
    for device in ("cuda", "cpu"):
        path = tmp_path / f"gpu_{device}.yaml"
        path.write_text(yaml.safe_dump({
            "name": f"gpu_{device}", "seeds": [0], "device": device, "methods": methods,
            "datasets": [{"name": "synthetic", "params": yaml.safe_load(TINY_SYNTHETIC)}]}))
        res = CliRunner().invoke(main, ["run", str(path), "--results", str(tmp_path / "res"), "--no-mlflow"])
        assert res.exit_code == 0, res.output
        records = list(iter_records(tmp_path / "res", [f"gpu_{device}"]))
        assert {r["status"] for r in records} == {"ok"}, [r.get("reason") for r in records]
        assert all(r["environment"]["device"].startswith(device) for r in records)
        maps[device] = {r["spec"]["method"]: (r["metrics"]["map_i2t"] + r["metrics"]["map_t2i"]) / 2 for r in records}
    assert set(maps["cuda"]) == set(names)
    for name in names:  # same seeds and data: the GPU's sums round differently, nothing more
        assert maps["cuda"][name] == pytest.approx(maps["cpu"][name], abs=0.05), (name, json.dumps(maps))


def test_dask_workers_with_device_auto_train_on_their_gpu(tmp_path):
    pytest.importorskip("distributed")
    from bench.cli import main
    from bench.records import iter_records

    path = write_sweep(tmp_path, f"""
        name: gpu_workers
        seeds: [0, 1]
        device: auto
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods:
          - name: pgnn_con
            params: {{epochs: 2}}
    """)
    res = CliRunner().invoke(main, ["run", str(path), "--results", str(tmp_path / "res"), "--no-mlflow",
                                    "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "resources {'GPU': 1}" in res.output
    records = list(iter_records(tmp_path / "res", ["gpu_workers"]))
    assert len(records) == 2 and all(r["environment"]["device"].startswith("cuda") for r in records)
