"""Models: plain ``nn.Module``s that return logits, found through the registry."""

from __future__ import annotations

# The model names the registry will hold once the modules below are imported.
# Listed here so config validation can check a name without importing torch.
_MODEL_MODULES = {
    "mlp": "nnlab.models.mlp",
    "rnn": "nnlab.models.rnn",
    "lstm": "nnlab.models.rnn",
    "gru": "nnlab.models.rnn",
    "cnn": "nnlab.models.cnn",
    "cnn-fast": "nnlab.models.fast_cnn",
}


def model_names() -> list[str]:
    return sorted(_MODEL_MODULES)


def build_model(cfg, input_shape: tuple[int, ...], n_classes: int):
    """Import the module that registers ``cfg.name`` and build the model."""
    import importlib

    from nnlab.models.registry import create_model

    if cfg.name in _MODEL_MODULES:
        importlib.import_module(_MODEL_MODULES[cfg.name])
    return create_model(cfg, input_shape, n_classes)
