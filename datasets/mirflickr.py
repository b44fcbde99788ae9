"""MIRFlickr-25K (24 labels, VGG fc7 image / tag BoW text) from the user's .mat files (layout A or B)."""

from __future__ import annotations

from bench.registry import register_dataset

from .common.standard import StandardDataset


@register_dataset
class MIRFlickr(StandardDataset):
    name = "mirflickr"
    description = "MIRFlickr-25K, 24 labels; user-supplied .mat files (layout A or B, see docs/datasets.md)"
    KNOWN_LABELS = (
        "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake", "male",
        "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures", "sunset", "transport",
        "tree", "water",
    )
