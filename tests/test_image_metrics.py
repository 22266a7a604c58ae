"""Image metrics against closed forms, direct computations and torch-fidelity."""

import json
import math
import re
import urllib.error

import numpy as np
import pytest
import scipy.linalg
import torch
from tolerances import IMAGE_METRIC_REL
from torch_fidelity.metric_fid import fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

import ecnf.metrics.inception as inception
from ecnf.metrics import (
    Classifier,
    ClassifierFeatures,
    FeatureNet,
    InceptionFeatures,
    InceptionWeightsError,
    classifier_config,
    evaluate_images,
    feature_statistics,
    frechet_distance,
    inception_score,
    kid,
    labelled_images,
    load_classifier,
    metric_names,
    reference_statistics,
    sample_entropy,
    save_classifier,
    shipped_classifier_path,
)


def random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# Frechet distance


def test_fd_of_diagonal_gaussians_has_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, 1e-10)


def test_fd_of_full_gaussians_matches_the_symmetric_formula_and_torch_fidelity():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = random_spd(rng, 5), random_spd(rng, 5)
    r1 = scipy.linalg.sqrtm(s1).real  # tr (S1 S2)^1/2 = tr (S1^1/2 S2 S1^1/2)^1/2
    inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2) - 2 * np.sqrt(inner).sum()
    value = frechet_distance(torch.tensor(mu1), torch.tensor(s1), mu2, s2)
    assert value == pytest.approx(expected, rel=1e-9)
    fidelity = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)
    assert value == pytest.approx(fidelity["frechet_inception_distance"], rel=1e-9)


def test_fd_of_a_sample_with_itself_is_zero_even_when_singular():
    rng = np.random.default_rng(2)
    for n, d in ((500, 8), (10, 20)):  # the second covariance has rank 9 < 20
        mu, sigma = feature_statistics(rng.normal(size=(n, d)))
        assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    x, y = rng.normal(size=(10, 20)), rng.normal(size=(10, 20)) + 1
    value = frechet_distance(*feature_statistics(x), *feature_statistics(y))
    assert math.isfinite(value) and value > 10


def test_fd_of_large_samples_approaches_the_closed_form():
    rng = np.random.default_rng(3)
    m1, m2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, 0.0])
    s1, s2 = random_spd(rng, 3), random_spd(rng, 3)
    closed = frechet_distance(m1, s1, m2, s2)
    x = rng.multivariate_normal(m1, s1, size=200_000)
    y = rng.multivariate_normal(m2, s2, size=200_000)
    assert frechet_distance(*feature_statistics(x), *feature_statistics(y)) == pytest.approx(
        closed, rel=0.02
    )


def test_feature_statistics_are_float64_mean_and_unbiased_covariance():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    mu, sigma = feature_statistics(x)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.double().mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(sigma, torch.cov(x.double().T).numpy(), rtol=1e-10)


def test_fd_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="sigma2 must have shape"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.array([np.nan, 0]), np.eye(2), np.zeros(2), np.eye(2))


# Inception Score and sample entropy


def test_inception_score_of_uniform_and_confident_classifiers():
    k = 7
    assert inception_score(np.full((70, k), 1 / k), splits=10) == pytest.approx((1.0, 0.0))
    one_hot = np.eye(k)[np.arange(140) % k]  # each split of 14 holds every class twice
    mean, std = inception_score(one_hot, splits=10)
    assert mean == pytest.approx(k, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_matches_torch_fidelity():
    logits = torch.randn(300, 12, generator=torch.Generator().manual_seed(4)).double() * 3
    ours = inception_score(logits.softmax(1), splits=10)
    theirs = isc_features_to_metric(logits, splits=10, shuffle=False)
    assert ours[0] == pytest.approx(theirs["inception_score_mean"], rel=1e-10)
    assert ours[1] == pytest.approx(theirs["inception_score_std"], rel=1e-8)


def test_sample_entropy_of_collapsed_uniform_and_half_spread_predictions():
    k = 4
    assert sample_entropy(np.eye(k)[np.zeros(40, dtype=int)]) == 0.0
    assert sample_entropy(np.eye(k)[np.arange(40) % k]) == pytest.approx(1.0)
    assert sample_entropy(np.eye(k)[np.arange(40) % 2]) == pytest.approx(0.5)  # log 2 / log 4


def test_probabilities_are_checked():
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score(np.ones((10, 3)), splits=2)
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.eye(3), splits=4)


# KID


def direct_kid(x, y):
    x, y = torch.as_tensor(x).double(), torch.as_tensor(y).double()
    m, d = x.shape
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy = k(x, x), k(y, y)
    off = ~torch.eye(m, dtype=torch.bool)
    return float(kxx[off].mean() + kyy[off].mean() - 2 * k(x, y).mean())


def test_kid_separates_distributions_and_matches_a_direct_computation():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(600, 16, generator=g), torch.randn(600, 16, generator=g)
    same, _ = kid(a, b, subsets=20, subset_size=300)
    shifted, std = kid(a, b + 0.5, subsets=20, subset_size=300)
    assert abs(same) < 0.02 < shifted and std > 0
    assert kid(a[:200], b[:200] + 0.5, subsets=5, subset_size=1000) == pytest.approx(
        (direct_kid(a[:200], b[:200] + 0.5), 0.0), rel=1e-10
    )
    theirs = kid_features_to_metric(
        a[:200], b[:200] + 0.5, kid_subsets=1, kid_subset_size=200, verbose=False
    )
    assert kid(a[:200], b[:200] + 0.5)[0] == pytest.approx(
        theirs["kernel_inception_distance_mean"], rel=1e-6
    )


# Feature networks, naming and input checks


@pytest.fixture(scope="module")
def digits_net():
    torch.manual_seed(0)
    return ClassifierFeatures(Classifier(classifier_config("digits")), device="cpu")


def test_only_inception_may_call_its_metrics_fid(digits_net, tmp_path):
    assert isinstance(digits_net, FeatureNet)
    assert metric_names(digits_net) == {"fd": "FD-DIGITS", "kid": "KID-DIGITS", "is": "IS-DIGITS"}
    digits_net_fid = ClassifierFeatures(digits_net.model, device="cpu")
    digits_net_fid.metric_prefix = "FID"
    with pytest.raises(ValueError, match="reserved"):
        evaluate_images(torch.zeros(20, 1, 8, 8), torch.zeros(20, 1, 8, 8), digits_net_fid)
    images = labelled_images("digits", train=False)[0]
    result = evaluate_images(images[:100], images[100:200], digits_net, is_splits=5)
    assert {"FID", "KID", "IS"}.isdisjoint(result)
    assert {"FD-DIGITS", "KID-DIGITS", "IS-DIGITS", "sample_entropy"} <= set(result)
    assert result["feature_net"] == "digits-classifier" and result["num_samples"] == 100

    x = torch.rand(5, 1, 8, 8) * 2 - 1
    for half, tolerance in ((False, 0.0), (True, 1e-2)):
        path = save_classifier(
            tmp_path / f"{half}.safetensors", digits_net.model, {"a": 1}, half=half
        )
        reloaded = ClassifierFeatures(path, device="cpu")
        assert all(t.dtype == torch.float32 for t in reloaded.model.parameters())
        torch.testing.assert_close(
            reloaded.features(x), digits_net.features(x), rtol=tolerance, atol=tolerance
        )
        assert load_classifier(path)[1] == {"a": 1}


def test_bad_images_are_refused_with_the_expected_shape(digits_net):
    good = torch.zeros(10, 1, 8, 8)
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        evaluate_images(torch.zeros(10, 1, 28, 28), torch.zeros(10, 1, 28, 28), digits_net)
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        digits_net.features(torch.zeros(10, 3, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        evaluate_images(good, torch.zeros(10, 3, 8, 8), digits_net)
    nan = good.clone()
    nan[3, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="samples contains 1 NaN"):
        evaluate_images(nan, good, digits_net)
    with pytest.raises(ValueError, match="sizes"):
        reference_statistics(good, good, digits_net, sizes=(11,))


# Inception-v3 through torch-fidelity, without its weights


def test_missing_inception_weights_say_how_to_get_them(tmp_path, monkeypatch):
    with pytest.raises(InceptionWeightsError, match="--inception-weights"):
        InceptionFeatures(tmp_path / "absent.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(InceptionWeightsError, match="download=False"):
        InceptionFeatures(download=False)

    def offline(url, dst, progress=True):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(InceptionWeightsError, match=r"no route to host.*--inception-weights"):
        InceptionFeatures()


class Hostile:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_foreign_inception_weights_are_refused_without_unpickling_code(tmp_path, capsys):
    torchvision_like = tmp_path / "inception_v3_google.pth"
    torch.save(
        {"fc.weight": torch.zeros(1000, 2048), "AuxLogits.fc.weight": torch.zeros(1)},
        torchvision_like,
    )
    with pytest.raises(ValueError, match="torchvision"):
        InceptionFeatures(torchvision_like)
    hostile = tmp_path / "hostile.pth"
    torch.save({"fc.weight": Hostile()}, hostile)
    with pytest.raises(ValueError, match="not a readable PyTorch weights file"):
        InceptionFeatures(hostile)
    assert "pickled code ran" not in capsys.readouterr().out


def test_inception_plumbing_with_random_weights(tmp_path):
    """The real torch-fidelity network, with random weights in the file's layout."""
    import torchvision

    torch.manual_seed(0)
    random = torchvision.models.inception_v3(
        weights=None, aux_logits=False, init_weights=False, num_classes=1008
    )
    path = tmp_path / "weights-inception-random.pth"
    torch.save(random.state_dict(), path)
    net = InceptionFeatures(path, device="cpu")
    seen = {}
    net.network.register_forward_pre_hook(lambda m, args: seen.setdefault("input", args[0]))
    net.network.Conv2d_1a_3x3.register_forward_pre_hook(
        lambda m, args: seen.setdefault("resized", args[0])
    )
    x = torch.linspace(-1, 1, 3 * 28 * 28).view(3, 1, 28, 28)
    features, probs = net.features_and_probs(x)
    assert features.shape == (3, 2048) and probs.shape == (3, 1008)
    torch.testing.assert_close(probs.sum(1).double(), torch.ones(3, dtype=torch.float64))
    raw = seen["input"]
    assert raw.dtype == torch.uint8 and raw.shape == (3, 3, 28, 28)
    assert raw.min() == 0 and raw.max() == 255 and torch.equal(raw[:, 0], raw[:, 2])
    resized = seen["resized"]
    assert resized.shape == (3, 3, 299, 299) and resized.dtype == torch.float32
    assert -1 <= resized.min() < -0.99 and 0.99 < resized.max() <= 1


def test_inception_metrics_are_named_fid(monkeypatch, tmp_path):
    class Fake(torch.nn.Module):
        def forward(self, x):
            assert x.dtype == torch.uint8 and x.shape[1] == 3
            f = x.float().flatten(1)[:, :8] / 255  # 8 features keep the test fast
            return f, torch.cat([f[:, :1].repeat(1, 1000), torch.zeros(len(x), 8)], 1)

    path = tmp_path / "w.pth"
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, path)
    monkeypatch.setattr(inception, "_build_extractor", lambda p: Fake())
    net = InceptionFeatures(path, device="cpu")
    assert isinstance(net, FeatureNet)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(40, 3, 16, 16, generator=g) * 2 - 1, torch.rand(40, 3, 16, 16, generator=g)
    result = evaluate_images(a, b, net, is_splits=4)
    assert {"FID", "KID", "KID_std", "IS", "IS_std"} <= set(result)
    assert result["feature_net"] == "inception-v3" and result["FID"] > 0
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net.features(torch.zeros(2, 2, 16, 16))


# The shipped classifiers


def read_card(dataset):
    path = shipped_classifier_path(dataset)
    text = path.with_suffix(".md").read_text()
    block = re.search(r"```json\n(.*?)\n```", text, re.DOTALL)
    return path, json.loads(block.group(1))


@pytest.mark.parametrize("dataset", ["digits", "fashion_mnist"])
def test_shipped_classifier_matches_its_card(dataset):
    path, card = read_card(dataset)
    assert path.stat().st_size < 1_000_000
    net = ClassifierFeatures(path, device="cpu")
    assert net.training["test_accuracy"] == card["test_accuracy"]
    test, labels = labelled_images(dataset, train=False)
    predicted = net.probs(test[:2000]).argmax(1)  # all 297 digits
    accuracy = float((predicted == labels[:2000]).double().mean())
    assert accuracy == pytest.approx(card["test_accuracy"], abs=0.015)

    # the smallest size of the card, recomputed exactly as the script did
    train, _ = labelled_images(dataset, train=True)
    expected = card["reference"]["values"][0]
    sizes = (expected["num_samples"],)
    (measured,) = reference_statistics(
        test, train, net, sizes=sizes, seed=card["reference"]["seed"]
    )
    assert measured.keys() == expected.keys()
    assert {"FID", "IS", "KID"}.isdisjoint(measured)
    for key, value in expected.items():
        if isinstance(value, float):
            # classifier features on another CPU: tests/tolerances.py
            assert measured[key] == pytest.approx(value, rel=IMAGE_METRIC_REL, abs=1e-6), key
        else:
            assert measured[key] == value, key
