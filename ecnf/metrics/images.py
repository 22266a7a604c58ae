r"""Image sample quality over the features of a pluggable network: FD, KID, IS, entropy.

Every metric here compares the features or class probabilities that a *feature network*
(:class:`FeatureNet`) assigns to generated samples and to real images. Which network is
used changes the numbers completely, so the network names the metrics: only the standard
Inception-v3 network (:class:`~ecnf.metrics.InceptionFeatures`) yields keys called
``"FID"``, ``"KID"`` and ``"IS"``; the classifiers this project trains
(:class:`~ecnf.metrics.ClassifierFeatures`) yield ``"FD-FMNIST"``, ``"KID-FMNIST"``,
``"IS-FMNIST"`` and so on (see :func:`metric_names`).

Every value also depends on the sample size (the Frechet distance is biased upwards at small
sizes), so :func:`reference_statistics` measures the same metrics between two sets of real
images of the same size: the value a perfect model would reach, to show beside its results.

References:
    | GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium
      (Heusel et al., 2017) https://arxiv.org/abs/1706.08500
    | Demystifying MMD GANs (Binkowski et al., 2018) https://arxiv.org/abs/1801.01401
    | Improved Techniques for Training GANs (Salimans et al., 2016)
      https://arxiv.org/abs/1606.03498
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.linalg
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from .._checks import check_finite, check_positive_int
from ..data.images import to_model_range

__all__ = [
    "FeatureNet",
    "evaluate_images",
    "feature_statistics",
    "frechet_distance",
    "inception_score",
    "kid",
    "metric_names",
    "reference_statistics",
    "sample_entropy",
]

INCEPTION_NAME = "inception-v3"
_TAG = re.compile(r"FD-[A-Z0-9]+")


@runtime_checkable
class FeatureNet(Protocol):
    r"""A network that turns images into features and class probabilities.

    Arguments:
        name: What the network is, e.g. :py:`"fmnist-classifier"` or :py:`"inception-v3"`.
        metric_prefix: The name of the Frechet distance it yields: :py:`"FID"` for the
            standard Inception network only, :py:`"FD-<TAG>"` (e.g. :py:`"FD-FMNIST"`)
            for any other; KID and IS are named alike (see :func:`metric_names`).
        num_classes: The number :math:`K` of classes of :meth:`probs`.

    Both methods take images in the model range :math:`[-1, 1]`, of shape
    :math:`(N, C, H, W)`, batch them internally, build no graph and return CPU tensors.
    A network may also define :py:`features_and_probs(x) -> (features, probs)` to give
    both in one pass; :func:`evaluate_images` then uses it.
    """

    name: str
    metric_prefix: str
    num_classes: int

    def features(self, x: Tensor) -> Tensor:
        r"""The features, of shape :math:`(N, F)`."""
        ...

    def probs(self, x: Tensor) -> Tensor:
        r"""The class probabilities :math:`p(y \mid x)`, of shape :math:`(N, K)`."""
        ...


def metric_names(feature_net: FeatureNet) -> dict[str, str]:
    r"""The result keys of the Frechet distance, KID and IS for a feature network.

    :py:`"FID"`, :py:`"KID"` and :py:`"IS"` are the names of the standard Inception-v3
    metrics and are given to the network named :py:`"inception-v3"` alone; a network
    with prefix :py:`"FD-<TAG>"` gets :py:`"FD-<TAG>"`, :py:`"KID-<TAG>"` and
    :py:`"IS-<TAG>"`.

    Example:
        >>> from types import SimpleNamespace
        >>> metric_names(SimpleNamespace(name="fmnist-classifier", metric_prefix="FD-FMNIST"))
        {'fd': 'FD-FMNIST', 'kid': 'KID-FMNIST', 'is': 'IS-FMNIST'}
    """
    name, prefix = getattr(feature_net, "name", None), getattr(feature_net, "metric_prefix", None)
    if prefix == "FID":
        if name != INCEPTION_NAME:
            raise ValueError(
                f"metric_prefix='FID' is reserved for the standard {INCEPTION_NAME!r} network, "
                f"got a feature net named {name!r}; name its metrics 'FD-<TAG>' instead"
            )
        return {"fd": "FID", "kid": "KID", "is": "IS"}
    if not isinstance(prefix, str) or not _TAG.fullmatch(prefix):
        raise ValueError(
            f"metric_prefix must be 'FID' (Inception-v3) or 'FD-<TAG>' with TAG in capital "
            f"letters and digits, got {prefix!r}"
        )
    tag = prefix.removeprefix("FD-")
    return {"fd": prefix, "kid": f"KID-{tag}", "is": f"IS-{tag}"}


def _float64(name: str, x: ArrayLike | Tensor, ndim: int) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values; clean the input first")
    return a


def feature_statistics(features: ArrayLike | Tensor) -> tuple[np.ndarray, np.ndarray]:
    r"""The mean and covariance of features, in float64.

    .. math:: \mu = \frac1N \sum_i f_i, \qquad
        \Sigma = \frac{1}{N - 1} \sum_i (f_i - \mu)(f_i - \mu)^\top

    Arguments:
        features: The features, of shape :math:`(N, F)` with :math:`N \geq 2`.

    Returns:
        :math:`\mu` of shape :math:`(F,)` and :math:`\Sigma` of shape :math:`(F, F)`.

    Example:
        >>> mu, sigma = feature_statistics([[0.0, 1.0], [2.0, 3.0]])
        >>> mu.tolist(), sigma.tolist()
        ([1.0, 2.0], [[2.0, 2.0], [2.0, 2.0]])
    """
    f = _float64("features", features, 2)
    if len(f) < 2:
        raise ValueError(f"features needs at least 2 rows for a covariance, got {len(f)}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _sqrtm(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # a singular product is handled by the caller
        warnings.simplefilter("ignore")
        return scipy.linalg.sqrtm(a)


def _usable(root: np.ndarray) -> bool:
    if not np.isfinite(root).all():
        return False
    if not np.iscomplexobj(root):
        return True
    diagonal = np.diagonal(root)
    return bool(np.abs(diagonal.imag).max() <= 1e-3 * max(1.0, np.abs(diagonal.real).max()))


def frechet_distance(
    mu1: ArrayLike | Tensor,
    sigma1: ArrayLike | Tensor,
    mu2: ArrayLike | Tensor,
    sigma2: ArrayLike | Tensor,
    *,
    eps: float = 1e-6,
) -> float:
    r"""The Frechet (2-Wasserstein) distance between two Gaussians, squared.

    .. math:: d^2 = \lVert \mu_1 - \mu_2 \rVert^2
        + \operatorname{tr}\big(\Sigma_1 + \Sigma_2 - 2 (\Sigma_1 \Sigma_2)^{1/2}\big)

    (Heusel et al. 2017). The square root is :func:`scipy.linalg.sqrtm` of the product in
    float64, of which the real part is kept. When the product is too close to singular for
    a usable root (non-finite, or a diagonal with an imaginary part above 0.1% of its real
    part), both covariances are offset by :math:`\epsilon I` first. Rounding can leave a
    tiny negative value, returned as 0.

    Arguments:
        mu1: The first mean, of shape :math:`(F,)`.
        sigma1: The first covariance, of shape :math:`(F, F)`.
        mu2: The second mean, of shape :math:`(F,)`.
        sigma2: The second covariance, of shape :math:`(F, F)`.
        eps: The offset added to both diagonals when needed.

    Example:
        >>> frechet_distance([0.0, 0.0], [[1.0, 0.0], [0.0, 4.0]], [3.0, 4.0], [[1.0, 0.0], [0.0, 1.0]])
        26.0
    """  # noqa: E501
    mu1, mu2 = _float64("mu1", mu1, 1), _float64("mu2", mu2, 1)
    sigma1, sigma2 = _float64("sigma1", sigma1, 2), _float64("sigma2", sigma2, 2)
    d = len(mu1)
    for name, value, shape in (("mu2", mu2, (d,)), ("sigma1", sigma1, (d, d))):
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape} to match mu1, got {value.shape}")
    if sigma2.shape != (d, d):
        raise ValueError(f"sigma2 must have shape {(d, d)} to match mu1, got {sigma2.shape}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")

    root = _sqrtm(sigma1 @ sigma2)
    if not _usable(root):
        offset = eps * np.eye(d)
        root = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not _usable(root):
            raise ValueError(
                "the covariances are too ill-conditioned for a matrix square root even with "
                f"eps={eps}; use more samples than feature dimensions ({d}) or a larger eps"
            )
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root.real)
    return max(float(value), 0.0)


def _poly_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of equal-size sets with the kernel (x.y / d + 1)^3."""
    m, d = x.shape
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(off - 2 * kxy.mean())


def kid(
    features_a: ArrayLike | Tensor,
    features_b: ArrayLike | Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    r"""The kernel distance (KID): unbiased MMD² with a cubic polynomial kernel.

    .. math:: k(x, y) = \Big(\frac{x^\top y}{d} + 1\Big)^3, \qquad
        \widehat{\mathrm{MMD}}^2 = \frac{\sum_{i \neq j} k(a_i, a_j) + k(b_i, b_j)}{m (m - 1)}
        - \frac{2}{m^2} \sum_{i, j} k(a_i, b_j)

    averaged over random subsets of :math:`m` features from each side, drawn without
    replacement (Binkowski et al. 2018). :math:`m` is :py:`subset_size`, or the smaller set
    size if less; when both sets have exactly :math:`m` features, every subset is the whole
    set and it is computed once (standard deviation 0). The estimate can be slightly
    negative when the distributions agree.

    Arguments:
        features_a: Features of shape :math:`(N_a, F)`.
        features_b: Features of shape :math:`(N_b, F)`.
        subsets: The number of subsets.
        subset_size: The subset size :math:`m`.
        seed: The seed of the subset draws.

    Returns:
        The mean and standard deviation over subsets.

    Example:
        >>> a = np.random.default_rng(0).normal(size=(200, 4))
        >>> mean, std = kid(a, a + 1.0, subsets=10, subset_size=100)
        >>> mean > 0.1
        True
    """
    a, b = _float64("features_a", features_a, 2), _float64("features_b", features_b, 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"features_a and features_b must have as many columns, got {a.shape[1]} and "
            f"{b.shape[1]}"
        )
    check_positive_int("subsets", subsets)
    check_positive_int("subset_size", subset_size, minimum=2)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"kid needs at least 2 features on each side, got {len(a)}, {len(b)}")
    if m == len(a) == len(b):
        return _poly_mmd2(a, b), 0.0
    rng = np.random.default_rng(seed)
    values = [
        _poly_mmd2(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def _probabilities(probs: ArrayLike | Tensor) -> np.ndarray:
    p = _float64("probs", probs, 2)
    if len(p) == 0 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, K) with N >= 1 and K >= 2, got {p.shape}")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probs must hold non-negative rows that sum to 1 (class probabilities)")
    return p


def inception_score(probs: ArrayLike | Tensor, splits: int = 10) -> tuple[float, float]:
    r"""The Inception Score of class probabilities (any classifier's).

    .. math:: \mathrm{IS} = \exp\Big(\mathbb{E}_x\, \mathrm{KL}\big(p(y \mid x)
        \,\Vert\, p(y)\big)\Big), \qquad p(y) = \mathbb{E}_x\, p(y \mid x)

    computed on each of :py:`splits` consecutive equal parts of the rows (the remainder
    is dropped, as in Salimans et al. 2016); it lies between 1 and :math:`K`.

    Arguments:
        probs: Class probabilities :math:`p(y \mid x)`, of shape :math:`(N, K)`.
        splits: The number of parts, at most :math:`N`.

    Returns:
        The mean and standard deviation of the score over the parts.

    Example:
        >>> inception_score(np.eye(4), splits=1)
        (4.0, 0.0)
    """
    p = _probabilities(probs)
    check_positive_int("splits", splits)
    if splits > len(p):
        raise ValueError(f"splits must be at most the number of rows {len(p)}, got {splits}")
    size = len(p) // splits
    scores = []
    for k in range(splits):
        part = p[k * size : (k + 1) * size]
        marginal = part.mean(axis=0, keepdims=True)
        # 0 log 0 = 0: where p(y|x) = 0 the term vanishes
        terms = np.where(
            part > 0, part * (np.log(np.where(part > 0, part, 1)) - np.log(marginal)), 0
        )
        scores.append(math.exp(terms.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def sample_entropy(probs: ArrayLike | Tensor) -> float:
    r"""The entropy of the predicted classes of the samples, normalised to :math:`[0, 1]`.

    .. math:: H = -\frac{1}{\log K} \sum_{k=1}^K h_k \log h_k, \qquad
        h_k = \frac1N \#\{i : \arg\max_y p(y \mid x_i) = k\}

    The seed paper's "sample entropy": 0 when every sample is given the same class, 1 when
    the predicted classes are spread evenly (no mode collapse).

    Arguments:
        probs: Class probabilities, of shape :math:`(N, K)` with :math:`K \geq 2`.

    Example:
        >>> round(sample_entropy(np.eye(3)), 12), sample_entropy(np.eye(3)[[0, 0, 0]])
        (1.0, 0.0)
    """
    p = _probabilities(probs)
    k = p.shape[1]
    h = np.bincount(p.argmax(axis=1), minlength=k) / len(p)
    h = h[h > 0]
    return float(np.clip(-(h * np.log(h)).sum() / math.log(k), 0.0, 1.0)) + 0.0  # no -0.0


def _as_images(name: str, x: Tensor) -> Tensor:
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor of images, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return to_model_range(x)
    if not x.is_floating_point():
        raise ValueError(f"{name} must be uint8 or floating point in [-1, 1], got {x.dtype}")
    return check_finite(name, x.detach())


def _encode(feature_net: FeatureNet, x: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    both = getattr(feature_net, "features_and_probs", None)
    features, probs = [], []
    for batch in x.split(batch_size):
        if both is not None:
            f, p = both(batch)
        else:
            f, p = feature_net.features(batch), feature_net.probs(batch)
        features.append(f.detach().cpu())
        probs.append(p.detach().cpu())
    return torch.cat(features), torch.cat(probs)


def _metrics(
    features: Tensor,
    probs: Tensor,
    reference: Tensor,
    feature_net: FeatureNet,
    kid_subsets: int,
    kid_subset_size: int,
    is_splits: int,
    seed: int,
) -> dict[str, Any]:
    names = metric_names(feature_net)
    kid_mean, kid_std = kid(
        features, reference, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
    )
    is_mean, is_std = inception_score(probs, splits=is_splits)
    return {
        names["fd"]: frechet_distance(
            *feature_statistics(features), *feature_statistics(reference)
        ),
        names["kid"]: kid_mean,
        f"{names['kid']}_std": kid_std,
        names["is"]: is_mean,
        f"{names['is']}_std": is_std,
        "sample_entropy": sample_entropy(probs),
        "feature_net": feature_net.name,
        "num_samples": len(features),
        "num_reference": len(reference),
    }


def evaluate_images(
    samples: Tensor,
    reference: Tensor,
    feature_net: FeatureNet,
    *,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    batch_size: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    r"""Frechet distance, KID, IS and sample entropy of samples against real images.

    The Frechet distance (:func:`frechet_distance`) and KID (:func:`kid`) compare the
    features of :py:`samples` and :py:`reference`; IS (:func:`inception_score`) and the
    sample entropy (:func:`sample_entropy`) use the class probabilities of
    :py:`samples` alone. Compare the values with :func:`reference_statistics` at the same
    number of samples.

    Arguments:
        samples: Generated images, of shape :math:`(N, C, H, W)`, floats in the model
            range :math:`[-1, 1]` or uint8.
        reference: Real images, of shape :math:`(M, C, H, W)`, likewise.
        feature_net: The :class:`FeatureNet` that encodes both.
        kid_subsets: The number of KID subsets.
        kid_subset_size: The KID subset size.
        is_splits: The number of IS parts (at most :math:`N`).
        batch_size: Images given to the network at once.
        seed: The seed of the KID subsets.

    Returns:
        A dictionary with the keys of :func:`metric_names` (e.g. :py:`"FD-FMNIST"`,
        :py:`"KID-FMNIST"`, :py:`"IS-FMNIST"`), their standard deviations over subsets or
        parts (:py:`"KID-FMNIST_std"`, :py:`"IS-FMNIST_std"`), :py:`"sample_entropy"`,
        :py:`"feature_net"` (the network's name), :py:`"num_samples"` and
        :py:`"num_reference"`.
    """
    samples, reference = _as_images("samples", samples), _as_images("reference", reference)
    if samples.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"samples and reference must hold images of the same shape, got "
            f"{tuple(samples.shape[1:])} and {tuple(reference.shape[1:])}"
        )
    metric_names(feature_net)  # refuse a dishonest name before any work
    check_positive_int("batch_size", batch_size)
    features, probs = _encode(feature_net, samples, batch_size)
    reference_features, _ = _encode(feature_net, reference, batch_size)
    return _metrics(
        features,
        probs,
        reference_features,
        feature_net,
        kid_subsets,
        kid_subset_size,
        is_splits,
        seed,
    )


def reference_statistics(
    real_a: Tensor,
    real_b: Tensor,
    feature_net: FeatureNet,
    *,
    sizes: Sequence[int] = (1000, 5000),
    seed: int = 0,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    batch_size: int = 500,
) -> list[dict[str, Any]]:
    r"""The metrics of :func:`evaluate_images` between two sets of real images.

    For each size :math:`n`, the first :math:`n` images of a random permutation of
    :py:`real_a` (playing the samples) are compared with the first :math:`n` of one of
    :py:`real_b`, so the values are what a model that samples the data distribution
    exactly would score with :math:`n` samples: the Frechet distance and KID a model
    cannot beat, the IS and sample entropy of real images. Use disjoint sets, such as the
    test and training splits. The permutations depend on :py:`seed` alone, so a smaller
    size is a prefix of a larger one and the values are reproducible.

    Arguments:
        real_a: Real images, of shape :math:`(N_a, C, H, W)` (uint8 or :math:`[-1, 1]`).
        real_b: Other real images of the same shape.
        feature_net: The :class:`FeatureNet`.
        sizes: The sample sizes, each at most :math:`\min(N_a, N_b)`.
        seed: The seed of the permutations and KID subsets.
        kid_subsets: As in :func:`evaluate_images`.
        kid_subset_size: As in :func:`evaluate_images`.
        is_splits: As in :func:`evaluate_images`.
        batch_size: As in :func:`evaluate_images`.

    Returns:
        One dictionary of :func:`evaluate_images` per size, in the order of :py:`sizes`.
    """
    real_a, real_b = _as_images("real_a", real_a), _as_images("real_b", real_b)
    if not sizes:
        raise ValueError("sizes must name at least one sample size, got an empty sequence")
    available = min(len(real_a), len(real_b))
    for n in sizes:
        check_positive_int("sizes", n, minimum=2)
        if n > available:
            raise ValueError(
                f"sizes may not exceed the smaller set ({len(real_a)} and {len(real_b)} images), "
                f"got {n}"
            )
    generator = torch.Generator().manual_seed(seed)
    order_a = torch.randperm(len(real_a), generator=generator)[: max(sizes)]
    order_b = torch.randperm(len(real_b), generator=generator)[: max(sizes)]
    features_a, probs_a = _encode(feature_net, real_a[order_a], batch_size)
    features_b, _ = _encode(feature_net, real_b[order_b], batch_size)
    return [
        _metrics(
            features_a[:n],
            probs_a[:n],
            features_b[:n],
            feature_net,
            kid_subsets,
            kid_subset_size,
            is_splits,
            seed,
        )
        for n in sizes
    ]
