"""ECNF: continuous normalizing flows trained by flow matching.

The core library: velocity networks (:mod:`ecnf.nets`), probability paths
(:mod:`ecnf.paths`), couplings (:mod:`ecnf.couplings`), losses (:mod:`ecnf.losses`), ODE
samplers (:mod:`ecnf.solvers`), likelihoods (:mod:`ecnf.likelihood`) and EMA
(:mod:`ecnf.ema`). It imports no user-interface package.
"""

from __future__ import annotations

from .couplings import couple, independent_coupling, ot_assignment, ot_coupling, pairing_cost
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
from .paths import PathSample, linear_path
from .solvers import METHODS, ODESolution, integrate, time_grid

__version__ = "0.1.0"

__all__ = [
    "EMA",
    "METHODS",
    "LikelihoodResult",
    "LossConfig",
    "LossOutput",
    "MLPConfig",
    "ODESolution",
    "PathSample",
    "ResNetConfig",
    "ResNetVelocity",
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
    "flow_matching_loss",
    "independent_coupling",
    "integrate",
    "linear_path",
    "log_prob",
    "make_reflow_pairs",
    "ot_assignment",
    "ot_cfm_loss",
    "ot_coupling",
    "pairing_cost",
    "reflow_loss",
    "standard_normal_log_prob",
    "time_grid",
]
