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

from .callbacks import Callback, ProgressBar, StopOnEvent
from .checkpoint import CheckpointError, load, read_checkpoint, save_checkpoint
from .config import TrainConfig
from .couplings import couple, independent_coupling, ot_assignment, ot_coupling, pairing_cost
from .data import TOY_DATASETS, load_images, make_stream, sample_toy
from .ema import EMA, ema_update
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

__version__ = "0.1.0"

__all__ = [
    "EMA",
    "METHODS",
    "TOY_DATASETS",
    "Callback",
    "CheckpointError",
    "FitResult",
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
