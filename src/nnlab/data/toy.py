"""2-D toy datasets from scikit-learn: make_moons, make_circles, make_blobs.

Each is generated with the data seed, split train/test (stratified, so a small
test set keeps the class balance), and standardised with statistics of the
training split only, so nothing about the test set leaks into training.
"""

from __future__ import annotations

import numpy as np
import torch

from nnlab.config import DataConfig
from nnlab.data import DataBundle


def make_toy(cfg: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate, split and standardise; returns float32 X_train, X_test and int64 y_train, y_test."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    if cfg.name == "moons":
        x, y = datasets.make_moons(n_samples=cfg.n_samples, noise=cfg.noise, random_state=seed)
    elif cfg.name == "circles":
        # factor 0.5: the inner circle at half the radius, as in scikit-learn's examples.
        x, y = datasets.make_circles(
            n_samples=cfg.n_samples, noise=cfg.noise, factor=0.5, random_state=seed
        )
    elif cfg.name == "blobs":
        x, y = datasets.make_blobs(
            n_samples=cfg.n_samples,
            centers=cfg.centers,
            cluster_std=cfg.cluster_std,
            random_state=seed,
        )
    else:
        raise ValueError(f"not a toy dataset: {cfg.name}")
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=cfg.test_fraction, random_state=seed, stratify=y
    )
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-12
    return (
        ((x_tr - mean) / std).astype(np.float32),
        ((x_te - mean) / std).astype(np.float32),
        y_tr.astype(np.int64),
        y_te.astype(np.int64),
    )


def load_toy(cfg: DataConfig, seed: int) -> DataBundle:
    x_tr, x_te, y_tr, y_te = make_toy(cfg, seed)
    n_classes = cfg.centers if cfg.name == "blobs" else 2
    return DataBundle(
        x_train=torch.from_numpy(x_tr),
        y_train=torch.from_numpy(y_tr),
        x_test=torch.from_numpy(x_te),
        y_test=torch.from_numpy(y_te),
        n_classes=n_classes,
        input_shape=(2,),
        class_names=[str(c) for c in range(n_classes)],
    )
