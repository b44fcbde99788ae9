"""The shared epoch loop `run_epochs`: best validation epoch restored, patience, non-finite losses."""

from __future__ import annotations

import math

import pytest
import torch

from bench.method import FitContext, run_epochs


class Scripted:
    """A one-weight module whose weight after epoch e is e, and a validate() reading scores from a script."""

    def __init__(self, scores, losses=None):
        self.module = torch.nn.Linear(1, 1, bias=False)
        self.scores = list(scores)
        self.losses = losses or {}
        self.trained = []

    def train_epoch(self, epoch):
        self.trained.append(epoch)
        with torch.no_grad():
            self.module.weight.fill_(float(epoch))
        return {"loss": self.losses.get(epoch, 1.0 / epoch)}

    def validate(self):
        return self.scores[len(self.trained) - 1]

    def run(self, ctx=None, epochs=None, patience=None):
        ctx = ctx or FitContext()
        result = run_epochs(ctx, self.module, self.train_epoch, self.validate,
                            epochs=epochs or len(self.scores), patience=patience)
        return ctx, result


def test_the_weights_of_the_best_validation_epoch_are_restored():
    toy = Scripted([0.1, 0.5, 0.3, 0.2])
    _, result = toy.run()
    assert toy.module.weight.item() == 2.0
    assert (result.best_epoch, result.best_val_map, result.epochs_run) == (2, 0.5, 4)
    assert not result.stopped_early


def test_the_last_epoch_is_kept_when_it_is_the_best():
    toy = Scripted([0.1, 0.2, 0.3])
    toy.run()
    assert toy.module.weight.item() == 3.0


def test_a_tie_keeps_the_earlier_epoch():
    toy = Scripted([0.4, 0.4, 0.1])
    _, result = toy.run()
    assert result.best_epoch == 1 and toy.module.weight.item() == 1.0


def test_training_stops_after_patience_epochs_without_improvement():
    toy = Scripted([0.2, 0.6, 0.5, 0.4, 0.9, 0.95])
    _, result = toy.run(patience=2)
    assert toy.trained == [1, 2, 3, 4]
    assert result.stopped_early and result.epochs_run == 4
    assert result.best_epoch == 2 and toy.module.weight.item() == 2.0


def test_without_patience_every_epoch_runs():
    toy = Scripted([0.9, 0.1, 0.1, 0.1, 0.1])
    _, result = toy.run(patience=None)
    assert toy.trained == [1, 2, 3, 4, 5] and not result.stopped_early


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_loss_raises_naming_the_loss_and_epoch(bad):
    toy = Scripted([0.1, 0.2, 0.3], losses={2: bad})
    with pytest.raises(FloatingPointError, match=r"loss loss became (nan|inf) at epoch 2"):
        toy.run()
    assert toy.trained == [1, 2]


def test_the_context_records_the_best_epoch_and_its_validation_map():
    ctx, _ = Scripted([0.3, 0.7, 0.6]).run()
    assert (ctx.best_epoch, ctx.best_val_map) == (2, 0.7)


def test_the_history_has_one_row_per_epoch_with_losses_and_validation_map():
    ctx, _ = Scripted([0.3, 0.7]).run()
    assert ctx.history == [{"step": 1, "loss": 1.0, "val_map": 0.3}, {"step": 2, "loss": 0.5, "val_map": 0.7}]


def test_reports_reach_the_hooks_in_epoch_order():
    seen = []
    ctx = FitContext()
    ctx.on_report.append(lambda epoch, score: seen.append((epoch, score)))
    Scripted([0.3, 0.7, 0.1]).run(ctx)
    assert seen == [(1, 0.3), (2, 0.7), (3, 0.1)]


def test_the_module_is_left_in_eval_mode():
    toy = Scripted([0.1, 0.2])
    toy.run()
    assert not toy.module.training


def test_a_spent_time_budget_stops_training_after_the_current_epoch():
    ctx = FitContext(time_budget_s=0.0)
    toy = Scripted([0.1, 0.2, 0.3])
    _, result = toy.run(ctx)
    assert toy.trained == [1] and result.stopped_early
