"""The recurrent models: the report's cell exactly, scratch == fused, initialisation, bad configs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnlab.config import load_config
from nnlab.errors import ConfigError
from nnlab.models import build_model
from nnlab.models.rnn import RecurrentClassifier, copy_weights
from nnlab.models.rnn_cells import LSTMSequence


def _pair(kind: str, input_size: int, hidden: int = 7, seed: int = 0, **kw):
    """A scratch model with random weights (biases too) and a fused copy, both float64."""
    torch.manual_seed(seed)
    scratch = RecurrentClassifier(kind, input_size, hidden, 10, impl="scratch", **kw).double()
    with torch.no_grad():
        for p in scratch.parameters():  # non-zero biases too, so every term is exercised
            p.uniform_(-0.6, 0.6)
    fused = RecurrentClassifier(kind, input_size, hidden, 10, impl="fused").double()
    copy_weights(scratch, fused)
    return scratch, fused


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("input_size", [1, 10])
@pytest.mark.parametrize("length", [1, 9])
def test_scratch_and_fused_agree_on_outputs_and_gradients(kind, input_size, length):
    scratch, fused = _pair(kind, input_size)
    x = torch.randn(5, length, input_size, dtype=torch.float64) * 2
    y = torch.randint(0, 10, (5,))
    out_s, out_f = scratch(x), fused(x)
    if kind == "lstm":  # its gradients below come from the hand-written backward
        assert type(scratch.core(x).grad_fn).__name__ == "LSTMSequenceBackward"
    torch.testing.assert_close(out_s, out_f, rtol=0, atol=1e-6)
    F.cross_entropy(out_s, y).backward()
    F.cross_entropy(out_f, y).backward()
    (gx_s, gh_s, gb_s, gbh_s), (gx_f, gh_f, gb_f, gbh_f) = (
        [None if p is None else p.grad for p in m.core.layout()] for m in (scratch, fused)
    )
    torch.testing.assert_close(gx_s, gx_f, rtol=0, atol=1e-6)
    torch.testing.assert_close(gh_s, gh_f, rtol=0, atol=1e-6)
    torch.testing.assert_close(gb_s, gb_f, rtol=0, atol=1e-6)
    # one bias in the scratch RNN/LSTM: both fused biases get its gradient
    torch.testing.assert_close(gbh_s if gbh_s is not None else gb_s, gbh_f, rtol=0, atol=1e-6)
    for p_s, p_f in zip(scratch.head.parameters(), fused.head.parameters(), strict=True):
        torch.testing.assert_close(p_s.grad, p_f.grad, rtol=0, atol=1e-6)


def test_rnn_is_the_reports_equations():
    scratch, _ = _pair("rnn", 1, hidden=4)
    cell = scratch.core
    x = torch.randn(3, 6, 1, dtype=torch.float64)
    h = torch.zeros(3, 4, dtype=torch.float64)  # h_0 = 0
    for t in range(6):
        h = torch.tanh(x[:, t] @ cell.W_hx.T + h @ cell.W_hh.T + cell.b_h)
    o = h @ scratch.head.weight.T + scratch.head.bias  # o = W_ph h_T + b_o: logits, no softmax
    torch.testing.assert_close(scratch(x), o)
    assert {n for n, _ in scratch.named_parameters()} == {
        "core.W_hx",
        "core.W_hh",
        "core.b_h",
        "head.weight",
        "head.bias",
    }


def test_lstm_is_the_gate_equations():
    scratch, _ = _pair("lstm", 2, hidden=3)
    cell = scratch.core
    x = torch.randn(2, 4, 2, dtype=torch.float64)
    h = c = torch.zeros(2, 3, dtype=torch.float64)
    W_x, W_h, b = (w.split(3) for w in (cell.W_x, cell.W_h, cell.b))  # blocks i, f, g, o
    for t in range(4):
        i, f, g, o = (
            x[:, t] @ wx.T + h @ wh.T + bb for wx, wh, bb in zip(W_x, W_h, b, strict=True)
        )
        g, i, f, o = torch.tanh(g), torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
        c = g * i + c * f
        h = torch.tanh(c) * o
    torch.testing.assert_close(scratch.core(x), h)


@pytest.mark.parametrize("input_size", [1, 2])
@pytest.mark.parametrize("length", [1, 4])
def test_lstm_hand_written_backward_passes_gradcheck(input_size, length):
    """LSTMSequence's backward against finite differences, for x, W_x, W_h and b (float64)."""
    torch.manual_seed(0)
    B, H = 3, 5
    x = torch.randn(B, length, input_size, dtype=torch.float64, requires_grad=True)
    w_x, w_h, b = (
        (torch.randn(*shape, dtype=torch.float64) * 0.8).requires_grad_()
        for shape in ((4 * H, input_size), (4 * H, H), (4 * H,))
    )
    assert torch.autograd.gradcheck(LSTMSequence.apply, (x, w_x, w_h, b))
    # no gradient asked for x (the usual case: data): only the weights' are computed
    x.requires_grad_(False)
    assert torch.autograd.gradcheck(LSTMSequence.apply, (x, w_x, w_h, b))


@pytest.mark.parametrize("impl", ["scratch", "fused"])
def test_init_forget_bias_and_identity(impl):
    lstm = RecurrentClassifier("lstm", 1, 8, 10, impl=impl, forget_bias=2.5)
    b = lstm.core.layout()[2]
    assert torch.all(b[8:16] == 2.5) and torch.all(b[:8] == 0) and torch.all(b[16:] == 0)
    rnn = RecurrentClassifier("rnn", 1, 8, 10, impl=impl, init="identity")
    assert torch.equal(rnn.core.layout()[1], torch.eye(8))
    # the GRU's update gate (rows z = H..2H) takes update_bias, not forget_bias
    gru = RecurrentClassifier("gru", 1, 8, 10, impl=impl, forget_bias=2.5, update_bias=-0.5)
    b = gru.core.layout()[2]
    assert torch.all(b[8:16] == -0.5) and torch.all(b[:8] == 0) and torch.all(b[16:] == 0)
    gru = RecurrentClassifier("gru", 1, 8, 10, impl=impl, init="orthogonal")
    w_h = gru.core.layout()[1]
    for block in w_h.split(8):
        torch.testing.assert_close(block @ block.T, torch.eye(8), atol=1e-5, rtol=0)


def test_same_seed_same_initial_function_for_both_impls():
    x = torch.randn(4, 5, 1)
    for kind in ("rnn", "lstm", "gru"):
        torch.manual_seed(3)
        a = RecurrentClassifier(kind, 1, 6, 10, impl="scratch")
        b = RecurrentClassifier(kind, 1, 6, 10, impl="fused")
        copy_weights(a, b)
        torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=0)


def test_model_config_errors():
    cfg = load_config("moons", ["model.name=rnn", "model.hidden=8,8"])
    with pytest.raises(ConfigError, match="model.hidden"):
        build_model(cfg.model, (5, 1), 10)
    cfg = load_config("moons", ["model.name=lstm"])
    with pytest.raises(ConfigError, match="sequences"):
        build_model(cfg.model, (2,), 10)
    cfg = load_config("moons", ["model.name=gru", "model.init=identity", "model.hidden=8"])
    with pytest.raises(ConfigError, match="model.init"):
        build_model(cfg.model, (5, 1), 10)
    with pytest.raises(ConfigError, match="model.impl"):
        load_config("moons", ["model.impl=cudnn"])


def test_init_auto_is_orthogonal_for_rnn_and_default_for_gated_cells():
    for kind, same_as in (("rnn", "orthogonal"), ("lstm", "default"), ("gru", "default")):
        torch.manual_seed(5)
        auto = RecurrentClassifier(kind, 1, 6, 10, init="auto")
        torch.manual_seed(5)
        explicit = RecurrentClassifier(kind, 1, 6, 10, init=same_as)
        for a, b in zip(auto.state_dict().values(), explicit.state_dict().values(), strict=True):
            assert torch.equal(a, b), kind


def test_chrono_init_scales_the_gate_biases_to_the_length():
    for kind in ("lstm", "gru"):
        b = RecurrentClassifier(kind, 1, 32, 10, chrono=50).core.layout()[2]
        keep = b[32:64]  # forget gate (LSTM), update gate (GRU)
        assert keep.min() >= 0 and keep.max() <= math.log(49) + 1e-6 and keep.std() > 0.3
        assert torch.equal(b[:32], -keep) if kind == "lstm" else torch.all(b[:32] == 0)
        assert torch.all(b[64:] == 0)
    # through the config: T comes from the data (here 7 digits: u ~ U(1, 6))
    cfg = load_config("palindrome", ["model.name=gru", "model.chrono=true", "data.length=7"])
    model = build_model(cfg.model, (7, 1), 10)
    keep = model.core.layout()[2][64:128]
    assert keep.min() >= 0 and keep.max() <= math.log(6) + 1e-6
