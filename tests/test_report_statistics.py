"""What the ablation statistics say and how the numbers travel to csv (issue 18 items 6 and 12):
`--stats` gives p-values, Holm-adjusted p-values and the 95 % interval of each difference in
every format; the caption names the split protocol; a variant equal to its full model is
`identical`; the per-seed csv carries configurations, costs and comparisons without float noise."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from report_records import rec, write
from scipy import stats as sps

from bench.report import report
from bench.stats import holm

FULL = [0.80, 0.81, 0.83]
NO_GAN = [0.70, 0.715, 0.72]
NO_CON = [0.805, 0.80, 0.84]


@pytest.fixture
def ablation(tmp_path):
    for seed in range(3):
        write(tmp_path, rec("pgnn_con", seed, FULL[seed], timings={"fit_s": 1.0 + seed}, cost={"parameters": 10},
                            memory={"peak_rss_mb": 100.0}))
        write(tmp_path, rec("pgnn_con/no_gan", seed, NO_GAN[seed], position=1, params={"D": 8, "gan": False}))
        write(tmp_path, rec("pgnn_con/no_con", seed, NO_CON[seed], position=2))
    return tmp_path


def _reference():
    """(p, Holm p, CI) of no_gan and no_con computed here with scipy, independently of bench."""
    out = {}
    ps = [sps.ttest_rel(v, FULL).pvalue for v in (NO_GAN, NO_CON)]
    for name, values, adjusted in zip(("no_gan", "no_con"), (NO_GAN, NO_CON), holm(ps)):
        diff = np.subtract(values, FULL)
        low, high = sps.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=sps.sem(diff))
        out[name] = (sps.ttest_rel(values, FULL).pvalue, adjusted, low, high)
    return out


def test_the_interval_of_a_mean_difference_matches_scipy():
    from bench.stats import mean_ci

    diff = [0.1, -0.05, 0.2, 0.07]
    low, high = sps.t.interval(0.95, 3, loc=np.mean(diff), scale=sps.sem(diff))
    assert mean_ci(diff) == pytest.approx((low, high))
    assert mean_ci([0.3]) is None and mean_ci([0.2, 0.2]) == (0.2, 0.2)


@pytest.mark.parametrize("fmt", ["markdown", "plain", "latex", "html"])
def test_stats_prints_p_adjusted_p_and_interval_in_every_table_format(ablation, fmt):
    text = report(ablation, fmt=fmt, stats=True)
    for p, adjusted, low, high in _reference().values():
        assert f"{p:.4f}" in text and f"{adjusted:.4f}" in text
        minus = "$-$" if fmt == "latex" else "−"
        assert f"{low:+.4f}".replace("-", minus) in text and f"{high:+.4f}".replace("-", minus) in text


def test_stats_adds_the_comparisons_to_the_csv_summary(ablation):
    table = pd.read_csv(io.StringIO(report(ablation, fmt="csv", stats=True)))
    row = table[table["method"] == "pgnn_con/no_gan"].iloc[0]
    p, adjusted, low, high = _reference()["no_gan"]
    assert row["p"] == pytest.approx(p, rel=1e-8) and row["p_holm"] == pytest.approx(adjusted, rel=1e-8)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low, rel=1e-8), pytest.approx(high, rel=1e-8))


def test_the_ablation_caption_says_the_seeds_share_one_split(ablation):
    assert "every seed uses one fixed split (split seed 0" in report(ablation)


def test_the_ablation_caption_says_when_each_seed_has_its_own_split(tmp_path):
    for seed in range(3):
        split = {"val": 0.1, "test": 0.2, "seed": seed}
        write(tmp_path, rec("pgnn_con", seed, FULL[seed], split=split))
        write(tmp_path, rec("pgnn_con/no_gan", seed, NO_GAN[seed], split=split, position=1))
    assert "every seed uses its own split (split seed = training seed; the spread includes the split)" \
        in report(tmp_path)


def test_a_variant_equal_to_its_full_model_on_every_seed_is_identical_not_untested(tmp_path):
    for seed in range(3):
        write(tmp_path, rec("pgnn_con", seed, FULL[seed]))
        write(tmp_path, rec("pgnn_con/no_recon", seed, FULL[seed], position=1, params={"D": 8, "reconstruct": False}))
        write(tmp_path, rec("pgnn_con/no_gan", seed, NO_GAN[seed], position=2))
    text = report(tmp_path)
    row = next(line for line in text.split("variants − full model")[1].splitlines() if "no_recon" in line)
    assert "identical" in row and "†" not in row and "§" not in row
    assert "1 tests)" in text  # only no_gan is a test: the identical variant is not counted for Holm


def test_one_seed_and_untested_differences_use_different_marks(tmp_path):
    write(tmp_path, rec("pgnn_con", 0, 0.8))
    write(tmp_path, rec("pgnn_con/no_gan", 0, 0.7, position=1))
    latex = report(tmp_path, fmt="latex")
    main, ablation = latex.split("\\end{table}")[:2]
    assert "$^{\\dagger}$" in main and "\\dagger" not in ablation and "\\textsuperscript{\\S}" in ablation


# --- csv ------------------------------------------------------------------------------------


def test_the_per_seed_csv_has_one_row_per_run_with_parameters_costs_and_comparisons(ablation):
    table = pd.read_csv(io.StringIO(report(ablation, fmt="csv", per_seed=True)))
    assert len(table) == 9 and set(table["seed"]) == {0, 1, 2}
    assert {"sweep", "dataset", "method", "configuration", "seed", "map_avg", "fit_s", "parameters", "peak_mb",
            "delta_vs_full_this_seed", "p", "p_holm", "ci_low", "ci_high"} <= set(table.columns)
    assert "param.gan" in table.columns  # differs between configurations of pgnn_con; D does not
    assert "param.D" not in table.columns
    no_gan = table[table["method"] == "pgnn_con/no_gan"].sort_values("seed")
    assert no_gan["delta_vs_full_this_seed"].tolist() == pytest.approx(np.subtract(NO_GAN, FULL).tolist())
    assert no_gan["p_holm"].iloc[0] == pytest.approx(_reference()["no_gan"][1], rel=1e-8)
    full = table[table["method"] == "pgnn_con"].sort_values("seed")
    assert full["fit_s"].tolist() == [1.0, 2.0, 3.0] and full["delta_vs_full_this_seed"].isna().all()


def test_layout_long_csv_is_the_per_seed_csv(ablation):
    from click.testing import CliRunner

    from bench.cli import main

    out = CliRunner().invoke(main, ["report", "--results", str(ablation), "--format", "csv", "--layout", "long"])
    assert out.exit_code == 0
    assert out.output.splitlines()[0].startswith("sweep,dataset,method,method_name,configuration")
    assert len(out.output.strip().splitlines()) == 10


def test_identical_values_have_a_std_of_zero_not_float_noise(tmp_path):
    for seed in range(3):  # np.std([0.7] * 3, ddof=1) is 1.36e-16
        write(tmp_path, rec("cca", seed, 0.7, i2t=0.7))
    table = pd.read_csv(io.StringIO(report(tmp_path, fmt="csv")), dtype=str)
    assert table["map_avg_std"].tolist() == ["0"] and table["map_avg_mean"].tolist() == ["0.7"]
    assert table["spread"].tolist() == ["deterministic"]


def test_a_difference_that_varies_only_by_float_rounding_is_not_tested():
    import warnings

    from bench.stats import paired_test

    full = [0.1, 0.03, 0.4]
    variant = [x + 0.1 for x in full]  # differences 0.1 up to 2.8e-17 of rounding
    assert np.ptp(np.subtract(variant, full)) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy warns of catastrophic cancellation when it tests rounding noise
        result = paired_test(variant, full)
    assert result.p is None and result.why_not == "identical difference on every seed"
