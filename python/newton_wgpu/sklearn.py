"""A scikit-learn classifier trained by Newton-CG, SGN or SGD on the GPU.

    from newton_wgpu.sklearn import CNNClassifier
    clf = CNNClassifier(network="cnn4-small", max_iter=10).fit(X, y)   # X: (N, C, H, W) or (N, F)
    clf.score(X_test, y_test)
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from ._core import Network, train


class CNNClassifier(ClassifierMixin, BaseEstimator):
    """A network trained as `newton_wgpu.train` trains it, with scikit-learn's conventions:
    any labels (encoded as 0..K−1, `classes_`), images (N, C, H, W) or (N, H, W), or feature
    rows (N, F), which are taken as 1×1×F images.

    network: a built-in name (sized for the classes found), a `Network`, or None: cnn4-small
    for images of at least 8×8, else a dense network with one hidden layer of `hidden` units.
    max_iter: Newton iterations, or SGD and SGN epochs (the `options` may set the rest).
    standardize: divide the inputs by each channel's standard deviation as well (`train`'s)."""

    def __init__(
        self,
        network: Union[None, str, Network] = None,
        optimizer: str = "newton",
        loss: str = "ce",
        c: float = 0.01,
        max_iter: int = 20,
        options: Optional[Dict[str, Any]] = None,
        hidden: int = 32,
        seed: int = 0,
        device: Any = None,
        standardize: bool = False,
    ):
        self.network = network
        self.optimizer = optimizer
        self.loss = loss
        self.c = c
        self.max_iter = max_iter
        self.options = options
        self.hidden = hidden
        self.seed = seed
        self.device = device
        self.standardize = standardize

    def _images(self, X: Any, fitting: bool) -> np.ndarray:
        X = check_array(X, allow_nd=True, dtype=np.float32, order="C")
        if fitting:
            self.n_features_in_ = int(np.prod(X.shape[1:]))
        elif int(np.prod(X.shape[1:])) != self.n_features_in_:
            raise ValueError(
                f"X has {int(np.prod(X.shape[1:]))} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        if X.ndim == 2:
            return X.reshape(len(X), 1, 1, X.shape[1])
        if X.ndim in (3, 4):
            return X
        raise ValueError(f"X: expected (N, F), (N, H, W) or (N, C, H, W), found shape {X.shape}")

    def _network(self, images: np.ndarray, classes: int) -> Network:
        if isinstance(self.network, Network):
            return self.network
        if isinstance(self.network, str):
            return Network.builtin(self.network, classes=classes)
        height, width = images.shape[-2:]
        if height >= 8 and width >= 8:
            return Network.builtin("cnn4-small", classes=classes)
        layers = [{"type": "flatten"}, {"type": "dense", "units": int(self.hidden)}, {"type": "relu"},
                  {"type": "dense", "units": classes}]
        return Network.from_layers(layers)

    def fit(self, X: Any, y: Any) -> "CNNClassifier":
        X, y = check_X_y(X, y, allow_nd=True, dtype=np.float32, order="C")
        check_classification_targets(y)
        images = self._images(X, fitting=True)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; got 1 class")
        steps = "iters" if self.optimizer == "newton" else "epochs"
        options = {steps: int(self.max_iter), **(self.options or {})}
        result = train(self._network(images, len(self.classes_)), images, encoded, optimizer=self.optimizer,
                       loss=self.loss, c=self.c, options=options, seed=self.seed, device=self.device,
                       standardize=self.standardize)
        self.model_ = result.model
        self.history_ = result.history
        self.n_iter_ = len(result.history) - 1
        return self

    def _logits(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return self.model_.predict_logits(self._images(X, fitting=False), self.device)

    def decision_function(self, X: Any) -> np.ndarray:
        """The network's outputs, (N, K); for two classes, as scikit-learn's binary
        classifiers give it, the second's minus the first's, (N,)."""
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X: Any) -> np.ndarray:
        """The softmax of the outputs (the probabilities cross-entropy trains for)."""
        logits = self._logits(X).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        logits = self._logits(X)
        return self.classes_[np.argmax(logits, axis=1)]
