"""The scikit-learn estimator (scikit-learn's own checks, and digits) and the PyTorch module."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import newton_wgpu as nw
from newton_wgpu.sklearn import CNNClassifier


# scikit-learn's checks, on feature rows (taken as 1×1×F images, a dense network) and their
# own small data sets; check_array_api_input and check_classifier_data_not_an_array skip
# themselves without SCIPY_ARRAY_API and pandas, which this package does not need.
@parametrize_with_checks([CNNClassifier(max_iter=3)])
def test_scikit_learn_checks(estimator, check):
    check(estimator)


def test_the_classifier_learns_digits_with_any_labels(digits):
    X, y, X_test, y_test = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = CNNClassifier(network="cnn4-small", max_iter=5, options={"lambda": 0.1}).fit(X[:1000], names[y[:1000]])
    assert set(clf.classes_) == set(names) and clf.n_iter_ == 5 and len(clf.history_) == 6
    assert clf.score(X_test[:500], names[y_test[:500]]) > 0.6
    proba = clf.predict_proba(X_test[:20])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert list(clf.predict(X_test[:20])) == list(clf.classes_[np.argmax(proba, axis=1)])


SMOOTH = [{"type": "conv", "kernel": 3, "channels": 4, "padding": 1}, {"type": "tanh"},
          {"type": "maxpool", "size": 2}, {"type": "conv", "kernel": 3, "channels": 4, "stride": 2},
          {"type": "sigmoid"}, {"type": "avgpool", "size": 3, "stride": 2, "padding": 1},
          {"type": "conv", "kernel": 1, "channels": 8}, {"type": "global_avgpool"}, {"type": "dense", "units": 10}]


# Every operation residual networks add, with weights that start nonzero (no Fixup gains).
RESIDUAL = [{"type": "conv", "kernel": 3, "channels": 4, "padding": 1, "bias": False},
            {"type": "affine", "scale": [0.5, -1.0, 2.0, 1.0], "shift": [0.1, 0.0, -0.2, 0.3]}, {"type": "bias"},
            {"type": "residual", "body": [{"type": "conv", "kernel": 3, "channels": 4, "padding": 1}, {"type": "relu"},
                                          {"type": "scale"}]},
            {"type": "residual", "body": [{"type": "conv", "kernel": 3, "channels": 8, "stride": 2, "padding": 1}],
             "shortcut": [{"type": "subsample", "stride": 2, "channels": 8}]},
            {"type": "residual", "body": [{"type": "conv", "kernel": 3, "channels": 6, "padding": 1}],
             "shortcut": [{"type": "conv", "kernel": 1, "channels": 6, "bias": False}]},
            {"type": "relu"}, {"type": "global_avgpool"}, {"type": "dense", "units": 10}]


# The residual networks on standardised inputs: the module divides by `input_std` too.
@pytest.mark.parametrize("network, standardize", [(nw.Network.builtin("cnn4-small"), False),
                                                  (nw.Network.from_layers(SMOOTH), False),
                                                  (nw.Network.builtin("resnet8"), True),
                                                  (nw.Network.from_layers(RESIDUAL), True)])
def test_the_pytorch_module_gives_the_same_logits(digits, network, standardize):
    torch = pytest.importorskip("torch", reason="torch is not installed: the PyTorch parity is not checked")
    from newton_wgpu.torch import to_module

    X, y, X_test, _ = digits
    model = nw.train(network, X[:300], y[:300], options={"iters": 2}, standardize=standardize).model
    assert ("input_std" in model.state_dict()) == standardize
    module = to_module(model)
    with torch.no_grad():
        theirs = module(torch.from_numpy(X_test[:64])).numpy()
    ours = model.predict_logits(X_test[:64])
    np.testing.assert_allclose(theirs, ours, atol=1e-4 * np.abs(ours).max())


def test_a_resnet_model_loads_into_fixups_own_module(digits, tmp_path):
    pytest.importorskip("torch", reason="torch is not installed: the Fixup module is not checked")
    import subprocess
    import sys

    from conftest import ROOT

    X, y, _, _ = digits
    model = nw.train(nw.Network.builtin("resnet8"), X[:100], y[:100], options={"iters": 2, "lambda": 0.01},
                     standardize=True).model
    path = tmp_path / "resnet8.safetensors"
    model.save(path)
    script = ROOT / "python" / "examples" / "fixup_resnet_torch.py"
    done = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "26 tensors loaded into Fixup's ResNet-8 (strict)" in done.stdout, done.stdout
