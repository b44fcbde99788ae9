"""What a run keeps for the diagnostics: a seeded sample of its test embeddings and the numbers
computed from it (`bench.embeddings`, `bench.diagnostics`).

Every run of a sweep that shares a test split saves the same sampled items (the sample seed is
the split seed), so the report compares methods on identical items. The numbers are computed
from the file as saved (float16), so a record and a later recomputation from its file agree:
the modality gap (`diag/probe_acc`, `diag/centroid_dist`, `diag/align`, `diag/uniform_img`,
`diag/uniform_txt`) and the AP of each label's carriers in both directions (retrieval among the
sampled items). Cost on 2 cores: about 2-4 s per run at 2,000 items.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.diagnostics import modality_gap, per_label_ap
from bench.embeddings import EMBEDDINGS_MAX, load_embeddings, sample_indices, save_embeddings
from bench.spec import RunSpec
from bench.splits import Split


def embeddings_path(results: Path, sweep: str, key: str) -> Path:
    """Where a run's embeddings are kept: `<results>/<sweep>/embeddings/<run key>.npz`."""
    return Path(results) / sweep / "embeddings" / f"{key}.npz"


def _floats(values: np.ndarray) -> list[float | None]:
    """JSON-able floats (None for NaN: a label no sampled item carries)."""
    return [None if not math.isfinite(float(v)) else float(v) for v in values]


def keep_embeddings(spec: RunSpec, split: Split, image: np.ndarray, text: np.ndarray, labels: np.ndarray,
                    label_names: tuple[str, ...], path: Path, results: Path,
                    max_items: int = EMBEDDINGS_MAX) -> dict[str, Any]:
    """Save the sampled test embeddings of a run to `path` and compute its diagnostics; returns the
    record's `embeddings` and `diagnostics` fields. `image`, `text`, `labels` are the whole test
    split's (rows in `split.test` order)."""
    seed = int(spec.split.get("seed", 0))
    picked = sample_indices(int(labels.shape[0]), max_items, seed)
    rows = np.asarray(split.test)[picked]
    save_embeddings(path, np.asarray(image)[picked], np.asarray(text)[picked], np.asarray(labels)[picked], picked,
                    seed=seed, n_total=int(labels.shape[0]),
                    meta={"run_key": spec.key, "method": spec.method, "dataset": spec.dataset_label,
                          "rows": rows.tolist()})
    saved = load_embeddings(path)
    gap = modality_gap(saved.image, saved.text, seed=seed)
    label_ap = per_label_ap(saved.image, saved.text, saved.labels)
    fields = {"file": str(Path(path).resolve().relative_to(Path(results).resolve())), "items": saved.n,
              "of": int(labels.shape[0]), "sample_seed": seed, "bytes": Path(path).stat().st_size}
    diagnostics = {name.removeprefix("diag/"): float(value) for name, value in gap.items()}
    diagnostics.update(label_ap_i2t=_floats(label_ap.i2t), label_ap_t2i=_floats(label_ap.t2i),
                       label_count=[int(c) for c in label_ap.count], label_names=[str(n) for n in label_names])
    return {"embeddings": fields, "diagnostics": diagnostics}
