"""NUS-WIDE, top-21 concepts (image 4096 / text 1000 BoW) from the user's .mat files (layout A or B)."""

from __future__ import annotations

from bench.registry import register_dataset

from .common.standard import StandardDataset


@register_dataset
class NUSWide(StandardDataset):
    name = "nuswide"
    description = "NUS-WIDE top-21 concepts; user-supplied .mat files (layout A or B, see docs/datasets.md)"
    KNOWN_LABELS = (
        "sky", "clouds", "person", "water", "animal", "grass", "buildings", "window", "plants", "lake", "ocean",
        "road", "flowers", "sunset", "reflection", "rocks", "vehicle", "snow", "tree", "beach", "mountain",
    )
