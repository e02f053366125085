"""The explore() widget helper: frames for every grid point, a static HTML view, a live view."""

import base64
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from moe_theory import explore  # noqa: E402
from moe_theory.widgets import MAX_FRAMES  # noqa: E402


def _wave(freq, style="line"):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    t = np.linspace(0, 6, 40)
    ax.plot(t, np.sin(freq * t), "-" if style == "line" else "o")
    ax.set_title(f"freq {freq}")
    return fig


def test_explore_precomputes_one_distinct_frame_per_grid_point():
    ex = explore(_wave, freq=[1, 2, 3], style=["line", "dots"])
    assert len(ex.frames) == 6
    assert len(set(ex.frames.values())) == 6
    assert all(png.startswith(b"\x89PNG") for png in ex.frames.values())
    assert ex.png(freq=2, style="dots") == ex.frames[(1, 1)]
    assert ex.defaults == {"freq": 1, "style": "line"}
    assert not plt.get_fignums()  # every frame's figure is closed


def test_explore_static_html_has_controls_default_frame_and_all_frames():
    ex = explore(_wave, freq=[1, 2, 3], style=["line", "dots"], defaults={"freq": 2}, title="Waves")
    html = ex.to_html()
    assert html.count('type="range"') == 1 and html.count("<select") == 1
    default = base64.b64encode(ex.png(freq=2)).decode()
    assert f'src="data:image/png;base64,{default}"' in html
    assert 'data-frame="1,0"' in html
    for png in ex.frames.values():
        assert base64.b64encode(png).decode() in html
    assert "<function" not in html
    assert re.search(r"https?://", html) is None  # needs nothing from the network


def test_explore_mimebundle_has_static_html_readable_text_and_the_default_frame_for_print():
    ex = explore(_wave, freq=[1, 2], defaults={"freq": 2})
    bundle = ex._repr_mimebundle_()
    assert "text/html" in bundle and bundle["text/html"].startswith('<div class="moe-explore"')
    assert bundle["text/plain"].startswith("Explorer(freq=2")
    assert base64.b64decode(bundle["image/png"]) == ex.png(freq=2)  # the PDF shows the default frame
    if "application/vnd.jupyter.widget-view+json" in bundle:
        assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"]


def test_explore_live_widget_switches_frames():
    ex = explore(_wave, freq=[1, 2, 3])
    box = ex.widget()
    slider, image = box.children[0].children[0], box.children[1]
    assert image.value == ex.png(freq=1)
    slider.value = 2
    assert image.value == ex.png(freq=3)


def test_explore_figure_reruns_plot_for_any_value():
    ex = explore(_wave, freq=[1, 2])
    fig = ex.figure(freq=1.5)
    assert fig.axes[0].get_title() == "freq 1.5"
    plt.close(fig)


def test_explore_rejects_bad_input():
    with pytest.raises(TypeError, match="plot_fn must be callable"):
        explore(3, a=[1])
    with pytest.raises(ValueError, match="explore needs at least one parameter grid"):
        explore(_wave)
    with pytest.raises(ValueError, match="grid freq must contain at least one value"):
        explore(_wave, freq=[])
    with pytest.raises(TypeError, match="grid freq must be a finite sequence"):
        explore(_wave, freq=3)
    with pytest.raises(ValueError, match=r"defaults\['freq'\] must be one of"):
        explore(_wave, freq=[1, 2], defaults={"freq": 5})
    with pytest.raises(ValueError, match=f"at most {MAX_FRAMES} are allowed"):
        explore(_wave, freq=list(range(MAX_FRAMES + 1)))
    with pytest.raises(TypeError, match="plot_fn must return a matplotlib Figure or None"):
        explore(lambda freq: "not a figure", freq=[1])
    ex = explore(_wave, freq=[1, 2])
    with pytest.raises(ValueError, match="freq must be one of the grid values"):
        ex.png(freq=7)
