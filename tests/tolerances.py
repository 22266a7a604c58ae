"""How far a recomputed stored number may move on another x86-64 CPU, and why.

Cards and result files are written on one machine and recomputed by the tests on another.
What differs between machines is float32 rounding: the vector width torch's kernels use
(``ATEN_CPU_CAPABILITY`` default, avx2, avx512), the order of BLAS and reduction sums, the
thread count, and the float32 ``sin``, ``cos``, ``log`` and ``exp`` that the toy samplers and
``randn`` call. None of that changes a sample by more than a few units in the last place,
so a tolerance follows from how far points drift and how strongly a metric reacts to it.

Measured with ``python scripts/cross_cpu.py drift`` (default against avx2, 1 and 2 threads)
on the shipped 2D checkpoints at 2000 points: the root-mean-square drift of fresh toy
points is at most 1.1e-7 (of the Gaussian noise 2.6e-7), of model samples after up to 20
function evaluations at most 9e-7. The constants below are ten times those.

Wasserstein-2 is 1-Lipschitz in the root-mean-square displacement of either point set
(triangle inequality: moving every point of a set by ``d_i`` moves W2 by at most
``sqrt(mean d_i^2)``), whatever the assignment does, so its tolerance is the sum of the two
sets' drifts. The unbiased MMD² with Gaussian kernels moves by at most ``4 L`` times the
mean drift of each set, where ``L = sum_s 1 / (s sqrt(e))`` bounds each kernel's gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: RMS drift bound of fresh toy samples (and of the source noise) across CPUs.
TOY_DRIFT = 1e-6
#: RMS drift bound of 2D model samples across CPUs (up to 20 NFE of the shipped MLPs).
MODEL_DRIFT = 1e-5
#: Image metrics over classifier features (FD, KID, IS), relative: measured at most 4.2e-6
#: between default and avx2 on the shipped image and ablation models (``cross_cpu.py drift``
#: prints it); image cards may also come from a GPU, whose convolutions round differently.
IMAGE_METRIC_REL = 1e-4


def w2_tolerance(drift_a: float, drift_b: float) -> float:
    """Largest change of the exact W2 between two sets whose points drift by these RMS."""
    return drift_a + drift_b


def mmd2_tolerance(drift_a: float, drift_b: float, bandwidths: Sequence[float]) -> float:
    """Largest change of the unbiased RBF MMD² when the sets drift by these (mean) amounts."""
    lipschitz = sum(1 / (s * math.sqrt(math.e)) for s in bandwidths)
    return 4 * lipschitz * (drift_a + drift_b)
