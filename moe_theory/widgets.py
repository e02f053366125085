"""Widgets that work both in a live Jupyter kernel and in the static, built book.

An ``ipywidgets`` control needs a running kernel: in a built HTML page it shows nothing,
or a bare ``<function ...>`` repr. :func:`explore` avoids that by computing the figure for
every value on a finite grid of parameter values (e.g. each slider step) *once*, and
returning an object that displays

* in Jupyter: ``ipywidgets`` sliders/dropdowns (``application/vnd.jupyter.widget-view+json``);
* in the built page: the same controls as plain HTML inputs plus a few lines of inline
  JavaScript that swap the precomputed PNG frames (``text/html``), with no kernel, no
  network and no third-party script.

The book configures MyST-NB to prefer the ``text/html`` view when it builds HTML.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import uuid
from typing import Any, Callable, Sequence


__all__ = ["explore", "Explorer", "figure_to_png"]

#: Upper bound on the number of precomputed frames of one widget (keeps pages small).
MAX_FRAMES = 200


def figure_to_png(fig, dpi: int = 80) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class Explorer:
    """Precomputed frames of ``plot_fn`` over a grid, shown as a live or static widget.

    Do not build directly; call :func:`explore`.

    Attributes
    ----------
    names : list of str
        Parameter names, in the order given.
    grids : dict
        Parameter name -> tuple of values.
    defaults : dict
        Parameter name -> default value (shown first).
    frames : dict
        Tuple of value indices -> PNG bytes.
    """

    def __init__(self, plot_fn: Callable[..., Any], grids: dict[str, tuple], defaults: dict[str, Any],
                 frames: dict[tuple[int, ...], bytes], title: str | None, description: str | None):
        self.plot_fn = plot_fn
        self.names = list(grids)
        self.grids = grids
        self.defaults = defaults
        self.frames = frames
        self.title = title
        self.description = description
        self.uid = uuid.uuid4().hex[:12]

    # -- access ---------------------------------------------------------------------------
    def index_of(self, **params: Any) -> tuple[int, ...]:
        """Grid indices of a full set of parameter values."""
        idx = []
        for name in self.names:
            value = params.get(name, self.defaults[name])
            if value not in self.grids[name]:
                raise ValueError(f"{name} must be one of the grid values {self.grids[name]}, got {value!r}")
            idx.append(self.grids[name].index(value))
        return tuple(idx)

    def png(self, **params: Any) -> bytes:
        """The precomputed PNG for the given parameters (defaults for the rest)."""
        return self.frames[self.index_of(**params)]

    def figure(self, **params: Any):
        """Re-run the plotting function for any parameter values (not only grid points)."""
        kwargs = {**self.defaults, **params}
        return self.plot_fn(**kwargs)

    # -- static view ----------------------------------------------------------------------
    def _control_html(self, name: str) -> str:
        values = self.grids[name]
        default = values.index(self.defaults[name])
        label = html.escape(name)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return (f'<label class="moe-explore-control">{label} '
                    f'<input type="range" min="0" max="{len(values) - 1}" step="1" value="{default}" '
                    f'data-param="{label}" aria-label="{label}"> '
                    f'<output>{html.escape(_fmt(values[default]))}</output></label>')
        options = "".join(
            f'<option value="{i}"{" selected" if i == default else ""}>{html.escape(_fmt(v))}</option>'
            for i, v in enumerate(values))
        return (f'<label class="moe-explore-control">{label} '
                f'<select data-param="{label}" aria-label="{label}">{options}</select></label>')

    def to_html(self) -> str:
        """Self-contained HTML: controls, the default frame, and the frame-switching script."""
        labels = {n: [_fmt(v) for v in self.grids[n]] for n in self.names}
        data = {
            "names": self.names,
            "labels": labels,
            "frames": {",".join(map(str, k)): base64.b64encode(v).decode() for k, v in self.frames.items()},
        }
        default_key = self.index_of()
        src = base64.b64encode(self.frames[default_key]).decode()
        controls = "".join(self._control_html(n) for n in self.names)
        title = f'<div class="moe-explore-title">{html.escape(self.title)}</div>' if self.title else ""
        desc = (f'<div class="moe-explore-description">{html.escape(self.description)}</div>'
                if self.description else "")
        alt = html.escape(self.title or "interactive figure")
        script = (
            "(function(){var root=document.getElementById('moe-explore-%s');"
            "var data=JSON.parse(root.querySelector('script.moe-explore-data').textContent);"
            "var img=root.querySelector('img.moe-explore-figure');"
            "var inputs=root.querySelectorAll('[data-param]');"
            "function update(){var key=[];inputs.forEach(function(el){var i=parseInt(el.value,10);key.push(i);"
            "var out=el.parentNode.querySelector('output');"
            "if(out){out.textContent=data.labels[el.getAttribute('data-param')][i];}});"
            "var f=data.frames[key.join(',')];if(f){img.src='data:image/png;base64,'+f;"
            "root.setAttribute('data-frame',key.join(','));}}"
            "inputs.forEach(function(el){el.addEventListener('input',update);el.addEventListener('change',update);});"
            "})();" % self.uid
        )
        return (
            f'<div class="moe-explore" id="moe-explore-{self.uid}" data-frame="{",".join(map(str, default_key))}">'
            f'{title}<div class="moe-explore-controls">{controls}</div>'
            f'<img class="moe-explore-figure" alt="{alt}" src="data:image/png;base64,{src}">{desc}'
            f'<script type="application/json" class="moe-explore-data">{json.dumps(data)}</script>'
            f"<script>{script}</script></div>"
        )

    # -- live view ------------------------------------------------------------------------
    def widget(self):
        """An ``ipywidgets`` box with one control per parameter and the current frame."""
        import ipywidgets as w

        image = w.Image(value=self.png(), format="png", layout=w.Layout(max_width="100%"))
        controls = {}
        for name in self.names:
            opts = [(_fmt(v), i) for i, v in enumerate(self.grids[name])]
            value = self.grids[name].index(self.defaults[name])
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.grids[name])
            cls = w.SelectionSlider if numeric else w.Dropdown
            controls[name] = cls(options=opts, value=value, description=name, continuous_update=True)

        def update(_change=None):
            image.value = self.frames[tuple(controls[n].value for n in self.names)]

        for c in controls.values():
            c.observe(update, names="value")
        header = [w.HTML(f"<b>{html.escape(self.title)}</b>")] if self.title else []
        return w.VBox(header + [w.HBox(list(controls.values())), image])

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {
            "text/plain": f"Explorer({', '.join(f'{n}={self.defaults[n]!r}' for n in self.names)}; "
                          f"{len(self.frames)} precomputed frames)",
            "text/html": self.to_html(),
            # the default frame as a plain image: what a static medium (the PDF) shows
            "image/png": base64.b64encode(self.frames[self.index_of()]).decode(),
        }
        try:
            box = self.widget()
            bundle["application/vnd.jupyter.widget-view+json"] = {
                "version_major": 2, "version_minor": 0, "model_id": box.model_id}
        except Exception:  # pragma: no cover - no ipywidgets / no comm: static view only
            pass
        return bundle


def explore(plot_fn: Callable[..., Any], *, title: str | None = None, description: str | None = None,
            defaults: dict[str, Any] | None = None, dpi: int = 80, **grids: Sequence[Any]) -> Explorer:
    """Make an interactive figure that also works in the static book.

    Parameters
    ----------
    plot_fn : callable
        ``plot_fn(**params)`` draws one frame and returns a matplotlib ``Figure`` (or
        ``None``, in which case the current figure is used).
    title : str, optional
        Shown above the controls.
    description : str, optional
        Shown under the figure.
    defaults : dict, optional
        Starting value of each parameter (a grid value); the first grid value otherwise.
    dpi : int
        Resolution of the precomputed frames.
    **grids : sequence
        One finite sequence of values per parameter of ``plot_fn`` (each slider step).

    Returns
    -------
    Explorer
        Displays as ``ipywidgets`` controls in Jupyter and as HTML controls with
        precomputed frames in the built page.

    Examples
    --------
    >>> import matplotlib.pyplot as plt, numpy as np
    >>> def wave(freq):
    ...     fig, ax = plt.subplots(); ax.plot(np.sin(freq * np.linspace(0, 6, 50))); return fig
    >>> ex = explore(wave, freq=[1, 2, 3])
    >>> len(ex.frames)
    3
    """
    import matplotlib  # imported here: `import moe_theory` does not load matplotlib
    import matplotlib.figure
    import matplotlib.pyplot as plt

    if not callable(plot_fn):
        raise TypeError(f"plot_fn must be callable, got {type(plot_fn).__name__}")
    if not grids:
        raise ValueError("explore needs at least one parameter grid, e.g. explore(f, k=[1, 2, 3])")
    clean: dict[str, tuple] = {}
    for name, values in grids.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"grid {name} must be a finite sequence of values, got {type(values).__name__}")
        values = tuple(values)
        if not values:
            raise ValueError(f"grid {name} must contain at least one value, got an empty sequence")
        clean[name] = values
    n_frames = 1
    for values in clean.values():
        n_frames *= len(values)
    if n_frames > MAX_FRAMES:
        raise ValueError(f"the grids give {n_frames} frames; at most {MAX_FRAMES} are allowed "
                         f"(use fewer values per parameter)")
    defaults = dict(defaults or {})
    for name in defaults:
        if name not in clean:
            raise ValueError(f"defaults names {name!r}, which is not a grid parameter {tuple(clean)}")
        if defaults[name] not in clean[name]:
            raise ValueError(f"defaults[{name!r}] must be one of {clean[name]}, got {defaults[name]!r}")
    defaults = {n: defaults.get(n, clean[n][0]) for n in clean}

    frames: dict[tuple[int, ...], bytes] = {}
    with matplotlib.rc_context({"figure.max_open_warning": 0}):
        for idx in itertools.product(*(range(len(v)) for v in clean.values())):
            params = {n: clean[n][i] for n, i in zip(clean, idx)}
            fig = plot_fn(**params)
            if fig is None:
                fig = plt.gcf()
            if not isinstance(fig, matplotlib.figure.Figure):
                raise TypeError(f"plot_fn must return a matplotlib Figure or None, got {type(fig).__name__}")
            frames[idx] = figure_to_png(fig, dpi=dpi)
    return Explorer(plot_fn, clean, defaults, frames, title, description)
