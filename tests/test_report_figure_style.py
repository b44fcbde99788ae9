"""How the report's figures look (issue 18 items 7, 8 and 9, and the cosmetic list): P@K from the
PR curve's rank cutoffs, one style per method across every figure, identical curves visible,
legends outside the axes, the selected epoch marked beside a training-loss panel, whole-number
epoch ticks and small heatmap labels."""

from __future__ import annotations

import numpy as np
import pytest
from report_records import rec, write

import bench.report_epochs as epochs_module
import bench.report_figures as figures_module
from bench.report_plot import figure_source

N_RETRIEVAL = 150


def _pr(scale: float) -> dict[str, list[float]]:
    """A 100-point PR curve (precision at the rank cutoffs of 150 items)."""
    cutoffs = np.unique(np.linspace(1, N_RETRIEVAL, 100).round())
    return {"precision": list(scale * (1 - cutoffs / 300)), "recall": list(cutoffs / N_RETRIEVAL)}


def _history(shift: float) -> list[dict[str, float]]:
    return [{"step": e, "val_map": 0.5 + shift + e / 20, "loss": 3 - e / 3 + shift} for e in (1, 2, 3)]


@pytest.fixture
def captured(monkeypatch):
    """Every figure the report draws: (file stem, figure), saved for real as well."""
    figures = []

    def keep(real):
        def save(fig, out_dir, stem, formats):
            fig.canvas.draw()
            figures.append((stem, fig))
            return real(fig, out_dir, stem, formats)
        return save

    for module in (figures_module, epochs_module):
        monkeypatch.setattr(module, "save", keep(module.save))
    return figures


@pytest.fixture
def results(tmp_path):
    scalars = {"p@1_i2t": 0.9, "p@10_i2t": 0.8, "p@50_i2t": 0.7, "p@100_i2t": 0.6}
    for seed in range(2):
        common = {"n_retrieval": N_RETRIEVAL}
        write(tmp_path, rec("cca", seed, 0.5, metrics={"pr_i2t": _pr(0.8), **scalars}, **common))
        write(tmp_path, rec("pgnn_con", seed, 0.8, position=1, metrics={"pr_i2t": _pr(0.9 + seed / 100)},
                            history=_history(seed / 100), best_epoch=3 - seed, **common))
        write(tmp_path, rec("pgnn_con/no_gan", seed, 0.7, position=2, metrics={"pr_i2t": _pr(0.7)},
                            history=_history(-0.1), best_epoch=3, **common))
        write(tmp_path, rec("pgnn_con/no_recon", seed, 0.8, position=3, params={"D": 8, "reconstruct": False},
                            metrics={"pr_i2t": _pr(0.9 + seed / 100)}, history=_history(seed / 100),
                            best_epoch=3 - seed, **common))
    return tmp_path


def _lines(fig) -> dict[str, object]:
    """Legend label -> the line it stands for (labels as the figure shows them)."""
    return {line.get_label(): line for ax in fig.axes for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def _draw_all(results, tmp_path):
    return figures_module.draw_all(figure_source(results), tmp_path / "figs", ("png",))


def test_precision_at_k_is_drawn_from_every_rank_cutoff_of_the_pr_curve(results, tmp_path, captured):
    _draw_all(results, tmp_path)
    fig = next(f for stem, f in captured if stem.startswith("pk_"))
    line = _lines(fig)["cca (2)"]
    expected_k = np.unique(np.linspace(1, N_RETRIEVAL, 100).round())
    np.testing.assert_allclose(line.get_xdata(), expected_k)
    np.testing.assert_allclose(line.get_ydata(), _pr(0.8)["precision"])
    assert line.get_marker() in ("None", "", None)  # many points: no markers


def test_a_run_with_only_a_few_stored_cutoffs_gets_markers(tmp_path, captured):
    write(tmp_path, rec("cca", 0, 0.5, metrics={"p@1_i2t": 0.9, "p@10_i2t": 0.8, "p@100_i2t": 0.6}))
    _draw_all(tmp_path, tmp_path)
    line = _lines(next(f for stem, f in captured if stem.startswith("pk_")))["cca (1)"]
    assert list(line.get_xdata()) == [1, 10, 100] and line.get_marker() == "o"


def test_a_method_has_one_colour_and_dash_in_every_figure_of_a_report(results, tmp_path, captured):
    _draw_all(results, tmp_path)
    looks: dict[str, set] = {}
    for stem, fig in captured:
        if stem.startswith(("pr_", "pk_", "val_")):
            for label, line in _lines(fig).items():
                method = label.split(" (")[0]
                looks.setdefault(method, set()).add((line.get_color(), str(line.get_linestyle())))
    assert {"pr", "pk", "val"} <= {stem.split("_")[0] for stem, _ in captured}
    assert looks["pgnn_con"] and all(len(v) == 1 for m, v in looks.items() if m != "pgnn_con/no_recon"), looks
    assert next(iter(looks["pgnn_con"])) != next(iter(looks["pgnn_con/no_gan"]))
    assert next(iter(looks["pgnn_con"]))[1] == "-" and next(iter(looks["pgnn_con/no_gan"]))[1] != "-"


def test_an_identical_curve_stays_visible_and_says_which_it_equals(results, tmp_path, captured):
    _draw_all(results, tmp_path)
    fig = next(f for stem, f in captured if stem.startswith("pr_"))
    lines = _lines(fig)
    twin = lines["pgnn_con/no_recon (2) (= pgnn_con)"]
    assert twin.get_linestyle() != lines["pgnn_con (2)"].get_linestyle()
    np.testing.assert_allclose(twin.get_ydata(), lines["pgnn_con (2)"].get_ydata())


def test_legends_never_cover_the_axes(results, tmp_path, captured):
    _draw_all(results, tmp_path)
    assert captured
    for stem, fig in captured:
        legends = [lg for lg in fig.legends] + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        for legend in legends:
            box = legend.get_window_extent()
            for ax in fig.axes[:2] if not stem.startswith("adj_") else []:
                assert not box.overlaps(ax.get_window_extent()), stem


def test_the_validation_figure_marks_the_selected_epochs_next_to_a_training_loss_panel(results, tmp_path, captured):
    _draw_all(results, tmp_path)
    fig = next(f for stem, f in captured if stem.startswith("val_"))
    val_ax, loss_ax = fig.axes[:2]
    markers = [line for line in val_ax.get_lines() if line.get_linestyle() == "None" and line.get_marker() == "o"]
    epochs = sorted(x for line in markers for x in line.get_xdata())
    assert epochs == [2, 2, 3, 3, 3]  # pgnn_con and no_recon: 3 and 2; no_gan: 3 on both seeds (one marker)
    loss_lines = {line.get_label(): line for line in loss_ax.get_lines()}
    assert "training loss" in loss_ax.get_title()
    np.testing.assert_allclose(loss_lines["pgnn_con (2)"].get_ydata(), [3 - e / 3 + 0.005 for e in (1, 2, 3)])


def test_epoch_axes_have_whole_number_ticks(results, tmp_path, captured):
    _draw_all(results, tmp_path)
    fig = next(f for stem, f in captured if stem.startswith("val_"))
    for ax in fig.axes[:2]:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_heatmap_titles_wrap_and_every_label_is_six_points(tmp_path, captured):
    names = [f"label_{i:02d}" for i in range(12)]
    adj = {"shape": [12, 12], "data": np.eye(12).tolist(), "axis_labels": names}
    for method in ("pgnn_con", "pgnn_con/no_gan", "pgnn_con/no_con", "pgnn_con/binary_con", "pgnn_con/no_gnn"):
        write(tmp_path, rec(method, 0, 0.5, artifacts={"label_adjacency": adj}))
    _draw_all(tmp_path, tmp_path)
    fig = next(f for stem, f in captured if stem.startswith("adj_"))
    heat, bar = fig.axes[:2]
    title = heat.get_title()
    assert "\n" in title and all(len(line) <= 80 for line in title.splitlines())
    for ax in (heat, bar):
        sizes = {t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()}
        assert sizes == {6}, sizes
