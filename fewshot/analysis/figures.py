"""Headless figures of the analyses: one panel per feature file, written atomically as PNG."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fewshot._io import write_bytes
from fewshot.analysis.similarity import SimilarityDistributions

__all__ = ["plot_similarity", "plot_tsne"]


def _figure(n_panels: int, width: float, height: float):
    from matplotlib.figure import Figure  # imported lazily: matplotlib is slow to import

    fig = Figure(figsize=(0.6 + width * n_panels, height), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, axes


def _save(fig, path: str | os.PathLike, dpi: int) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    write_bytes(path, buf.getvalue())
    return Path(path)


def plot_similarity(
    panels: Sequence[tuple[str, SimilarityDistributions]], path: str | os.PathLike, *, dpi: int = 120
) -> Path:
    """Positive vs negative cosine-similarity densities, one panel per ``(label, distributions)``."""
    fig, axes = _figure(len(panels), 3.4, 2.9)
    for ax, (label, dist) in zip(axes, panels):
        centres = (dist.edges[:-1] + dist.edges[1:]) / 2
        for hist, name, color in ((dist.negative, "negative", "tab:red"), (dist.positive, "positive", "tab:blue")):
            ax.fill_between(
                centres,
                hist.density(dist.edges),
                step="mid",
                alpha=0.45,
                color=color,
                label=f"{name} ({hist.mean:.2f} ± {hist.sd:.2f})",
            )
        ax.set_title(f"{label}\noverlap {dist.overlap:.2f}", fontsize=9)
        ax.set_xlabel("cosine similarity")
        used = np.flatnonzero(dist.positive.counts + dist.negative.counts)
        if used.size:  # zoom on the occupied bins (features after a ReLU sit near +1)
            lo, hi = dist.edges[used[0]], dist.edges[used[-1] + 1]
            pad = 0.05 * (hi - lo)
            ax.set_xlim(max(-1.0, lo - pad), min(1.0, hi + pad))
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("density")
    scope = panels[0][1].scope
    fig.suptitle("positive vs negative pairs" + ("" if scope == "all" else f": class {scope}"), fontsize=10)
    return _save(fig, path, dpi)


def plot_tsne(panels: Sequence[tuple[str, pd.DataFrame]], path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """t-SNE maps from :func:`~fewshot.analysis.tsne_map`, one panel per ``(label, frame)``;
    a class keeps its colour across panels."""
    from matplotlib import colormaps

    fig, axes = _figure(len(panels), 3.4, 3.4)
    classes = list(dict.fromkeys(c for _, frame in panels for c in frame["class"]))
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for ax, (label, frame) in zip(axes, panels):
        for k, cls in enumerate(classes):
            pts = frame[frame["class"] == cls]
            if len(pts):
                ax.scatter(pts["x"], pts["y"], s=6, color=cmap(k % cmap.N), label=cls, linewidths=0)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = axes[-1].get_legend_handles_labels()
    if len(classes) <= 20:
        fig.legend(handles, names, loc="outside right center", fontsize=7, markerscale=2)
    fig.suptitle("t-SNE of the features", fontsize=10)
    return _save(fig, path, dpi)
