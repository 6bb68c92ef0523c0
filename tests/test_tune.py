"""``nnlab tune``: the search-space syntax and its one-line errors, a study on moons and what
it writes (trials.csv, best.toml, study.db, figures), a rerun that continues it, pruned and
failed trials recorded, two processes sharing one storage, and the report of a tune folder."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, assert_one_line_error

pytest.importorskip("optuna")

# A small, fast moons study: 300 points, 4 epochs, a validation split of 0.2 by default;
# one worker process (the CLI's default is one per core), so trials run in a known order.
TINY = ["--set", "data.n_samples=300", "--set", "train.epochs=4", "--set", "train.eval_every=1"]
TINY += ["--jobs", "1"]
SPACE = ["--param", "optim.lr=loguniform(1e-3,1e-1)", "--param", "model.hidden=logint(4,32)"]


def read_trials(folder: Path) -> list[dict[str, str]]:
    with open(folder / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- the search space


def test_specs_parse_into_kinds_ranges_and_choices():
    from nnlab.config.tune import parse_param_args, parse_spec

    space = parse_param_args(
        [
            "optim.lr=loguniform(1e-4, 1e-1)",
            "optim.momentum=uniform(0, 0.99)",
            "train.batch_size=int(16,128)",
            "model.hidden=logint(8, 256)",
            "model.activation=choice(relu, 'tanh')",
            "train.epochs=choice(10, 20)",
        ]
    )
    assert space["optim.lr"].kind == "loguniform" and space["optim.lr"].low == 1e-4
    assert space["train.batch_size"].kind == "int" and space["train.batch_size"].high == 128
    assert space["model.activation"].choices == ("relu", "tanh")
    assert space["train.epochs"].choices == (10, 20)  # typed as the key: ints
    # a range on a list key sets every element: the width of each layer, the depth kept
    assert space["model.hidden"].config_value(37, [64, 64]) == [37, 37]
    # list values as choices: in brackets on the command line, lists in TOML
    widths = parse_spec("model.hidden", "choice([64], [64,64], [128, 128])")
    assert widths.choices == ("64", "64,64", "128,128")
    assert widths.config_value("64,64", [20]) == [64, 64]
    assert parse_spec("model.hidden", [[64], [64, 64]], "[tune.params]").choices == ("64", "64,64")
    assert parse_spec("model.activation", ["relu", "tanh"], "t").text == "choice(relu, tanh)"
    # the canonical text parses back to the same spec
    for spec in space.values():
        assert parse_spec(spec.key, spec.text) == spec


@pytest.mark.parametrize(
    ("param", "needles"),
    [
        ("optim.lr=loguniform(0,1)", ["--param optim.lr", "0 < LOW"]),
        ("optim.lr=uniform(1,0.5)", ["optim.lr", "LOW < HIGH"]),
        ("optim.lr=int(1,5)", ["optim.lr", "is a number"]),
        ("train.epochs=uniform(1,5)", ["train.epochs", "is an integer"]),
        ("optim.lr=uniform(a,b)", ["optim.lr", "must be numbers"]),
        ("optim.lr=between(1,2)", ["optim.lr", "loguniform(...)"]),
        ("model.activation=uniform(0,1)", ["model.activation", "choice"]),
        ("model.hidden=choice([64],[x])", ["model.hidden", "expected a list", "x"]),
        ("model.activation=choice(relu,relu)", ["model.activation", "twice"]),
        ("optim.nope=uniform(0,1)", ["optim.nope", "unknown key"]),
        ("data.n_samples=int(100,200)", ["data.n_samples", "cannot be tuned"]),
        ("train.seed=int(0,5)", ["train.seed", "cannot be tuned"]),
        ("optim.name=choice(sgd,nadam)", ["optim.name", "nadam"]),  # the config's own check
        ("optim.lr", ["--param", "KEY=SPEC"]),
    ],
)
def test_bad_specs_are_one_line_errors_and_write_nothing(cli, tmp_path, param, needles):
    assert_one_line_error(cli("tune", "moons", "--param", param, "--out", "t"), *needles)
    assert not (tmp_path / "t").exists()


def test_bad_settings_are_one_line_errors(cli, tmp_path):
    assert_one_line_error(cli("tune", "moons", "--out", "t"), "nothing to tune", "--param")
    # trials score on a validation split: an explicit 0 is refused, never replaced by the test set
    proc = cli("tune", "moons", *SPACE, "--set", "data.val_fraction=0", "--out", "t")
    assert_one_line_error(proc, "data.val_fraction=0", "validation split")
    assert_one_line_error(cli("tune", "moons", *SPACE, "--trials", "0"), "--trials")
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "moons"\n[tune]\ntrialz = 3\n')
    assert_one_line_error(cli("tune", str(bad), *SPACE), "tune.trialz", "trials, metric")
    bad.write_text('extends = "moons"\n[tune.params]\n"optim.lr" = "uniform(2, 1)"\n')
    assert_one_line_error(cli("train", str(bad)), "[tune.params] optim.lr", "LOW < HIGH")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert_one_line_error(cli("tune", "moons", *SPACE, "--out", "busy"), "not an nnlab tune")
    assert not (tmp_path / "t").exists()


def test_without_optuna_it_says_what_to_install(cli, tmp_path, monkeypatch):
    import nnlab

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    proc = cli("tune", "moons", *SPACE, "--out", "t")
    assert_one_line_error(proc, "pip install 'nnlab[tune]'")
    assert not (tmp_path / "t").exists()
    with pytest.raises(nnlab.ConfigError, match="optim.lr"):  # the API: the same checks
        nnlab.tune("moons", params={"optim.lr": "uniform(2, 1)"}, out=tmp_path / "t")


def test_a_tune_table_resolves_extends_and_writes_back(tmp_path):
    from nnlab.config import load_config, to_toml

    path = tmp_path / "mine.toml"
    path.write_text(
        'extends = "seed-moons"\n[tune]\ntrials = 7\n[tune.params]\n'
        '"optim.lr" = "uniform(0.01, 0.1)"\n"model.activation" = ["relu", "tanh"]\n'
    )
    cfg = load_config(str(path))
    assert cfg.tune["trials"] == 7 and cfg.tune["metric"] == "val_acc"  # from seed-moons
    assert cfg.tune["params"]["optim.lr"] == "uniform(0.01, 0.1)"  # replaced
    assert cfg.tune["params"]["optim.name"] == "choice(sgd, adam)"  # inherited
    assert cfg.tune["params"]["model.activation"] == "choice(relu, tanh)"
    again = tmp_path / "again.toml"
    again.write_text(to_toml(cfg))
    assert load_config(str(again)).tune == cfg.tune


# --------------------------------------------------------------------------- a study


@pytest.mark.slow
def test_a_study_writes_its_folder_continues_and_is_reported(cli, tmp_path):
    import nnlab

    proc = cli("tune", "moons", *TINY, *SPACE, "--trials", "3", "--pruner", "none", "--out", "t")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "t"
    for name in ("study.db", "tune.json", "trials.csv", "best.toml", "history.png"):
        assert (out / name).is_file(), name
    rows = read_trials(out)
    assert [r["number"] for r in rows] == ["0", "1", "2"]
    assert {r["state"] for r in rows} == {"COMPLETE"}
    # selection sees only validation scores: no test column in trials.csv
    assert not any("test" in column for column in rows[0])
    info = json.loads((out / "tune.json").read_text())
    assert info["val_fraction"] == 0.2 and info["metric"] == "val_acc"
    best = info["best"]
    assert float(rows[best["number"]]["value"]) == max(float(r["value"]) for r in rows)
    trial_run = out / best["run"]
    trial_summary = json.loads((trial_run / "summary.json").read_text())
    assert trial_summary["final_val_acc"] == best["value"]
    assert best["final_test_acc"] == trial_summary["final_test_acc"]  # read once, at the end
    assert "test accuracy of that configuration" in proc.stdout
    # best.toml is a complete config without [tune]: training it gives the best trial again
    assert "[tune" not in (out / "best.toml").read_text()
    again = cli("train", str(out / "best.toml"), "--out", "again")
    assert again.returncode == 0, again.stderr
    summary = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert summary["final_val_acc"] == best["value"]
    assert summary["final_test_acc"] == best["final_test_acc"]

    # the same search, from the API, with a larger budget: the study goes on to 5 trials in all
    tiny = {"data.n_samples": 300, "train.epochs": 4, "train.eval_every": 1}
    params = {"optim.lr": "loguniform(1e-3,1e-1)", "model.hidden": "logint(4,32)"}
    result = nnlab.tune("moons", tiny, params=params, trials=5, pruner="none", out=out)
    assert len(result.trials) == 5 and result.states["COMPLETE"] == 5
    assert result.best_config == out / "best.toml" and result.best_run.is_dir()
    assert result.best_test_acc is not None and set(result.best_params) == set(params)
    assert sorted(p.name for p in (out / "trials").iterdir())[-1] == "trial-0004"
    # open_run reads the same result back from the folder (no study opened)
    opened = nnlab.open_run(out)
    assert (opened.best_trial, opened.best_value, opened.best_params, opened.best_test_acc) == (
        result.best_trial,
        result.best_value,
        result.best_params,
        result.best_test_acc,
    )
    assert opened.states == result.states and opened.best_run == result.best_run
    assert "test accuracy of that configuration" in opened.format_summary()
    # asked again: nothing left to do; a different search in the same folder is refused
    proc = cli("tune", "moons", *TINY, *SPACE, "--trials", "5", "--out", "t")
    assert proc.returncode == 0 and "5 of 5 trials there" in proc.stderr
    assert len(read_trials(out)) == 5
    proc = cli("tune", "moons", *TINY, SPACE[0], SPACE[1], "--trials", "6", "--out", "t")
    assert_one_line_error(proc, "was made with params", "--study")
    assert len(read_trials(out)) == 5

    # the report: the best trial's run, then the search with its figures
    report = cli("report", "t", "--out", "rep")
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "the best of 5 trials on val_acc" in text and ": the search (t)" in text
    figures = [p.name for p in (tmp_path / "rep" / "figures").iterdir()]
    for kind in ("-history.png", "-importances.png", "-curves.png"):
        assert sum(name.endswith(kind) for name in figures) == 1, (kind, figures)


@pytest.mark.slow
def test_pruned_and_failed_trials_are_recorded(cli, tmp_path):
    import optuna

    # three trials queued in the study: two good learning rates, then one that cannot learn
    # in 8 epochs; the median rule (after 2 trials) must stop the third at its first eligible
    # evaluation. dropout=0.5 with the hand-derived step is refused by the engine: a failure.
    out = tmp_path / "t"
    out.mkdir()
    study = optuna.create_study(
        storage=f"sqlite:///{out / 'study.db'}", study_name="moons", direction="maximize"
    )
    for lr in (0.5, 0.5, 1e-6):
        study.enqueue_trial({"optim.lr": lr, "model.dropout": 0.0})
    study.enqueue_trial({"optim.lr": 0.5, "model.dropout": 0.5})
    proc = cli(
        "tune",
        "moons",
        *TINY,
        "--set",
        "train.epochs=8",
        "--set",
        "optim.name=sgd",
        "--set",
        "train.manual_step=on",
        "--param",
        "optim.lr=loguniform(1e-6,1)",
        "--param",
        "model.dropout=choice(0.0,0.5)",
        "--trials",
        "4",
        "--out",
        "t",
    )
    assert proc.returncode == 0, proc.stderr
    rows = read_trials(out)
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert rows[2]["note"].startswith("pruned at epoch") and int(rows[2]["epochs"]) < 8
    assert "train.manual_step" in rows[3]["note"] and rows[3]["value"] == ""
    # the pruned trial's run folder is finished and says why it stopped
    summary = json.loads((out / rows[2]["run"] / "summary.json").read_text())
    assert summary["stop_reason"].startswith("pruned by nnlab tune")
    assert not (out / "trials" / "trial-0003").exists()  # refused before its folder was made


@pytest.mark.slow
def test_two_processes_share_one_study(tmp_path):
    args = [*TINY, "--set", "train.epochs=8", *SPACE, "--trials", "6", "--out", str(tmp_path / "t")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "nnlab", "tune", "moons", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    rows = read_trials(tmp_path / "t")
    numbers = [int(r["number"]) for r in rows]
    # every trial once, none lost: each process ran its share of one numbering
    ran = sum(err.count("[trial ") for _, err in outputs)
    assert numbers == list(range(len(rows))) and ran == len(rows)
    assert 6 <= len(rows) <= 7  # each process checks the budget before a trial: at most one more
    assert all(r["state"] in ("COMPLETE", "PRUNED") for r in rows)
    assert len(list((tmp_path / "t" / "trials").iterdir())) == len(rows)


@pytest.mark.parametrize(
    "best, says",
    [
        ({"number": 0, "value": 0.9, "params": {}, "run": "../elsewhere"}, "inside it"),
        ({"number": "0", "value": 0.9, "params": {}, "run": "trials/trial-0000"}, "'best'"),
        ({"number": 0, "value": "high", "params": {}, "run": "trials/trial-0000"}, "'best'"),
        (["not", "a", "trial"], "'best'"),
    ],
)
def test_open_run_refuses_a_damaged_tune_folder_in_one_line(tmp_path, best, says):
    import nnlab

    out = tmp_path / "t"
    out.mkdir()
    (out / "trials.csv").write_text("number,state,value,optim.lr,epochs,duration_s,run,note\n")
    settings = {"metric": "val_acc", "direction": "maximize", "params": {}, "trials": 3}
    (out / "tune.json").write_text(json.dumps({**settings, "best": best}))
    with pytest.raises(nnlab.RunError, match=says) as caught:
        nnlab.open_run(out)
    assert "\n" not in str(caught.value)
    (out / "tune.json").write_text(json.dumps(settings))  # no trial finished yet: no best
    opened = nnlab.open_run(out)
    assert opened.best_trial is None and opened.budget == 3
    assert "no completed trial yet" in opened.format_summary()


def test_trials_of_dead_processes_here_become_failed_and_uncounted(tmp_path):
    """A trial left RUNNING by a killed worker of this machine is failed (and made up by the
    budget); one whose process lives, or that another machine runs, is left alone."""
    import socket

    import optuna

    from nnlab.experiments.tune_study import counted, fail_dead_trials

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    here = socket.gethostname()
    owners = [(here, gone.pid), (here, os.getpid()), ("another-node", gone.pid)]
    for host, pid in owners:
        trial = study.ask()
        trial.set_user_attr("host", host)
        trial.set_user_attr("pid", pid)
    done = study.ask()
    study.tell(done, 1.0)
    running = optuna.trial.TrialState.RUNNING
    assert counted(study.get_trials(), optuna) == 4
    fail_dead_trials(study, optuna)
    states = [t.state for t in study.get_trials()]
    assert states == [
        optuna.trial.TrialState.FAIL,
        running,
        running,
        optuna.trial.TrialState.COMPLETE,
    ]
    assert counted(study.get_trials(), optuna) == 3  # the dead one is made up by the budget
    fail_dead_trials(study, optuna)  # again: nothing left to fail, no error


def test_a_trial_asked_after_the_budget_was_filled_is_not_trained(tmp_path):
    """Two workers each check the budget after their own trial, so both may ask for the
    last one; the second stops before training and no file lists it."""
    import optuna

    import nnlab
    from nnlab.config import load_config
    from nnlab.experiments import tune_outputs
    from nnlab.experiments.tune import TrialFailed, TrialRunner, search_settings, tuning_base
    from nnlab.experiments.tune_study import SURPLUS, TuneJob, counted, default_storage

    tiny = {"data.n_samples": 300, "train.epochs": 2}
    params = {"optim.lr": "loguniform(1e-3,1e-1)"}
    out = tmp_path / "t"
    nnlab.tune("moons", tiny, params=params, trials=2, pruner="none", out=out)
    cfg = load_config("moons", tiny)
    settings = search_settings(cfg, params, trials=2, pruner="none")
    job = TuneJob(tuning_base(cfg, settings), settings, str(out), default_storage(out), "moons")
    study = optuna.load_study(study_name="moons", storage=job.storage)
    late = study.ask()  # the racing worker's trial, asked when 2 of 2 are there
    with pytest.raises(TrialFailed, match="budget was filled"):
        TrialRunner(job)(late)
    study.tell(late, state=optuna.trial.TrialState.FAIL)
    assert study.trials[-1].user_attrs[SURPLUS] is True
    assert not (out / "trials" / f"trial-{late.number:04d}").exists()  # never trained
    assert counted(study.trials, optuna) == 2
    rows = tune_outputs.refresh(job, study)
    assert [r["number"] for r in rows] == [0, 1] and len(read_trials(out)) == 2
