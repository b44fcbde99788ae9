"""MS-COCO, 80 categories (image 4096 / text BoW) from the user's .mat files (layout A or B)."""

from __future__ import annotations

from bench.registry import register_dataset

from .common.standard import StandardDataset


@register_dataset
class MSCOCO(StandardDataset):
    name = "mscoco"
    description = "MS-COCO, 80 categories; user-supplied .mat files (layout A or B, see docs/datasets.md)"
    KNOWN_LABELS = (  # the standard category-id order
        "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
        "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
        "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
        "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
        "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
        "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
        "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
        "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
        "teddy bear", "hair drier", "toothbrush",
    )
