"""benchmarks/train_step.py --compile: the step compiled whole runs on a CPU with aot_eager (the CUDA command's
code path at a tiny size), prints ms per step and the overhead against compiled ERM, and appends raw rows."""

import csv
import datetime
import sys
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _results  # the benchmarks import their helpers by name, as scripts
import train_step

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


@pytest.mark.parametrize(("args", "message"), [
    (["--backend", "aot_eager"], "--backend, --mix, --size and --no-csv go with --compile MODE"),
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
