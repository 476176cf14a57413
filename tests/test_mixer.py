import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

import multimix
from multimix.image import CutMix, Mixup
from multimix.seeding import rank_seed


def batch(n=6, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, c, (n,), generator=g)


def test_mixed_batch_contract():
    x, y = batch()
    original = x.clone()
    out = multimix.Mixer(Mixup(1.0), num_classes=5, per_sample=True, seed=0)(x, y)
    assert isinstance(out, multimix.MixedBatch)
    assert out.inputs is x
    assert out.targets.shape == (6, 5) and out.lam.shape == (6,) and out.index.shape == (6,)
    assert out.index.dtype == torch.long
    lam = out.lam.view(-1, 1, 1, 1)
    torch.testing.assert_close(out.inputs, lam * original + (1 - lam) * original[out.index])
    one_hot = torch.nn.functional.one_hot(y, 5).float()
    torch.testing.assert_close(out.targets, out.lam[:, None] * one_hot + (1 - out.lam[:, None]) * one_hot[out.index])
    assert torch.equal(out.index, out.plan.index)


@pytest.mark.parametrize("per_sample", [False, True])
def test_same_seed_same_plan_whatever_the_adapter(per_sample):
    x, y = batch(8)
    plans = [
        multimix.Mixer(adapter, num_classes=5, per_sample=per_sample, seed=11)(x.clone(), y).plan
        for adapter in (Mixup(0.7), CutMix(0.7))
    ]
    assert torch.equal(plans[0].index, plans[1].index) and torch.equal(plans[0].lam, plans[1].lam)


def test_seed_and_generator_are_equivalent_and_global_rng_is_untouched():
    x, y = batch()
    a = multimix.Mixer(Mixup(1.0), num_classes=5, seed=4)(x.clone(), y)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    b = multimix.Mixer(Mixup(1.0), num_classes=5, generator=torch.Generator().manual_seed(4))(x.clone(), y)
    assert torch.equal(torch.rand(1), before)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.lam, b.lam)


def test_default_seed_follows_torch_manual_seed():
    x, y = batch()
    torch.manual_seed(123)
    a = multimix.Mixer(Mixup(1.0), num_classes=5)(x.clone(), y)
    torch.manual_seed(123)
    b = multimix.Mixer(Mixup(1.0), num_classes=5)(x.clone(), y)
    assert torch.equal(a.inputs, b.inputs)


@pytest.mark.parametrize("n", [1, 3, 7])
def test_odd_batches_and_a_batch_of_one(n):
    x, y = batch(n)
    out = multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=5, per_sample=True, seed=0)(x, y)
    assert out.inputs.shape[0] == n
    torch.testing.assert_close(out.targets.sum(1), torch.ones(n))
    if n == 1:
        assert out.index.tolist() == [0]
        for adapter in (Mixup(1.0), CutMix(1.0)):  # unmixed: label weight 1, as the plan's lam
            for per_sample in (False, True):
                one = multimix.Mixer(adapter, num_classes=5, per_sample=per_sample, seed=0)(x.clone(), y)
                assert one.lam.tolist() == [1.0] and one.plan.lam.tolist() == [1.0]
                torch.testing.assert_close(one.inputs, x)


def test_p_zero_and_disabled_are_identity_with_smoothing_kept():
    x, y = batch()
    original = x.clone()
    for mixer in (
        multimix.Mixer(Mixup(1.0), num_classes=5, p=0.0, label_smoothing=0.1, seed=0),
        multimix.Mixer(Mixup(1.0), num_classes=5, off_epoch=0, label_smoothing=0.1, seed=0),
    ):
        mixer.set_epoch(0)
        out = mixer(x, y)
        assert torch.equal(x, original) and (out.lam == 1).all() and torch.equal(out.index, torch.arange(6))
        expected = torch.full((6, 5), 0.02)
        expected[torch.arange(6), y] = 0.92
        torch.testing.assert_close(out.targets, expected)


def test_p_mixes_about_that_fraction():
    mixer = multimix.Mixer(Mixup(1.0), num_classes=2, per_sample=True, p=0.3, seed=0)
    mixed = sum(
        int((mixer(torch.randn(100, 1, 2, 2), torch.zeros(100, dtype=torch.long)).lam < 1).sum()) for _ in range(20)
    )
    assert mixed / 2000 == pytest.approx(0.3, abs=0.03)


def test_switch_prob_chooses_cutmix_like_timm():
    mixer = multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=5, switch_prob=0.25, seed=0)
    choices = [mixer(*batch()).plan.choice for _ in range(800)]
    assert sum(choices) / len(choices) == pytest.approx(0.25, abs=0.05)
    never = multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=5, switch_prob=[1.0, 0.0], seed=0)
    assert all(never(*batch()).plan.choice == 0 for _ in range(20))


def test_label_smoothing_and_soft_row_targets():
    x, y = batch()
    rows = torch.nn.functional.one_hot(y, 5).float()
    a = multimix.Mixer(Mixup(1.0), num_classes=5, label_smoothing=0.2, seed=1)(x.clone(), y)
    b = multimix.Mixer(Mixup(1.0), num_classes=5, label_smoothing=0.2, seed=1)(x.clone(), rows)
    torch.testing.assert_close(a.targets, b.targets)
    torch.testing.assert_close(a.targets.sum(1), torch.ones(6))
    assert float(a.targets.min()) >= 0.2 / 5 - 1e-6


def test_multi_label_targets_mix_convexly():
    x, _ = batch(4)
    rows = torch.tensor([[1.0, 1, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    out = multimix.Mixer(Mixup(1.0), num_classes=3, multi_label=True, per_sample=True, seed=0)(x, rows)
    lam = out.lam[:, None]
    torch.testing.assert_close(out.targets, lam * rows + (1 - lam) * rows[out.index])


def test_dict_batches_mix_named_fields_with_one_plan():
    x, y = batch()
    depth = torch.randn(6, 1, 8, 8)
    originals = x.clone(), depth.clone()
    ids = torch.arange(6)
    mixer = multimix.Mixer({"pixel_values": Mixup(1.0), "depth": Mixup(1.0)}, num_classes=5, per_sample=True, seed=0)
    out = mixer({"pixel_values": x, "depth": depth, "ids": ids, "labels": y})
    assert set(out.inputs) == {"pixel_values", "depth", "ids"}
    assert out.inputs["ids"] is ids
    lam = out.lam.view(-1, 1, 1, 1)
    for name, original in zip(("pixel_values", "depth"), originals, strict=True):
        torch.testing.assert_close(out.inputs[name], lam * original + (1 - lam) * original[out.index])


def test_collate_fn_in_workers_draws_different_reproducible_plans():
    data = TensorDataset(torch.randn(64, 3, 4, 4), torch.randint(0, 4, (64,)))
    mixer = multimix.Mixer(Mixup(1.0), num_classes=4, per_sample=True, seed=0)

    def lams():
        loader = DataLoader(
            data, batch_size=16, num_workers=2, collate_fn=mixer.collate, generator=torch.Generator().manual_seed(0)
        )
        return [b.lam for b in loader]

    first, second = lams(), lams()
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], first[1])  # the two workers do not repeat each other
    batch0 = first[0]
    assert batch0.shape == (16,)


def test_workers_of_ranks_seeded_alike_draw_apart():
    """Ranks seeded alike (seed_everything) build the same DataLoader seeds; the rank's reseed of the mixer
    (RankStates, the callbacks) must still reach its workers' plans."""
    data = TensorDataset(torch.randn(32, 3, 4, 4), torch.randint(0, 4, (32,)))

    def lams(rank: int) -> list[torch.Tensor]:
        mixer = multimix.Mixer(Mixup(1.0), num_classes=4, per_sample=True, seed=0)
        if rank > 0:
            mixer.generator.manual_seed(rank_seed(mixer.seed, rank))
        loader = DataLoader(
            data, batch_size=8, num_workers=2, collate_fn=mixer.collate, generator=torch.Generator().manual_seed(0)
        )
        return [b.lam for b in loader]

    rank0, again, rank1 = lams(0), lams(0), lams(1)
    assert all(torch.equal(a, b) for a, b in zip(rank0, again, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(rank0, rank1, strict=True))


def test_collate_in_the_main_process_mixes_the_stacked_batch():
    mixer = multimix.Mixer(Mixup(1.0), num_classes=4, seed=0)
    samples = [(torch.full((1, 2, 2), float(i)), i) for i in range(4)]
    out = mixer.collate(samples)
    lam = out.lam.view(-1, 1, 1, 1)
    base = torch.arange(4.0).view(4, 1, 1, 1)
    torch.testing.assert_close(out.inputs, (lam * base + (1 - lam) * base[out.index]).expand(4, 1, 2, 2))


def test_alpha_schedule_and_off_epoch():
    adapters = [Mixup(1.0), CutMix(0.5)]
    mixer = multimix.Mixer(adapters, num_classes=5, off_epoch=3, alpha_schedule=lambda e: 1 + e, seed=0)
    mixer.set_epoch(1)
    assert [a.alpha for a in adapters] == [2.0, 1.0] and mixer.enabled
    mixer.set_epoch(3)
    assert not mixer.enabled
    with pytest.raises(ValueError, match=r"alpha must be finite and > 0"):
        multimix.Mixer(Mixup(1.0), num_classes=5, alpha_schedule=lambda e: 0.0).set_epoch(0)
    for returned in (None, "x"):  # float()'s own message named neither the schedule nor the epoch
        mixer = multimix.Mixer(Mixup(1.0), num_classes=5, alpha_schedule=lambda e, r=returned: r)
        with pytest.raises(TypeError, match=rf"alpha_schedule\(2\) must return a number, .* got {returned!r}"):
            mixer.set_epoch(2)
    assert mixer.adapters[0].alpha == 1.0 and mixer.state_dict()["epoch"] is None  # nothing changed
    multimix.Mixer(Mixup(1.0), num_classes=5, alpha_schedule=lambda e: torch.tensor(0.5)).set_epoch(1)


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1])
def test_a_seed_torch_cannot_take_is_refused_with_the_range(seed):
    with pytest.raises(ValueError, match=r"seed must lie in \[-2\*\*63, 2\*\*64\), .* got -?\d+"):
        multimix.Mixer(Mixup(1.0), num_classes=5, seed=seed)
    assert multimix.Mixer(Mixup(1.0), num_classes=5, seed=2**64 - 1).seed == 2**64 - 1


def test_state_dict_resumes_the_same_plans():
    mixer = multimix.Mixer(Mixup(1.0), num_classes=5, per_sample=True, seed=0)
    mixer(*batch())
    state = mixer.state_dict()
    expected = mixer(*batch()).lam
    fresh = multimix.Mixer(Mixup(1.0), num_classes=5, per_sample=True, seed=99)
    fresh.load_state_dict(state)
    assert torch.equal(fresh(*batch()).lam, expected)
    with pytest.raises(ValueError, match=r"state is missing keys \['alphas'"):
        fresh.load_state_dict({"generator": state["generator"], "enabled": True, "epoch": None})


def test_mixed_batch_to_keeps_values():
    out = multimix.Mixer(Mixup(1.0), num_classes=5, seed=0)(*batch())
    moved = out.to("cpu")
    assert torch.equal(moved.inputs, out.inputs) and torch.equal(moved.targets, out.targets)


BAD_CALLS = [
    (
        lambda m: m(torch.randn(4, 3, 8, 8), torch.arange(3)),
        ValueError,
        r"targets has batch size 3 but inputs have batch size 4",
    ),
    (
        lambda m: m(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 5])),
        ValueError,
        r"targets holds label 5, outside \[0, num_classes=5\)",
    ),
    (
        lambda m: m(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, -100])),
        ValueError,
        r"targets holds label -100, outside \[0, num_classes=5\); a sample's class cannot be ignored \(ignored "
        r"labels such as -100 belong to label maps and token labels\)",
    ),
    (
        lambda m: m(torch.randn(4, 3, 8, 8), torch.tensor([0.0, 1, 2, 3])),
        TypeError,
        r"class-index targets \(B,\) must be an integer tensor, got dtype torch.float32",
    ),
    (
        lambda m: m(torch.randn(4, 3, 8, 8), torch.full((4, 4), 0.25)),
        ValueError,
        r"target rows must have width num_classes=5, got shape \(4, 4\)",
    ),
    (
        lambda m: m(torch.randn(4, 3, 8, 8), torch.ones(4, 5)),
        ValueError,
        r"single-label target rows must sum to 1, found a row summing to 5.*multi_label=True",
    ),
    (lambda m: m(torch.randn(0, 3, 8, 8), torch.arange(0)), ValueError, r"inputs is an empty batch"),
    (lambda m: m(torch.randn(4, 8, 8), torch.arange(4)), ValueError, r"at least 4 dimensions"),
    (
        lambda m: m(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.arange(4)),
        TypeError,
        r"inputs must be a floating-point tensor \(B, C, H, W\) or \(B, C, T, H, W\), got dtype torch.uint8",
    ),
    (lambda m: m([1, 2], torch.arange(2)), TypeError, r"inputs must be a torch.Tensor, got list"),
    (lambda m: m(torch.randn(4, 3, 8, 8)), ValueError, r"targets is missing"),
    (
        lambda m: m({"pixel_values": torch.randn(4, 3, 8, 8)}, torch.arange(4)),
        TypeError,
        r"got a dict batch but this Mixer has no field names",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), BAD_CALLS)
def test_bad_calls_raise_and_change_nothing(call, error, match):
    mixer = multimix.Mixer(Mixup(1.0), num_classes=5, seed=0)
    state = mixer.generator.get_state()
    with pytest.raises(error, match=match):
        call(mixer)
    assert torch.equal(mixer.generator.get_state(), state)  # no plan was drawn


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: CutMix(1.0), (4, 3, 0, 8)),
        (lambda: multimix.image.FMix(1.0), (4, 3, 8, 0)),
        (lambda: multimix.image.ResizeMix(), (4, 0, 8, 8)),
        (lambda: multimix.image.SaliencyMix(1.0), (4, 3, 0, 8)),
        (lambda: multimix.audio.SpecMix(1.0), (4, 0, 16)),
        (lambda: multimix.audio.WaveMix(1.0), (4, 0)),
        (lambda: Mixup(1.0), (4, 3, 0, 8)),
    ],
)
def test_samples_with_an_empty_axis_are_refused_by_name(make, shape):
    """An empty axis has no area to cut or weigh labels by: one message naming it (not a division by zero)."""
    mixer = multimix.Mixer(make(), num_classes=5, seed=0)
    state = mixer.generator.get_state()
    with pytest.raises(ValueError, match=r"inputs has an empty axis in its samples \(shape \(4, "):
        mixer(torch.randn(shape), torch.arange(4))
    assert torch.equal(mixer.generator.get_state(), state)


def test_bad_input_leaves_tensors_unchanged():
    x = torch.randn(4, 3, 8, 8)
    original = x.clone()
    with pytest.raises(ValueError, match="targets has batch size"):
        multimix.Mixer(Mixup(1.0), num_classes=5, seed=0)(x, torch.arange(3))
    assert torch.equal(x, original)
    good, depth = torch.randn(4, 3, 8, 8), torch.randn(3, 1, 8, 8)
    saved = good.clone()
    mixer = multimix.Mixer({"a": Mixup(1.0), "b": Mixup(1.0)}, num_classes=5, seed=0)
    with pytest.raises(ValueError, match=r"field 'b' has batch size 3, other fields 4"):
        mixer({"a": good, "b": depth, "labels": torch.arange(4)})
    assert torch.equal(good, saved)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"adapters": "mixup"}, TypeError, r"adapters must be an Adapter, a list or a dict of them, got str"),
        ({"adapters": []}, ValueError, r"adapters is an empty list"),
        ({"adapters": [Mixup(1.0), "cutmix"]}, TypeError, r"adapters\[1\] must be a multimix Adapter"),
        ({"num_classes": 0}, ValueError, r"num_classes must be an int >= 1, got 0"),
        ({"num_classes": 2.5}, TypeError, r"num_classes must be an int >= 1, got float"),
        ({"p": -0.1}, ValueError, r"p must be in \[0, 1\], got -0.1"),
        ({"label_smoothing": 2}, ValueError, r"label_smoothing must be in \[0, 1\], got 2"),
        ({"switch_prob": 0.5}, ValueError, r"switch_prob=0.5 as a single number needs exactly two adapters"),
        (
            {"adapters": [Mixup(1.0), CutMix(1.0)], "switch_prob": [0.5]},
            ValueError,
            r"switch_prob must give one probability per adapter \(2\)",
        ),
        ({"seed": 1, "generator": torch.Generator()}, ValueError, r"pass seed= or generator=, not both"),
        ({"seed": "1"}, TypeError, r"seed must be an int, got str"),
        ({"off_epoch": -1}, ValueError, r"off_epoch must be an int >= 0 or None, got -1"),
        ({"alpha_schedule": 3}, TypeError, r"alpha_schedule must be a callable"),
        ({"per_sample": 1}, TypeError, r"per_sample must be a bool, got int 1"),
            ({"validate": "yes"}, TypeError, r"validate must be a bool, got str"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    args = {"adapters": Mixup(1.0), "num_classes": 5, **kwargs}
    with pytest.raises(error, match=match):
        multimix.Mixer(args.pop("adapters"), args.pop("num_classes"), **args)


def test_dict_mixer_errors():
    mixer = multimix.Mixer({"pixel_values": Mixup(1.0)}, num_classes=5, seed=0)
    with pytest.raises(ValueError, match=r"batch has no field\(s\) \['pixel_values'\]; it has \['image', 'labels'\]"):
        mixer({"image": torch.randn(2, 3, 4, 4), "labels": torch.arange(2)})
    with pytest.raises(ValueError, match=r"batch has no targets under 'labels'"):
        mixer({"pixel_values": torch.randn(2, 3, 4, 4)})
    with pytest.raises(TypeError, match=r"this Mixer mixes dict batches with fields \['pixel_values'\], got Tensor"):
        mixer(torch.randn(2, 3, 4, 4), torch.arange(2))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 12),
    per_sample=st.booleans(),
    p=st.sampled_from([0.0, 0.5, 1.0]),
    use_cutmix=st.booleans(),
    smoothing=st.sampled_from([0.0, 0.1]),
    seed=st.integers(0, 2**31),
    loop=st.booleans(),
)
def test_mixer_invariants(n, per_sample, p, use_cutmix, smoothing, seed, loop):
    x = torch.randn(n, 2, 5, 6, generator=torch.Generator().manual_seed(seed))
    original = x.clone()
    adapter = CutMix(1.0) if use_cutmix else Mixup(1.0)
    adapter.loop_min_numel = 0 if loop else 1 << 40
    mixer = multimix.Mixer(adapter, num_classes=4, per_sample=per_sample, p=p, label_smoothing=smoothing, seed=seed)
    out = mixer(x, torch.arange(n) % 4)
    torch.testing.assert_close(out.targets.sum(1), torch.ones(n))
    assert ((out.lam >= 0) & (out.lam <= 1)).all()
    assert ((out.index >= 0) & (out.index < n)).all()
    untouched = out.lam == 1
    assert torch.equal(out.inputs[untouched], original[untouched])  # lam = 1 is identity
    if p == 0.0:
        assert torch.equal(out.inputs, original) and torch.equal(out.index, torch.arange(n))
    if p == 1.0:
        assert sorted(out.index.tolist()) == list(range(n))  # a permutation


def test_an_adapter_overriding_prepare_with_three_arguments_still_mixes_label_maps():
    """``prepare(x, plan, region)`` as adapters wrote it before lengths: the Mixer passes lengths only with lengths."""

    class PreparedCutMix(CutMix):
        def prepare(self, x, plan, region):
            return region

    x, masks = torch.rand(4, 3, 8, 8), torch.randint(0, 3, (4, 8, 8))
    out = multimix.Mixer(PreparedCutMix(1.0), num_classes=3, seed=0)(x.clone(), masks)
    plain = multimix.Mixer(CutMix(1.0), num_classes=3, seed=0)(x.clone(), masks)
    assert torch.equal(out.inputs, plain.inputs) and torch.equal(out.targets, plain.targets)


def test_set_epoch_leaves_alone_what_no_schedule_setting_governs():
    """Without alpha_schedule an alpha set by hand stays; without off_epoch so does enabled (callbacks call
    set_epoch every epoch, and it used to undo both)."""
    adapter = Mixup(1.0)
    mixer = multimix.Mixer(adapter, num_classes=5, seed=0)
    adapter.alpha, mixer.enabled = 0.2, False
    mixer.set_epoch(1)
    assert adapter.alpha == 0.2 and not mixer.enabled and mixer.state_dict()["epoch"] == 1
    scheduled = multimix.Mixer(Mixup(1.0), num_classes=5, off_epoch=2, alpha_schedule=lambda e: 0.5, seed=0)
    scheduled.enabled = False
    scheduled.set_epoch(1)  # the schedule governs both: epoch 1 < off_epoch mixes, at half the initial alpha
    assert scheduled.enabled and scheduled.adapters[0].alpha == 0.5


def test_settings_assigned_later_are_checked_and_take_effect():
    mixer = multimix.Mixer(Mixup(1.0), num_classes=5, seed=0)
    mixer.off_epoch = 1  # the schedule reads it: set_epoch(3) switches mixing off
    mixer.set_epoch(3)
    assert not mixer.enabled and mixer.off_epoch == 1
    mixer.alpha_schedule = lambda epoch: 2.0
    mixer.set_epoch(0)
    assert mixer.adapters[0].alpha == 2.0 and mixer.enabled
    mixer.p, mixer.label_smoothing = 0.5, 0.1
    assert (mixer.p, mixer.label_smoothing) == (0.5, 0.1)
    state = mixer.state_dict()
    for name, value, error, match in [
        ("p", 7.0, ValueError, r"p must be in \[0, 1\], got 7.0"),
        ("label_smoothing", 2.0, ValueError, r"label_smoothing must be in \[0, 1\], got 2.0"),
        ("num_classes", 0, ValueError, r"num_classes"),
        ("label_mode", "mean", ValueError, r"label_mode must be one of"),
        ("per_sample", 1, TypeError, r"per_sample must be a bool, got int 1"),
        ("ignore_index", "x", TypeError, r"ignore_index must be an int"),
        ("off_epoch", -1, ValueError, r"off_epoch must be an int >= 0 or None, got -1"),
        ("alpha_schedule", 3, TypeError, r"alpha_schedule must be a callable"),
        ("seed", 5, AttributeError, r"Mixer.seed is fixed .*mixer.generator.manual_seed\(seed\)"),
        ("switch", "sample", AttributeError, r"Mixer.switch is fixed"),
        ("generator", 3, TypeError, r"generator must be a torch.Generator, got int"),  # the next call failed
    ]:
        with pytest.raises(error, match=match):
            setattr(mixer, name, value)
    assert (mixer.p, mixer.label_smoothing, mixer.off_epoch, mixer.seed) == (0.5, 0.1, 1, 0)
    assert torch.equal(mixer.state_dict()["generator"], state["generator"])
    mixer.generator = torch.Generator().manual_seed(3)  # a generator of one's own is a setting like the others
    reference = multimix.Mixer(Mixup(2.0), num_classes=5, p=0.5, seed=3).draw(4)
    assert torch.equal(mixer.draw(4).lam, reference.lam)
    switched = multimix.Mixer([Mixup(1.0), CutMix(1.0)], num_classes=5, per_sample=True, switch="sample")
    with pytest.raises(ValueError, match="per_sample stays True"):
        switched.per_sample = False


@pytest.mark.parametrize("per_sample", [False, True])
def test_fields_given_one_adapter_share_its_region(per_sample):
    """Aligned modalities (RGB and depth) mixed by one CutMix object get one box each sample; separate CutMix
    objects draw their own."""
    rgb = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 3, 16, 16).clone()
    depth = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 1, 16, 16).clone()
    cut = CutMix(1.0)
    shared = multimix.Mixer({"rgb": cut, "depth": cut}, num_classes=3, per_sample=per_sample, seed=3)
    out = shared({"rgb": rgb.clone(), "depth": depth.clone(), "labels": torch.arange(6) % 3})
    assert torch.equal(out.inputs["rgb"][:, 0], out.inputs["depth"][:, 0])  # the same pixels moved in both
    assert not torch.equal(out.inputs["rgb"], rgb)
    apart = multimix.Mixer({"rgb": CutMix(1.0), "depth": CutMix(1.0)}, num_classes=3, per_sample=per_sample, seed=3)
    out = apart({"rgb": rgb.clone(), "depth": depth.clone(), "labels": torch.arange(6) % 3})
    assert not torch.equal(out.inputs["rgb"][:, 0], out.inputs["depth"][:, 0])
