"""Small PNG charts for model runs: logged to MLflow beside the run and shown in the Dagster UI."""

from __future__ import annotations

import io
import math


def grouped_bar_png(groups: dict[str, dict[str, float]], title: str, ylabel: str) -> bytes:
    """One cluster of bars per group (x axis), one bar per series within it; NaN values are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = list(dict.fromkeys(s for values in groups.values() for s in values))
    if not groups or not series:
        raise ValueError(f"nothing to plot for {title!r}")
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(groups) + 1.5), 3.2), dpi=96)
    try:
        for i, name in enumerate(series):
            xs, ys = [], []
            for g, values in enumerate(groups.values()):
                value = values.get(name)
                if value is not None and not math.isnan(value):
                    xs.append(g + (i - (len(series) - 1) / 2) * width)
                    ys.append(value)
            ax.bar(xs, ys, width=width, label=name)
        ax.set_xticks(range(len(groups)), list(groups))
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        if len(series) > 1:
            ax.legend(fontsize=7, ncols=min(len(series), 3), loc="upper right")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)
