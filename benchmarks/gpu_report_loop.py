"""The course report's CNN training loop, as the report wrote it (with its defects fixed), for timing.

What makes it "report-style" (and slow per step on a GPU): a ``DataLoader``
over a ``TensorDataset`` of float32 NCHW tensors (collated 32 examples at a
time in Python), eager PyTorch in float32, batch 32, Adam 5e-4 with weight
decay 1e-3, and a ``loss.item()`` / accuracy ``.item()`` every step (the
report's ``losses.update(loss.item(), ...)``), each of which waits for the GPU.
Fixed as in nnlab's presets: logits go straight into ``CrossEntropyLoss``,
targets are class indices, one mini-batch per step.

    python benchmarks/gpu_report_loop.py --epochs 3 [--limit-train N]   (uses nnlab's data loading)

``benchmarks/gpu.sh`` imports ``report_loop`` and runs it beside nnlab's ``seed-cnn``.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class ReportCNN(nn.Module):
    """The report's reduced VGG: conv64-conv64-maxpool(3,2)-conv128-conv128-maxpool(3,2)-fc512-fc10."""

    def __init__(self, n_channels: int = 3, n_classes: int = 10) -> None:
        super().__init__()
        self.conv_layers = nn.Sequential(
            nn.Conv2d(n_channels, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 128, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(128, 128, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.fc_layers = nn.Sequential(
            nn.Linear(128 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_layers(self.conv_layers(x).flatten(1))


def to_float(x_uint8: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 normalised per channel, like ToTensor + Normalize."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x_uint8.float() / 255 - m) / s


def report_loop(
    data, device: torch.device, epochs: int, seed: int = 0, log=print
) -> list[dict[str, float]]:
    """Train the report's CNN the report's way; one dict per epoch: train seconds, train/test accuracy."""
    torch.manual_seed(seed)
    mean, std = data.normalization
    # As the report did: the whole split as float32 tensors moved to the device, then a TensorDataset.
    x_train = to_float(data.x_train, mean, std).to(device)
    y_train = data.y_train.to(device)
    x_test, y_test = to_float(data.x_test, mean, std).to(device), data.y_test.to(device)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=32, shuffle=True)
    model = ReportCNN().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-3)
    rows = []
    for epoch in range(1, epochs + 1):
        model.train()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        loss_sum = correct = seen = 0.0
        for batch_inputs, batch_targets in loader:
            batch_inputs, batch_targets = batch_inputs.to(device), batch_targets.to(device)
            outputs = model(batch_inputs)
            loss = criterion(outputs, batch_targets)
            acc = (outputs.argmax(1) == batch_targets).float().mean().item()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(batch_targets)
            correct += acc * len(batch_targets)
            seen += len(batch_targets)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        model.eval()
        with torch.no_grad():  # evaluation is not timed: the comparison is of training epochs
            test_correct = sum(
                (model(xb).argmax(1) == yb).sum().item()
                for xb, yb in zip(x_test.split(1000), y_test.split(1000), strict=True)
            )
        rows.append(
            {
                "epoch": epoch,
                "seconds": seconds,
                "train_loss": loss_sum / seen,
                "train_acc": correct / seen,
                "test_acc": test_correct / len(y_test),
            }
        )
        log(
            f"  report-style epoch {epoch}: {seconds:.2f} s, train_loss {loss_sum / seen:.4f}, test_acc {rows[-1]['test_acc']:.4f}"
        )
    return rows


if __name__ == "__main__":
    import argparse

    from nnlab.config import load_config
    from nnlab.data import load_data

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--archive", required=True, help="the JPEG CIFAR-10 .tar.gz (an ImageFolder tree)"
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit-train", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    cfg = load_config(
        "seed-cnn",
        {"data.name": "imagefolder", "data.dir": a.archive, "data.limit_train": a.limit_train},
    )
    report_loop(load_data(cfg.data, 0), torch.device(a.device), a.epochs)
