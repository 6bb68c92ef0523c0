"""NumpyMLPClassifier: scikit-learn's own estimator checks, its accuracy target, and bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from nnlab.config import DataConfig
from nnlab.data.toy import make_toy
from nnlab.numpy_mlp import NumpyMLPClassifier

# Every check passes: nothing is expected to fail. (A check that ever must be
# skipped goes here, with the reason, as {check name: reason}.)
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


# Fewer epochs than the defaults keep the ~50 checks (hundreds of fits) fast;
# the checks are about the API and input handling, not accuracy.
@parametrize_with_checks(
    [NumpyMLPClassifier(max_epochs=15, random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_defaults_reach_097_on_moons():
    """The target: mean test accuracy >= 0.970 on make_moons (1000 pts, noise 0.2, 80/20), seeds 0-9."""
    accs = []
    for seed in range(10):
        x_tr, x_te, y_tr, y_te = make_toy(
            DataConfig(name="moons", n_samples=1000, noise=0.2, test_fraction=0.2), seed
        )
        accs.append(NumpyMLPClassifier(random_state=seed).fit(x_tr, y_tr).score(x_te, y_te))
    assert np.mean(accs) >= 0.970, accs


def test_any_label_values_and_a_pipeline():
    x, _, y, _ = make_toy(DataConfig(name="blobs", n_samples=300), 0)
    labels = np.array(["cat", "dog", "emu"])[y]
    clf = NumpyMLPClassifier(max_epochs=30, random_state=0).fit(x, labels)
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    assert set(clf.predict(x)) <= set(labels) and clf.score(x, labels) > 0.9
    proba = clf.predict_proba(x)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    assert (
        cross_val_score(NumpyMLPClassifier(max_epochs=10, random_state=0), x, labels, cv=3).mean()
        > 0.8
    )


def test_random_state_reproduces_and_pickle_round_trips():
    x, _, y, _ = make_toy(DataConfig(name="moons"), 1)
    a = NumpyMLPClassifier(max_epochs=5, random_state=7).fit(x, y)
    b = clone(a).fit(x, y)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(a.predict_proba(x), c.predict_proba(x))
    assert c.set_params(max_epochs=1).get_params()["max_epochs"] == 1


@pytest.mark.parametrize(
    "batch_size", [1, 16, None], ids=["per-sample", "mini-batch", "full-batch"]
)
def test_every_form_of_gradient_descent_learns(batch_size):
    x, x_te, y, y_te = make_toy(DataConfig(name="blobs", n_samples=200), 0)
    epochs = {1: 5, 16: 20, None: 200}[batch_size]
    clf = NumpyMLPClassifier(
        solver="sgd", learning_rate=0.05, batch_size=batch_size, max_epochs=epochs, random_state=0
    )
    assert clf.fit(x, y).score(x_te, y_te) > 0.9
    assert clf.loss_curve_[-1] < 0.5 * np.log(3)  # well below chance level (uniform over 3 classes)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]]), [0, 1], "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), [0, 1], "infinity"),
        (np.ones((4, 2)), [1, 1, 1, 1], "class"),
        (np.ones((4, 2)), [0, 1, 0], "inconsistent numbers of samples"),
        (np.ones((4, 2, 2)), [0, 1, 0, 1], "dim 3"),
        (np.ones((4, 2)), [0.5, 1.5, 0.1, 2.2], "Unknown label type"),
    ],
    ids=["nan", "inf", "one-class", "lengths", "3-d", "continuous-y"],
)
def test_bad_input_raises_like_sklearn(x, y, match):
    with pytest.raises(ValueError, match=match):
        NumpyMLPClassifier(max_epochs=1).fit(x, np.asarray(y))


@pytest.mark.parametrize(
    "param",
    [{"activation": "gelu"}, {"solver": "lbfgs"}, {"hidden_layer_sizes": (0,)}, {"batch_size": 0}],
)
def test_bad_params_raise_value_error(param):
    with pytest.raises(ValueError):
        NumpyMLPClassifier(max_epochs=1, **param).fit(np.eye(4), [0, 1, 0, 1])
