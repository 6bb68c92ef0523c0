"""Reference accuracies on nnlab's own make_moons splits (seeds 0-9), for scale.

Uses exactly the data ``nnlab train moons --seeds 10`` sees (``nnlab.data.toy.make_toy``:
1000 points, noise 0.2, stratified 80/20 split, standardised with training
statistics), and fits scikit-learn's RBF-kernel SVM and MLPClassifier(20) on it.

    python benchmarks/moons_references.py [--seeds 10]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

from nnlab.config import load_config
from nnlab.data.toy import make_toy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    cfg = load_config("moons").data
    models = {
        "SVC(kernel='rbf')": lambda seed: SVC(kernel="rbf"),
        "MLPClassifier(hidden_layer_sizes=(20,))": lambda seed: MLPClassifier(
            (20,), max_iter=2000, random_state=seed
        ),
    }
    warnings.simplefilter("ignore", ConvergenceWarning)
    print(
        f"make_moons n={cfg.n_samples} noise={cfg.noise}, test_fraction={cfg.test_fraction}, seeds 0..{args.seeds - 1}"
    )
    print("| model | test accuracy, mean +- std (n) |")
    print("|---|---|")
    for name, make in models.items():
        accs = []
        for seed in range(args.seeds):
            x_tr, x_te, y_tr, y_te = make_toy(cfg, seed)
            accs.append(make(seed).fit(x_tr, y_tr).score(x_te, y_te))
        print(f"| {name} | {np.mean(accs):.4f} +- {np.std(accs, ddof=1):.4f} (n={len(accs)}) |")


if __name__ == "__main__":
    main()
