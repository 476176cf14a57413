"""The compile keys (``compile: auto | true | false``, ``compile_backend``), the fused optimizer, the split loss."""

from __future__ import annotations

import pytest
import torch

from multimix_recipes import optim
from multimix_recipes.config import resolve
from multimix_recipes.step import AUTO_MIN_STEPS, SplitLoss, build_step, check_backend, compile_wanted, stand_in

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def test_auto_compiles_long_cuda_runs_of_a_split_loss_only():
    assert compile_wanted("auto", CUDA, AUTO_MIN_STEPS, split=True)
    assert not compile_wanted("auto", CUDA, AUTO_MIN_STEPS - 1, split=True)  # compiling would not pay
    assert not compile_wanted("auto", CPU, 10 * AUTO_MIN_STEPS, split=True)  # the README's CPU run stays eager
    assert not compile_wanted("auto", CUDA, 10 * AUTO_MIN_STEPS, split=False)  # mixing inside the model: not whole
    assert compile_wanted("true", CPU, 1, split=False) and compile_wanted(True, CPU, 1, split=True)
    assert not compile_wanted("False", CUDA, 10 * AUTO_MIN_STEPS, split=True)  # a saved config's bool, as a string


def test_the_paper_config_compiles_on_a_gpu_and_the_default_run_does_not():
    paper = resolve("image", "cifar10-paper", {"device": "cpu"})
    steps = 49_000 // paper["batch_size"] * paper["epochs"]
    assert paper["compile"] == "auto" and compile_wanted(paper["compile"], CUDA, steps, split=True)
    default = resolve("image", None, {"device": "cpu"})
    assert not compile_wanted(default["compile"], CUDA, 7_000 // default["batch_size"] * default["epochs"], True)


def test_compile_and_backend_errors_name_the_key_and_the_fix():
    with pytest.raises(ValueError, match=r"compile must be one of \['auto', 'true', 'false'\], got 'yes'; "
                                         r"e.g. --set compile=true"):  # fmt: skip
        compile_wanted("yes", CPU, 1, split=True)
    with pytest.raises(ValueError, match=r"compile_backend must be one of \[.*'inductor'.*\], got 'inductr'; "
                                         r"e.g. --set compile_backend=inductor"):  # fmt: skip
        check_backend("inductr")
    assert check_backend("aot_eager") == "aot_eager"
    assert resolve("speech", None, {"compile": True})["compile"] == "True"  # --set compile=true is read as auto's type


def test_a_split_loss_called_eagerly_draws_then_computes():
    calls = []
    split = SplitLoss(lambda batch: calls.append("draw") or batch * 2, lambda m, b, d: calls.append("loss") or m(b + d))
    assert split(lambda x: x.sum(), torch.ones(3)) == 9 and calls == ["draw", "loss"]
    step, how = build_step(split, lambda x: x.sum(), CPU, False)
    assert step(torch.ones(2)) == 6 and how == ""
    x = stand_in((2, 3), CPU)
    assert x.shape == (2, 3) and x.dtype == torch.float32 and x.is_contiguous()


def _trained(optimizer_name: str, fused: bool, resume_from: dict | None = None):
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(5))
    config = {"optimizer": optimizer_name, "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.01}
    optimizer = optim.build_optimizer([param], config, fused=fused)
    if resume_from is not None:
        optimizer.load_state_dict(resume_from)
        optim.set_fused(optimizer, fused)
    for _ in range(3):
        param.grad = torch.linspace(-1, 1, 5)
        optimizer.step()
    return param.detach(), optimizer


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_fused_optimizer_steps_like_the_unfused_one_and_survives_a_resume(name):
    plain, unfused = _trained(name, fused=False)
    fused_param, fused = _trained(name, fused=True)
    assert fused.param_groups[0]["fused"] is True and unfused.param_groups[0]["fused"] is None
    torch.testing.assert_close(fused_param, plain)
    _, resumed = _trained(name, fused=True, resume_from=unfused.state_dict())  # compile switched on at --resume
    assert resumed.param_groups[0]["fused"] is True  # load_state_dict had brought back the saved None
    _, back = _trained(name, fused=False, resume_from=fused.state_dict())
    assert back.param_groups[0]["fused"] is None
    if name == "adamw":
        step = back.state[back.param_groups[0]["params"][0]]["step"]
        assert step.device.type == "cpu" and step.dtype == torch.float32 and float(step) == 6
