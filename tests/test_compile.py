"""``Mixer.apply`` is tensor ops only: ``torch.compile(fullgraph=True)`` captures it, and gives eager's numbers.

Traced with ``backend="eager"`` (dynamo's capture without a compiler: fast on a CPU); a
graph break would raise under ``fullgraph=True``. A capture on the CPU is the same
capture a GPU gets, so these tests prove a whole-step CUDA graph is possible.
"""

from __future__ import annotations

import copy

import pytest
import torch

import multimix
from multimix.audio import SpecMix, SpecMixup, WaveMix
from multimix.image import CutMix, Mixup
from multimix.plan import MixPlan
from multimix.switch import Switch

B = 6


def _cases():
    image = (B, 3, 12, 10)
    return [
        ("mixup", lambda: Mixup(1.0), image, {}),
        ("cutmix", lambda: CutMix(1.0), image, {}),
        ("cutmix-minmax", lambda: CutMix(1.0, minmax=(0.2, 0.8)), image, {}),
        ("video-cutmix", lambda: CutMix(1.0), (B, 3, 4, 12, 10), {}),
        ("specmixup-log", lambda: SpecMixup(1.0), (B, 16, 20), {}),
        ("specmixup-power", lambda: SpecMixup(1.0, domain="power", db=True), (B, 16, 20), {}),
        ("specmix", lambda: SpecMix(1.0), (B, 16, 20), {}),
        ("specmix-t-f", lambda: SpecMix(1.0, time_axis=-2), (B, 20, 16), {}),
        ("wavemix-lengths", lambda: WaveMix(1.0), (B, 64), {"lengths": True}),
        ("wavemix-energy", lambda: WaveMix(1.0, label_weight="energy"), (B, 2, 64), {"lengths": True}),
    ]


CASES = _cases()


def _five_image_adapters():
    image = multimix.image
    return [Mixup(1.0), CutMix(1.0), image.FMix(1.0), image.ResizeMix(), image.SaliencyMix(1.0)]


def _batch(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    y = torch.randint(0, 5, (shape[0],), generator=g)
    lengths = torch.randint(1, shape[-1] + 1, (shape[0],), generator=g)
    return x, y, lengths


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("p", [1.0, 0.5])
@pytest.mark.parametrize(("name", "make", "shape", "extra"), CASES, ids=[c[0] for c in CASES])
def test_apply_traces_whole_and_equals_eager(name, make, shape, extra, per_sample, p):
    mixer = multimix.Mixer(make(), num_classes=5, per_sample=per_sample, p=p, label_smoothing=0.1, seed=3)
    x, y, lengths = _batch(shape)
    kwargs = {"lengths": lengths} if extra.get("lengths") else {}
    torch._dynamo.reset()
    compiled = torch.compile(mixer.apply, fullgraph=True, backend="eager")
    for step in range(3):  # several plans: a new plan must not break the graph
        plan = mixer.plan_for(x, y, **kwargs)
        eager = mixer.apply(x.clone(), y, plan, **kwargs)
        traced = compiled(x.clone(), y, plan, **kwargs)
        torch.testing.assert_close(traced.inputs, eager.inputs, rtol=0, atol=0, msg=f"{name} step {step}")
        torch.testing.assert_close(traced.targets, eager.targets, rtol=0, atol=0)
        torch.testing.assert_close(traced.lam, eager.lam, rtol=0, atol=0)
        assert torch.equal(traced.index, eager.index)
        if kwargs:
            assert torch.equal(traced.lengths, eager.lengths)


def test_one_graph_for_every_box():
    """The batch's box is read as host ints only in eager calls: a traced step is not specialised to it."""
    from torch._dynamo.utils import counters

    mixer = multimix.Mixer(CutMix(1.0, inplace=False), num_classes=5, seed=0)
    x, y, _ = _batch((B, 3, 16, 16))
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(mixer.apply, fullgraph=True, backend="eager")
    boxes = set()
    for _ in range(6):
        plan = mixer.plan_for(x)
        boxes.add(plan.region.box)
        torch.testing.assert_close(compiled(x, y, plan).inputs, mixer.apply(x, y, plan).inputs, rtol=0, atol=0)
    assert len(boxes) > 1 and counters["stats"]["unique_graphs"] == 1


@pytest.mark.parametrize(
    ("adapters", "options", "graphs"),
    [
        (Mixup(1.0), {"per_sample": True, "p": 0.5}, 1),
        (CutMix(1.0), {"per_sample": True, "p": 0.5}, 1),
        ([Mixup(0.8), CutMix(1.0)], {}, 2),  # one graph per adapter chosen per batch
        ([Mixup(0.8), CutMix(1.0)], {"per_sample": True, "switch": "sample"}, 1),
        (_five_image_adapters(), {"per_sample": True, "switch": "sample", "p": 0.5}, 1),  # 9 before: past the limit
    ],
)
def test_graphs_a_run_compiles(adapters, options, graphs):
    """What docs/compile.md says a run of batches of 32 compiles: each graph once, whatever the plan."""
    from torch._dynamo.utils import counters

    mixer = multimix.Mixer(adapters, num_classes=5, seed=0, **options)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(mixer.apply, fullgraph=True, backend="eager")
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        x, y = torch.rand(32, 3, 8, 8, generator=generator), torch.randint(0, 5, (32,), generator=generator)
        compiled(x, y, mixer.plan_for(x))
    assert counters["stats"]["unique_graphs"] == graphs


ONE_GRAPH_CASES = {  # name: (adapters, per_sample, sample shape, label maps, lengths)
    "mixup-batch": (lambda: Mixup(1.0), False, (3, 8, 8), False, False),
    "cutmix-batch": (lambda: CutMix(1.0), False, (3, 8, 8), True, False),
    "cutmix-sample": (lambda: CutMix(1.0), True, (3, 8, 8), True, False),
    "fmix-sample": (lambda: multimix.image.FMix(1.0), True, (3, 8, 8), True, False),
    "fmix-soft-batch": (lambda: multimix.image.FMix(1.0, max_soft=0.2), False, (3, 8, 8), True, False),
    "resizemix-batch": (lambda: multimix.image.ResizeMix(), False, (3, 8, 8), True, False),
    "saliencymix-sample": (lambda: multimix.image.SaliencyMix(1.0), True, (3, 8, 8), True, False),
    "specmixup-power": (lambda: SpecMixup(1.0, domain="power"), True, (8, 12), False, True),
    "specmixup-log": (lambda: SpecMixup(1.0), False, (8, 12), False, False),
    "specmix-sample": (lambda: SpecMix(1.0), True, (8, 12), False, True),
    "wavemix-batch": (lambda: WaveMix(1.0), False, (32,), False, True),
    "switch-of-five": (lambda: Switch(_five_image_adapters()), True, (3, 8, 8), True, False),
}


@pytest.mark.parametrize("name", list(ONE_GRAPH_CASES))
def test_one_graph_serves_every_plan_mixed_or_not(name):
    """Batches with no sample mixed, some and all (p < 1 on batches of 3), through one compiled step: one graph,
    and eager's inputs, targets, lam and lengths for each (the host flags of a plan choose nothing while traced)."""
    from torch._dynamo.utils import counters

    make, per_sample, shape, maps, with_lengths = ONE_GRAPH_CASES[name]
    mixer = multimix.Mixer(make(), num_classes=5, per_sample=per_sample, p=0.5, seed=7)

    def step(x, y, plan, lengths):
        out = mixer.apply(x, y, plan, lengths=lengths)
        return out.inputs, out.targets, out.lam, out.lengths

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(step, fullgraph=True, backend="eager")
    generator, seen = torch.Generator().manual_seed(0), set()
    for _ in range(60):
        x = torch.rand(3, *shape, generator=generator)
        y = torch.randint(0, 5, (3, *shape[-2:]) if maps else (3,), generator=generator)
        lengths = torch.randint(1, shape[-1] + 1, (3,), generator=generator) if with_lengths else None
        plan = mixer.plan_for(x, y, lengths=lengths)
        seen.add((plan.any_mixed, plan.all_mixed))
        eager, traced = step(x.clone(), y, plan, lengths), compiled(x.clone(), y, plan, lengths)
        for got, want in zip(traced, eager, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    assert seen == {(False, False), (True, False), (True, True)}  # none, some and all mixed
    assert counters["stats"]["unique_graphs"] == 1


def test_call_is_apply_of_plan_for():
    """``mixer(x, y)`` draws and mixes exactly as ``apply(x, y, plan_for(x))`` from the same generator state."""
    first = multimix.Mixer([Mixup(0.8), CutMix(1.0)], num_classes=5, per_sample=True, seed=0)
    second = copy.deepcopy(first)
    for step in range(4):
        x, y, _ = _batch((B, 3, 200, 200), seed=step)  # large samples: the CPU loop
        called = first(x.clone(), y)
        applied = second.apply(x.clone(), y, second.plan_for(x))
        assert torch.equal(called.inputs, applied.inputs) and torch.equal(called.targets, applied.targets)
        assert torch.equal(called.lam, applied.lam)


@pytest.mark.parametrize("per_sample", [False, True])
def test_cpu_loop_vectorised_and_compiled_paths_agree(per_sample):
    """The in-place CPU loop (large samples), the vectorised path and the compiled one mix the same pixels."""
    for make in (lambda: Mixup(1.0), lambda: CutMix(1.0), lambda: Switch([Mixup(0.8), CutMix(1.0)])):
        mixer = multimix.Mixer(make(), num_classes=5, per_sample=per_sample or isinstance(make(), Switch), seed=1)
        x, y, _ = _batch((B, 3, 128, 128))
        plan = mixer.plan_for(x)
        loop = mixer.apply(x.clone(), y, plan)
        with torch.enable_grad():  # autograd history forces the vectorised path
            leaf = x.clone().requires_grad_()
            vectorised = mixer.apply(leaf, y, plan)
        torch._dynamo.reset()
        compiled = torch.compile(mixer.apply, fullgraph=True, backend="eager")(x.clone(), y, plan)
        torch.testing.assert_close(vectorised.inputs.detach(), loop.inputs, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(compiled.inputs, loop.inputs, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(compiled.targets, loop.targets)


def test_switch_traces_whole_and_each_sample_follows_its_adapter():
    mixer = multimix.Mixer([Mixup(0.8), CutMix(1.0)], num_classes=5, per_sample=True, switch="sample", seed=2)
    x, y, _ = _batch((8, 3, 16, 16))
    torch._dynamo.reset()
    compiled = torch.compile(mixer.apply, fullgraph=True, backend="eager")
    plan = mixer.plan_for(x)
    out = compiled(x.clone(), y, plan)
    eager = mixer.apply(x.clone(), y, plan)
    torch.testing.assert_close(out.inputs, eager.inputs, rtol=0, atol=0)
    for i in range(8):  # a Mixup sample is a blend; a CutMix sample holds only its own and its partner's pixels
        j, lam = int(plan.index[i]), float(out.lam[i])
        if int(plan.choices[i]) == 0:
            torch.testing.assert_close(out.inputs[i], lam * x[i] + (1 - lam) * x[j], rtol=1e-5, atol=1e-5)
        else:
            own = out.inputs[i] == x[i]
            assert bool((own | (out.inputs[i] == x[j])).all())
            assert float(own[0].double().mean()) == pytest.approx(lam, abs=1e-6)


def test_a_compiled_train_step_gives_eagers_loss_and_gradients():
    """apply + model + loss traced as one graph (aot_eager also compiles its backward) matches the eager step."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    x, y, _ = _batch((B, 3, 10, 10))
    model(x)
    mixer = multimix.Mixer(CutMix(1.0), num_classes=5, per_sample=True, seed=0)

    def step(images, labels, plan):
        out = mixer.apply(images, labels, plan)
        return multimix.soft_cross_entropy(model(out.inputs), out.targets)

    plan = mixer.plan_for(x)
    eager_loss = step(x.clone(), y, plan)
    eager_loss.backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch._dynamo.reset()
    compiled_loss = torch.compile(step, fullgraph=True, backend="aot_eager")(x.clone(), y, plan)
    compiled_loss.backward()  # the backward graph AOTAutograd compiled with the forward
    torch.testing.assert_close(compiled_loss, eager_loss)
    for got, want in zip((p.grad for p in model.parameters()), eager_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_apply_refuses_a_plan_for_another_batch():
    mixer = multimix.Mixer(Mixup(1.0), num_classes=5, seed=0)
    plan = mixer.plan_for(torch.rand(4, 3, 8, 8))
    with pytest.raises(ValueError, match=r"plan was drawn for 4 samples on cpu, but inputs hold 6"):
        mixer.apply(torch.rand(6, 3, 8, 8), torch.zeros(6, dtype=torch.long), plan)
    with pytest.raises(TypeError, match=r"plan must be the MixPlan that mixer.plan_for\(inputs\) returned, got dict"):
        mixer.apply(torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long), {})


@pytest.mark.parametrize(
    ("index", "lam", "match"),
    [
        ([1, 0, 3, 2], [1.5] * 4, r"lam must lie in \[0, 1\] \(the weight of each sample's own label, plan.lam\), "
                                  r"got \[1.5, 1.5, 1.5, 1.5\]"),
        ([1, 0, 3, 2], [0.5, -0.5, 0.5, 0.5], r"plan.lam\), got \[-0.5\]"),
        ([1, 0, 3, 2], [0.5, float("nan"), 0.5, 0.5], r"plan.lam\), got \[nan\]"),
        ([1, 0, 3, 7], [0.5] * 4, r"index must hold partners in \[0, 4\) \(plan.index\), got \[7\]"),
    ],
)
def test_apply_refuses_a_hand_built_plan_with_values_out_of_range(index, lam, match):
    """A MixPlan built by hand is checked as a call's labels are (eager, on the CPU), before anything is written: a
    lam of 1.5 was reported as the label weight while the targets treated the sample as unmixed."""
    mixer = multimix.Mixer(Mixup(1.0), num_classes=4)
    x = torch.rand(4, 3, 8, 8)
    before = x.clone()
    plan = MixPlan(torch.tensor(index), torch.tensor(lam, dtype=torch.float64))
    with pytest.raises(ValueError, match=match):
        mixer.apply(x, torch.arange(4), plan)
    assert torch.equal(x, before)


def test_apply_refuses_a_plan_another_mixers_plan_for_drew():
    """Its region (or none) fits the adapters that drew it: named, with the fix, before any adapter reads it."""
    x, y = torch.rand(4, 3, 8, 8), torch.arange(4)
    cutmix = multimix.Mixer(CutMix(1.0), num_classes=5, seed=0)
    with pytest.raises(ValueError, match=r"plan was drawn for Mixup \(by another Mixer's plan_for\), but this Mixer "
                                         r"mixes with CutMix; draw it with this mixer's plan_for"):  # fmt: skip
        cutmix.apply(x, y, multimix.Mixer(Mixup(1.0), num_classes=5).plan_for(x))
    switch = multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=5, per_sample=True, switch="sample")
    with pytest.raises(ValueError, match=r"drawn for Switch\(Mixup, CutMix\) .* mixes with CutMix"):
        cutmix.apply(x, y, switch.plan_for(x))
    fields = multimix.Mixer({"a": CutMix(1.0), "b": Mixup(1.0)}, num_classes=5)
    with pytest.raises(ValueError, match=r"drawn for \{'a': 'Mixup', 'b': 'Mixup'\}"):
        batch = {"a": x, "b": x.clone()}
        fields.apply(batch, y, multimix.Mixer({"a": Mixup(1.0), "b": Mixup(1.0)}, 5).plan_for(batch))
    shared, cut = multimix.Mixer({"a": CutMix(1.0), "b": CutMix(1.0)}, num_classes=5), CutMix(1.0)
    with pytest.raises(ValueError, match=r"mixes with \{'a': 'CutMix', 'b': \"CutMix \(the object of 'a'\)\"\}"):
        multimix.Mixer({"a": cut, "b": cut}, num_classes=5).apply(batch, y, shared.plan_for(batch))  # b's own box
    # a copy of the mixer (a DataLoader worker's, a rank's) and a list that chose CutMix draw plans CutMix applies
    torch.testing.assert_close(copy.deepcopy(cutmix).apply(x.clone(), y, cutmix.plan_for(x)).lam.shape, (4,))
    listed = multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=5, seed=0)
    plans = [listed.plan_for(x) for _ in range(8)]
    for plan in (p for p in plans if p.choice == 1):
        cutmix.apply(x.clone(), y, plan)


@pytest.mark.parametrize("make", [lambda: CutMix(1.0), lambda: multimix.image.ResizeMix(1.0), lambda: SpecMix(1.0)])
def test_apply_refuses_a_plan_drawn_for_other_sample_shapes_or_with_no_region(make):
    """A region fits the samples it was drawn for (a 16 x 16 box on 32 x 32 images reported the wrong lam), and a
    plan built by hand has none (it failed inside the adapter)."""
    mixer = multimix.Mixer(make(), num_classes=4, seed=1)
    x, labels = torch.randn(4, 3, 32, 32), torch.arange(4)
    x0 = x.clone()
    with pytest.raises(ValueError, match=r"plan was drawn for samples of shape \(3, 16, 16\), but inputs hold "
                                         r"\(3, 32, 32\)"):  # fmt: skip
        mixer.apply(x, labels, mixer.plan_for(torch.randn(4, 3, 16, 16)))
    hand_made = multimix.MixPlan(torch.tensor([1, 0, 3, 2]), torch.full((4,), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"plan holds no region for {type(mixer.adapters[0]).__name__} "
                                         r"\(a MixPlan built by hand\?\)"):  # fmt: skip
        mixer.apply(x, labels, hand_made)
    assert torch.equal(x, x0)  # refused before anything was written
    torch.testing.assert_close(multimix.Mixer(Mixup(1.0), num_classes=4).apply(x, labels, hand_made).inputs,
                               0.5 * x0 + 0.5 * x0[[1, 0, 3, 2]])  # a blend needs no region  # fmt: skip


def test_apply_checks_label_row_and_length_values_in_eager_mode():
    """plan_for is often given the inputs alone (as its example), so apply checks what it is given, before writing."""
    images = torch.rand(8, 3, 16, 16)
    before = images.clone()
    mixer = multimix.Mixer(CutMix(1.0), num_classes=10, seed=0)
    plan = mixer.plan_for(images)
    with pytest.raises(ValueError, match=r"targets holds label 99, outside \[0, num_classes=10\)"):
        mixer.apply(images, torch.tensor([0, 1, 2, 3, 4, 5, 6, 99]), plan)
    assert torch.equal(images, before)
    rows = multimix.Mixer(Mixup(1.0), num_classes=3, seed=0)
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(ValueError, match=r"target rows must hold values in \[0, 1\]"):
        rows.apply(x, torch.tensor([[2.0, -1.0, 0.0]] * 4), rows.plan_for(x))
    spec = multimix.Mixer(SpecMix(1.0), num_classes=3, seed=0)
    s = torch.randn(4, 16, 20)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 20\]"):
        spec.apply(s, torch.arange(4) % 3, spec.plan_for(s), lengths=torch.tensor([50, -3, 5, 5]))


def test_plan_for_checks_before_drawing():
    mixer = multimix.Mixer(Mixup(1.0), num_classes=5, seed=0)
    state = mixer.generator.get_state()
    with pytest.raises(ValueError, match=r"targets holds label 7, outside \[0, num_classes=5\)"):
        mixer.plan_for(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 7]))
    assert torch.equal(mixer.generator.get_state(), state)


MAP_ADAPTERS = {
    "mixup": lambda: Mixup(1.0),
    "cutmix": lambda: CutMix(1.0),
    "resizemix": lambda: multimix.image.ResizeMix(1.0),
    "fmix": lambda: multimix.image.FMix(1.0),
    "fmix-soft": lambda: multimix.image.FMix(1.0, max_soft=0.2),
    "saliencymix": lambda: multimix.image.SaliencyMix(1.0),
    "switch": lambda: Switch([Mixup(0.8), CutMix(1.0)]),
}


@pytest.mark.parametrize("mode", ["lerp", "dominant"])
@pytest.mark.parametrize("name", list(MAP_ADAPTERS))
def test_label_maps_trace_whole_with_the_pixels(name, mode):
    """The map moved (or blended) with the pixels, and out.targets read inside the compiled step, in one graph."""
    mixer = multimix.Mixer(MAP_ADAPTERS[name](), num_classes=5, per_sample=True, p=0.8, ignore_index=255,
                           label_mode=mode, seed=5)  # fmt: skip
    x, _, _ = _batch((B, 3, 12, 10))
    maps = torch.randint(0, 5, (B, 12, 10), generator=torch.Generator().manual_seed(1))
    maps[0, :3] = 255

    def step(images, labels, plan):
        out = mixer.apply(images, labels, plan)
        return out.inputs, out.targets

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend="eager")
    for _ in range(2):
        plan = mixer.plan_for(x, maps)
        eager, traced = step(x.clone(), maps, plan), compiled(x.clone(), maps, plan)
        assert torch.equal(traced[0], eager[0]) and torch.equal(traced[1], eager[1])


@pytest.mark.parametrize("p", [1.0, 0.5])
@pytest.mark.parametrize("shared", [False, True])
def test_dict_batches_trace_whole(shared, p):
    """A dict-built mixer (one plan for several fields) is captured whole too, in one graph for every plan (a new
    region object each step), and equals eager; fields given one adapter object share its region."""
    from torch._dynamo.utils import counters

    cut = CutMix(1.0)
    adapters = {"pixel_values": cut, "depth": cut} if shared else {"pixel_values": cut, "depth": Mixup(1.0)}
    mixer = multimix.Mixer(adapters, num_classes=5, per_sample=True, p=p, seed=4)
    g = torch.Generator().manual_seed(0)
    batch = {"pixel_values": torch.rand(B, 3, 12, 10, generator=g), "depth": torch.rand(B, 1, 12, 10, generator=g),
             "labels": torch.randint(0, 5, (B,), generator=g)}  # fmt: skip
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(mixer.apply, fullgraph=True, backend="eager")
    for _ in range(10):
        plan = mixer.plan_for(batch)
        eager = mixer.apply({k: v.clone() for k, v in batch.items()}, None, plan)
        traced = compiled({k: v.clone() for k, v in batch.items()}, None, plan)
        for field in ("pixel_values", "depth"):
            torch.testing.assert_close(traced.inputs[field], eager.inputs[field], rtol=0, atol=0)
        torch.testing.assert_close(traced.targets, eager.targets, rtol=0, atol=0)
    assert counters["stats"]["unique_graphs"] == 1


def test_a_plan_a_module_holds_is_one_graph_for_every_box():
    """A plan kept on a module (as multimix.wrap hands it to the model's forward) is static to dynamo: the batch's
    box, host ints for eager calls, is not read while traced, so new boxes make no new graphs."""
    from torch._dynamo.utils import counters

    class Step(torch.nn.Module):
        def __init__(self, mixer):
            super().__init__()
            self.mixer, self.plan = mixer, None

        def forward(self, x, y):
            return self.mixer.apply(x, y, self.plan).inputs

    mixer = multimix.Mixer(CutMix(1.0), num_classes=5, seed=0)
    step, x, y = Step(mixer), *_batch((B, 3, 16, 16))[:2]
    torch._dynamo.reset()
    counters.clear()
    compiled, boxes = torch.compile(step, fullgraph=True, backend="eager"), set()
    for _ in range(10):
        step.plan = mixer.plan_for(x)
        boxes.add(step.plan.region.box)
        assert torch.equal(compiled(x.clone(), y), mixer.apply(x.clone(), y, step.plan).inputs)
    assert len(boxes) > 8 and counters["stats"]["unique_graphs"] == 1


@pytest.mark.parametrize(
    ("make", "per_sample", "graphs"),
    [
        (lambda: Mixup(1.0), True, 1),
        (lambda: Mixup(1.0), False, 1),
        (lambda: CutMix(1.0), False, 1),
        (lambda: CutMix(1.0), True, 2),
    ],
)
def test_switching_mixing_off_and_on_adds_at_most_one_graph(make, per_sample, graphs):
    """The identity plan of a mixer switched off (enabled = False, off_epoch) is one lam per batch: a per-sample
    CutMix takes one more graph for it (one box instead of masks); nothing else does, and values are eager's."""
    from torch._dynamo.utils import counters

    mixer = multimix.Mixer(make(), num_classes=5, per_sample=per_sample, seed=0)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(mixer.apply, fullgraph=True, backend="eager")
    for step in range(8):
        mixer.enabled = step % 2 == 0
        x, y, _ = _batch((4, 3, 8, 8), seed=step)
        plan = mixer.plan_for(x)
        traced, eager = compiled(x.clone(), y, plan), mixer.apply(x.clone(), y, plan)
        assert torch.equal(traced.inputs, eager.inputs) and torch.equal(traced.targets, eager.targets)
    assert counters["stats"]["unique_graphs"] == graphs


def test_mixed_loss_with_a_function_criterion_traces_whole():
    """A plain function criterion (F.cross_entropy): whether it takes reduction= is read on the host, not traced."""
    mixer = multimix.Mixer(Mixup(1.0), num_classes=5, p=0.5, seed=0)
    x, y, _ = _batch((4, 3, 8, 8))

    def step(x, y, plan):
        out = mixer.apply(x, y, plan)
        return multimix.mixed_loss(torch.nn.functional.cross_entropy, out.inputs.flatten(1)[:, :5], out)

    plan = mixer.plan_for(x)
    torch._dynamo.reset()
    traced = torch.compile(step, fullgraph=True, backend="eager")(x.clone(), y, plan)
    assert torch.equal(traced, step(x.clone(), y, plan))


def test_a_custom_adapter_whose_region_may_be_none_applies_a_plan_for_plan():
    """A region-drawing adapter may draw None (nothing to mix): plan_for's own plan is applied, not refused."""

    class MaybeBox(CutMix):
        def draw_region(self, x, plan, generator):
            return None if not plan.any_mixed else super().draw_region(x, plan, generator)

        def apply(self, x, plan, region, valid=None):
            return (x, plan.lam) if region is None else super().apply(x, plan, region, valid)

    mixer = multimix.Mixer(MaybeBox(1.0), num_classes=4, p=0.0, seed=0)
    x = torch.rand(4, 3, 8, 8)
    out = mixer.apply(x, torch.arange(4), mixer.plan_for(x))
    assert torch.equal(out.targets, torch.eye(4))
