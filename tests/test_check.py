"""``nnlab check``: numerical gradient checks of NumPy modules, checks of torch models.

What is proved: correct modules (the fixture's and nnlab's own) pass every check; the
two classic mistakes (a softmax backward that keeps only the Jacobian's diagonal, a
cross-entropy gradient without the 1/N of its mean) fail exactly the check they break,
as does a loss that sums over the batch; a correct torch MLP passes, a layer that never
reaches the output and a wrong output shape fail; many files give one table (``--csv``
one row per check) and exit 1 on a failure; one file that cannot be read is one line, exit 2.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

import nnlab
from conftest import assert_one_line_error
from nnlab.errors import ConfigError
from nnlab.experiments.checks import COLUMNS
from nnlab.numpy_mlp.gradcheck import TOLERANCE, numerical_gradient, rel_error

FIXTURES = Path(__file__).parent / "fixtures" / "user_models"
NNLAB_MODULES = Path(nnlab.__file__).parent / "numpy_mlp" / "modules.py"
LAYERS = {"Linear", "ReLU", "Sigmoid", "Tanh", "SoftMax", "CrossEntropy"}


def _by_check(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["module"], r["check"]): r for r in rows}


def test_the_numerical_gradient_and_the_course_relative_error():
    x = np.array([1.0, -2.0, 0.5])
    grad = numerical_gradient(lambda: float(np.sum(x**3)), x)
    assert rel_error(grad, 3 * x**2) < 1e-8
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0  # both ~0: the 1e-8 floor
    assert rel_error(np.array([1.0]), np.array([2.0])) == pytest.approx(1 / 3)


@pytest.mark.parametrize("path", [FIXTURES / "modules_ok.py", NNLAB_MODULES], ids=["user", "nnlab"])
def test_correct_modules_pass_every_gradient_check(path):
    rows = nnlab.check(path)
    checked = {r["module"] for r in rows if r["status"] == "pass"}
    assert checked == LAYERS
    assert all(r["status"] in ("pass", "skip") for r in rows), rows
    linear = _by_check(rows)
    assert {("Linear", c) for c in ("dx", "dW", "db")} <= set(linear)
    assert all(r["value"] < TOLERANCE for r in rows if r["status"] == "pass")


@pytest.mark.parametrize(
    "name, broken",
    [
        ("softmax_diagonal.py", ("SoftMax", "dx")),
        ("crossentropy_no_mean.py", ("CrossEntropy", "dlogits")),
    ],
)
def test_classic_mistakes_fail_the_check_they_break(name, broken):
    rows = _by_check(nnlab.check(FIXTURES / name))
    assert rows[broken]["status"] == "fail" and rows[broken]["value"] > 0.1
    assert all(r["status"] == "pass" for key, r in rows.items() if key != broken)


def test_a_loss_that_sums_over_the_batch_fails_mean_over_batch(tmp_path):
    text = (FIXTURES / "modules_ok.py").read_text()
    text = text.replace(".sum() / len(logits)", ".sum()").replace(") / len(self.p)", ")")
    (tmp_path / "summed.py").write_text(text)
    rows = _by_check(nnlab.check(tmp_path / "summed.py:CrossEntropy"))
    assert rows["CrossEntropy", "dlogits"]["status"] == "pass"  # consistent with its forward
    assert rows["CrossEntropy", "mean over batch"]["status"] == "fail"
    assert "= 2 (1 for a mean)" in rows["CrossEntropy", "mean over batch"]["detail"]


def test_a_correct_torch_model_passes():
    rows = _by_check(nnlab.check(f"{FIXTURES / 'mlp.py'}:MLP", kwargs={"hidden": [64, 32]}))
    assert [c for _, c in rows] == ["output shape", "parameters", "gradients", "overfit"]
    assert all(r["status"] == "pass" for r in rows.values()), rows
    assert rows["MLP", "parameters"]["value"] == (2 * 64 + 64) + (64 * 32 + 32) + (32 * 2 + 2)


def test_broken_torch_models_fail(tmp_path):
    unused, shape = (f"{FIXTURES / 'broken_models.py'}:{c}" for c in ("Unused", "WrongShape"))
    rows = _by_check(nnlab.check(unused, shape, steps=20))
    assert rows["Unused", "gradients"]["status"] == "fail"
    assert "forgotten.weight: no gradient" in rows["Unused", "gradients"]["detail"]
    assert rows["WrongShape", "output shape"]["status"] == "fail"
    assert "returns shape (2, 3)" in rows["WrongShape", "output shape"]["detail"]


def test_many_files_one_csv_row_per_check_and_exit_1(cli, tmp_path):
    proc = cli(
        "check",
        str(FIXTURES / "modules_ok.py"),
        str(FIXTURES / "softmax_diagonal.py"),
        str(tmp_path / "missing.py"),
        "--csv",
    )
    assert proc.returncode == 1, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert tuple(rows[0]) == COLUMNS
    assert {r["file"] for r in rows} == {
        str(FIXTURES / "modules_ok.py"),
        str(FIXTURES / "softmax_diagonal.py"),
        str(tmp_path / "missing.py"),
    }
    (missing,) = [r for r in rows if r["status"] == "error"]
    assert missing["check"] == "load" and "no such file" in missing["detail"]
    (failed,) = [r for r in rows if r["status"] == "fail"]
    assert (failed["module"], failed["check"]) == ("SoftMax", "dx")


def test_all_passing_exits_0_with_a_table(cli):
    proc = cli("check", str(FIXTURES / "modules_ok.py"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[:4] == ["file", "module", "check", "status"]
    assert proc.stdout.strip().endswith("9 passed, 0 failed")


def test_one_unreadable_file_is_one_line_and_exit_2(cli, tmp_path):
    (tmp_path / "syntax.py").write_text("class Linear:\n    def forward(self, x)\n")
    assert_one_line_error(cli("check", "syntax.py"), "syntax.py, line 2: syntax error")
    assert_one_line_error(cli("check", "nothere.py"), "no such file")
    assert_one_line_error(
        cli("check", f"{FIXTURES / 'mlp.py'}:Helper"),
        "neither a torch.nn.Module nor a NumPy module",
    )
    assert_one_line_error(cli("check", str(FIXTURES / "broken_models.py")), "name the model")
    assert_one_line_error(cli("check", "x.py", "--input-shape", "3,a"), "--input-shape")
    with pytest.raises(ConfigError, match="no such file"):
        nnlab.check(tmp_path / "nothere.py")
