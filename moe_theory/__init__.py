"""moe_theory: the library behind *Mixture-of-Experts Theory, Executable*.

Curated public names; each chapter's module (``moe_theory.tropical``,
``moe_theory.manifold``, ...) is imported by name.
"""

from .device import best_device, resolve_device, seed_everything, torch_generator
from .layers import MoE, NoisyTopKRouter, Routing, SoftmaxRouter, TopKRouter, load_balancing_loss, topk_route
from .plotting import EXPERT_PALETTE, expert_colors, expert_cmap, show_source
from .tables import ResultTable, result_table
from .training import fit_regressor, mse
from .widgets import explore

__version__ = "0.1.0"

__all__ = [
    "best_device", "resolve_device", "seed_everything", "torch_generator",
    "MoE", "NoisyTopKRouter", "Routing", "SoftmaxRouter", "TopKRouter", "load_balancing_loss", "topk_route",
    "EXPERT_PALETTE", "expert_colors", "expert_cmap", "show_source", "ResultTable", "result_table",
    "fit_regressor", "mse", "explore",
]
