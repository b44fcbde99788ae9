"""bench.memory.data_excess: a dataset plugin's own size estimate against the machine's memory."""

from __future__ import annotations

from dataclasses import dataclass

from bench.memory import data_excess


@dataclass
class _Params:
    n: int = 100
    d: int = 8
    name: str = "x"


class _Sized:
    def __init__(self, need: int, **params) -> None:
        self.params, self.need = _Params(**params), need

    def estimate_bytes(self) -> int:
        return self.need


def test_a_dataset_that_fits_or_cannot_say_passes():
    assert data_excess(_Sized(2**30), 2**31) is None
    assert data_excess(_Sized(2**31), 2**31) is None  # exactly the memory there is
    assert data_excess(_Sized(2**40), None) is None  # the machine's memory is unknown
    no_estimate = type("Plain", (), {"params": _Params()})()
    assert data_excess(no_estimate, 1) is None


def test_a_dataset_over_the_memory_names_both_sizes_and_the_grown_parameters():
    need, grown = data_excess(_Sized(3 * 2**30, n=10**9, d=64, name="y"), 2**30)
    assert need.startswith("needs about ") and need.endswith(" here") and "more than the" in need
    assert grown == "n=1000000000, d=64"  # only integers above their defaults, largest first
    assert data_excess(_Sized(3 * 2**30), 2**30)[1] == ""  # nothing enlarged: nothing to name
