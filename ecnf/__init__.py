"""ECNF: continuous normalizing flows trained by flow matching.

The core library: velocity networks (:mod:`ecnf.nets`), probability paths
(:mod:`ecnf.paths`), couplings (:mod:`ecnf.couplings`), losses (:mod:`ecnf.losses`), ODE
samplers (:mod:`ecnf.solvers`), likelihoods (:mod:`ecnf.likelihood`), EMA (:mod:`ecnf.ema`),
data (:mod:`ecnf.data`), training (:mod:`ecnf.train`), checkpoints (:mod:`ecnf.checkpoint`),
metrics (:mod:`ecnf.metrics`), evaluation against the data floor (:mod:`ecnf.evaluation`),
the files a run writes (:mod:`ecnf.export`) and the command line (:mod:`ecnf.cli`). It
imports no plotting or user-interface package; figures and page computations shared by the
studio, the demo and the notebooks live in ``ecnf_display``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

#: Where each public name lives: ``import ecnf`` is cheap (no torch), and a name is imported
#: from its module the first time it is used, so a page that only reads files, such as the
#: studio's home page, starts without paying for torch.
_EXPORTS: dict[str, str] = {
    "callbacks": "Callback ProgressBar StopOnEvent",
    "checkpoint": "CheckpointError load read_checkpoint save_checkpoint",
    "config": "TrainConfig",
    "couplings": "couple independent_coupling ot_assignment ot_coupling pairing_cost",
    "data": "TOY_DATASETS load_images make_stream sample_toy",
    "ema": "EMA ema_update",
    "guidance": "Guided guided",
    "likelihood": (
        "LikelihoodResult bits_per_dim dequantize divergence_exact divergence_hutchinson "
        "log_prob standard_normal_log_prob"
    ),
    "losses": (
        "LossConfig LossOutput compute_loss consistency_loss flow_matching_loss "
        "make_reflow_pairs ot_cfm_loss reflow_loss"
    ),
    "metrics": "mmd2 wasserstein2",
    "nets": (
        "MLPConfig ResNetConfig ResNetVelocity UNet UNetConfig VelocityMLP build_model "
        "config_from_dict config_to_dict"
    ),
    "paths": "PathSample linear_path marginal_log_prob marginal_velocity posterior_mean",
    "solvers": "METHODS ODESolution integrate time_grid",
    "train": "FitResult TrainingDiverged fit",
}
_ORIGIN = {name: module for module, names in _EXPORTS.items() for name in names.split()}

if TYPE_CHECKING:  # what static analysers and editors see
    from .callbacks import Callback, ProgressBar, StopOnEvent
    from .checkpoint import CheckpointError, load, read_checkpoint, save_checkpoint
    from .config import TrainConfig
    from .couplings import couple, independent_coupling, ot_assignment, ot_coupling, pairing_cost
    from .data import TOY_DATASETS, load_images, make_stream, sample_toy
    from .ema import EMA, ema_update
    from .guidance import Guided, guided
    from .likelihood import (
        LikelihoodResult,
        bits_per_dim,
        dequantize,
        divergence_exact,
        divergence_hutchinson,
        log_prob,
        standard_normal_log_prob,
    )
    from .losses import (
        LossConfig,
        LossOutput,
        compute_loss,
        consistency_loss,
        flow_matching_loss,
        make_reflow_pairs,
        ot_cfm_loss,
        reflow_loss,
    )
    from .metrics import mmd2, wasserstein2
    from .nets import (
        MLPConfig,
        ResNetConfig,
        ResNetVelocity,
        UNet,
        UNetConfig,
        VelocityMLP,
        build_model,
        config_from_dict,
        config_to_dict,
    )
    from .paths import PathSample, linear_path, marginal_log_prob, marginal_velocity, posterior_mean
    from .solvers import METHODS, ODESolution, integrate, time_grid
    from .train import FitResult, TrainingDiverged, fit


def __getattr__(name: str):
    """A public name (from its module) or a submodule (``ecnf.solvers``), on first use."""
    if name in _ORIGIN:
        value = getattr(importlib.import_module(f".{_ORIGIN[name]}", __name__), name)
        globals()[name] = value
        return value
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "EMA",
    "METHODS",
    "TOY_DATASETS",
    "Callback",
    "CheckpointError",
    "FitResult",
    "Guided",
    "LikelihoodResult",
    "LossConfig",
    "LossOutput",
    "MLPConfig",
    "ODESolution",
    "PathSample",
    "ProgressBar",
    "ResNetConfig",
    "ResNetVelocity",
    "StopOnEvent",
    "TrainConfig",
    "TrainingDiverged",
    "UNet",
    "UNetConfig",
    "VelocityMLP",
    "__version__",
    "bits_per_dim",
    "build_model",
    "compute_loss",
    "config_from_dict",
    "config_to_dict",
    "consistency_loss",
    "couple",
    "dequantize",
    "divergence_exact",
    "divergence_hutchinson",
    "ema_update",
    "fit",
    "flow_matching_loss",
    "guided",
    "independent_coupling",
    "integrate",
    "linear_path",
    "load",
    "load_images",
    "log_prob",
    "make_reflow_pairs",
    "make_stream",
    "marginal_log_prob",
    "marginal_velocity",
    "mmd2",
    "ot_assignment",
    "ot_cfm_loss",
    "ot_coupling",
    "pairing_cost",
    "posterior_mean",
    "read_checkpoint",
    "reflow_loss",
    "sample_toy",
    "save_checkpoint",
    "standard_normal_log_prob",
    "time_grid",
    "wasserstein2",
]
