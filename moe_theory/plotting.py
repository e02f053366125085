"""One palette and a few plotting helpers shared by every chapter.

Expert ``i`` has the same colour on every page of the book: ``expert_colors(N)[i]``.
"""

from __future__ import annotations

import inspect

import numpy as np

from ._validation import check_array, check_positive_int

__all__ = ["EXPERT_PALETTE", "expert_colors", "expert_cmap", "show_source", "plot_load", "plot_region_map"]

#: Twenty distinguishable colours (matplotlib's tab20, reordered so the first ten are the
#: saturated tab10 colours); expert ``i`` is drawn in ``EXPERT_PALETTE[i % 20]``.
EXPERT_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)


def expert_colors(n: int) -> list[str]:
    """Colours of experts ``0..n-1`` (the book-wide palette, cycled past 20)."""
    n = check_positive_int("n", n)
    return [EXPERT_PALETTE[i % len(EXPERT_PALETTE)] for i in range(n)]


def expert_cmap(n: int):
    """A :class:`matplotlib.colors.ListedColormap` with one colour per expert (or region)."""
    from matplotlib.colors import ListedColormap

    return ListedColormap(expert_colors(n))


def show_source(obj) -> "IPython.display.Code":
    """Show the source of a library object in a notebook (one copy of the code: the library's)."""
    from IPython.display import Code

    if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj) or inspect.ismodule(obj)):
        raise TypeError(f"obj must be a function, class, method or module, got {type(obj).__name__}")
    return Code(inspect.getsource(obj), language="python")


def plot_load(ax, load, *, title: str = "Tokens per expert", expected: float | None = None):
    """Bar chart of per-expert load, bars in the expert colours; optional uniform line."""
    load = check_array("load", load, ndim=1)
    n = load.shape[0]
    ax.bar(np.arange(n), load, color=expert_colors(n))
    if expected is not None:
        ax.axhline(expected, color="k", ls="--", lw=1, label="uniform load")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("expert $i$")
    ax.set_ylabel("tokens routed")
    ax.set_xticks(np.arange(n))
    ax.set_title(title)
    return ax


def plot_region_map(ax, labels, extent, *, n_colors: int, title: str = "", xlabel: str = "$x_1$",
                    ylabel: str = "$x_2$"):
    """Show an integer label image (e.g. top-1 expert or active-set id) over a 2-D box.

    Parameters
    ----------
    labels : array (ny, nx) of ints in ``[0, n_colors)``
    extent : (xmin, xmax, ymin, ymax)
    """
    labels = check_array("labels", labels, ndim=2)
    ax.imshow(labels, origin="lower", extent=extent, cmap=expert_cmap(n_colors), vmin=-0.5,
              vmax=n_colors - 0.5, interpolation="nearest", aspect="auto")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax
