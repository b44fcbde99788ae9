"""Executes a sweep: data and split once per dataset, each run fitted, evaluated, recorded, tracked.

Resume: a run whose key already has an "ok" record is skipped (unless `force`); runs that
failed before are retried. A run that raises is recorded as failed with its reason and the
sweep goes on. A run interrupted (Ctrl-C, kill) leaves no record, so it is redone next time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import params as P
from bench.data import CrossModalData
from bench.errors import BenchError
from bench.method import FitContext, resolve_device, validation_map
from bench.records import read_record, record_path, write_record
from bench.registry import get_dataset, get_method
from bench.splits import MissingSpec, Split, SplitSpec, get_split, missing_mask
from bench.sweep import RunSpec, Sweep, get_dataset_params
from bench.tracking import NullTracker, SafeTracker, child_params, child_tags, epoch_metrics, run_name, section


@dataclass
class SweepSummary:
    """Counts of what an invocation did."""

    total: int = 0
    done_before: int = 0
    ok: int = 0
    failed: int = 0
    skipped_datasets: dict[str, str] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every run is finished and ok, 1 when some failed."""
        return 1 if self.failed else 0


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, host and device of this process, for the record."""
    env = {
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "platform": platform.platform(), "host": platform.node(), "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "device": str(device),
        "git_commit": git_commit(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def git_commit() -> str:
    """HEAD commit of the project checkout (suffixed '-dirty' with uncommitted changes), or ''."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}-dirty" if head and dirty else head


def input_digest(fingerprint: str, split: Split) -> str:
    """Digest of what a run trained and was tested on: the data fingerprint and the split's rows."""
    import hashlib

    h = hashlib.sha256(fingerprint.encode())
    for part in (split.train, split.val, split.test, split.retrieval):
        h.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_dataset(spec: RunSpec, cache_root: Path) -> CrossModalData:
    """Instantiate the spec's dataset plugin and load it."""
    dcls = get_dataset(spec.dataset)
    ds = dcls(get_dataset_params(dcls, spec.dataset_params), cache_dir=cache_root / spec.dataset)
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


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory so far, in MiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _finite(name: str, arr: Any) -> np.ndarray:
    out = np.asarray(arr, dtype=np.float32)
    if out.ndim != 2 or not np.isfinite(out).all():
        raise FloatingPointError(f"{name} embeddings are not a finite 2-D array (shape {out.shape})")
    return out


def execute(spec: RunSpec, data: CrossModalData, split: Split, device: torch.device, *,
            on_log: Callable[[int, dict[str, float]], None] | None = None,
            on_report: Callable[[int, float], None] | None = None,
            show_progress: bool = False, evaluate_test: bool = True,
            epoch_echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit one spec and evaluate it; returns the result fields of its record (raises on failure).

    `epoch_echo`, when given, receives one progress line per reported epoch (for logs, where
    no progress bar is shown).
    """
    from bench.metrics import retrieval_metrics

    entry = get_method(spec.method)
    method = entry.cls(P.build(entry.cls.Params, spec.params, spec.method))
    train = training_data(data, split, spec, entry.cls.supports_missing)
    val = data.subset(split.val)
    ctx = FitContext(seed=spec.seed, device=device, show_progress=show_progress, label=spec.method)
    if on_log:
        ctx.on_log.append(on_log)
    if on_report:
        ctx.on_report.append(on_report)
    if epoch_echo:
        ctx.on_report.append(epoch_lines(spec, ctx, epoch_echo))
    probe: list[dict[str, float]] = []
    if spec.test_selected and evaluate_test:
        ctx.on_report.append(lambda epoch, _val: probe.append({"epoch": epoch, **_test_maps(method, data, split,
                                                                                              device)}))
    seed_everything(spec.seed)
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
    }
    if ctx.artifacts:
        out["artifacts"] = ctx.artifacts
    out["cost"] = {"parameters": count_parameters(method)}
    if evaluate_test:
        t1 = time.perf_counter()
        q, r = data.subset(split.test), data.subset(split.retrieval)
        img_q, txt_q = method.encode(image=q.image, text=q.text)
        if np.array_equal(split.test, split.retrieval):
            img_r, txt_r = img_q, txt_q
        else:
            img_r, txt_r = method.encode(image=r.image, text=r.text)
        metrics = retrieval_metrics(_finite("test image", img_q), _finite("test text", txt_q), q.labels,
                                    _finite("retrieval image", img_r), _finite("retrieval text", txt_r), r.labels,
                                    device=device)
        out["metrics"] = metrics
        if probe:
            best = max(probe, key=lambda row: row["map_avg"])
            out["test_selected"] = {**best, "note": "epoch chosen on TEST mAP as in published code: optimistic"}
        out["timings"] = {"fit_s": fit_s, "eval_s": time.perf_counter() - t1}
    else:
        out["timings"] = {"fit_s": fit_s}
    out["memory"] = {"peak_rss_mb": peak_rss_mb()}
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


def count_parameters(method: Any) -> int | None:
    """Trainable parameters of the torch modules a fitted method holds (None for closed-form methods)."""
    seen: set[int] = set()
    for value in vars(method).values():
        if isinstance(value, torch.nn.Module):
            seen.update(id(p) for p in value.parameters() if p.requires_grad)
    if not seen:
        return None
    params = {id(p): p for v in vars(method).values() if isinstance(v, torch.nn.Module) for p in v.parameters()}
    return int(sum(params[i].numel() for i in seen))


def _test_maps(method: Any, data: CrossModalData, split: Split, device: torch.device) -> dict[str, float]:
    """Test mAP@all of the current model state; only for the labelled optimistic figure."""
    from bench.metrics import mean_average_precision

    q, r = data.subset(split.test), data.subset(split.retrieval)
    img_q, txt_q = method.encode(image=q.image, text=q.text)
    img_r, txt_r = method.encode(image=r.image, text=r.text)
    i2t = mean_average_precision(img_q, txt_r, q.labels, r.labels, device=device)
    t2i = mean_average_precision(txt_q, img_r, q.labels, r.labels, device=device)
    return {"map_i2t": i2t, "map_t2i": t2i, "map_avg": 0.5 * (i2t + t2i)}


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of a metrics dict (PR curves left out)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


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


def check_devices(sweep: Sweep, specs: list[RunSpec]) -> None:
    """Each method's parameters must be able to run on the sweep's device (fp16 autocast needs CUDA,
    ...): `Method.check_device`, once per distinct (method, parameters). Raises BenchError."""
    device = resolve_device(sweep.device)
    seen: set[str] = set()
    for spec in specs:
        key = json.dumps([spec.method, spec.params], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        entry = get_method(spec.method)
        try:
            entry.cls(P.build(entry.cls.Params, spec.params, spec.method)).check_device(device)
        except BenchError as exc:
            raise BenchError(f"{sweep.path}: {spec.method_label}: {exc}") from None


def preflight(sweep: Sweep, specs: list[RunSpec], cache_root: Path,
              loaded: dict[str, CrossModalData] | None = None) -> None:
    """Check, before anything is written or trained, what would otherwise fail only at run time.

    Every dataset of `specs` must be available and load, and every split spec must leave non-empty
    train and test parts (and a 'db' split where `retrieval: db` asks for one). Splits are computed
    here without writing the cache. Raises BenchError naming the dataset and the fix. The last
    dataset loaded is left in `loaded` (keyed like `Runner._data_for`) for the runner to reuse.
    """
    from bench.splits import compute_split

    check_devices(sweep, specs)
    by_data: dict[str, list[RunSpec]] = {}
    for spec in specs:
        by_data.setdefault(json.dumps([spec.dataset, spec.dataset_params], sort_keys=True), []).append(spec)
    for key, group in by_data.items():
        first = group[0]
        try:
            data = load_dataset(first, cache_root)
        except BenchError as exc:
            raise BenchError(f"{sweep.path}: {exc}; fix it, or mark the dataset `optional: true` to skip it when "
                             "absent") from None
        except MemoryError as exc:
            raise BenchError(f"{sweep.path}: dataset '{first.dataset_label}' does not fit in memory ({exc}); "
                             "use smaller dataset parameters") from None
        except (ValueError, OverflowError) as exc:
            raise BenchError(f"{sweep.path}: dataset '{first.dataset_label}' cannot be built with its parameters "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from None
        for split_spec in {json.dumps(s.split, sort_keys=True) for s in group}:
            try:
                compute_split(data, SplitSpec(**json.loads(split_spec)))
            except BenchError as exc:
                raise BenchError(f"{sweep.path}: dataset '{first.dataset_label}': {exc}") from None
        if loaded is not None:
            loaded.clear()
            loaded[key] = data


class Runner:
    """Runs the specs of a sweep with resume, failure records and tracking."""

    def __init__(self, sweep: Sweep, results: Path, tracker: Any = None, force: bool = False,
                 show_progress: bool = False, echo: Callable[[str], None] = print) -> None:
        self.sweep = sweep
        self.results = Path(results)
        self.tracker = SafeTracker(tracker or NullTracker(), echo)  # tracking never decides a run's fate
        self.force = force
        self.show_progress = show_progress
        self.echo = echo
        self.device = resolve_device(sweep.device)
        self.cache_root = self.results / "cache"
        self._data_key: str | None = None
        self._position = {s.key: i for i, s in enumerate(sweep.specs)}
        self._environment: dict[str, Any] | None = None
        self.summary = SweepSummary(total=len(sweep.specs))  # what this invocation has done so far
        self._data: CrossModalData | Exception | None = None

    @property
    def environment(self) -> dict[str, Any]:
        """Versions, host, device and git commit: fixed for an invocation, so computed once."""
        if self._environment is None:
            self._environment = environment(self.device)
        return self._environment

    def pending(self) -> list[RunSpec]:
        """Specs without an ok record (all of them with `force`), excluding skipped datasets."""
        out = []
        for spec in self.sweep.specs:
            if spec.dataset_label in self.sweep.skipped:
                continue
            rec = read_record(record_path(self.results, self.sweep.name, spec.key))
            if self.force or rec is None or rec["status"] != "ok":
                out.append(spec)
        return out

    def use_tracker(self, tracker: Any) -> None:
        """Track to `tracker` (wrapped so that a tracking failure never fails a run)."""
        self.tracker = SafeTracker(tracker, self.echo)

    def adopt(self, loaded: dict[str, CrossModalData]) -> None:
        """Reuse a dataset already loaded by `preflight`."""
        for key, data in loaded.items():
            self._data_key, self._data = key, data

    def _data_for(self, spec: RunSpec) -> CrossModalData:
        key = json.dumps([spec.dataset, spec.dataset_params], sort_keys=True)
        if key != self._data_key:
            self._data, self._data_key = None, key
            try:
                self._data = load_dataset(spec, self.cache_root)
            except Exception as exc:  # remembered so every run of this dataset fails the same way
                self._data = exc
        if isinstance(self._data, Exception):
            raise self._data
        return self._data  # type: ignore[return-value]

    def _split_for(self, data: CrossModalData, spec: RunSpec) -> Split:
        """The spec's split (the persisted one under the cache; workers memoise it per process)."""
        return get_split(data, SplitSpec(**spec.split), self.cache_root)

    def run(self) -> SweepSummary:
        """Run every pending spec; returns the summary."""
        from bench.progress import progress

        summary = self.summary = SweepSummary(total=len(self.sweep.specs), skipped_datasets=dict(self.sweep.skipped))
        for label, reason in self.sweep.skipped.items():
            self.echo(f"skipped dataset {label}: {reason}")
        todo = self.pending()
        skipped_runs = sum(s.dataset_label in self.sweep.skipped for s in self.sweep.specs)
        summary.done_before = summary.total - len(todo) - skipped_runs
        if summary.done_before:
            self.echo(f"{summary.done_before} of {summary.total} runs already finished; skipping them "
                      "(--force reruns)")
        if not todo:
            return summary
        commit = self.environment["git_commit"]
        self.tracker.start_parent(f"{self.sweep.name} {datetime.now(UTC):%Y-%m-%d %H:%M:%S}",
                                  {"sweep": self.sweep.name, "sweep_file": str(self.sweep.path),
                                   "git_commit": commit.removesuffix("-dirty"),
                                   "git_dirty": str(commit.endswith("-dirty")).lower(), "bench.role": "invocation"})
        bar = progress(todo, total=len(todo), desc=f"sweep {self.sweep.name}", enabled=self.show_progress)
        status = "FAILED"
        try:
            for i, spec in enumerate(bar, 1):
                rec = self.run_spec(spec)
                if rec["status"] == "ok":
                    summary.ok += 1
                    m = rec["metrics"]
                    line = (f"[{i}/{len(todo)}] ok     {spec.describe()}: mAP i2t {m['map_i2t']:.4f} "
                            f"t2i {m['map_t2i']:.4f} ({rec['timings']['total_s']:.1f}s)")
                else:
                    summary.failed += 1
                    summary.failures.append((spec.describe(), rec["reason"]))
                    line = f"[{i}/{len(todo)}] FAILED {spec.describe()}: {rec['reason']}"
                if hasattr(bar, "write"):
                    bar.write(line)
                else:
                    self.echo(line)
            status = "FINISHED" if not summary.failed else "FAILED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self.tracker.end_parent(status)
        return summary

    def run_spec(self, spec: RunSpec) -> dict[str, Any]:
        """Run one spec to a written record (ok or failed)."""
        started = datetime.now(UTC).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        base: dict[str, Any] = {
            "key": spec.key, "spec": dataclasses.asdict(spec), "started": started,
            "position": self._position.get(spec.key, 0),  # order in the sweep file, for reports
            "environment": self.environment,
        }
        tags = child_tags(spec, base["environment"]["git_commit"])
        run_id = None
        result: dict[str, Any] = {}
        try:
            data = self._data_for(spec)
            split = self._split_for(data, spec)
            harness = {"method": spec.method, "seed": spec.seed, "dataset": spec.dataset_label,
                       "data": {**spec.dataset_params, "fingerprint": data.fingerprint(),
                                "label_embeddings": data.label_embedding_source},
                       "split": spec.split, "missing": spec.missing or "complete",
                       "missing_policy": spec.missing_policy}
            run_id = self.tracker.start_child(run_name(spec), child_params(spec.params, harness), tags)
            self.tracker.log_dataset(run_id, spec.dataset_label, input_digest(data.fingerprint(), split),
                                     f"{spec.dataset}:{json.dumps(spec.dataset_params, sort_keys=True)}",
                                     {"train": len(split.train), "val": len(split.val), "test": len(split.test),
                                      "retrieval": len(split.retrieval), "split": spec.split,
                                      "missing": spec.missing or "complete"})
            base["mlflow_run_id"] = run_id
            base["data"] = {**data.summary(), "fingerprint": data.fingerprint()}
            result = execute(spec, data, split, self.device, show_progress=self.show_progress,
                             epoch_echo=None if self.show_progress else self.echo,
                             on_log=lambda step, m: self.tracker.log_metrics(run_id, epoch_metrics(m), step))
            self.tracker.log_metrics(run_id, section("test", scalar_metrics(result["metrics"])))
            if result.get("val_map") is not None:
                self.tracker.log_metrics(run_id, {"val/best_map": result["val_map"],
                                                  "val/best_epoch": result["best_epoch"] or 0})
            if result.get("test_selected"):  # the optimistic figure, labelled as such
                self.tracker.log_metrics(run_id, section("test_selected_optimistic",
                                                         scalar_metrics(result["test_selected"])))
            cost = {**result.get("timings", {}), **{k: v for k, v in result.get("memory", {}).items()},
                    "parameters": result.get("cost", {}).get("parameters")}
            self.tracker.log_metrics(run_id, section("cost", scalar_metrics(cost)))
            self._guarded_artifacts(run_id, spec, result)
            record = {**base, **result, "status": "ok", "reason": None}
        except KeyboardInterrupt:
            self.tracker.end_child(run_id, "KILLED")
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, BenchError) else str(exc)
            record = {**base, **result, "status": "failed", "reason": reason.splitlines()[0] if reason else "",
                      "traceback": traceback.format_exc()}
            self.tracker.set_tags(run_id, {"failure_reason": record["reason"]})
        record["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        record.setdefault("timings", {})["total_s"] = time.perf_counter() - t0
        write_record(record_path(self.results, self.sweep.name, spec.key), record)
        self.tracker.end_child(run_id, "FINISHED" if record["status"] == "ok" else "FAILED")
        return record

    def _guarded_artifacts(self, run_id: str | None, spec: RunSpec, result: dict[str, Any]) -> None:
        """Attach the artifacts; a failure here (a figure, a temp file) is a tracking failure, not the run's."""
        try:
            self._artifacts(run_id, spec, result)
        except Exception as exc:  # noqa: BLE001
            self.echo(f"warning: MLflow artifacts of {spec.describe()} not saved ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); the run's record is unaffected")

    def _artifacts(self, run_id: str | None, spec: RunSpec, result: dict[str, Any]) -> None:
        if run_id is None:
            return
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "config.json"
            cfg.write_text(json.dumps({"key": spec.key, **dataclasses.asdict(spec)}, indent=1))
            self.tracker.log_artifact(run_id, cfg)
            pr = {k: v for k, v in result["metrics"].items() if k.startswith("pr_")}
            (Path(tmp) / "pr_curve.json").write_text(json.dumps(pr))
            self.tracker.log_artifact(run_id, Path(tmp) / "pr_curve.json")
            pr_figure(result["metrics"], spec.describe(), Path(tmp) / "pr_curve.png")
            self.tracker.log_artifact(run_id, Path(tmp) / "pr_curve.png")
