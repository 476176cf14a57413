"""What a demanding user tries: tensors that cannot take writes, aliasing, infinities, odd states.

Each refusal must come before anything is written or drawn: the batch is unchanged and
the generator has not advanced.
"""

import math
import warnings

import numpy as np
import pytest
import torch
from conftest import looped, vectorised

import multimix
from multimix.audio import SpecMix, SpecMixup, WaveMix
from multimix.image import CutMix, Mixup


def generator_state(mixer):
    return mixer.generator.get_state().clone()


def refused(mixer, x, y, match, **kwargs):
    """Assert the call raises ``match`` and changes neither the batch nor the generator."""
    before, state = x.clone(), generator_state(mixer)
    with pytest.raises(ValueError, match=match):
        mixer(x, y, **kwargs)
    assert torch.equal(x, before) and torch.equal(generator_state(mixer), state)


@pytest.mark.parametrize("adapter", [Mixup(1.0), CutMix(1.0)])
def test_inference_mode_batches_are_refused_before_any_write(adapter):
    with torch.inference_mode():
        x = torch.rand(4, 3, 8, 8)
    mixer = multimix.Mixer(adapter, num_classes=3, seed=0)
    refused(mixer, x, torch.tensor([0, 1, 2, 0]), r"inputs was made under torch.inference_mode\(\).*clone\(\)")
    out = multimix.Mixer(Mixup(1.0, inplace=False), num_classes=3, seed=0)(x, torch.tensor([0, 1, 2, 0]))
    assert out.inputs is not x  # out of place, an inference tensor mixes fine


def test_views_whose_samples_do_not_overlap_are_mixed_in_place():
    base = torch.rand(4, 3, 8, 8)
    for view in (base[:, :2], base.permute(0, 2, 3, 1), base.to(memory_format=torch.channels_last), base[::2]):
        out = multimix.Mixer(Mixup(1.0), num_classes=3, seed=0)(view, torch.arange(view.shape[0]) % 3)
        assert out.inputs is view


def test_samples_that_share_memory_are_refused():
    mixer = multimix.Mixer(Mixup(1.0), num_classes=3, seed=0)
    expanded = torch.rand(1, 3, 8, 8).expand(4, 3, 8, 8)
    refused(mixer, expanded, torch.tensor([0, 1, 2, 0]), r"inputs has samples that share memory .*stride-0")
    windows = torch.rand(40).unfold(0, 8, 4).reshape(9, 8)  # overlapping rows of one signal
    wave_mixer = multimix.Mixer(WaveMix(1.0), num_classes=3, seed=0)
    refused(wave_mixer, windows, torch.zeros(9, dtype=torch.long), r"inputs has samples that share memory")


def test_read_only_memory_mixes_out_of_place_and_stays_as_it_was(tmp_path):
    """Read-only memory (a memory-mapped .npy) is mixed with inplace=False, as docs/concepts.md says."""
    data = np.random.default_rng(0).random((4, 3, 8, 8), dtype=np.float32)
    np.save(tmp_path / "batch.npy", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that the array is not writable
        x = torch.from_numpy(np.load(tmp_path / "batch.npy", mmap_mode="r"))
    out = multimix.Mixer(Mixup(1.0, inplace=False), num_classes=3, seed=0)(x, torch.tensor([0, 1, 2, 0]))
    lam, index = out.lam.double(), out.index
    want = lam.view(-1, 1, 1, 1) * torch.from_numpy(data).double() + (1 - lam.view(-1, 1, 1, 1)) * torch.from_numpy(
        data
    ).double()[index]
    torch.testing.assert_close(out.inputs.double(), want, rtol=1e-6, atol=1e-6)
    assert np.array_equal(np.load(tmp_path / "batch.npy"), data)


def test_one_tensor_under_two_fields_is_refused():
    x = torch.rand(4, 3, 8, 8)
    mixer = multimix.Mixer({"a": Mixup(1.0), "b": CutMix(1.0)}, num_classes=3, seed=0)
    state, before = generator_state(mixer), x.clone()
    for batch in ({"a": x, "b": x}, {"a": x, "b": x[:, :2]}):
        with pytest.raises(ValueError, match=r"fields 'a' and 'b' share memory, so mixing in place would mix it twice"):
            mixer({**batch, "labels": torch.tensor([0, 1, 2, 0])})
    assert torch.equal(x, before) and torch.equal(generator_state(mixer), state)
    out_of_place = multimix.Mixer({"a": Mixup(1.0, inplace=False), "b": Mixup(1.0, inplace=False)}, num_classes=3)
    out = out_of_place({"a": x, "b": x, "labels": torch.tensor([0, 1, 2, 0])})
    assert torch.equal(out.inputs["a"], out.inputs["b"]) and torch.equal(x, before)


ADAPTERS = [Mixup, CutMix]
SPEC_ADAPTERS = [lambda: SpecMixup(1.0), lambda: SpecMixup(1.0, domain="power"), lambda: SpecMix(1.0)]


def with_infinities(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    x.view(shape[0], -1)[:, 0] = math.inf
    x.view(shape[0], -1)[:, 1] = -math.inf
    return x


@pytest.mark.parametrize("path", [looped, vectorised])
@pytest.mark.parametrize("make", [lambda: Mixup(1.0), lambda: CutMix(1.0), *SPEC_ADAPTERS, lambda: WaveMix(1.0)])
def test_infinities_survive_calls_that_mix_nothing(path, make):
    adapter = path(make())
    shape = (6, 3, 8, 8) if adapter.min_ndim == 4 else (6, 8, 10)
    y = torch.arange(6) % 3
    for options in ({"p": 0.0}, {"off_epoch": 0}):
        x = with_infinities(shape)
        before = x.clone()
        mixer = multimix.Mixer(adapter, num_classes=3, seed=0, **options)
        if "off_epoch" in options:
            mixer.set_epoch(0)
        out = mixer(x, y)
        assert torch.equal(out.inputs, before) and not out.inputs.isnan().any()
    x = with_infinities(shape)
    before = x.clone()
    out = multimix.Mixer(adapter, num_classes=3, seed=0, p=0.5, per_sample=True)(x, y)
    unmixed = ~out.plan.mixed
    assert unmixed.any() and torch.equal(out.inputs[unmixed], before[unmixed])


@pytest.mark.parametrize("alpha", [1e-320, 5e-324])
def test_denormal_alpha_is_refused(alpha):
    with pytest.raises(ValueError, match=r"alpha=.* is below 1e-300, where the Beta\(alpha, alpha\) draws overflow"):
        Mixup(alpha)
    mixer = multimix.Mixer(Mixup(1.0), num_classes=2, alpha_schedule=lambda epoch: alpha)
    with pytest.raises(ValueError, match=r"alpha_schedule\(0\) \* alpha=.* is below 1e-300"):
        mixer.set_epoch(0)
    assert mixer.adapters[0].alpha == 1.0


def test_tiny_alphas_still_draw_finite_lams():
    out = multimix.Mixer(Mixup(1e-300), num_classes=2, per_sample=True, seed=0)(
        torch.rand(64, 1, 2, 2), torch.zeros(64, dtype=torch.long)
    )
    assert torch.isfinite(out.lam).all() and torch.isfinite(out.targets).all()


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"alphas": [0.0, 1.0]}, ValueError, r"state\['alphas'\]\[0\] must be finite and > 0"),
        ({"alphas": [1.0, "x"]}, TypeError, r"state\['alphas'\]\[1\] must be a positive real number, got str"),
        ({"alphas": [1.0]}, ValueError, r"state\['alphas'\] must hold one alpha per adapter \(2\)"),
        ({"epoch": "x"}, ValueError, r"state\['epoch'\] must be an int >= 0 or None, got 'x'"),
        ({"enabled": "no"}, TypeError, r"state\['enabled'\] must be a bool, got 'no'"),
        ({"generator": None}, TypeError, r"state\['generator'\] must be the uint8 tensor of Generator.get_state"),
        ({"generator": torch.zeros(3, dtype=torch.uint8)}, ValueError, r"state\['generator'\] is not a CPU generator"),
    ],
)
def test_load_state_dict_checks_everything_before_changing_anything(change, error, match):
    mixer = multimix.Mixer([Mixup(0.5), CutMix(2.0)], num_classes=3, seed=0)
    mixer.set_epoch(3)
    state = {**multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=3, seed=9).state_dict(), **change}
    before = mixer.state_dict()
    with pytest.raises(error, match=match):
        mixer.load_state_dict(state)
    after = mixer.state_dict()
    assert torch.equal(after.pop("generator"), before.pop("generator")) and after == before


def test_load_state_dict_refuses_none():
    with pytest.raises(TypeError, match=r"state must be the dict Mixer.state_dict\(\) returned, got NoneType"):
        multimix.Mixer(Mixup(1.0), num_classes=3).load_state_dict(None)


def test_mixer_pickles_for_spawned_workers():
    import pickle

    mixer = multimix.Mixer(Mixup(1.0), num_classes=3, seed=4)
    mixer(torch.rand(4, 3, 4, 4), torch.tensor([0, 1, 2, 0]))
    copy = pickle.loads(pickle.dumps(mixer))
    x = torch.rand(4, 3, 4, 4)
    a, b = mixer(x.clone(), torch.tensor([0, 1, 2, 0])), copy(x.clone(), torch.tensor([0, 1, 2, 0]))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.index, b.index)


def test_mixed_batch_unpacks_and_moves_every_field():
    out = multimix.Mixer(WaveMix(1.0), num_classes=3, seed=0)(
        torch.randn(4, 50), torch.tensor([0, 1, 2, 0]), lengths=torch.tensor([50, 20, 30, 40])
    )
    inputs, targets = out
    assert inputs is out.inputs and targets is out.targets
    moved = out.to("meta")
    assert moved.lengths.device.type == "meta" and moved.lam.device.type == "meta" and moved.plan is out.plan


def test_unknown_attributes_are_refused():
    mixer = multimix.Mixer(Mixup(1.0), num_classes=3)
    with pytest.raises(AttributeError, match=r"Mixer has no attribute 'mixup_enabled'.*use mixer.enabled = False"):
        mixer.mixup_enabled = False
    mixer.enabled = False
    mixer.p = 0.5  # existing attributes stay settable
    assert not mixer.enabled and mixer.p == 0.5


@pytest.mark.parametrize("context", [None, "spawn"])
def test_set_epoch_reaches_persistent_workers(context):
    mixer = multimix.Mixer(Mixup(1.0), num_classes=3, seed=0, off_epoch=1)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.rand(16, 3, 4, 4), torch.arange(16) % 3),
        batch_size=4, num_workers=2, persistent_workers=True, collate_fn=mixer.collate,
        multiprocessing_context=context,
    )  # fmt: skip
    mixer.set_epoch(0)
    assert all((batch.lam < 1).all() for batch in loader)  # mixing in epoch 0
    mixer.set_epoch(1)
    assert all((batch.lam == 1).all() for batch in loader)  # off from epoch 1, in the same workers
    mixer.enabled = True
    assert all((batch.lam < 1).all() for batch in loader)


def test_pad_collate_works_in_spawned_workers():
    from multimix.audio.collate import PadCollate

    clips = [(torch.randn(20 + 5 * i), i % 3) for i in range(8)]
    mixer = multimix.Mixer(WaveMix(1.0), num_classes=3, seed=0)
    loader = torch.utils.data.DataLoader(
        clips, batch_size=4, num_workers=1, collate_fn=PadCollate(mixer), multiprocessing_context="spawn"
    )
    batches = list(loader)
    assert [b.inputs.shape[-1] for b in batches] == [35, 55] and all(b.lengths.shape == (4,) for b in batches)


@pytest.mark.parametrize("path", [looped, vectorised])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_log_domain_silence_stays_minus_inf_when_lam_underflows(path, dtype):
    """A lam that rounds to 0 in the input's dtype must not turn -inf * 0 into NaN."""
    from multimix.plan import MixPlan

    plan = MixPlan(torch.tensor([1, 0]), torch.tensor([1e-50, 0.5], dtype=torch.float64), per_sample=True)
    x = torch.tensor([[-math.inf, 0.5], [2.0, 3.0]], dtype=dtype).view(2, 1, 2)
    out, _ = path(SpecMixup(1.0)).apply(x.clone(), plan, None)
    assert not out.isnan().any()
    assert out[0, 0, 0] == -math.inf  # silence in the mix, as the log-domain mean of -inf and 2 is
    torch.testing.assert_close(out[0, 0, 1], torch.tensor(3.0, dtype=dtype), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("adapter", [lambda: CutMix(1.0), lambda: SpecMix(1.0)])
def test_one_region_per_batch_is_drawn_from_a_mixed_sample(adapter):
    """With p < 1 the first sample may be left out (lam = 1): the batch's region still comes from a mixed lam."""
    mixer = multimix.Mixer(adapter(), num_classes=8, p=0.5, seed=0)
    shape = (8, 3, 32, 32) if isinstance(mixer.adapters[0], CutMix) else (8, 32, 40)
    first_left_out, pasted = 0, 0
    for _ in range(60):
        out = mixer(torch.rand(shape), torch.arange(8))
        if out.plan.mixed.any() and not out.plan.mixed[0]:
            first_left_out += 1
            pasted += bool((out.lam[out.plan.mixed] < 1).all())  # a lam near 1 may still round to no cut
    assert first_left_out > 5 and pasted >= 0.8 * first_left_out


def test_disjoint_views_of_one_buffer_mix_in_place_as_separate_fields():
    big = torch.rand(8, 3, 8, 8)
    a, b = big.chunk(2)  # two halves of one storage, no element shared
    out = multimix.Mixer({"a": Mixup(1.0), "b": Mixup(1.0)}, num_classes=3, seed=0)(
        {"a": a, "b": b, "labels": torch.tensor([0, 1, 2, 0])}
    )
    assert out.inputs["a"] is a and out.inputs["b"] is b


def test_targets_or_lengths_on_another_device_are_refused_before_drawing():
    mixer = multimix.Mixer(WaveMix(1.0), num_classes=3, seed=0)
    x = torch.randn(4, 50)
    state = generator_state(mixer)
    with pytest.raises(ValueError, match=r"targets is on meta but the inputs are on cpu"):
        mixer(x, torch.zeros(4, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match=r"lengths is on meta but the inputs are on cpu"):
        mixer(x, torch.tensor([0, 1, 2, 0]), lengths=torch.zeros(4, dtype=torch.long, device="meta"))
    assert torch.equal(generator_state(mixer), state)


def test_cpu_targets_with_autograd_keep_it_when_moved_with_the_plan():
    from multimix._transfer import to_device

    soft = torch.rand(4, 3, requires_grad=True)
    moved_index, moved_soft = to_device((torch.arange(4), soft * 2), torch.device("meta"))
    assert moved_soft.grad_fn is not None and moved_index.device.type == "meta"


@pytest.mark.parametrize(
    "leaf",
    [
        torch.tensor([0.25, -1.5], dtype=torch.float64),
        torch.tensor([1.5, -2.0, 3.0], dtype=torch.bfloat16),  # no NumPy dtype
        torch.tensor([1.0, 2.0, 3.0, 4.0])[::2],  # not contiguous
        torch.tensor([1.0, 2.0]).neg().conj()._neg_view(),  # a lazy negative view
        torch.tensor([True, False, True]),
    ],
)
def test_transfer_packs_each_leaf_as_its_own_bytes(leaf):
    from multimix._transfer import _bytes, to_device

    expected = leaf.resolve_neg().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
    assert _bytes(leaf).tobytes() == expected
    moved = to_device({"leaf": leaf, "index": torch.arange(3)}, torch.device("meta"))
    assert moved["leaf"].dtype == leaf.dtype and moved["leaf"].shape == leaf.shape
    assert moved["index"].dtype == torch.int64 and moved["index"].shape == (3,)
