"""Image-generation metrics (agr_suite.diffusion.metrics, agr_suite.diffusion.digits_features).

FID and IS are checked against closed forms, hand computations and torch-fidelity's own
functions; the metric pipeline runs end to end with the digits CNN (trained once per test
session into a temporary cache). Nothing reaches the network: ``urllib.request.urlopen`` is
replaced by a function that raises, and the Inception tests replace the weights download.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from scipy import linalg
from scipy.special import log_softmax, logsumexp, softmax
from torch_fidelity.feature_extractor_inceptionv3 import (
    URL_INCEPTION_V3,
    FeatureExtractorInceptionV3,
)
from torch_fidelity.metric_fid import fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric

from agr_suite.diffusion import digits_features
from agr_suite.diffusion import metrics as generation
from agr_suite.diffusion.digits_features import DigitsFeatures, digits_split
from agr_suite.diffusion.metrics import (
    INCEPTION_WEIGHTS_FILENAME,
    INCEPTION_WEIGHTS_URL,
    FeatureExtractor,
    GenerationMetrics,
    InceptionFeatures,
    InceptionWeightsMissingError,
    feature_statistics,
    frechet_distance,
    inception_score,
)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: these workloads are tiny, and on a busy 2-core machine two
    oversubscribed threads made a single Inception forward pass 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("digits_cnn")


@pytest.fixture(scope="session")
def digits_extractor(digits_cache):
    return DigitsFeatures(digits_cache)


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# --------------------------------------------------------------------------- Frechet distance


def test_frechet_distance_matches_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-10)
    assert abs(frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1))) < 1e-10


def test_frechet_distance_full_covariances_agree_with_torch_fidelity():
    rng = np.random.default_rng(1)
    d = 32
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    ours = frechet_distance(mu1, s1, mu2, s2)
    theirs = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)
    assert ours == pytest.approx(theirs["frechet_inception_distance"], rel=1e-8)
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-9 * np.trace(s1)


def test_frechet_distance_singular_covariances_stay_finite():
    # sigma1 @ sigma2 = 0: FID = |dmu|^2 + tr(s1) + tr(s2) exactly.
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, 0.0])
    s1, s2 = np.diag([2.0, 0.0, 0.0]), np.diag([0.0, 3.0, 0.0])
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(1.0 + 2.0 + 3.0, abs=1e-6)


def test_feature_statistics_float64_unbiased_covariance():
    feats = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32)
    mu, sigma = feature_statistics(torch.from_numpy(feats))
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, feats.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(feats.astype(np.float64), rowvar=False), rtol=1e-12)


# --------------------------------------------------------------------------- Inception Score


def test_inception_score_of_uniform_predictions_is_one():
    mean, std = inception_score(torch.full((100, 10), 3.7), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("num_classes", [2, 10, 1000])
def test_inception_score_of_confident_even_predictions_is_num_classes(num_classes):
    splits, per_split = 10, 2 * num_classes
    labels = torch.arange(splits * per_split) % num_classes  # every split holds each class twice
    logits = torch.zeros(len(labels), num_classes)
    logits[torch.arange(len(labels)), labels] = 200.0  # saturated softmax: p(y|x) one-hot
    mean, std = inception_score(logits, splits=splits)
    assert mean == pytest.approx(num_classes, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9 * num_classes)


def test_inception_score_matches_hand_computation():
    rng = np.random.default_rng(3)
    n, c, splits = 53, 7, 4  # 53 is not a multiple of 4: splits of 13, 13, 13, 14 rows
    logits = rng.normal(scale=2.0, size=(n, c))
    scores = []
    for i in range(splits):
        chunk = logits[i * n // splits : (i + 1) * n // splits]
        p, log_p = softmax(chunk, axis=1), log_softmax(chunk, axis=1)
        p_y = p.mean(axis=0)
        kl = np.sum(p * (log_p - np.log(p_y)), axis=1)
        scores.append(np.exp(kl.mean()))
    expected_std = np.sqrt(np.mean((np.array(scores) - np.mean(scores)) ** 2))  # ddof=0
    mean, std = inception_score(logits, splits=splits)
    assert mean == pytest.approx(np.mean(scores), rel=1e-12)
    assert std == pytest.approx(expected_std, rel=1e-9)


def test_inception_score_with_shuffle_matches_torch_fidelity():
    logits = torch.from_numpy(np.random.default_rng(4).normal(scale=3.0, size=(230, 12)))
    theirs = isc_features_to_metric(logits.float(), splits=10, shuffle=True, rng_seed=2020)
    mean, std = inception_score(logits.float(), splits=10, shuffle=True, rng_seed=2020)
    assert mean == pytest.approx(theirs["inception_score_mean"], rel=1e-12)
    assert std == pytest.approx(theirs["inception_score_std"], rel=1e-9)


def test_inception_score_rejects_too_few_samples():
    with pytest.raises(ValueError, match="split"):
        inception_score(torch.zeros(5, 3), splits=10)


# --------------------------------------------------------------------------- digits CNN


def test_digits_cnn_accuracy_and_cache_reuse(digits_cache, digits_extractor):
    assert digits_extractor.trained
    assert digits_extractor.test_accuracy > 0.95
    path = digits_extractor.cache_path
    assert path.is_file() and path.parent == digits_cache
    payload = torch.load(path, weights_only=True)
    assert payload["test_accuracy"] == digits_extractor.test_accuracy

    runs, mtime = digits_features.TRAINING_RUNS, path.stat().st_mtime_ns
    again = DigitsFeatures(digits_cache)
    assert not again.trained
    assert digits_features.TRAINING_RUNS == runs
    assert path.stat().st_mtime_ns == mtime
    assert again.test_accuracy == digits_extractor.test_accuracy
    for a, b in zip(
        again.model.state_dict().values(), digits_extractor.model.state_dict().values()
    ):
        assert torch.equal(a, b)

    # The cached classifier really is that accurate (not just the stored number).
    _, _, test_x, test_y = digits_split()
    pool, logits = again.features(test_x)
    assert pool.shape == (len(test_y), 64) and logits.shape == (len(test_y), 10)
    assert (logits.argmax(1) == test_y).float().mean() > 0.95


def test_digits_features_accept_uint8_rgb_and_other_sizes(digits_extractor):
    _, _, test_x, _ = digits_split()
    x = test_x[:8]
    reference = digits_extractor.features(x)[0]
    as_uint8 = ((x + 1) * 127.5).round().to(torch.uint8).expand(-1, 3, -1, -1)
    torch.testing.assert_close(digits_extractor.features(as_uint8)[0], reference, atol=0.05, rtol=0)
    big = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear")
    assert digits_extractor.features(big)[0].shape == (8, 64)
    assert isinstance(digits_extractor, FeatureExtractor)


# --------------------------------------------------------------------------- FID end to end


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_noise(tmp_path, digits_extractor):
    _, _, test_x, _ = digits_split()
    metrics = GenerationMetrics(digits_extractor, splits=10, batch_size=64)
    mu, sigma = metrics.reference_statistics(test_x, tmp_path / "ref.npz", dataset="digits-test")
    same = metrics.compute(test_x)
    assert abs(same["fid"]) < 1e-6 * np.trace(sigma)
    assert same["is_mean"] > 5.0  # ten well-separated classes
    assert same["is_std"] >= 0.0

    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(test_x.shape, generator=generator)
    fids = [metrics.compute((test_x + s * noise).clamp(-1, 1))["fid"] for s in (0.1, 0.3, 0.6, 1.0)]
    assert all(a < b for a, b in zip([same["fid"], *fids], fids)), fids

    info = metrics.describe()
    assert info["feature_label"] == "FID (digits-CNN features)"
    assert info["extractor"] == digits_extractor.name
    assert info["num_samples"] == len(test_x)
    assert info["reference_set"] == "digits-test"
    assert info["reference_samples"] == len(test_x)
    assert info["is_splits"] == 10
    assert info["extractor_details"]["classifier_test_accuracy"] > 0.95


def test_reference_statistics_are_cached_and_reused(tmp_path, digits_extractor, monkeypatch):
    train_x, _, test_x, _ = digits_split()
    first = GenerationMetrics(digits_extractor, batch_size=100)
    # A DataLoader-like iterable of (images, labels) batches.
    loader = [(train_x[i : i + 300], None) for i in range(0, len(train_x), 300)]
    mu, sigma = first.reference_statistics(loader, tmp_path, dataset="digits-train")
    path = first.reference_cache_path(tmp_path, "digits-train")
    assert path.is_file() and first.reference_source == "computed"
    assert digits_extractor.name in path.name and "digits-train" in path.name
    with np.load(path) as data:
        assert str(data["extractor"]) == digits_extractor.name
        assert str(data["dataset"]) == "digits-train"
        assert int(data["num_samples"]) == len(train_x)

    def untouchable():
        raise AssertionError("the real images were read although the statistics are cached")
        yield  # pragma: no cover

    calls = []
    second = GenerationMetrics(digits_extractor)
    with monkeypatch.context() as patch:
        patch.setattr(digits_extractor, "features", lambda x: calls.append(x))
        mu2, sigma2 = second.reference_statistics(untouchable(), path)
    assert second.reference_source == "cache" and not calls
    np.testing.assert_array_equal(mu, mu2)
    np.testing.assert_array_equal(sigma, sigma2)

    # The cached file also works as reference_stats_path, and gives the same FID.
    third = GenerationMetrics(digits_extractor, reference_stats_path=path)
    assert third.compute(test_x)["fid"] == pytest.approx(second.compute(test_x)["fid"], rel=1e-12)
    assert third.describe()["reference_set"] == "digits-train"

    with pytest.raises(ValueError, match="digits-test"):
        GenerationMetrics(digits_extractor).reference_statistics(
            untouchable(), path, dataset="digits-test"
        )


def _pytorch_fid_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's ``calculate_frechet_distance``, the formula this module used before it
    called torch-fidelity: ``scipy.linalg.sqrtm`` of the product, ``eps * I`` when not finite."""
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = eps * np.eye(len(mu1))
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    diff = mu1 - mu2
    return diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real)


def _former_inception_score(logits, splits, rng_seed=2020):
    """The former float64 IS: rows permuted by RandomState(rng_seed), p(y) in log space."""
    logits = np.asarray(logits, np.float64)[
        np.random.RandomState(rng_seed).permutation(len(logits))
    ]
    scores = []
    for i in range(splits):
        log_p = log_softmax(logits[i * len(logits) // splits : (i + 1) * len(logits) // splits], 1)
        log_q = logsumexp(log_p, axis=0) - np.log(len(log_p))
        scores.append(np.exp(np.sum(np.exp(log_p) * (log_p - log_q), axis=1).mean()))
    return np.mean(scores), np.std(scores)


def test_compute_matches_the_former_formulas_on_the_same_features(tmp_path, digits_extractor):
    """Issue 24: the torch-fidelity arithmetic gives the numbers of the former code (scipy sqrtm
    FID, log-space IS) within 1e-6 on the same digits features, also with fewer samples than
    feature dimensions (a singular covariance, as in smoke runs)."""
    train_x, _, test_x, _ = digits_split()
    metrics = GenerationMetrics(digits_extractor, splits=10, batch_size=128)
    ref_mu, ref_sigma = metrics.reference_statistics(train_x, tmp_path, dataset="digits-train")
    noise = torch.randn(test_x.shape, generator=torch.Generator().manual_seed(1))
    for generated in ((test_x + 0.3 * noise).clamp(-1, 1), test_x[:40]):
        pool, logits = metrics.extract(generated)
        pool = pool.astype(np.float64)
        mu, sigma = pool.mean(axis=0), np.cov(pool, rowvar=False)
        former_fid = _pytorch_fid_frechet_distance(mu, sigma, ref_mu, ref_sigma)
        former_is = _former_inception_score(logits, splits=10)
        got = metrics.compute(generated)
        assert got["fid"] == pytest.approx(former_fid, rel=1e-6)
        assert got["is_mean"] == pytest.approx(former_is[0], rel=1e-6)
        assert got["is_std"] == pytest.approx(former_is[1], rel=1e-6)


def test_reference_files_of_the_former_layout_and_of_pytorch_fid_are_read(
    tmp_path, digits_extractor
):
    """A cache file as the former code wrote it (np.savez of 0-d arrays) is used as it is, and a
    pytorch-fid style file (mu and sigma only) works as reference_stats_path."""
    _, _, test_x, _ = digits_split()
    pool = GenerationMetrics(digits_extractor).extract(test_x)[0].astype(np.float64)
    mu, sigma = pool.mean(axis=0), np.cov(pool, rowvar=False)
    metrics = GenerationMetrics(digits_extractor)
    former = metrics.reference_cache_path(tmp_path, "digits-test")
    np.savez(
        former,
        mu=mu,
        sigma=sigma,
        extractor=np.array(digits_extractor.name),
        dataset=np.array("digits-test"),
        num_samples=np.array(len(pool)),
    )
    got_mu, got_sigma = metrics.reference_statistics(iter(()), tmp_path, dataset="digits-test")
    assert metrics.reference_source == "cache"
    np.testing.assert_array_equal(got_mu, mu)
    np.testing.assert_array_equal(got_sigma, sigma)
    assert metrics.describe()["reference_samples"] == len(pool)
    assert abs(metrics.compute(test_x)["fid"]) < 1e-6 * np.trace(sigma)

    plain = tmp_path / "pytorch_fid_stats.npz"
    np.savez(plain, mu=mu, sigma=sigma)
    from_plain = GenerationMetrics(digits_extractor, reference_stats_path=plain)
    assert from_plain.describe()["reference_set"] == "pytorch_fid_stats"
    assert from_plain.describe()["reference_samples"] is None
    assert abs(from_plain.compute(test_x)["fid"]) < 1e-6 * np.trace(sigma)


def test_compute_without_reference_fails_clearly(digits_extractor):
    with pytest.raises(RuntimeError, match="reference_statistics"):
        GenerationMetrics(digits_extractor).compute(torch.zeros(20, 1, 16, 16))


# --------------------------------------------------------------------------- Inception path


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("AGR_OFFLINE", raising=False)
    return tmp_path / "torch_home" / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILENAME


def test_inception_offline_without_weights_raises_quickly(empty_torch_home, monkeypatch):
    attempts = []

    def offline(url, destination):
        attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(generation, "_download_weights", offline)
    start = time.monotonic()
    with pytest.raises(InceptionWeightsMissingError) as info:
        InceptionFeatures(device="cpu")
    assert time.monotonic() - start < 5.0
    assert attempts == [INCEPTION_WEIGHTS_URL]
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for needed in (
        INCEPTION_WEIGHTS_FILENAME,
        str(empty_torch_home),
        INCEPTION_WEIGHTS_URL,
        "metrics.inception_weights=/path/to/",
        "name resolution",
    ):
        assert needed in message
    assert "\n" not in message

    # With downloads disabled (flag or environment) nothing is attempted at all.
    monkeypatch.setattr(generation, "_download_weights", lambda *a: pytest.fail("downloaded"))
    with pytest.raises(InceptionWeightsMissingError, match="metrics.inception_weights"):
        InceptionFeatures(device="cpu", allow_download=False)
    monkeypatch.setenv("AGR_OFFLINE", "1")
    with pytest.raises(InceptionWeightsMissingError, match="metrics.inception_weights"):
        InceptionFeatures(device="cpu")


def test_inception_download_failure_goes_through_the_real_downloader(empty_torch_home):
    # _download_weights itself runs; urlopen is refused by the _no_network fixture.
    start = time.monotonic()
    with pytest.raises(InceptionWeightsMissingError, match="network disabled in tests") as info:
        InceptionFeatures(device="cpu")
    assert time.monotonic() - start < 5.0
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    assert not empty_torch_home.exists()  # no partial file left behind
    assert list(empty_torch_home.parent.iterdir()) == []


def test_inception_constants_are_torch_fidelitys():
    assert INCEPTION_WEIGHTS_URL == URL_INCEPTION_V3
    assert URL_INCEPTION_V3.rsplit("/", 1)[1] == INCEPTION_WEIGHTS_FILENAME
    assert FeatureExtractorInceptionV3.get_default_feature_layer_for_metric("fid") == "2048"
    assert (
        FeatureExtractorInceptionV3.get_default_feature_layer_for_metric("isc") == "logits_unbiased"
    )


def test_inception_with_wrong_local_path_names_it(empty_torch_home, tmp_path, monkeypatch):
    monkeypatch.setattr(generation, "_download_weights", lambda *a: pytest.fail("downloaded"))
    wrong = tmp_path / "nowhere" / "inception.pth"
    with pytest.raises(InceptionWeightsMissingError) as info:
        InceptionFeatures(weights_path=wrong, device="cpu")
    message = str(info.value)
    assert str(wrong) in message
    assert "metrics.inception_weights" in message
    assert INCEPTION_WEIGHTS_URL in message


def test_inception_features_wrap_torch_fidelity(empty_torch_home, tmp_path, monkeypatch):
    """The wiring to torch-fidelity's extractor, with random weights (the real ones need a
    download): the staged file is what torch-fidelity loads, and the outputs are its '2048' and
    'logits_unbiased' features for uint8 RGB input."""
    staged = tmp_path / INCEPTION_WEIGHTS_FILENAME
    torch.save({}, staged)
    loaded = []
    monkeypatch.setattr(
        FeatureExtractorInceptionV3,
        "load_state_dict",
        lambda self, state_dict, *a, **k: loaded.append(state_dict),
    )
    extractor = InceptionFeatures(weights_path=staged, device="cpu")
    assert loaded == [{}]
    assert extractor.name == "inception-v3-compat"
    assert extractor.model.features_list == ["2048", "logits_unbiased"]

    images = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8)
    pool, logits = extractor.features(images)
    assert pool.shape == (1, 2048) and logits.shape == (1, 1008)
    direct = extractor.model(images)
    torch.testing.assert_close(pool, direct[0])
    torch.testing.assert_close(logits, direct[1])
    # Float input in [-1, 1] (one channel) is quantised to the same uint8 RGB.
    gray = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8)
    as_uint8 = ((gray + 1) * 127.5).round().to(torch.uint8).expand(-1, 3, -1, -1)
    torch.testing.assert_close(extractor.features(gray)[0], extractor.model(as_uint8)[0])

    info = extractor.describe()
    assert info["weights"] == str(staged) and info["weights_url"] == INCEPTION_WEIGHTS_URL
    assert info["features"] == {"fid": "2048", "is": "logits_unbiased"}
