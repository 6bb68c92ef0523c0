"""Run folders on a read-only file system (a results share mounted ro, a full disk remounted).

Reading must work as anywhere (report elsewhere, open_run); every command that would
write there is one line and exit 2, with nothing half-done. (A data cache on a read-only
file system: ``test_a_data_folder_that_is_a_file_is_one_line``.) The file system is a real
read-only tmpfs, mounted in a private mount namespace (``unshare -rm``: no root needed
where user namespaces are allowed, and the host's mounts are untouched); where they are
not allowed the test skips, since it cannot make a read-only file system at all.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, os, shutil, subprocess, sys
mnt, out = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", mnt], check=True)
os.chdir(mnt)

def nnlab(*args):
    proc = subprocess.run([sys.executable, "-m", "nnlab", *args], capture_output=True, text=True)
    return {"rc": proc.returncode, "err": proc.stderr.strip().splitlines()}

small = ["--set", "train.epochs=2", "--set", "data.n_samples=200", "--progress", "off"]
done = {"train": nnlab("train", "moons", *small, "--out", "run"),
        "sweep": nnlab("sweep", "moons", "--seeds", "2", *small, "--out", "sw")}
shutil.copytree("run", "cut")
os.remove("cut/summary.json")  # as if killed before the end
subprocess.run(["mount", "-o", "remount,ro", mnt], check=True)
done["report_elsewhere"] = nnlab("report", "run", "sw", "--out", out)
done["open_run"] = {"rc": subprocess.run([sys.executable, "-c",
    "import nnlab; assert nnlab.open_run('run').summary['final_test_acc'] > 0; "
    "assert len(nnlab.open_run('sw').rows) == 2"]).returncode, "err": []}
done["resume"] = nnlab("resume", "cut")
done["train_into"] = nnlab("train", "moons", *small, "--out", "new")
done["sweep_again"] = nnlab("sweep", "moons", "--seeds", "3", *small, "--out", "sw")
done["report_into"] = nnlab("report", "run", "--out", "rep")
done["listing"] = sorted(os.listdir(mnt))
print(json.dumps(done))
"""


def test_a_read_only_file_system(tmp_path):
    unshare = shutil.which("unshare")
    mnt, out = tmp_path / "ro", tmp_path / "report"
    mnt.mkdir()
    # what the test needs, tried first: a tmpfs mounted, then remounted read-only
    where = shlex.quote(str(mnt))
    mounts = f"mount -t tmpfs tmpfs {where} && mount -o remount,ro {where}"
    probe = unshare and subprocess.run(
        [unshare, "-rm", "sh", "-c", mounts], capture_output=True, text=True
    )
    if not probe or probe.returncode != 0:
        pytest.skip("no private mount namespace here (unshare -rm), so no read-only mount")
    proc = subprocess.run(
        [unshare, "-rm", sys.executable, "-c", SCRIPT, str(mnt), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout.strip().splitlines()[-1])
    assert done["train"]["rc"] == done["sweep"]["rc"] == 0, done
    # reading works as anywhere
    assert done["report_elsewhere"]["rc"] == 0, done["report_elsewhere"]
    assert (out / "report.html").is_file()
    assert done["open_run"]["rc"] == 0
    # writing there: one line naming the folder and why, exit 2
    expected = {
        "resume": "cannot write to cut: Read-only file system",
        "train_into": "--out new: . is not writable",
        "sweep_again": "Read-only file system",
        "report_into": "--out rep: cannot create it (Read-only file system)",
    }
    for command, needle in expected.items():
        result = done[command]
        assert result["rc"] == 2 and len(result["err"]) == 1, (command, result)
        assert needle in result["err"][0] and "Traceback" not in result["err"][0], result
    assert done["listing"] == ["cut", "run", "sw"]  # nothing half-written beside them
    assert not any(mnt.iterdir())  # the host never saw the private mount
