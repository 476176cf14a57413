"""benchmarks/train_step.py --compile: the step compiled whole runs on a CPU with aot_eager (the CUDA command's
code path at a tiny size), prints ms per step and the overhead against compiled ERM, and appends raw rows; the
eager step appends its rows too."""

import csv
import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import _results  # noqa: E402  (the benchmarks import their helpers by name, as scripts)
import train_step  # noqa: E402

TINY = ["--compile", "reduce-overhead", "--backend", "aot_eager", "--batches", "4", "--size", "8", "--rounds", "2",
        "--steps", "1"]  # fmt: skip
METHODS = ["compiled ERM", "timm Mixup eager + compiled step", "multimix Mixup inside the compiled step"]


def test_the_compiled_step_runs_on_a_cpu_and_appends_its_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_results, "RESULTS", tmp_path)
    counters.clear()
    threads = torch.get_num_threads()
    try:
        train_step.main(TINY)
    finally:
        torch.set_num_threads(threads)
    # two graphs, each traced once (fullgraph: no break): ERM and timm share the soft-target step, and a new plan
    # each step is an input, never a recompilation
    assert counters["stats"]["unique_graphs"] == 2
    out = capsys.readouterr().out
    assert "PreAct ResNet-18, 8x8, batch 4, compiled (reduce-overhead); overhead vs compiled ERM" in out
    table = {line[:40].strip(): line[40:].split() for line in out.splitlines() if line[:40].strip() in METHODS}
    assert list(table) == METHODS
    assert table["compiled ERM"][1] == "+0.0%" and all(float(ms) > 0 for ms, _ in table.values())
    [path] = tmp_path.glob("*.csv")
    assert path.name == _results.results_path(torch.device("cpu")).name
    with path.open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0])[-len(train_step.COLUMNS):] == train_step.COLUMNS
    assert [(r["method"], r["round"]) for r in rows] == [(m, k) for m in METHODS for k in ("0", "1")]
    row = rows[0]
    assert row["benchmark"] == "train_step_compiled" and row["date"] == datetime.date.today().isoformat()
    assert (row["mode"], row["backend"], row["batch"], row["size"], row["dtype"], row["steps"]) == (
        "reduce-overhead", "aot_eager", "4", "8", "float32", "1")  # fmt: skip
    assert all(float(r["ms"]) > 0 and r["syncs"] == "" and r["sync_error_mode"] == "" for r in rows)


def test_the_overhead_is_the_median_of_per_round_ratios_so_a_slowed_round_does_not_skew_it(capsys):
    # round 1 ran while other work held the cores (every method 10x); the ratio of medians would say -20%
    times = {"no mixing": [100.0, 1000.0, 100.0], "mixed": [110.0, 800.0, 110.0]}
    assert train_step.overheads(times) == pytest.approx({"no mixing": 0.0, "mixed": 0.1})
    train_step.report("title", times)
    assert capsys.readouterr().out.splitlines()[-2:] == [f"{'no mixing':<40}{'100.00':>10}{'+0.0':>9}%",
                                                         f"{'mixed':<40}{'110.00':>10}{'+10.0':>9}%"]  # fmt: skip


EAGER = ["timm Mixup batch", "multimix Mixup batch", "multimix Mixup per-sample", "timm CutMix batch",
         "multimix CutMix batch", "multimix CutMix per-sample", "timm Mixup per-sample (elem)"]  # fmt: skip


def test_the_eager_step_appends_a_row_per_method_and_round(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_results, "RESULTS", tmp_path)
    threads = torch.get_num_threads()
    try:
        train_step.main(["--batches", "2", "--bert", "none", "--rounds", "2", "--steps", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "PreAct ResNet-18, 32x32, batch 2" in out and "raw rows appended to" in out
    [path] = tmp_path.glob("*.csv")
    assert path.name == _results.results_path(torch.device("cpu")).name
    with path.open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["benchmark", "device", "card", "torch", "commit", "threads", *train_step.EAGER_COLUMNS]
    assert [(r["method"], r["round"]) for r in rows] == [(m, k) for m in ["no mixing", *EAGER] for k in ("0", "1")]
    fixed = {(r["benchmark"], r["model"], r["size"], r["batch"], r["dtype"], r["steps"], r["threads"]) for r in rows}
    assert fixed == {("train_step", "preact_resnet18", "32", "2", "float32", "1", "2")}
    assert all(float(r["ms"]) > 0 and r["date"] == datetime.date.today().isoformat() for r in rows)


def test_no_csv_prints_the_eager_table_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_results, "RESULTS", tmp_path)
    threads = torch.get_num_threads()
    try:
        train_step.main(["--batches", "2", "--bert", "none", "--rounds", "1", "--steps", "1", "--no-csv"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert [line[:40].strip() for line in out.splitlines() if line[:40].strip() in EAGER] == EAGER
    assert "raw rows" not in out and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--backend", "aot_eager"], "--backend, --mix and --size go with --compile MODE"),
    (["--size", "8", "--no-csv"], "--backend, --mix and --size go with --compile MODE; e.g. --compile reduce-overhead"),
    (["--compile", "default", "--adapters"], "--compile times Mixup or CutMix (--mix) against timm; drop --adapters"),
    (["--compile", "default", "--backend", "nope"], "--backend 'nope' is not a torch.compile backend"),
    (["--compile", "fastest"], "argument --compile: invalid choice: 'fastest'"),
])  # fmt: skip
def test_bad_arguments_exit_2_before_anything_runs(args, message, capsys):
    with pytest.raises(SystemExit) as exited:
        train_step.main(args)
    assert exited.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.gpu
def test_the_compiled_steps_do_not_sync_on_cuda():
    steps = train_step.compiled_steps(8, torch.device("cuda"), "reduce-overhead", "aot_eager", size=8)
    for step in steps.values():
        step()
    assert {name: train_step.sync_check(step) for name, step in steps.items()} == dict.fromkeys(steps, (0, "passed"))


def gpu_checks(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """benchmarks/gpu_checks.sh with a stand-in python3 that writes its arguments to the step's log."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    fake = tmp_path / "bin" / "python3"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", **env}
    return subprocess.run(["bash", "benchmarks/gpu_checks.sh", str(tmp_path / "out")], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=env)  # fmt: skip


@pytest.mark.parametrize(("device", "args"), [
    ("cuda", "--device cuda --rounds 10"),
    ("cpu", "--device cpu --backend aot_eager --batches 4 --size 8 --rounds 2 --steps 1 --no-csv"),
])  # fmt: skip
def test_gpu_checks_runs_the_steps_named_in_steps(tmp_path, device, args):
    done = gpu_checks(tmp_path, DEVICE=device, STEPS="train-step-compiled train-step-autotune")
    assert done.returncode == 0, done.stderr
    logs = {path.name: path.read_text().splitlines() for path in (tmp_path / "out").glob("*.log")}
    assert logs == {
        "train-step-compiled.log": [f"benchmarks/train_step.py --compile reduce-overhead {args}", "exit status 0"],
        "train-step-autotune.log": [f"benchmarks/train_step.py --compile max-autotune-no-cudagraphs {args}",
                                    "exit status 0"],
    }  # fmt: skip


def test_gpu_checks_refuses_an_unknown_step_before_anything_runs(tmp_path):
    done = gpu_checks(tmp_path, STEPS="gpu-tests compiled")
    assert done.returncode == 2 and done.stdout == "" and not (tmp_path / "out").exists()
    assert done.stderr.splitlines() == ["gpu_checks.sh: STEPS names an unknown step 'compiled'; choose from: gpu-tests "
                                        "train-step-compiled adapters-224 adapters-32 train-step-adapters image-mix "
                                        "train-step-autotune recipe-throughput"]  # fmt: skip


def test_rows_carry_the_commit_read_when_the_run_started(tmp_path, monkeypatch):
    """A long run's rows name the code it loaded, not the working tree's state when they are written."""
    monkeypatch.setattr(_results, "RESULTS", tmp_path)
    monkeypatch.setattr(_results, "commit", lambda: "changed-since")
    path = _results.append("probe", torch.device("cpu"), [{"x": 1}], ["x"])
    with path.open() as file:
        [row] = list(csv.DictReader(file))
    assert row["commit"] == _results.MEASURED != "changed-since"
