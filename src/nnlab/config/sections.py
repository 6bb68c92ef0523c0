"""The config keys: one dataclass per TOML section, with what each key means.

These are the contract sections of ARCHITECTURE.md (``[data]``, ``[model]``,
``[optim]``, ``[schedule]``, ``[train]``); a field's default is the bottom layer
of every config, and its type is what ``config.values.coerce`` makes of a TOML
value or a ``--set`` string. Add keys freely; never rename one. How the sections
resolve into a ``Config`` is the package (``config/__init__.py``); what values they may take,
``config/check.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    name: str = "moons"  # moons | circles | blobs | cifar10 | imagefolder | palindrome
    # toy sets: points; palindrome: distinct sequences, capped at the number that exist
    # (10^ceil((T+1)/2) for T input digits; summary.json records n_train and n_test)
    n_samples: int = 1000
    noise: float = 0.2  # moons, circles: std of the Gaussian noise
    centers: int = 3  # blobs: number of classes
    cluster_std: float = 1.0  # blobs: std of each cluster
    test_fraction: float = 0.2  # share of n_samples held out for testing (toy, palindrome)
    seed: int = -1  # data seed; -1 follows train.seed so each seed draws fresh data
    limit_train: int = 0  # use only the first N training examples (0 = all)
    limit_test: int = 0  # use only the first N test examples (0 = all)
    # Share of the training set held out for validation (0 = none). With it, model selection
    # (train.patience, restore_best, target_acc, best.pt) looks at val_acc, never at the test set.
    val_fraction: float = 0.0
    length: int = 5  # palindrome: number of input digits T
    one_hot: bool = False  # palindrome: 10-way one-hot digits instead of one scalar
    variant: str = "finite"  # palindrome: finite | stream
    # palindrome: training examples per epoch, a small set repeated (0 = one pass)
    epoch_size: int = 0
    dir: str = ""  # data folder (cifar10 cache, imagefolder root); "" = default
    image_size: int = 32  # imagefolder: images are resized to image_size x image_size
    # images: augmentations of the training batches, e.g. crop, flip, cutout
    augment: list[str] = field(default_factory=list)
    normalize: bool = True  # images: per-channel mean/std from the training set
    crop_padding: int = 4  # augment crop (reflect) / translate (zero fill): max shift in pixels
    cutout_size: int = 8  # augment cutout: side of the square zeroed in each image


@dataclass
class ModelConfig:
    # mlp | cnn | cnn-fast | rnn | lstm | gru, or a user's model "path/file.py:Class" (a relative
    # path is read from the TOML file's folder, or from the current one on the command line) or
    # "package.module:Class": an nn.Module returning logits (docs/user-models.md)
    name: str = "mlp"
    backend: str = "torch"  # torch | numpy (mlp only)
    # mlp: the hidden layers' widths; rnn, lstm, gru: [state size]
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "relu"  # relu | sigmoid | tanh | gelu
    dropout: float = 0.0  # mlp, cnn: dropout probability after hidden layers (0 = off)
    batchnorm: bool = False  # mlp, cnn: batch normalisation after each linear/conv layer
    # cnn: the layers as data, like timm's VGG cfgs (see nnlab/models/cnn.py): "64" conv3x3,
    # "R128" residual block, "M"/"M3" max-pool 2x2 / 3x3 stride 2, "A" avg-pool, "G"/"GM"
    # global avg/max pool, "F512" fully connected. The default is the course report's net.
    # cnn-fast: one width per conv group ("64,256,256"); "R512" a residual group of three convs.
    widths: list[str] = field(
        default_factory=lambda: ["64", "64", "M3", "128", "128", "M3", "F512"]
    )
    # rnn, lstm, gru: scratch (the cell's equations) | fused (torch.nn.RNN/LSTM/GRU)
    impl: str = "scratch"
    # rnn, lstm, gru: default (U(+-1/sqrt(hidden))) | orthogonal | identity (rnn's W_hh = I)
    # | auto (orthogonal for rnn, default for lstm and gru: what measured best on the palindromes)
    init: str = "default"
    forget_bias: float = 1.0  # lstm: forget-gate bias at init; remembering is the default
    # gru: update-gate bias at init (z = sigmoid(1) = 0.73 of h kept per step)
    update_bias: float = 1.0
    # lstm, gru: chrono init of those biases instead (Tallec & Ollivier, 2018): unit j keeps
    # its state ~u_j steps, u_j ~ U(1, T-1) with T = the sequence length (models/rnn.py)
    chrono: bool = False
    # a user's model: its constructor's keyword arguments, e.g. --set model.kwargs.width=128;
    # input_shape, n_inputs and n_classes come from the data when its constructor names them
    kwargs: dict = field(default_factory=dict)
    # backend numpy: "path/modules.py" whose Linear, ReLU/Sigmoid/Tanh and CrossEntropy classes
    # (nnlab.numpy_mlp.modules' forward/backward protocol) build the MLP ("" = nnlab's own)
    modules: str = ""
    # sha256 of the user's file (model.name FILE.py:Class or model.modules), filled in when the
    # config is resolved; training and resume refuse a file that has changed since ("" = fill in)
    sha256: str = ""


@dataclass
class OptimConfig:
    name: str = "adam"  # sgd | adam | adamw | rmsprop
    lr: float = 1e-3  # learning rate (the peak one under a schedule)
    weight_decay: float = 0.0  # L2 penalty (adamw: decoupled weight decay)
    momentum: float = 0.0  # sgd, rmsprop
    nesterov: bool = False  # sgd
    alpha: float = 0.99  # rmsprop smoothing constant
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam, adamw


@dataclass
class ScheduleConfig:
    name: str = "none"  # none | step | cosine | onecycle
    step_size: int = 100  # step: epochs between decays
    gamma: float = 0.1  # step: decay factor
    pct_start: float = 0.25  # onecycle, triangle: share of steps spent warming up
    min_lr: float = 0.0  # cosine, triangle: final learning rate
    start_factor: float = 0.2  # triangle: learning rate at step 0, as a share of optim.lr


@dataclass
class TrainConfig:
    epochs: int = 100  # passes over the training set (patience, target_acc may stop sooner)
    batch_size: int = 100  # training examples per step
    eval_every: int = 1  # evaluate every N epochs, and after the last
    # Seconds between checkpoints (checkpoints/last.pt): written at the first evaluation or
    # training step this long after the last one, and at the end, so a kill costs at most
    # this much training, also inside a long epoch (resume continues from that step).
    # 0: at every evaluation, never mid-epoch.
    checkpoint_every_s: float = 120.0
    clip_norm: float = 0.0  # clip the global gradient norm to this (0 = off)
    patience: int = 0  # stop after N evaluations without a better test_acc (0 = off)
    restore_best: bool = False  # with patience: end on the best checkpoint, not the last
    target_acc: float = 0.0  # stop at the first evaluation with test_acc >= this (0 = off)
    label_smoothing: float = 0.0  # cross-entropy label smoothing (0 = off)
    seed: int = 0  # seeds the weights, the batch order and (data.seed = -1) the data
    # Warm start: a run folder (its checkpoints/last.pt) or a checkpoint file whose model
    # weights this run starts from; the model.* settings must match. Optimizer, schedule and
    # counters start fresh. E.g. a length curriculum on the palindromes (docs/palindrome.md).
    init_from: str = ""
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int = 0  # CPU threads for torch (0 = pick for the model's size)
    # PyTorch's deterministic algorithms (bit-identical GPU reruns, somewhat slower).
    # CPU runs are deterministic already: same config + seed -> same metrics and weights.
    deterministic: bool = False
    # auto: bf16 autocast / channels_last on CUDA (channels_last for image models only),
    # and for image models on CPUs with native bf16 units, AMX or AVX512-BF16 (4x faster
    # for seed-cnn on a 2-core Xeon); off on other CPUs and on MPS. on | off force them.
    amp: str = "auto"
    channels_last: str = "auto"  # auto | on | off, as amp: the channels_last memory format
    # Also write TensorBoard event files (scalars per evaluation, the config, the model
    # graph) into the run folder; needs the optional `tensorboard` extra (nnlab/engine/tensorboard_log.py).
    tensorboard: bool = False
    # Speed (docs/performance.md). torch.compile the training forward/backward; the one-off
    # compile (a warm-up step) is timed apart and recorded as compile_seconds in summary.json.
    compile: bool = False
    # torch.compile mode: default | reduce-overhead (CUDA graphs: replays each step's kernels
    # with one launch; for small-batch recipes like seed-cnn; CUDA only) | max-autotune.
    compile_mode: str = "default"
    # Small MLPs: a training step with hand-derived gradients instead of autograd
    # (nnlab/engine/manual_step.py; same arithmetic, ~2x less per-step overhead on a CPU).
    # auto: whenever the run qualifies; on: insist (one-line error saying why not); off: autograd.
    manual_step: str = "auto"
    # Test-time augmentation for image data, at every evaluation (nnlab/engine/tta.py):
    # 0 off; 1 average the logits of each image and its mirror; 2 also of 1-px translations.
    tta: int = 0
    # Average of the weights (nnlab/engine/ema.py): an exponential moving average with this decay
    # per update (0 = off), updated every ema_every steps; evaluations and the final model
    # use the average. lookahead: also pull the training weights to it at each update.
    ema: float = 0.0
    ema_every: int = 1  # steps between updates of the weight average
    lookahead: bool = False  # pull the training weights to the average at each update


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "train": TrainConfig,
}
