"""A finished run's model and data, rebuilt from its folder (for ``nnlab.Run``).

The model is built from the run's ``config.toml`` and loaded from the checkpoint
the run reports (``RunFolder.checkpoint_path``) with ``weights_only=True``; the
data is loaded as the run loaded it (same seed, same limits), and scored as the
run scored it (normalisation, ``train.tta``).
"""

from __future__ import annotations

from typing import Any

import torch

from nnlab.config import Config
from nnlab.config.user_code import is_user_model
from nnlab.data import DataBundle, load_data
from nnlab.errors import ConfigError, RunError
from nnlab.runs import RunFolder, load_checkpoint
from nnlab.runs.files import check_weights_fit


def run_data(cfg: Config) -> DataBundle:
    """The run's train and test splits, loaded as the run loaded them."""
    return load_data(cfg.data, cfg.train.seed)


def load_run_model(
    folder: RunFolder, which: str = "final", device: str = "cpu", model_class: type | None = None
) -> Any:
    """``final`` (what ``final_test_acc`` measured: ``best`` when the run restored its best
    checkpoint, else ``last``), ``best`` or ``last``. A NumPy backend run gives its
    ``nnlab.numpy_mlp`` MLP (``.forward(x)`` -> logits), also one trained with a user's
    ``model.modules`` (same weights, nnlab's own modules). A checkpoint that is not an nnlab
    checkpoint, or whose weights do not fit the model config.toml builds, is a one-line
    RunError naming the file (and the keys that differ).

    A user's model (``model.name = FILE.py:Class``) is never imported from the name in a
    run folder: the caller passes the class (``model_class``), which is built with the
    run's ``model.kwargs`` and loaded with its weights; without it, a one-line RunError."""
    if which not in ("final", "best", "last"):
        raise ConfigError(f"which: must be one of final, best, last, got {which!r}")
    path = folder.checkpoint_path("reported" if which == "final" else which)
    cfg = folder.load_config()
    if cfg.model.backend == "numpy":
        from nnlab.numpy_mlp.mlp import load_model

        return load_model(path)
    from nnlab.models import build_model

    if is_user_model(cfg.model.name) and model_class is None:
        raise RunError(
            f"{folder.path}: its model is the user's {cfg.model.name}; nnlab does not import "
            "code named inside a run folder: import the class yourself and pass it, "
            "run.load_model(model_class=YourClass)"
        )
    state = load_checkpoint(path, map_location=device)
    data = run_data(cfg)  # the model's input shape and class count come from its data
    if model_class is not None:
        from nnlab.models.user import construct_model

        model = construct_model(
            model_class, dict(cfg.model.kwargs), data.input_shape, data.n_classes
        )
    else:
        model = build_model(cfg.model, data.input_shape, data.n_classes)
    check_weights_fit(state["model"], model, path)  # another architecture's checkpoint: one line
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def infer_run(cfg: Config, model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, n_classes)`` and labels ``(N,)`` of the run's test split, on the CPU."""
    data = run_data(cfg)
    if cfg.model.backend == "numpy":  # nnlab.numpy_mlp: (N, D) float arrays in, logits out
        logits = model.forward(data.x_test.numpy().reshape(len(data.y_test), -1))
        return torch.from_numpy(logits), data.y_test
    from nnlab.engine.loaders import make_loaders
    from nnlab.engine.loop import infer

    _, test_loader = make_loaders(cfg, data, torch.device("cpu"))
    return infer(model, test_loader, tta=cfg.train.tta)
