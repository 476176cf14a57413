"""``multimix run --parallel N``: runs side by side in their own processes give the sequential run's folders and
metrics; a child's error reaches the user as one line; Ctrl-C stops every child."""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from multimix.cli import main
from multimix_recipes.parallel import Job, RunFailed, _Prefixed, run_all, threads_per_run
from multimix_recipes.runner import run

TINY = {"train_limit": 160, "val_size": 32, "test_limit": 64, "batch_size": 32, "progress": False, "device": "cpu",
        "epochs": 1}  # fmt: skip
CLI_TINY = ["--device", "cpu", "--set", "progress=false", "--set", "train_limit=160", "--set", "val_size=32",
            "--set", "test_limit=64", "--batch-size", "32", "--epochs", "1"]  # fmt: skip


def test_prefixed_stream_marks_whole_lines_only():
    sink = io.StringIO()
    stream = _Prefixed(sink, "[mixup] ")
    stream.write("epoch 1: train")
    assert sink.getvalue() == ""  # half a line waits for its end
    stream.write(" loss 2.5\nepoch 2\nepo")
    assert sink.getvalue() == "[mixup] epoch 1: train loss 2.5\n[mixup] epoch 2\n"


@pytest.mark.parametrize(("parallel", "total", "each"), [(3, 16, 5), (2, 2, 1), (3, 2, 1), (1, 8, 8)])
def test_the_cpu_threads_are_shared_out(parallel, total, each):
    assert threads_per_run(parallel, total) == each


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--compare", "erm,mixup", "--parallel", "0"], r"--parallel must be a whole number >= 1 .*got 0"),
        (["--parallel", "2"], r"--parallel 2 runs several runs side by side, one process each; give it --compare, "
                              r"--seeds or --sweep \(this is one run\)"),
    ],
)
def test_bad_parallel_is_one_line_and_exit_2_before_anything_is_written(tmp_path, capsys, argv, match):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "image", "--out", str(out), *CLI_TINY, *argv])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("multimix: error: ")
    assert re.search(match, err) and not out.exists()


def test_a_childs_bad_input_is_a_value_error_naming_the_run(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    with pytest.raises(ValueError, match=rf"^run x \({re.escape(str(folder))}\): unknown recipe 'nope'; choose"):
        run_all([Job("nope", {"seed": 0}, folder, False, "x")], 1)
    assert "Traceback" in (folder / "error.log").read_text()


def test_a_childs_other_failure_is_run_failed_with_its_traceback_in_the_folder(tmp_path):
    folder = tmp_path / "erm"
    folder.mkdir()
    log = re.escape(str(folder / "error.log"))
    with pytest.raises(RunFailed, match=rf"^run erm \({re.escape(str(folder))}\) failed: KeyError: 'seed' "
                                        rf"\(traceback in {log}\); --resume continues"):
        run_all([Job("image", {}, folder, False, "erm")], 1)
    assert "KeyError: 'seed'" in (folder / "error.log").read_text()


def test_a_childs_data_error_reaches_the_cli_as_one_line_and_exit_2(tmp_path, capsys):
    data = tmp_path / "data" / "train" / "cat"
    data.mkdir(parents=True)  # a train/ folder with nothing held out: refused when the recipe reads it
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "image", "--compare", "erm,mixup", "--parallel", "2", "--data", str(tmp_path / "data"),
              "--out", str(tmp_path / "out"), *CLI_TINY])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"multimix: error: run erm ({tmp_path / 'out' / 'erm'}): --data ") or err.startswith(
        f"multimix: error: run mixup ({tmp_path / 'out' / 'mixup'}): --data ")
    assert "holds a train/ folder with no val/, valid/ or test/ beside it" in err


@pytest.mark.slow  # two runs twice, each child importing torch: 40-90 s on 2 busy cores
def test_parallel_and_sequential_runs_give_the_same_metrics_and_files(tmp_path, capfd):
    run("image", overrides={**TINY, "out": str(tmp_path / "seq")}, compare=["erm", "mixup"])
    run("image", overrides={**TINY, "out": str(tmp_path / "par")}, compare=["erm", "mixup"], parallel=2)
    out = capfd.readouterr().out  # the children write to the file descriptor
    assert out.splitlines()[0] == "device cpu, world size 1, precision fp32"
    assert "[mixup] epoch 1: train loss" in out and "[erm] device cpu" not in out  # the device line: once, first
    assert sum(line.startswith("device ") for line in out.splitlines()) == 2  # one per multimix run
    seq, par = tmp_path / "seq", tmp_path / "par"
    files = sorted(str(p.relative_to(seq)) for p in seq.rglob("*"))
    assert files == sorted(str(p.relative_to(par)) for p in par.rglob("*"))
    assert "mixup/checkpoint.pt" in files and "comparison.md" in files
    stats = [json.loads((root / "comparison.json").read_text()) for root in (seq, par)]
    assert list(stats[0]) == list(stats[1]) == ["erm", "mixup"]
    for method in ("erm", "mixup"):
        a, b = (s[method] for s in stats)
        keys = sorted(k for k in a if "second" not in k)  # times differ
        assert keys == sorted(k for k in b if "second" not in k) and "test_ece_calibrated" in keys
        # the same steps on the same data: equal up to the order of float sums (each child has 1 thread of 2),
        # which the temperature's fit amplifies to about 1e-4
        assert a["train_loss"]["values"] == b["train_loss"]["values"]
        assert a["test_accuracy"]["values"] == b["test_accuracy"]["values"]
        for key in keys:
            assert b[key]["mean"] == pytest.approx(a[key]["mean"], rel=1e-3, abs=1e-6), (method, key)
        weights = [torch.load(r / method / "checkpoint.pt", weights_only=True)["model"] for r in (seq, par)]
        # AdamW's normalised steps carry those last-digit differences into the weights: 7e-5 at most here
        assert all(torch.allclose(weights[0][k].float(), weights[1][k].float(), rtol=1e-3, atol=3e-4)
                   for k in weights[0])


def _children(pid: int) -> list[int]:
    """The training processes ``pid`` spawned (multiprocessing's own resource tracker left out)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in command:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow  # a real CLI with two children: about 25 s
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads child processes from /proc")
def test_ctrl_c_stops_every_child(tmp_path):
    argv = [sys.executable, "-m", "multimix", "run", "image", "--compare", "erm,mixup", "--parallel", "2",
            "--out", str(tmp_path), *CLI_TINY[:-2], "--epochs", "50"]  # fmt: skip
    parent = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        for line in parent.stdout:  # both children are training once each has printed an epoch
            if line.startswith("[erm] epoch 1:") or line.startswith("[mixup] epoch 1:"):
                break
        children = _children(parent.pid)
        assert len(children) >= 2
        parent.send_signal(signal.SIGINT)
        _, err = parent.communicate(timeout=60)
    finally:
        parent.kill()
    assert parent.returncode == 130
    assert err.strip().splitlines()[-1] == ("multimix: interrupted; --resume continues the runs from their last "
                                            "checkpoints")  # fmt: skip
    assert "Traceback" not in err and "leaked" not in err
    time.sleep(0.5)
    assert [pid for pid in children if Path(f"/proc/{pid}").exists()] == []
