"""``torch.compile`` of a wrapped model adds no graph break to the model's own, and gives eager's losses.

The plan and the mixing point are drawn on the host in the wrapper's call, a frame
dynamo skips; the forward it calls (mixing, the model, the loss) is compiled whole, the
hooks reading each step's plan as graph inputs. Counted with dynamo's own counters.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from torch._dynamo.utils import counters

import multimix
from multimix.image import CutMix, Mixup
from multimix.text import HiddenMix

transformers = pytest.importorskip("transformers")
from tiny_models import encoder, vit  # noqa: E402


def cnn() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))  # fmt: skip


def _inputs(kind: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 2, 0])
    if kind == "text":
        mask = torch.ones(4, 7, dtype=torch.long)
        mask[0, 4:] = 0
        return {"input_ids": torch.randint(1, 50, (4, 7), generator=g), "attention_mask": mask, "labels": labels}
    if kind == "pixels":
        return {"pixel_values": torch.rand(4, 3, 8, 8, generator=g), "labels": labels}
    return {"x": torch.rand(4, 3, 10, 10, generator=g), "labels": labels}


CASES = [
    ("vit+mixup", vit, lambda: Mixup(1.0), "pixels", None),
    ("vit+cutmix", vit, lambda: CutMix(1.0), "pixels", None),
    ("bert+hidden", encoder, lambda: HiddenMix(1.0, layers=(1,)), "text", None),
    ("bert+hidden-points", encoder, lambda: HiddenMix(1.0, layers=(0, 2, "pooled")), "text", None),
    ("cnn+manifold", cnn, lambda: HiddenMix(1.0, layers=[0, "1", "3"]), "plain", 3),
]


@pytest.mark.parametrize("enabled_from", [None, 6])
def test_a_wrapped_model_with_one_box_per_batch_compiles_one_graph(enabled_from):
    """The wrapper hands each step's plan to the compiled forward on a module (static to dynamo): CutMix with one box
    per batch, p < 1, is one graph whatever the box (it was a graph per box, failing at the ninth), and switching
    mixing off later adds at most one; eager's losses throughout."""
    torch.manual_seed(0)
    base = vit().train()
    eager = multimix.wrap(base, CutMix(1.0), per_sample=False, p=0.5, seed=3).train()
    twin = multimix.wrap(copy.deepcopy(base), CutMix(1.0), per_sample=False, p=0.5, seed=3).train()
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(twin, backend="eager", fullgraph=True)
    g = torch.Generator().manual_seed(0)
    for step in range(12):
        if enabled_from is not None:
            eager.mixer.enabled = twin.mixer.enabled = step < enabled_from
        inputs = {"pixel_values": torch.rand(3, 3, 8, 8, generator=g), "labels": torch.randint(0, 3, (3,), generator=g)}
        want = eager(**{k: v.clone() for k, v in inputs.items()})
        got = compiled(**{k: v.clone() for k, v in inputs.items()})
        assert torch.equal(got.loss, want.loss)
    assert counters["stats"]["unique_graphs"] == 1


def _call(model: torch.nn.Module, inputs: dict[str, torch.Tensor]):
    if "x" in inputs:
        return model(inputs["x"], labels=inputs["labels"])
    return model(**inputs)


@pytest.mark.parametrize("fullgraph", [False, True])
@pytest.mark.parametrize(("name", "make", "adapter", "kind", "num_classes"), CASES, ids=[c[0] for c in CASES])
def test_compiled_wrapped_model_has_no_graph_break_and_gives_eagers_losses(name, make, adapter, kind, num_classes,
                                                                          fullgraph):  # fmt: skip
    torch.manual_seed(0)
    base = make().train()
    eager = multimix.wrap(base, adapter(), num_classes, seed=0).train()
    twin = multimix.wrap(copy.deepcopy(base), adapter(), num_classes, seed=0).train()
    torch._dynamo.reset()
    counters.clear()
    backend = CompileCounter()
    compiled = torch.compile(twin, backend=backend, fullgraph=fullgraph)
    inputs = _inputs(kind)
    for _ in range(5):  # a new plan (and mixing point) at every step
        expected = _call(eager, {k: v.clone() for k, v in inputs.items()})
        got = _call(compiled, {k: v.clone() for k, v in inputs.items()})
        torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
        got.loss.backward()
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    assert 1 <= backend.frame_count <= 4  # one graph per mixing point at most, never one per step


@pytest.mark.parametrize(("make", "adapter", "kind", "num_classes"), [
    (encoder, lambda: HiddenMix(1.0, layers=(0, 1, 2, 3, "pooled")), "text", None),
    (cnn, lambda: HiddenMix(1.0, layers=[0, "1", "3"]), "plain", 3),
], ids=["bert", "cnn"])  # fmt: skip
def test_one_graph_per_mixing_point_whatever_samples_p_leaves_unmixed(make, adapter, kind, num_classes):
    """With p < 1 a batch may be mixed in all, some or none of its samples: the blend and the targets read none of
    that in a trace, so the graphs stay one per mixing point (below torch.compile's recompile limit of 8)."""
    torch.manual_seed(0)
    base = make().train()
    eager = multimix.wrap(base, adapter(), num_classes, p=0.5, seed=3).train()
    twin = multimix.wrap(copy.deepcopy(base), adapter(), num_classes, p=0.5, seed=3).train()
    torch._dynamo.reset()
    backend = CompileCounter()
    compiled = torch.compile(twin, backend=backend, fullgraph=True)
    inputs = _inputs(kind)
    for _ in range(24):  # p=0.5 over 4 samples: batches with every, some and no sample mixed
        expected = _call(eager, {k: v.clone() for k, v in inputs.items()})
        got = _call(compiled, {k: v.clone() for k, v in inputs.items()})
        torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
    assert backend.frame_count <= len(adapter().layers)


def test_each_wrapped_class_compiles_under_its_own_recompile_budget():
    """torch.compile caches graphs per code object: wrapped models of two classes do not share one forward's."""
    bert, vit_model = multimix.wrap(encoder(), HiddenMix(1.0)), multimix.wrap(vit(), Mixup(1.0))
    assert type(bert).forward.__code__ is not type(vit_model).forward.__code__
    assert type(multimix.wrap(encoder(), HiddenMix(1.0))) is type(bert)  # one class per base class, as before


def test_the_bare_models_compile_without_graph_breaks_too():
    """The anchor: what a wrapped model is held to."""
    for make, kind in ((vit, "pixels"), (encoder, "text")):
        torch._dynamo.reset()
        counters.clear()
        model = torch.compile(make().train(), backend=CompileCounter())
        model(**_inputs(kind)).loss.backward()
        assert sum(counters["graph_break"].values()) == 0


def test_wrap_of_a_plain_module_needs_no_transformers():
    """``multimix.wrap(nn.Sequential(...), HiddenMix(layers=[...]))`` works with transformers unimportable."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["transformers"] = None  # importing it raises ImportError
        import torch, multimix
        from multimix.text import HiddenMix
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        model = multimix.wrap(net, HiddenMix(1.0, layers=["1"]), 3, seed=0).train()
        out = model(torch.randn(5, 4), labels=torch.tensor([0, 1, 2, 0, 1]))
        out.loss.backward()
        assert multimix.unwrap(model) is net and "multimix.hf" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_wrap_of_a_plain_module_needs_num_classes():
    with pytest.raises(ValueError, match=r"num_classes is required to wrap Sequential .*wrap\(model, HiddenMix"):
        multimix.wrap(cnn(), HiddenMix(1.0, layers=["1"]))


def test_a_plain_module_that_keeps_a_config_gets_manifold_mixup():
    """nanoGPT-style modules keep a config object of their own: that does not make them Hugging Face models."""
    from dataclasses import dataclass

    @dataclass
    class Config:
        width: int = 8

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config, self.body, self.head = Config(), torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.head(torch.relu(self.body(x)))

    net = Net()
    model = multimix.wrap(net, HiddenMix(1.0, layers=["body"]), num_classes=3, seed=0).train()
    assert isinstance(model, multimix.manifold.ManifoldModel)
    model(torch.randn(5, 4), labels=torch.tensor([0, 1, 2, 0, 1])).loss.backward()
    assert multimix.unwrap(model) is net and net.body.weight.grad is not None
