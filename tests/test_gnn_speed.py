"""Speed paths of the GNN family: no host synchronisation in a complete-data training step, bf16
autocast and torch.compile giving the fp32 losses, fp16 refused on CPU and bf16 on a CPU that
would emulate it."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import builtin_plugin
from torch.profiler import ProfilerActivity, profile

from bench.data import make_data
from bench.errors import ConfigError
from bench.method import FitContext
from bench.params import build
from bench.registry import get_method, method_entries

incomplete = builtin_plugin("methods.common.incomplete")
RowMasks, fill_plan = incomplete.RowMasks, incomplete.fill_plan
GNNCon = builtin_plugin("methods.gnn_con").GNNCon

# every family of GNNCon, and every ablation once (the pgnn_con ones: each switches a term or a module off)
GNN_FAMILY = sorted(name for name, e in method_entries().items()
                    if issubclass(e.cls, GNNCon) and (e.variant is None or e.family == "pgnn_con"))

# ops that copy a device value to the host (a synchronisation on CUDA)
SYNC_OPS = ("aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero", "aten::equal")


def _data(n=24, c=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.35).astype(np.uint8)
    y[:, 0] |= (y.sum(1) == 0).astype(np.uint8)
    return make_data("tiny", rng.normal(size=(n, 32)).astype(np.float32), rng.normal(size=(n, 16)).astype(np.float32),
                     y, label_embeddings=rng.normal(size=(c, 7)))


def _method(name, **params):
    entry = get_method(name)
    return entry.cls(build(entry.cls.Params, {"D": 16, "layers": 2, **params, **entry.fixed}, name))


def _batch(data, rows=slice(0, 12)):
    return (torch.as_tensor(data.image[rows]), torch.as_tensor(data.text[rows]),
            torch.as_tensor(data.labels[rows]).float())


def _in_optimizer(event):
    while event is not None:
        if event.name.startswith("Optimizer.step"):
            return True
        event = event.cpu_parent
    return False


def _sync_ops(fn):
    """Host reads of tensor values while fn runs, outside the optimizer's step. (Adam reads its
    step counters, host tensors on CPU; on CUDA fused Adam keeps them on the device.)"""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sorted(e.name for e in prof.events() if e.name in SYNC_OPS and not _in_optimizer(e))


@pytest.mark.parametrize("name", GNN_FAMILY)
def test_a_complete_data_training_step_never_reads_a_device_value_on_the_host(name):
    data = _data()
    m = _method(name)
    m.build(data, FitContext(seed=0)).train()
    opt = m.optimizer()
    x, t, y = _batch(data)
    m.train_step(x, t, y, opt)  # warm-up (lazy optimizer state)
    assert _sync_ops(lambda: m.train_step(x, t, y, opt)) == []
    # the check can fail: the masked path with masks given as tensors counts rows on the host
    ones = torch.ones(12, dtype=torch.bool)
    some = ones.clone()
    some[3] = False
    assert _sync_ops(lambda: m.batch_losses(x, t, y, ones, some, ones, some)["loss"].backward()) != []


def test_an_incomplete_batch_with_host_built_masks_does_not_synchronise_either():
    data = _data()
    m = _method("pgnn_con", absent_rows="masked", recon_as_real=False)
    m.build(data, FitContext(seed=0)).train()
    opt = m.optimizer()
    x, t, y = _batch(data)
    im = torch.ones(12, dtype=torch.bool)
    tm = im.clone()
    im[:3] = False
    tm[9:] = False
    masks = RowMasks.build(*m.presence(im, tm, stage=1))
    assert masks is not None and masks.count == {"im": 9, "tm": 9, "im_real": 9, "tm_real": 9}
    m.train_step(x, t, y, opt, masks)
    assert _sync_ops(lambda: m.train_step(x, t, y, opt, masks)) == []
    # stage 2, reconstructing the missing features of the batch first (rows planned on the host)
    recon, masks2 = fill_plan(im, tm, x.device), RowMasks.build(*m.presence(im, tm, stage=2))
    assert [len(c) for c in recon[0] + recon[1]] == [3, 3] and masks2.count["im_real"] == 9
    m.train_step(x, t, y, opt, masks2, recon)
    assert _sync_ops(lambda: m.train_step(x, t, y, opt, masks2, recon)) == []
    # the same losses as from the masks as tensors
    got = m.batch_losses(x, t, y, masks=masks)
    ref = m.batch_losses(x, t, y, im, tm, im, tm)
    for key in ref:
        assert torch.allclose(got[key], ref[key], atol=1e-6), key


def _first_losses(name, **params):
    data = _data()
    m = _method(name, **params)
    m.build(data, FitContext(seed=0)).train()
    opt = m.optimizer()
    x, t, y = _batch(data)
    amp, scaler = m._precision(torch.device("cpu"))
    first = m.train_step(x, t, y, opt, amp_dtype=amp, scaler=scaler, loss_fn=m._loss_fn(torch.device("cpu")))
    second = m.train_step(x, t, y, opt, amp_dtype=amp, scaler=scaler, loss_fn=m._loss_fn(torch.device("cpu")))
    return {k: float(v.detach()) for k, v in first.items()}, {k: float(v.detach()) for k, v in second.items()}, m


@pytest.mark.parametrize("name", ["pgnn_con", "dagnn"])
def test_bf16_autocast_trains_with_finite_losses_close_to_fp32(name):
    fp32, fp32_next, _ = _first_losses(name)
    bf16, bf16_next, m = _first_losses(name, precision="bf16")
    assert m._precision(torch.device("cpu"))[0] is torch.bfloat16
    for key in fp32:
        assert np.isfinite(bf16[key]) and np.isfinite(bf16_next[key])
        assert bf16[key] == pytest.approx(fp32[key], rel=3e-2, abs=1e-2), key
    assert bf16["loss"] != fp32["loss"]  # autocast really ran in bf16
    assert bf16_next["loss"] == pytest.approx(fp32_next["loss"], rel=3e-2)


def test_compiled_step_gives_the_eager_losses(monkeypatch):
    # aot_eager traces the step through dynamo and AOTAutograd like inductor does, without the
    # C++ build that takes minutes on this machine (benchmarks/train_throughput.py runs inductor)
    traced, real_compile = [], torch.compile

    def compile_(fn, **kw):
        traced.append(fn)
        return functools.partial(real_compile, backend="aot_eager")(fn, **kw)

    monkeypatch.setattr(torch, "compile", compile_)
    eager, eager_next, _ = _first_losses("pgnn_con")
    comp, comp_next, _ = _first_losses("pgnn_con", compile=True)
    assert len(traced) == 2  # one compiled loss function per _loss_fn call
    for key in eager:
        assert comp[key] == pytest.approx(eager[key], rel=1e-5), key
        assert comp_next[key] == pytest.approx(eager_next[key], rel=1e-4), key


def test_fp16_on_cpu_is_refused_with_one_line():
    m = _method("pgnn_con", precision="fp16")
    with pytest.raises(ConfigError) as err:
        m._precision(torch.device("cpu"))
    assert "\n" not in str(err.value) and "fp16 needs a CUDA device" in str(err.value)
    with pytest.raises(ConfigError):
        m.fit(_data(), _data(), FitContext(seed=0))


@pytest.mark.parametrize("native", [True, None])
def test_bf16_on_a_cpu_with_native_or_unknown_bf16_support_is_accepted(monkeypatch, native):
    from bench import hardware

    monkeypatch.setattr(hardware, "native_bf16", lambda: native)
    _method("pgnn_con", precision="bf16").check_device(torch.device("cpu"))


def test_bf16_on_a_cpu_that_would_emulate_it_is_refused_with_the_measured_slowdown(monkeypatch):
    from bench import hardware

    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    m = _method("pgnn_con", precision="bf16")
    with pytest.raises(ConfigError) as err:
        m.check_device(torch.device("cpu"))
    assert "\n" not in str(err.value) and "pgnn_con.precision: bf16" in str(err.value)
    assert "50x slower" in str(err.value) and "use precision: fp32" in str(err.value)
    m.check_device(torch.device("cuda"))  # the CPU's instructions say nothing about a GPU
    _method("pgnn_con").check_device(torch.device("cpu"))  # fp32 is always fine


def test_bf16_on_an_emulating_cpu_stops_bench_run_before_anything_is_written(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from conftest import TINY_SYNTHETIC, files_under, write_sweep

    from bench import hardware
    from bench.cli import main

    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    path = write_sweep(tmp_path, f"""
        name: brain
        seeds: [0]
        device: cpu
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods:
          - cca
          - name: dagnn
            params: {{precision: bf16, epochs: 1}}
    """)
    res = CliRunner().invoke(main, ["run", str(path), "--results", str(tmp_path / "res")])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "dagnn" in lines[0] and "50x slower than fp32" in lines[0], lines
    assert files_under(tmp_path / "res") == []


def test_fp16_on_a_cpu_sweep_stops_bench_run_before_anything_is_written(tmp_path):
    from click.testing import CliRunner
    from conftest import TINY_SYNTHETIC, files_under, write_sweep

    from bench.cli import main

    path = write_sweep(tmp_path, f"""
        name: half
        seeds: [0]
        device: cpu
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods:
          - cca
          - name: pgnn_con
            params: {{precision: fp16, epochs: 1}}
    """)
    res = CliRunner().invoke(main, ["run", str(path), "--results", str(tmp_path / "res")])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "pgnn_con" in lines[0] and "fp16 needs a CUDA device" in lines[0]
    assert files_under(tmp_path / "res") == []  # not even the cca run before it
    res = CliRunner().invoke(main, ["tune", str(path), "--results", str(tmp_path / "res"), "--trials", "1"])
    assert res.exit_code == 2 and "fp16 needs a CUDA device" in res.output, res.output
    assert files_under(tmp_path / "res") == []


def test_the_timed_release_step_computes_our_binary_con_loss_and_gradients_float64():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "release_step.py"
    spec_ = importlib.util.spec_from_file_location("release_step", path)
    rel = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(rel)
    data = _data(n=40)
    m = _method("pgnn_con/binary_con", layers=3)
    model = m.build(data, FitContext(seed=0)).double().train()
    x, t, y = (z.double() for z in _batch(data, slice(0, 16)))
    p = m.params
    ours = m.batch_losses(x, t, y)["loss"]
    ours.backward()
    grads = {k: q.grad.clone() for k, q in model.named_parameters()}
    model.zero_grad()
    ref = rel.release_loss(model, x, t, y, p.alpha, p.beta, p.tau, p.gamma)
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    for k, q in model.named_parameters():
        assert torch.allclose(grads[k], q.grad, atol=1e-10), k
    step = rel.ReleaseStep(model.float(), p.lr, (p.adam_beta1, p.adam_beta2), p.alpha, p.beta, p.tau, p.gamma)
    before = model.enc_img[1].weight.detach().clone()
    assert np.isfinite(step(x.float(), t.float(), y.float()))
    assert not torch.equal(before, model.enc_img[1].weight)
