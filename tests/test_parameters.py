"""Typed hyperparameters: `bench.params.build` checks names, types, bounds and choices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from bench.errors import ConfigError
from bench.params import as_dict, build, describe, spec


@dataclass
class Params:
    epochs: int = spec(10, help="training epochs", low=1)
    lr: float = spec(1e-3, help="learning rate", low=0.0, high=1.0)
    graph: str = spec("cooc", help="label graph", choices=("cooc", "learned", "none"))
    mode: Literal["fast", "exact"] = spec("fast", help="evaluation mode")
    gan: bool = spec(True, help="adversarial term")
    widths: list[int] = spec([8, 4], help="layer widths")
    budget: float | None = spec(None, help="optional time budget")


def test_defaults_are_used_for_unset_parameters():
    p = build(Params, {}, "m")
    assert (p.epochs, p.lr, p.graph, p.mode, p.gan, p.widths, p.budget) == (10, 1e-3, "cooc", "fast", True, [8, 4],
                                                                            None)


def test_list_defaults_are_not_shared_between_instances():
    a, b = build(Params, {}, "m"), build(Params, {}, "m")
    a.widths.append(2)
    assert b.widths == [8, 4]


def test_an_unknown_parameter_is_rejected_with_a_near_match_and_the_known_names():
    with pytest.raises(ConfigError) as err:
        build(Params, {"epoch": 3}, "methods.cca.params")
    msg = str(err.value)
    assert "methods.cca.params: unknown parameter 'epoch'" in msg
    assert "did you mean epochs?" in msg
    assert "known: epochs, lr, graph, mode, gan, widths, budget" in msg


@pytest.mark.parametrize(("key", "value", "expect"), [
    ("epochs", "5", "expected an integer"),
    ("epochs", 2.5, "expected an integer"),
    ("epochs", True, "expected an integer"),
    ("lr", "fast", "expected a number"),
    ("lr", False, "expected a number"),
    ("gan", "yes", "expected true/false"),
    ("graph", 3, "expected a string"),
    ("widths", 8, "expected a list"),
    ("widths", [8, "x"], "expected an integer"),
])
def test_a_value_of_the_wrong_type_is_rejected_naming_the_key(key, value, expect):
    with pytest.raises(ConfigError, match=rf"^m\.{key}: {expect}"):
        build(Params, {key: value}, "m")


def test_a_whole_float_is_accepted_for_an_integer():
    assert build(Params, {"epochs": 4.0}, "m").epochs == 4
    assert isinstance(build(Params, {"epochs": 4.0}, "m").epochs, int)


def test_an_integer_is_accepted_for_a_float():
    p = build(Params, {"lr": 1}, "m")
    assert p.lr == 1.0 and isinstance(p.lr, float)


def test_a_scientific_notation_string_is_coerced_for_a_float():
    # YAML 1.1 reads 1e-3 (no dot) as a string
    assert build(Params, {"lr": "1e-3"}, "m").lr == pytest.approx(0.001)


def test_a_value_below_the_minimum_is_rejected():
    with pytest.raises(ConfigError, match=r"m\.epochs: -1 is below the minimum 1"):
        build(Params, {"epochs": -1}, "m")


def test_a_value_above_the_maximum_is_rejected():
    with pytest.raises(ConfigError, match=r"m\.lr: 2.0 is above the maximum 1.0"):
        build(Params, {"lr": 2.0}, "m")


def test_bounds_are_inclusive():
    p = build(Params, {"epochs": 1, "lr": 1.0}, "m")
    assert (p.epochs, p.lr) == (1, 1.0)


def test_a_value_outside_the_choices_is_rejected_listing_them():
    with pytest.raises(ConfigError, match=r"m\.graph: 'gcn' is not one of \['cooc', 'learned', 'none'\]"):
        build(Params, {"graph": "gcn"}, "m")


def test_a_value_outside_a_literal_is_rejected_listing_the_allowed_values():
    with pytest.raises(ConfigError, match=r"m\.mode: 'slow' is not one of \['fast', 'exact'\]"):
        build(Params, {"mode": "slow"}, "m")


def test_an_optional_parameter_accepts_none_and_a_value():
    assert build(Params, {"budget": None}, "m").budget is None
    assert build(Params, {"budget": 30}, "m").budget == 30.0


def test_nan_is_rejected_for_a_bounded_float():
    with pytest.raises(ConfigError):
        build(Params, {"lr": "nan"}, "m")


def test_as_dict_gives_plain_json_values():
    assert as_dict(build(Params, {"widths": (3, 2)}, "m"))["widths"] == [3, 2]


def test_describe_lists_name_default_and_help():
    rows = {name: (default, text) for name, default, text in describe(Params)}
    assert rows["epochs"] == (10, "training epochs")
    assert rows["widths"] == ([8, 4], "layer widths")
