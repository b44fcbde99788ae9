"""PR figures: curves averaged over seeds per (sweep, dataset, method), one PNG per (sweep, dataset)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.records import iter_records, record_path
from bench.report_figures import mean_pr_curves, pr_figures


def _rec(method, seed, precision, dataset="synthetic", status="ok", finished="2026-01-01T00:00:00"):
    recall = [0.25, 0.5, 1.0]
    return {"key": f"{dataset}-{method}-{seed}-{finished}", "status": status, "finished": finished,
            "spec": {"sweep": "figs", "dataset_label": dataset, "method_label": method, "seed": seed},
            "metrics": {"map_i2t": 0.5, "map_t2i": 0.5, "map_avg": 0.5,
                        "pr_i2t": {"recall": recall, "precision": precision},
                        "pr_t2i": {"recall": recall, "precision": precision[::-1]}}}


@pytest.fixture
def results(tmp_path):
    recs = [_rec("cca", 0, [0.9, 0.6, 0.3]), _rec("cca", 1, [0.7, 0.4, 0.1]),
            _rec("cca", 2, [0.0, 0.0, 0.0], status="failed"),
            _rec("cca", 1, [0.8, 0.5, 0.2], finished="2025-01-01T00:00:00"),  # older duplicate of seed 1
            _rec("lr", 0, [1.0, 0.8, 0.5]), _rec("lr", 0, [0.5, 0.5, 0.5], dataset="mfeat")]
    for rec in recs:
        path = record_path(tmp_path, "figs", rec["key"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
    return tmp_path


def test_curves_are_the_elementwise_mean_over_the_newest_ok_record_of_each_seed(results):
    curves = mean_pr_curves(iter_records(results))
    recall, precision, n = curves[("figs", "synthetic")]["cca"]["pr_i2t"]
    assert n == 2  # the failed seed 2 and the older seed-1 record are left out
    np.testing.assert_allclose(precision, [0.8, 0.5, 0.2])
    np.testing.assert_allclose(recall, [0.25, 0.5, 1.0])
    np.testing.assert_allclose(curves[("figs", "synthetic")]["cca"]["pr_t2i"][1], [0.2, 0.5, 0.8])


def test_one_png_and_one_pdf_per_sweep_and_dataset(results, tmp_path):
    written = pr_figures(results, tmp_path / "out")
    assert sorted(p.name for p in written) == ["pr_figs__mfeat.pdf", "pr_figs__mfeat.png",
                                               "pr_figs__synthetic.pdf", "pr_figs__synthetic.png"]
    for path in written:
        assert path.read_bytes()[:4] == (b"\x89PNG" if path.suffix == ".png" else b"%PDF")
