"""Incomplete-modal training of the GNN family: which rows count as present, the two stages, and
the reconstruction of missing features from the other modality.

Training rows may lack their image or their text (`train.image_present` / `text_present`); the
missing features arrive zero-filled. The method (`methods/gnn_con.py`) trains in two stages:

  stage 1 (Adam, shuffled batches): with `absent_rows: zero_filled` (the release) every row
      counts as having both modalities, zeros included; with `absent_rows: masked` each loss
      term skips what is absent (`masked_losses`).
  stage 2 (SGD at lr2, `stage2_epochs`; only when some training row is incomplete): each batch
      mixes paired, image-only and text-only rows 1 : 2 : 2 (`mixed_batches`), and each missing
      feature is filled with decoder(encoder(present modality)), without gradient:
      `per_batch` (the release) fills a batch's rows in train mode just before its step
      (BatchNorm normalises with that group's statistics and updates its running ones);
      `per_epoch` fills every missing feature once per epoch in eval mode.
      `recon_as_real` decides whether filled rows enter the discriminators' "real" terms.
      If no stage-2 epoch beats stage 1 on validation, the stage-1 weights are kept.

Everything a step decides on (which rows a module sees, which terms run) is worked out on the
host from host-side masks before the epoch's first step (`plan_batches`, `RowMasks`), so a step
never reads a device value back: on a GPU the training loop does not wait for the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.method import FitContext, run_epochs

from .layers import ENCODE_BATCH
from .losses import adversarial_loss, classification_loss, cosine_prediction, dscmr_nll, multilabel_contrastive

STAGE2_MIX = [1.0, 2.0, 2.0]  # paired : image-only : text-only rows per stage-2 batch, as released


def rows_through(module: nn.Module, x: torch.Tensor, idx: torch.Tensor, count: int, d_out: int) -> torch.Tensor:
    """module(x) on the rows `idx` (`count` of them, known on the host), zeros elsewhere (BatchNorm
    sees only those rows)."""
    if count == x.shape[0]:
        return module(x)
    out = x.new_zeros(x.shape[0], d_out)
    if count == 0:
        return out
    rows = module(x.index_select(0, idx))
    return out.index_put((idx,), rows.to(out.dtype))


@dataclass
class RowMasks:
    """Presence masks of one incomplete batch, with what the step decides on computed on the host:
    row counts and row indices. im / tm: rows whose image / text counts as present; im_real /
    tm_real: rows whose feature is a true one (for the GAN's real terms). A mask with fewer than 2
    rows is emptied (BatchNorm needs two)."""

    im: torch.Tensor
    tm: torch.Tensor
    im_real: torch.Tensor
    tm_real: torch.Tensor
    idx: dict[str, torch.Tensor]
    count: dict[str, int]

    @classmethod
    def build(cls, im: torch.Tensor, tm: torch.Tensor, im_real: torch.Tensor, tm_real: torch.Tensor,
              device: torch.device | str | None = None) -> RowMasks | None:
        """From host (CPU) bool masks; None when every row is present and real (the complete path)."""
        masks = {"im": im, "tm": tm, "im_real": im_real, "tm_real": tm_real}
        masks = {k: torch.as_tensor(m).cpu().bool() for k, m in masks.items()}
        masks = {k: m if int(m.sum()) >= 2 else torch.zeros_like(m) for k, m in masks.items()}
        if all(bool(m.all()) for m in masks.values()):
            return None
        dev = device if device is not None else im.device
        idx = {k: m.nonzero().squeeze(1).to(dev) for k, m in masks.items()}
        count = {k: int(m.sum()) for k, m in masks.items()}
        on = {k: m.to(dev) for k, m in masks.items()}
        return cls(on["im"], on["tm"], on["im_real"], on["tm_real"], idx, count)


def presence(im: torch.Tensor, tm: torch.Tensor, filled: bool, absent_rows: str, recon_as_real: bool
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(im_present, tm_present, im_real, tm_real) of one batch from its true presence masks im / tm.

    `filled`: the batch's missing features were reconstructed from the present modality (stage 2
    with reconstruction). `absent_rows: zero_filled` counts every row as present; `masked` only
    true or filled features. `recon_as_real: false` keeps filled rows out of the real terms.
    """
    fill_i = (~im & tm) if filled else torch.zeros_like(im)
    fill_t = (im & ~tm) if filled else torch.zeros_like(tm)
    if absent_rows == "zero_filled":
        pres_i, pres_t = torch.ones_like(im), torch.ones_like(tm)
    else:
        pres_i, pres_t = im | fill_i, tm | fill_t
    if recon_as_real:
        return pres_i, pres_t, pres_i, pres_t
    return pres_i, pres_t, pres_i & ~fill_i, pres_t & ~fill_t


def fill_plan(im: torch.Tensor, tm: torch.Tensor, device: torch.device | str) -> tuple[list, list]:
    """Device row indices (in chunks) of the image-only and the text-only rows, from host masks."""
    im, tm = im.cpu(), tm.cpu()
    return tuple([c.to(device) for c in rows.nonzero().squeeze(1).split(ENCODE_BATCH)]
                 for rows in (im & ~tm, ~im & tm))


@torch.no_grad()
def fill_rows(model: nn.Module, img: torch.Tensor, txt: torch.Tensor, image_only: list, text_only: list,
              train_mode: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of img, txt: the text of the `image_only` rows = dec_img2txt(enc_img(img)), the image
    of the `text_only` rows = dec_txt2img(enc_txt(txt)) (lists of device index chunks).

    train_mode=False: eval mode (BatchNorm running statistics). train_mode=True (the release's
    per-batch filling): each chunk goes through encoder and decoder as one batch in train mode, so
    BatchNorm uses that group's statistics and updates its running ones; a chunk of one row falls
    back to eval mode (BatchNorm cannot train on a single row). The model's mode is restored after.
    """
    was_training = model.training
    img, txt = img.clone(), txt.clone()
    jobs = ((txt, img, image_only, model.enc_img, model.dec_img2txt),
            (img, txt, text_only, model.enc_txt, model.dec_txt2img))
    for target, source, chunks, enc, dec in jobs:
        for chunk in chunks:
            mode = train_mode and chunk.numel() >= 2
            enc.train(mode)
            dec.train(mode)
            target.index_copy_(0, chunk, dec(enc(source.index_select(0, chunk))).to(target.dtype))
    model.train(was_training)
    return img, txt


def reconstruct(model: nn.Module, img: torch.Tensor, txt: torch.Tensor, im: torch.Tensor, tm: torch.Tensor,
                train_mode: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of img, txt whose missing rows (per the host masks im, tm) hold decoder(encoder(present
    modality)), without gradient; see `fill_rows`."""
    return fill_rows(model, img, txt, *fill_plan(im, tm, img.device), train_mode=train_mode)


@dataclass
class PlannedBatch:
    """One training step's inputs, decided on the host: device row indices, the rows to reconstruct
    first (`fill_plan` chunks, or None) and the batch's masks (None: every row present and real)."""

    rows: torch.Tensor
    fill: tuple[list, list] | None
    masks: RowMasks | None


def plan_batches(batches: list[torch.Tensor], device: torch.device | str, im: torch.Tensor | None = None,
                 tm: torch.Tensor | None = None,
                 presence_of: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]] | None = None,
                 fill: bool = False) -> list[PlannedBatch]:
    """Plan an epoch's `batches` (host row indices) before its first step.

    Batches of fewer than 2 rows are left out (BatchNorm cannot train on one row); the row indices
    travel to `device` in one copy. Without `presence_of` (complete data) no batch gets masks;
    otherwise each gets `RowMasks` from presence_of(im[rows], tm[rows]) and, with `fill`, the
    chunks of its missing features to reconstruct.
    """
    batches = [idx for idx in batches if idx.numel() >= 2]
    if not batches:
        return []
    on_device = torch.cat(batches).to(device).split([idx.numel() for idx in batches])
    if presence_of is None:
        return [PlannedBatch(rows, None, None) for rows in on_device]
    out = []
    for idx, rows in zip(batches, on_device):
        bi, bt = im[idx], tm[idx]
        masks = RowMasks.build(*presence_of(bi, bt), device=device)
        out.append(PlannedBatch(rows, fill_plan(bi, bt, device) if fill else None, masks))
    return out


def mixed_batches(groups: list[torch.Tensor], weights: list[float], batch: int, steps: int,
                  generator: torch.Generator) -> list[torch.Tensor]:
    """`steps` batches drawing from each non-empty group in proportion to `weights` (cycling
    through a fresh permutation of a group whenever it is used up)."""
    active = [(g, w) for g, w in zip(groups, weights) if g.numel() and w > 0]
    total = sum(w for _, w in active)
    sizes = [max(1, round(batch * w / total)) for _, w in active]
    streams = [g[torch.randperm(g.numel(), generator=generator)] for g, _ in active]
    pos = [0] * len(active)
    out = []
    for _ in range(steps):
        parts = []
        for i, ((g, _), size) in enumerate(zip(active, sizes)):
            need = size
            while need:
                if pos[i] == streams[i].numel():
                    streams[i], pos[i] = g[torch.randperm(g.numel(), generator=generator)], 0
                take = min(need, streams[i].numel() - pos[i])
                parts.append(streams[i][pos[i]:pos[i] + take])
                pos[i] += take
                need -= take
        out.append(torch.cat(parts))
    return out


def masked_losses(model: nn.Module, p: Any, img: torch.Tensor, txt: torch.Tensor, y: torch.Tensor, mk: RowMasks
                  ) -> dict[str, torch.Tensor]:
    """The GNN family's loss on a batch where some rows are absent or reconstructed.

    Same terms and weights as the complete path, each restricted to what it may see: L_cla per
    modality over its present rows; cross-modal contrastive / NLL pairs need the anchor's modality
    in row i and the other one in row j, intra-modal pairs need it in both; the GAN's real terms
    use rows with a true (`*_real`) feature, its fake terms rows whose source modality is present.
    Absent rows never reach an encoder (BatchNorm statistics come from present rows only). `p`:
    the method's parameters; which terms run is decided from the host-side counts in `mk`.
    """
    m = model
    im, tm, n = mk.im, mk.tm, img.shape[0]
    u = rows_through(m.enc_img, img, mk.idx["im"], mk.count["im"], p.D)
    v = rows_through(m.enc_txt, txt, mk.idx["tm"], mk.count["tm"], p.D)
    c = m.classifiers()
    out = {"cla": classification_loss(cosine_prediction(u, c), y, im)
           + classification_loss(cosine_prediction(v, c), y, tm)}
    total = p.alpha * out["cla"]
    full_i, full_t = mk.count["im"] == n, mk.count["tm"] == n
    if p.con_weight > 0:
        kind = "binary" if p.positives == "binary" else p.similarity
        out["con"] = multilabel_contrastive(u, v, y, p.tau, p.gamma, kind, p.lse_scale,
                                            None if full_i and full_t else im, None if full_i and full_t else tm)
        total = total + p.con_weight * out["con"]
    if p.nll_weight > 0:
        out["nll"] = dscmr_nll(u, v, y, im, tm)
        total = total + p.nll_weight * out["nll"]
    if m.gan and p.beta > 0:
        gan = u.new_zeros(())

        def pick(z: torch.Tensor, key: str) -> torch.Tensor:
            return z if mk.count[key] == n else z.index_select(0, mk.idx[key])

        # classes are modalities (image 1, text 0), as released
        if mk.count["im_real"] and mk.count["tm"]:
            gan = gan + adversarial_loss(m.disc_img(pick(img, "im_real")), m.disc_img(m.dec_txt2img(pick(v, "tm"))),
                                         real_class=1)
        if mk.count["tm_real"] and mk.count["im"]:
            gan = gan + adversarial_loss(m.disc_txt(pick(txt, "tm_real")), m.disc_txt(m.dec_img2txt(pick(u, "im"))),
                                         real_class=0)
        out["gan"] = gan
        total = total + p.beta * gan
    out["loss"] = total
    return out


def run_stage2(ctx: FitContext, model: nn.Module, p: Any, img: torch.Tensor, txt: torch.Tensor, im: torch.Tensor,
               tm: torch.Tensor, train_batches: Callable[..., dict[str, float]], validate: Callable[[], float],
               generator: torch.Generator, best_first: float, offset: int) -> None:
    """Stage 2 after a stage 1 that ran `offset` epochs and reached validation mAP `best_first`.

    SGD at p.lr2 over p.stage2_epochs epochs of ceil(n / p.batch) mixed 1 : 2 : 2 batches, numbered
    after stage 1; with `stage2_recon: per_epoch` the missing features are filled once per epoch in
    eval mode first. `train_batches(batches, opt, img, txt, stage=2, prefilled=...)` runs the
    steps. im, tm: host presence masks. The stage-1 weights come back unless stage 2 beats them.
    """
    kept = {k: v.detach().clone() for k, v in model.state_dict().items()}
    per_epoch = p.reconstruct and model.gan and p.stage2_recon == "per_epoch"
    groups = [(im & tm).nonzero().squeeze(1), (im & ~tm).nonzero().squeeze(1), (~im & tm).nonzero().squeeze(1)]
    steps = math.ceil(img.shape[0] / p.batch)
    opt = torch.optim.SGD(model.parameters(), lr=p.lr2)

    def epoch(_: int) -> dict[str, float]:
        imgs, txts = reconstruct(model, img, txt, im, tm) if per_epoch else (img, txt)
        model.train()
        batches = mixed_batches(groups, STAGE2_MIX, p.batch, steps, generator)
        return train_batches(batches, opt, imgs, txts, stage=2, prefilled=per_epoch)

    second = run_epochs(ctx, model, epoch, validate, p.stage2_epochs, p.patience, first_epoch=offset + 1)
    if not second.best_val_map > best_first:
        model.load_state_dict(kept)
    model.eval()


__all__ = ["PlannedBatch", "RowMasks", "STAGE2_MIX", "fill_plan", "fill_rows", "masked_losses", "mixed_batches",
           "plan_batches", "presence", "reconstruct", "rows_through", "run_stage2"]
