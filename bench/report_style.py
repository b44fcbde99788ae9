"""One look per method for every figure of a report.

Each family (a model and its variants, or one baseline) gets one hue, in the order the report
lists them; the rows of a family (the full model, its variants, other configurations) share that
hue in different shades and each gets its own dash pattern, the full model solid. The styles are
assigned once per report from the table frame, so a method looks the same in the PR, P@K,
validation and loss figures. Identical curves stay visible: a curve equal to one drawn before it is
dashed on top of it and its legend entry says which one it equals.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# matplotlib's tab10, minus the grey that reads as "missing"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
DASHES: tuple[object, ...] = ("-", (0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)), (0, (3, 1, 1, 1, 1, 1)),
                              (0, (8, 3)), (0, (2, 3)), (0, (4, 1, 1, 1, 1, 1, 1, 1)))
# shade of the j-th row of a family: mixed toward black (< 0) or white (> 0)
SHADES = (0.0, -0.3, 0.3, -0.5, 0.45, -0.15, 0.15, -0.4)


@dataclass(frozen=True)
class Style:
    """How one method's curves are drawn."""

    color: str
    dash: object
    width: float

    def kwargs(self) -> dict[str, object]:
        """Keyword arguments of `Axes.plot`."""
        return {"color": self.color, "linestyle": self.dash, "linewidth": self.width}


def shade(color: str, amount: float) -> str:
    """`color` (#rrggbb) mixed with black (amount < 0) or white (amount > 0) by |amount|."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    target = 255 if amount > 0 else 0
    mixed = [round(c + (target - c) * abs(amount)) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in mixed)


def assign_styles(df: pd.DataFrame) -> dict[str, Style]:
    """Method label -> style, for every method of the frame (in its order: `position`)."""
    order = df.sort_values(["position", "finished"], kind="stable") if "position" in df else df
    methods = list(dict.fromkeys(order["method"]))
    family = dict(zip(order["method"], order["family"]))
    families = list(dict.fromkeys(family[m] for m in methods))
    styles, seen = {}, {f: 0 for f in families}
    for m in sorted(methods, key=lambda m: (families.index(family[m]), methods.index(m))):
        i, j = families.index(family[m]), seen[family[m]]
        seen[family[m]] += 1
        base = PALETTE[i % len(PALETTE)]
        styles[m] = Style(shade(base, SHADES[j % len(SHADES)]), DASHES[j % len(DASHES)], 1.9 if j == 0 else 1.3)
    return styles
