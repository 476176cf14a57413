"""No read-back from the device: every adapter and every Mixer call form runs on ``meta`` tensors.

A ``meta`` tensor has a shape and a dtype but no values, so anything that would wait
for a GPU (``.item()``, ``bool(t)``, ``int(t.max())``, ``.tolist()``, ``.cpu()``)
raises on it. A call that completes on ``meta`` therefore makes no host-device
synchronisation on CUDA; the ``gpu`` tests check the same calls under
``torch.cuda.set_sync_debug_mode("error")``.
"""

import sys
from pathlib import Path

import pytest
import torch

import multimix
from multimix.audio import SpecMix, SpecMixup, WaveMix
from multimix.image import CutMix, FMix, Mixup, ResizeMix, SaliencyMix
from multimix.text import HiddenMix

META = torch.device("meta")
B, C = 8, 5


def labels(device=META):
    return torch.zeros(B, dtype=torch.long, device=device)


IMAGE_ADAPTERS = [
    lambda: Mixup(1.0),
    lambda: CutMix(1.0),
    lambda: Mixup(1.0, inplace=False),
    lambda: ResizeMix(1.0),
    lambda: FMix(1.0),
    lambda: FMix(1.0, max_soft=0.2),
    lambda: SaliencyMix(1.0),
]
SPEC_ADAPTERS = [
    lambda: SpecMixup(1.0),
    lambda: SpecMixup(1.0, domain="power", db=True),
    lambda: SpecMix(1.0),
    lambda: SpecMix(1.0, inplace=False),
]
MIXER_OPTIONS = [
    {},
    {"per_sample": True},
    {"p": 0.5, "per_sample": True},
    {"label_smoothing": 0.1},
    {"p": 0.0},
]


@pytest.mark.parametrize("make", IMAGE_ADAPTERS)
@pytest.mark.parametrize("options", MIXER_OPTIONS)
def test_image_adapters_run_on_meta(make, options):
    x = torch.empty(B, 3, 16, 12, device=META)
    out = multimix.Mixer(make(), num_classes=C, seed=0, **options)(x, labels())
    assert out.inputs.shape == x.shape and out.targets.shape == (B, C)
    assert {out.targets.device, out.lam.device, out.index.device} == {META}


@pytest.mark.parametrize("make", SPEC_ADAPTERS)
@pytest.mark.parametrize("options", MIXER_OPTIONS)
@pytest.mark.parametrize("lengths", [None, "lengths", "mask"])
def test_spectrogram_adapters_run_on_meta(make, options, lengths):
    x = torch.empty(B, 40, 30, device=META)
    given = {
        None: None,
        "lengths": torch.zeros(B, dtype=torch.long, device=META),
        "mask": torch.ones(B, 30, dtype=torch.bool, device=META),
    }[lengths]
    out = multimix.Mixer(make(), num_classes=C, seed=0, **options)(x, labels(), lengths=given)
    assert out.inputs.shape == x.shape and out.targets.device == META
    if given is not None:
        assert out.lengths.shape == given.shape and out.lengths.device == META


@pytest.mark.parametrize("label_weight", ["duration", "energy", "lam"])
@pytest.mark.parametrize("options", MIXER_OPTIONS)
@pytest.mark.parametrize("lengths", [None, "lengths", "mask", "cpu lengths"])
def test_wave_mix_runs_on_meta(label_weight, options, lengths):
    x = torch.empty(B, 2, 800, device=META)
    given = {
        None: None,
        "lengths": torch.zeros(B, dtype=torch.long, device=META),
        "mask": torch.ones(B, 800, dtype=torch.bool, device=META),
        "cpu lengths": torch.full((B,), 400),  # checked on the CPU, moved with the plan
    }[lengths]
    out = multimix.Mixer(WaveMix(1.0, label_weight=label_weight), num_classes=C, seed=0, **options)(
        x, labels(), lengths=given
    )
    assert out.lam.device == META
    if given is not None:
        assert out.lengths.device == META


def test_switching_adapters_dict_batches_and_row_targets_run_on_meta():
    x = torch.empty(B, 3, 8, 8, device=META)
    mixer = multimix.Mixer([Mixup(0.8), CutMix(1.0)], num_classes=C, switch_prob=0.5, per_sample=True, seed=0)
    for _ in range(6):  # both adapters get chosen
        mixer(x, labels())
    rows = torch.empty(B, C, device=META)
    assert mixer(x, rows).targets.shape == (B, C)
    multi = multimix.Mixer(Mixup(1.0), num_classes=C, multi_label=True, seed=0)
    assert multi(x, rows).targets.shape == (B, C)
    fields = multimix.Mixer({"pixel_values": Mixup(1.0), "spec": SpecMix(1.0)}, num_classes=C, seed=0)
    batch = {"pixel_values": x, "spec": torch.empty(B, 20, 30, device=META), "labels": labels(), "id": list(range(B))}
    out = fields(batch)
    assert set(out.inputs) == {"pixel_values", "spec", "id"} and out.targets.device == META


def test_cpu_labels_with_meta_inputs_are_checked_on_the_cpu_and_moved_with_the_plan():
    x = torch.empty(B, 3, 8, 8, device=META)
    out = multimix.Mixer(Mixup(1.0), num_classes=C, seed=0)(x, torch.arange(B) % C)
    assert out.targets.device == META
    with pytest.raises(ValueError, match=r"targets holds label 9, outside \[0, num_classes=5\)"):
        multimix.Mixer(Mixup(1.0), num_classes=C, seed=0)(x, torch.full((B,), 9))


def test_hidden_mix_and_losses_run_on_meta_with_autograd():
    hidden = torch.empty(B, 7, 16, device=META, requires_grad=True)
    out = multimix.Mixer(HiddenMix(1.0), num_classes=C, per_sample=True, seed=0)(hidden, labels())
    logits = out.inputs.mean(1)[:, :C]
    loss = multimix.soft_cross_entropy(logits, out.targets)
    loss.backward()
    assert hidden.grad.shape == hidden.shape
    assert multimix.binary_cross_entropy(logits, out.targets).shape == ()


def test_validate_reads_device_values_so_it_cannot_run_on_meta():
    """The opt-in synchronous checks really read the device values (proved by meta refusing them)."""
    x = torch.empty(B, 3, 8, 8, device=META)
    mixer = multimix.Mixer(Mixup(1.0), num_classes=C, seed=0, validate=True)
    with pytest.raises((RuntimeError, NotImplementedError)):
        mixer(x, labels())


@pytest.mark.gpu
@pytest.mark.parametrize(
    "make", [*IMAGE_ADAPTERS, *SPEC_ADAPTERS, lambda: WaveMix(1.0), lambda: WaveMix(1.0, label_weight="energy")]
)
@pytest.mark.parametrize("options", MIXER_OPTIONS)
def test_no_sync_on_cuda(make, options):
    adapter = make()
    image = (Mixup, CutMix, ResizeMix, FMix, SaliencyMix)
    shape = (B, 3, 16, 12) if isinstance(adapter, image) else (B, 800) if isinstance(adapter, WaveMix) else (B, 40, 30)
    x = torch.randn(shape, device="cuda")
    y = torch.randint(0, C, (B,), device="cuda")
    lengths = torch.randint(1, shape[-1], (B,), device="cuda") if adapter.takes_lengths else None
    mixer = multimix.Mixer(adapter, num_classes=C, seed=0, **options)
    mixer(x, y, lengths=lengths)  # warm up (allocations, lazy init)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = mixer(x, y, lengths=lengths)
        multimix.soft_cross_entropy(out.targets.log(), out.targets)
    finally:
        torch.cuda.set_sync_debug_mode("default")


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from host import device_kernels, straight_line_mixup, sync_warnings  # noqa: E402  (the benchmarks' helpers, tested)


def test_device_kernels_counts_device_work_only():
    x, host = torch.empty(4, 3, device=META), torch.zeros(4, 3)
    assert device_kernels(lambda: x.view(12)[2:].t()) == 0  # views launch nothing
    assert device_kernels(lambda: host.add(1).sum()) == 0  # nor does work on the host
    assert device_kernels(lambda: (x + 1).sum(0)) == 2
    assert device_kernels(lambda: host.to(META)) == 1  # a copy to the device is one


def test_the_straight_line_floor_does_the_mixers_work_exactly():
    """host.py's bare-torch line of a per-batch Mixup call gives the Mixer's inputs and targets, bit for bit."""
    x, y = torch.rand(16, 3, 4, 4, generator=torch.Generator().manual_seed(2)), torch.arange(16) % 5
    bare = x.clone()
    targets = straight_line_mixup(bare, y, 5)()
    out = multimix.Mixer(Mixup(1.0), num_classes=5, seed=0)(x, y)
    assert torch.equal(bare, out.inputs) and torch.equal(targets, out.targets)


def test_sync_count_skips_the_debug_modes_own_notice():
    notice = (
        "Synchronization debug mode is a prototype feature and does not yet detect all synchronizing operations "
        "(Triggered internally at /pytorch/torch/csrc/cuda/Module.cpp:1003.)"
    )
    sync = "called a synchronizing CUDA operation (Triggered internally at /pytorch/c10/cuda/CUDAFunctions.cpp:151.)"
    assert sync_warnings([notice]) == 0  # torch gives it once per process: it made the first row count one sync
    assert sync_warnings([notice, sync, "an unrelated warning", sync]) == 2


# Operations per call on the device (kernel launches on a GPU, where a call on a small batch is host-bound);
# measured with torch 2.14, bounds with a little room for other releases' decompositions.
# (per batch, per sample); per sample FMix draws, transforms and sorts its noise maps on the device; ResizeMix
# computes its source maps there and gathers with fixed shapes in both modes (a traced step reuses one graph).
KERNEL_BUDGET = {CutMix: (12, 13), ResizeMix: (29, 29), FMix: (19, 31), SaliencyMix: (42, 42)}


@pytest.mark.parametrize("adapter", list(KERNEL_BUDGET), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("per_sample", [False, True])
def test_image_adapters_launch_few_kernels_per_call(adapter, per_sample):
    mixer = multimix.Mixer(adapter(1.0), num_classes=C, per_sample=per_sample, seed=0)
    x, y = torch.empty(B, 3, 32, 32, device=META), labels()
    mixer(x, y)  # the first call fills the per-size caches
    assert device_kernels(lambda: mixer(x, y)) <= KERNEL_BUDGET[adapter][per_sample]


# With label maps, the region both need (FMix's mask, SaliencyMix's boxes around the saliency peaks) is computed once:
# (per batch, per sample); computed for the labels and again for the pixels they took 17/29, 36/48 and 66/66.
MAP_KERNEL_BUDGET = {"hard FMix": (16, 28), "soft FMix": (31, 43), "SaliencyMix": (47, 47)}
MAP_ADAPTERS = {"hard FMix": lambda: FMix(1.0), "soft FMix": lambda: FMix(1.0, max_soft=0.2),
                "SaliencyMix": lambda: SaliencyMix(1.0)}  # fmt: skip


@pytest.mark.parametrize("name", list(MAP_KERNEL_BUDGET))
@pytest.mark.parametrize("per_sample", [False, True])
def test_label_maps_share_the_region_the_pixels_take(name, per_sample):
    mixer = multimix.Mixer(MAP_ADAPTERS[name](), num_classes=C, per_sample=per_sample, seed=0)
    x = torch.empty(B, 3, 32, 32, device=META)
    maps = torch.zeros(B, 32, 32, dtype=torch.long, device=META)
    mixer(x, maps)
    assert device_kernels(lambda: mixer(x, maps).targets) <= MAP_KERNEL_BUDGET[name][per_sample]


@pytest.mark.parametrize("per_sample", [False, True])
def test_specmix_with_every_sample_mixed_makes_no_pass_to_select_them(per_sample):
    """The host knows every sample is mixed (p=1): the band mask and the label lam take no selection pass."""
    mixer = multimix.Mixer(SpecMix(1.0), num_classes=C, per_sample=per_sample, seed=0)
    x, y = torch.empty(B, 40, 100, device=META), labels()
    mixer(x, y)
    assert device_kernels(lambda: mixer(x, y).targets) <= 9  # 12 when unmixed samples were selected on the device


def test_a_plan_built_by_hand_on_the_device_mixes_without_a_host_copy():
    """A per-batch plan made on the device (no host plan beside it) takes the blend weight as a tensor."""
    from multimix.plan import MixPlan

    index = torch.arange(B, device=META).roll(1)
    lam = torch.full((B,), 0.25, dtype=torch.float64, device=META)
    plan = MixPlan(index, lam, mixed=torch.ones(B, dtype=torch.bool, device=META), any_mixed=True, all_mixed=True)
    mixed, label_lam = Mixup(1.0).apply(torch.empty(B, 3, 4, 4, device=META), plan, None)
    assert mixed.device == META and label_lam is lam
    # placed on another device from there (model parallelism): its host is still on a device, never read
    from multimix.plan import placed_on

    other = torch.device("meta", 0)
    placed = placed_on(plan, {}, other)
    assert placed.host is plan
    mixed, _ = Mixup(1.0, inplace=False).apply(torch.empty(B, 3, 4, 4, device=other), placed, None)
    assert mixed.shape == (B, 3, 4, 4) and mixed.device.type == "meta"


def test_a_call_moves_plan_labels_and_lengths_to_the_device_in_one_copy():
    """CPU labels and lengths travel with the plan: one host-to-device copy per call, not one per tensor."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountCopies(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if func is torch.ops.aten._to_copy.default and args[0].device.type == "cpu" and out.device == META:
                CountCopies.count += 1
            return out

    mixer = multimix.Mixer(WaveMix(1.0), num_classes=C, seed=0)
    waves, lengths = torch.empty(B, 64, device=META), torch.full((B,), 40)
    with CountCopies():
        mixer(waves, labels("cpu"), lengths=lengths)
    assert CountCopies.count == 1


def test_a_placed_plan_asked_for_the_cpu_gives_its_host_plan():
    mixer = multimix.Mixer(Mixup(1.0), num_classes=C, seed=0)
    placed = mixer.plan_for(torch.empty(B, 3, 4, 4, device=META))
    assert placed.device == META and placed.to(torch.device("cpu"))[0] is placed.on_host
