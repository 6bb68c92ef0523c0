"""A from-scratch multi-layer perceptron in NumPy (no torch), verified against PyTorch.

- ``modules``: Linear, ReLU, Sigmoid, Tanh, SoftMax, CrossEntropy with explicit backward passes
- ``mlp``: ``MLP`` built from them (optionally a stack of S networks trained at once)
- ``optim``: per-sample / mini-batch / full-batch gradient descent, torch-equivalent
  SGD, Adam, AdamW, RMSprop, learning-rate schedules
- ``classifier``: ``NumpyMLPClassifier``, a scikit-learn estimator
- ``run``: ``model.backend = "numpy"`` for ``nnlab train`` and sweeps (same run folder as torch)

Nothing in this package imports torch (``tests/test_numpy_mlp.py`` checks it).
"""

from nnlab.numpy_mlp.classifier import NumpyMLPClassifier
from nnlab.numpy_mlp.mlp import MLP
from nnlab.numpy_mlp.modules import CrossEntropy, Linear, ReLU, Sigmoid, SoftMax, Tanh

__all__ = [
    "MLP",
    "CrossEntropy",
    "Linear",
    "NumpyMLPClassifier",
    "ReLU",
    "Sigmoid",
    "SoftMax",
    "Tanh",
]
