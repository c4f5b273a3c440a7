"""Charts for the governance pages, drawn with matplotlib and inlined as SVG text.

The figures are built without pyplot (no global state; safe in worker processes) on the Agg
machinery, with text kept as text (searchable, printable) and the SVG ids and date fixed so
that the same numbers always give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.figure import Figure

_RC: dict[Any, Any] = {"svg.hashsalt": "phall-cds", "svg.fonttype": "none", "font.size": 9}
INDICATOR_COLOURS: Mapping[str, str] = {
    "critical": "#b3261e",
    "warning": "#b86e00",
    "info": "#1f5fa8",
}
"""The indicator colours of the pages' stylesheet, reused in charts."""


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    start = text.find("<svg")
    return text[start:] if start >= 0 else text


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    colours: Sequence[str] | None = None,
    xlabel: str,
    title: str,
) -> str:
    """A horizontal bar chart (one bar per label, top to bottom) as an <svg> element."""
    with matplotlib.rc_context(_RC):
        height = 1.2 + 0.32 * max(len(labels), 1)
        fig = Figure(figsize=(8, height))
        ax = fig.subplots()
        positions = list(range(len(labels)))
        ax.barh(positions, list(values), color=list(colours) if colours else "#1f5fa8")
        ax.set_yticks(positions, list(labels))
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left")
        top = max([0.0, *values])
        for pos, value in zip(positions, values, strict=True):
            ax.text(value + top * 0.01, pos, f"{value:g}", va="center", fontsize=8)
        ax.set_xlim(0, top * 1.15 if top > 0 else 1)
        ax.spines[["top", "right"]].set_visible(False)
        return _svg(fig)


def line_chart(
    x_labels: Sequence[str], series: Mapping[str, Sequence[float]], *, ylabel: str, title: str
) -> str:
    """Lines over categorical x labels (e.g. ISO weeks) as an <svg> element."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(8, 3))
        ax = fig.subplots()
        positions = list(range(len(x_labels)))
        for name, values in series.items():
            ax.plot(positions, list(values), marker="o", markersize=3, label=name)
        step = max(1, len(x_labels) // 12)
        ax.set_xticks(positions[::step], list(x_labels)[::step], rotation=45, ha="right")
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        ax.set_ylim(bottom=0)
        ax.legend(frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
        return _svg(fig)
