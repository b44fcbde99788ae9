"""Seeded synthetic multi-label image-text data whose knobs make each ablation observable.

Generative story (all seeded):
- labels form `groups` of correlated concepts; each item draws 1-3 groups and, inside each,
  every label of the group with probability `within`, plus stray labels at rate `stray`
  (so label co-occurrence has structure a label graph can exploit, and overlaps are graded);
- each label c has a semantic prototype z_c; an item's semantic latent is the mean of its
  labels' prototypes plus noise;
- image = tanh(A s + N_img m_img) + noise, text = softplus(B s + N_txt m_txt) + noise, with
  m_* modality-specific nuisance latents of strength `nuisance` and different dimensions per
  modality (so a common space and adversarial alignment matter);
- label embeddings: a noisy random projection of the prototypes (stand-in for GloVe).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.data import CrossModalData, make_data
from bench.dataset import Dataset
from bench.errors import ConfigError
from bench.params import spec
from bench.registry import register_dataset


@dataclass
class SyntheticParams:
    n: int = spec(2000, help="number of paired items", low=30)
    num_labels: int = spec(24, help="number of labels", low=2)
    groups: int = spec(6, help="groups of co-occurring labels", low=1)
    within: float = spec(0.45, help="probability of each label of a drawn group", low=0.0, high=1.0)
    stray: float = spec(0.02, help="probability of each label outside the drawn groups", low=0.0, high=1.0)
    image_dim: int = spec(256, help="image feature dimension", low=2)
    text_dim: int = spec(128, help="text feature dimension", low=2)
    latent_dim: int = spec(32, help="dimension of the shared semantic latent", low=2)
    nuisance: float = spec(1.0, help="strength of modality-specific nuisance", low=0.0)
    noise: float = spec(0.3, help="observation noise", low=0.0)
    embedding_dim: int = spec(64, help="dimension of the label embeddings", low=1)
    seed: int = spec(0, help="generator seed (the data itself; split and training seeds are separate)", low=0)

    def __post_init__(self) -> None:
        if self.groups > self.num_labels:  # a group without labels cannot be drawn
            raise ConfigError(f"groups ({self.groups}) must be at most num_labels ({self.num_labels}); "
                              "lower groups or raise num_labels")

    def estimate_bytes(self) -> int:
        """Peak memory of `generate`: float64 working arrays of the features and latents, the labels."""
        per_row = 8 * (3 * (self.image_dim + self.text_dim) + 2 * self.latent_dim + 8) + 2 * self.num_labels
        return self.n * per_row + 8 * self.num_labels * (self.latent_dim + self.embedding_dim)


def generate(p: SyntheticParams) -> dict[str, np.ndarray]:
    """Arrays of one synthetic dataset: image, text, labels, label_embeddings."""
    rng = np.random.default_rng(p.seed)
    c = p.num_labels
    group_of = rng.permutation(np.arange(c) % p.groups)
    n_groups = rng.integers(1, 4, size=p.n)
    labels = (rng.random((p.n, c)) < p.stray).astype(np.uint8)
    for i in range(p.n):
        for g in rng.choice(p.groups, size=min(n_groups[i], p.groups), replace=False):
            members = np.flatnonzero(group_of == g)
            hit = members[rng.random(len(members)) < p.within]
            if hit.size == 0:
                hit = rng.choice(members, size=1)
            labels[i, hit] = 1
    protos = rng.normal(size=(c, p.latent_dim))
    protos += 0.8 * rng.normal(size=(p.groups, p.latent_dim))[group_of]  # related labels are close
    sem = labels @ protos / np.maximum(labels.sum(1, keepdims=True), 1)
    sem += 0.15 * rng.normal(size=sem.shape)
    k_img, k_txt = max(2, p.latent_dim // 2), max(2, p.latent_dim // 4)
    a = rng.normal(size=(p.latent_dim, p.image_dim)) / np.sqrt(p.latent_dim)
    b = rng.normal(size=(p.latent_dim, p.text_dim)) / np.sqrt(p.latent_dim)
    n_img = rng.normal(size=(k_img, p.image_dim)) / np.sqrt(k_img)
    n_txt = rng.normal(size=(k_txt, p.text_dim)) / np.sqrt(k_txt)
    m_img = p.nuisance * rng.normal(size=(p.n, k_img))
    m_txt = p.nuisance * rng.normal(size=(p.n, k_txt))
    image = np.tanh(sem @ a + m_img @ n_img) + p.noise * rng.normal(size=(p.n, p.image_dim))
    text = np.logaddexp(0.0, 2.0 * (sem @ b + m_txt @ n_txt)) + p.noise * rng.normal(size=(p.n, p.text_dim))
    emb = protos @ rng.normal(size=(p.latent_dim, p.embedding_dim)) / np.sqrt(p.latent_dim)
    emb += 0.1 * rng.normal(size=emb.shape)
    return {"image": image.astype(np.float32), "text": text.astype(np.float32), "labels": labels,
            "label_embeddings": emb.astype(np.float32)}


@register_dataset
class Synthetic(Dataset):
    name = "synthetic"
    description = "seeded multi-label image/text generator (correlated labels, graded overlaps, nuisance)"
    Params = SyntheticParams

    def estimate_bytes(self) -> int:
        """Memory needed to generate the data (checked before anything is written, see bench.memory)."""
        return self.params.estimate_bytes()

    def load(self) -> CrossModalData:
        arrays = generate(self.params)
        return make_data(
            self.name, arrays["image"], arrays["text"], arrays["labels"],
            [f"concept_{i:02d}" for i in range(self.params.num_labels)],
            label_embeddings=arrays["label_embeddings"], label_embedding_source="synthetic-prototypes",
        )
