"""One run: `run_one(spec, data, split, device, tracker, results)` fits, evaluates, records, tracks.

Whoever runs a spec calls this function: the serial executor in the `bench` process and every
Dask worker (`bench.tasks`), each with its own cached data and split. A run that raises is
recorded as failed with its reason (the caller goes on with the next one); a run interrupted
(Ctrl-C, kill) leaves no record, so the next invocation redoes it. The record is the truth:
tracking calls go through a `SafeTracker` and never decide a run's fate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data import CrossModalData
from bench.environment import RunMemory
from bench.errors import BenchError
from bench.method import FitContext, validation_map
from bench.params import build
from bench.records import record_path, write_record
from bench.registry import get_dataset, get_method
from bench.run_diag import embeddings_path, keep_embeddings
from bench.spec import RunSpec
from bench.splits import MissingSpec, Split, missing_mask
from bench.sweep_entries import get_dataset_params
from bench.tracking import (
    RunLabels,
    Tracker,
    child_params,
    child_tags,
    epoch_metrics,
    run_name,
    scalar_metrics,
    section,
)


def load_dataset(spec: RunSpec, cache_root: Path) -> CrossModalData:
    """Instantiate the spec's dataset plugin and load it."""
    dcls = get_dataset(spec.dataset)
    ds = dcls(get_dataset_params(dcls, spec.dataset_params), cache_dir=Path(cache_root) / spec.dataset)
    reason = ds.missing()
    if reason:
        raise BenchError(f"dataset '{spec.dataset_label}' is not available: {reason}")
    return ds.load()


def training_data(data: CrossModalData, split: Split, spec: RunSpec, supports_missing: bool) -> CrossModalData:
    """The training rows, with the incomplete-modal mask and the method's missing policy applied."""
    train = data.subset(split.train)
    if spec.missing is None:
        return train
    img, txt = missing_mask(train.n, MissingSpec(**spec.missing))
    train = train.with_missing(img, txt)
    if supports_missing:
        return train
    if spec.missing_policy == "drop":
        train = train.subset(np.flatnonzero(img & txt))
        if train.n == 0:
            raise BenchError("missing_policy 'drop' leaves no paired training rows; use 'zero' or more paired rows")
    return dataclasses.replace(train, image_present=None, text_present=None)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def input_digest(fingerprint: str, split: Split) -> str:
    """Digest of what a run trained and was tested on: the data fingerprint and the split's rows."""
    h = hashlib.sha256(fingerprint.encode())
    for part in (split.train, split.val, split.test, split.retrieval):
        h.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


def count_parameters(method: Any) -> int | None:
    """Trainable parameters of the torch modules a fitted method holds (None for closed-form methods)."""
    params = {id(p): p for v in vars(method).values() if isinstance(v, torch.nn.Module)
              for p in v.parameters() if p.requires_grad}
    return int(sum(p.numel() for p in params.values())) if params else None


def _finite(name: str, arr: Any) -> np.ndarray:
    out = np.asarray(arr, dtype=np.float32)
    if out.ndim != 2 or not np.isfinite(out).all():
        raise FloatingPointError(f"{name} embeddings are not a finite 2-D array (shape {out.shape})")
    return out


def _test_maps(method: Any, data: CrossModalData, split: Split, device: torch.device) -> dict[str, float]:
    """Test mAP@all of the current model state; only for the labelled optimistic figure."""
    from bench.metrics import mean_average_precision

    q, r = data.subset(split.test), data.subset(split.retrieval)
    img_q, txt_q = method.encode(image=q.image, text=q.text)
    img_r, txt_r = method.encode(image=r.image, text=r.text)
    i2t = mean_average_precision(img_q, txt_r, q.labels, r.labels, device=device)
    t2i = mean_average_precision(txt_q, img_r, q.labels, r.labels, device=device)
    return {"map_i2t": i2t, "map_t2i": t2i, "map_avg": 0.5 * (i2t + t2i)}


def _evaluate(method: Any, data: CrossModalData, split: Split, device: torch.device
              ) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Test metrics of a fitted method (test queries against the retrieval set, both directions),
    and the test queries' (image, text, labels) embeddings."""
    from bench.metrics import retrieval_metrics

    q, r = data.subset(split.test), data.subset(split.retrieval)
    img_q, txt_q = method.encode(image=q.image, text=q.text)
    if np.array_equal(split.test, split.retrieval):
        img_r, txt_r = img_q, txt_q
    else:
        img_r, txt_r = method.encode(image=r.image, text=r.text)
    img_q, txt_q = _finite("test image", img_q), _finite("test text", txt_q)
    metrics = retrieval_metrics(img_q, txt_q, q.labels, _finite("retrieval image", img_r),
                                _finite("retrieval text", txt_r), r.labels, device=device)
    return metrics, (img_q, txt_q, q.labels)


def execute(spec: RunSpec, data: CrossModalData, split: Split, device: torch.device, *,
            on_log: Callable[[int, dict[str, float]], None] | None = None,
            on_report: Callable[[int, float], None] | None = None,
            show_progress: bool = False, evaluate_test: bool = True,
            epoch_echo: Callable[[str], None] | None = None,
            keep: tuple[Path, Path, int] | None = None) -> dict[str, Any]:
    """Fit one spec and evaluate it; returns the result fields of its record (raises on failure).

    `epoch_echo`, when given, receives one progress line per reported epoch (for logs, where no
    progress bar is shown). `evaluate_test=False` (tuning) never touches the test split. `keep`
    (file, results folder, at most so many items) saves the test embeddings and their diagnostics
    (`bench.run_diag`).
    """
    entry = get_method(spec.method)
    method = entry.cls(build(entry.cls.Params, spec.params, spec.method))
    train = training_data(data, split, spec, entry.cls.supports_missing)
    val = data.subset(split.val)
    ctx = FitContext(seed=spec.seed, device=device, show_progress=show_progress, label=spec.method)
    ctx.on_log += [on_log] if on_log else []
    ctx.on_report += [on_report] if on_report else []
    ctx.on_report += [epoch_lines(spec, ctx, epoch_echo)] if epoch_echo else []
    probe: list[dict[str, float]] = []
    if spec.test_selected and evaluate_test:
        ctx.on_report.append(lambda epoch, _val: probe.append({"epoch": epoch,
                                                                **_test_maps(method, data, split, device)}))
    seed_everything(spec.seed)
    memory = RunMemory()
    memory.start()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    method.fit(train, val, ctx)
    fit_s = time.perf_counter() - t0
    if ctx.best_val_map is None and val.n:  # non-iterative methods: score the fitted model once
        ctx.best_val_map = validation_map(method, val, device)
    out: dict[str, Any] = {
        "history": ctx.history, "best_epoch": ctx.best_epoch, "val_map": ctx.best_val_map,
        "n_train": train.n, "n_val": val.n, "n_test": len(split.test), "n_retrieval": len(split.retrieval),
        "cost": {"parameters": count_parameters(method)}, "timings": {"fit_s": fit_s},
    }
    if ctx.artifacts:
        out["artifacts"] = ctx.artifacts
    if evaluate_test:
        t1 = time.perf_counter()
        out["metrics"], (img_q, txt_q, labels_q) = _evaluate(method, data, split, device)
        if probe:
            best = max(probe, key=lambda row: row["map_avg"])
            out["test_selected"] = {**best, "note": "epoch chosen on TEST mAP as in published code: optimistic"}
        out["timings"]["eval_s"] = time.perf_counter() - t1
        if keep is not None:
            t2 = time.perf_counter()
            out.update(keep_embeddings(spec, split, img_q, txt_q, labels_q, data.label_names, *keep))
            out["timings"]["diag_s"] = time.perf_counter() - t2
    out["memory"] = memory.fields()
    if device.type == "cuda":
        out["memory"]["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def epoch_lines(spec: RunSpec, ctx: FitContext, echo: Callable[[str], None],
                every_s: float | None = None) -> Callable[[int, float], None]:
    """A report hook printing one line per epoch (at most one per `every_s` seconds, from
    $BENCH_PROGRESS_EVERY, default every epoch): epoch, validation mAP, best so far, losses."""
    if every_s is None:
        try:
            every_s = float(os.environ.get("BENCH_PROGRESS_EVERY", "0"))
        except ValueError:
            every_s = 0.0
    t0 = time.monotonic()
    last = [-math.inf]

    def hook(epoch: int, val_map: float) -> None:
        now = time.monotonic()
        if now - last[0] < every_s:
            return
        last[0] = now
        row = next((r for r in reversed(ctx.history) if r.get("step") == epoch), {})
        losses = " ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("step", "val_map"))
        best = f" (best {ctx.best_val_map:.4f} @ {ctx.best_epoch})" if ctx.best_val_map is not None else ""
        echo(f"  epoch {epoch} {spec.describe()}: val mAP {val_map:.4f}{best}"
             + (f" {losses}" if losses else "") + f" [{now - t0:.1f}s]")
    return hook


# --- one run to a written record ---------------------------------------------------------------


def record_base(spec: RunSpec, position: int, environment: dict[str, Any],
                invocation: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields every record of `spec` starts with (before the run)."""
    base = {"key": spec.key, "spec": dataclasses.asdict(spec), "position": position,  # order in the sweep file
            "started": datetime.now(UTC).isoformat(timespec="seconds"), "environment": environment}
    if invocation:
        base["invocation"] = invocation
    return base


def finish_record(record: dict[str, Any], results: Path, t0: float) -> dict[str, Any]:
    """Stamp the end time and total seconds, then write the record atomically; returns it."""
    record["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    record.setdefault("timings", {})["total_s"] = time.perf_counter() - t0
    write_record(record_path(results, record["spec"]["sweep"], record["key"]), record)
    return record


def failure_fields(exc: BaseException) -> dict[str, Any]:
    """status, reason (one line) and traceback of a run that raised."""
    reason = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
    return {"status": "failed", "reason": reason.splitlines()[0] if reason else "", "traceback": traceback.format_exc()}


def run_one(spec: RunSpec, data: CrossModalData, split: Split, device: torch.device, tracker: Tracker,
            results: Path, *, position: int = 0, environment: dict[str, Any] | None = None,
            echo: Callable[[str], None] | None = None, show_progress: bool = False,
            labels: RunLabels | None = None, invocation: dict[str, Any] | None = None,
            embeddings_max: int = 0) -> dict[str, Any]:
    """Run one spec to a written record (status ok, or failed with its reason) and return it.

    `tracker` must never raise (wrap a real one in `SafeTracker`). `echo` receives one line per
    epoch when no progress bar is shown; `environment` is the process's (`bench.environment`);
    `labels` name the run's configuration in MLflow; `invocation` (the command line, its
    overrides, the resolved sweep) is stored in the record; `embeddings_max` > 0 keeps a sample of at
    most so many test items' embeddings and their diagnostics.
    """
    t0 = time.perf_counter()
    env = {**(environment or {}), "torch_threads": torch.get_num_threads()}  # may change between runs
    base = record_base(spec, position, env, invocation)
    run_id = tracker.start_child(run_name(spec, labels), child_params(spec.params, _harness(spec, data)),
                                 child_tags(spec, env.get("git_commit", ""), labels))
    tracker.log_dataset(run_id, spec.dataset_label, input_digest(data.fingerprint(), split),
                        f"{spec.dataset}:{json.dumps(spec.dataset_params, sort_keys=True)}",
                        {"train": len(split.train), "val": len(split.val), "test": len(split.test),
                         "retrieval": len(split.retrieval), "split": spec.split,
                         "missing": spec.missing or "complete"})
    base["mlflow_run_id"] = run_id
    base["data"] = {**data.summary(), "fingerprint": data.fingerprint()}
    result: dict[str, Any] = {}
    try:
        keep = None
        if embeddings_max:
            keep = (embeddings_path(results, spec.sweep, spec.key), Path(results), embeddings_max)
        result = execute(spec, data, split, device, show_progress=show_progress,
                         epoch_echo=None if show_progress else echo, keep=keep,
                         on_log=lambda step, m: tracker.log_metrics(run_id, epoch_metrics(m), step))
        _log_results(tracker, run_id, result)
        _attach_artifacts(tracker, run_id, spec, result, echo or (lambda _line: None), Path(results))
        record = {**base, **result, "status": "ok", "reason": None}
    except KeyboardInterrupt:
        tracker.end_child(run_id, "KILLED")
        raise
    except Exception as exc:
        record = {**base, **result, **failure_fields(exc)}
        tracker.set_tags(run_id, {"failure_reason": record["reason"]})
    finish_record(record, results, t0)
    tracker.end_child(run_id, "FINISHED" if record["status"] == "ok" else "FAILED")
    return record


def _harness(spec: RunSpec, data: CrossModalData) -> dict[str, Any]:
    """The harness's parameters of a run (logged under `bench.`)."""
    return {"method": spec.method, "seed": spec.seed, "dataset": spec.dataset_label,
            "data": {**spec.dataset_params, "fingerprint": data.fingerprint(),
                     "label_embeddings": data.label_embedding_source},
            "split": spec.split, "missing": spec.missing or "complete", "missing_policy": spec.missing_policy}


def _log_results(tracker: Tracker, run_id: str | None, result: dict[str, Any]) -> None:
    """Test metrics, the best validation epoch, the optimistic figure (labelled) and the cost."""
    tracker.log_metrics(run_id, section("test", scalar_metrics(result["metrics"])))
    if result.get("val_map") is not None:
        tracker.log_metrics(run_id, {"val/best_map": result["val_map"], "val/best_epoch": result["best_epoch"] or 0})
    if result.get("test_selected"):
        tracker.log_metrics(run_id, section("test_selected_optimistic", scalar_metrics(result["test_selected"])))
    diag = {f"diag/{k}": v for k, v in result.get("diagnostics", {}).items() if isinstance(v, float)}
    tracker.log_metrics(run_id, diag)
    cost = {**result.get("timings", {}), **result.get("memory", {}), "parameters": result["cost"]["parameters"]}
    tracker.log_metrics(run_id, section("cost", scalar_metrics({k: v for k, v in cost.items() if v is not None})))


def _attach_artifacts(tracker: Tracker, run_id: str | None, spec: RunSpec, result: dict[str, Any],
                      echo: Callable[[str], None], results: Path) -> None:
    """config.json, pr_curve.json, pr_curve.png and the kept embeddings on the child run. A failure
    here (a figure, a temp file) is a tracking failure, not the run's: one warning line."""
    if run_id is None:
        return
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "config.json"
            cfg.write_text(json.dumps({"key": spec.key, **dataclasses.asdict(spec)}, indent=1))
            pr = {k: v for k, v in result["metrics"].items() if k.startswith("pr_")}
            (Path(tmp) / "pr_curve.json").write_text(json.dumps(pr))
            pr_figure(result["metrics"], spec.describe(), Path(tmp) / "pr_curve.png")
            for name in ("config.json", "pr_curve.json", "pr_curve.png"):
                tracker.log_artifact(run_id, Path(tmp) / name)
        if result.get("embeddings"):
            tracker.log_artifact(run_id, results / result["embeddings"]["file"], "embeddings")
    except Exception as exc:  # noqa: BLE001
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        echo(f"warning: MLflow artifacts of {spec.describe()} not saved ({type(exc).__name__}: {text}); the run's "
             "record is unaffected")


def pr_figure(metrics: dict[str, Any], title: str, path: Path) -> None:
    """Save the precision-recall curves of a run as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for key, name in (("pr_i2t", "image→text"), ("pr_t2i", "text→image")):
        if key in metrics:
            ax.plot(metrics[key]["recall"], metrics[key]["precision"], label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
