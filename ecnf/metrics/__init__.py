r"""Sample-quality metrics: exact W2 and MMD for 2D data, FD/KID/IS/entropy for images.

* :mod:`ecnf.metrics.toy`: :func:`wasserstein2` and :func:`mmd2` between 2D samples.
* :mod:`ecnf.metrics.images`: :func:`frechet_distance`, :func:`kid`,
  :func:`inception_score`, :func:`sample_entropy`, and :func:`evaluate_images` /
  :func:`reference_statistics` over any :class:`FeatureNet`.
* :mod:`ecnf.metrics.classifier`: the small classifiers the project trains and ships as
  offline feature networks (:class:`ClassifierFeatures`, metrics named ``"FD-FMNIST"``...).
* :mod:`ecnf.metrics.inception`: the standard Inception-v3 network of FID and IS
  (:class:`InceptionFeatures`), through torch-fidelity, from a local weights file or online.

Every metric should be shown beside its value between two sets of real data of the same
size (:func:`reference_statistics` for images): the value a perfect model would reach.
"""

from __future__ import annotations

from .classifier import (
    CLASSIFIER_DATASETS,
    Classifier,
    ClassifierConfig,
    ClassifierFeatures,
    classifier_config,
    labelled_images,
    load_classifier,
    save_classifier,
    shipped_classifier_path,
    train_classifier,
)
from .images import (
    FeatureNet,
    evaluate_images,
    feature_statistics,
    frechet_distance,
    inception_score,
    kid,
    metric_names,
    reference_statistics,
    sample_entropy,
)
from .inception import INCEPTION_WEIGHTS_URL, InceptionFeatures, InceptionWeightsError
from .toy import mmd2, wasserstein2

__all__ = [
    "CLASSIFIER_DATASETS",
    "INCEPTION_WEIGHTS_URL",
    "Classifier",
    "ClassifierConfig",
    "ClassifierFeatures",
    "FeatureNet",
    "InceptionFeatures",
    "InceptionWeightsError",
    "classifier_config",
    "evaluate_images",
    "feature_statistics",
    "frechet_distance",
    "inception_score",
    "kid",
    "labelled_images",
    "load_classifier",
    "metric_names",
    "mmd2",
    "reference_statistics",
    "sample_entropy",
    "save_classifier",
    "shipped_classifier_path",
    "train_classifier",
    "wasserstein2",
]
