"""A test-only method plugin, discovered through BENCH_PLUGIN_PATH=tests/plugins_fixture.

It sleeps during fit, so that a test can kill a sweep while a run is in progress; with
`started_marker` set it first touches `<marker>.seed<N>`, so the test knows that the run has begun.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.method import Method
from bench.params import spec
from bench.registry import register_method


@dataclass
class SleepyParams:
    sleep_s: float = spec(1.0, help="seconds spent in fit", low=0.0)
    dim: int = spec(4, help="embedding size", low=1)
    started_marker: str = spec("", help="if set, a file touched (with the seed appended) when fit starts")


@register_method
class Sleepy(Method):
    name = "fixture_sleepy"
    description = "test-only: sleeps in fit, then embeds by seeded random projections"
    Params = SleepyParams

    def fit(self, train, val, ctx):
        if self.params.started_marker:
            Path(f"{self.params.started_marker}.seed{ctx.seed}").touch()
        time.sleep(self.params.sleep_s)
        rng = np.random.default_rng(ctx.seed)
        self.p_img = rng.normal(size=(train.image.shape[1], self.params.dim))
        self.p_txt = rng.normal(size=(train.text.shape[1], self.params.dim))

    def encode(self, image=None, text=None):
        img = None if image is None else (np.asarray(image) @ self.p_img).astype(np.float32)
        txt = None if text is None else (np.asarray(text) @ self.p_txt).astype(np.float32)
        return img, txt
