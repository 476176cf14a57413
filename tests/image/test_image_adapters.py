"""ResizeMix, FMix, SaliencyMix against straightforward reference implementations on the same plan and region."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from adapter_cases import PLAN, images, run
from conftest import fixed_plan, looped, vectorised
from hypothesis import given, settings
from hypothesis import strategies as st

import multimix
from multimix.image import CutMix, FMix, Mixup, ResizeMix, SaliencyMix
from multimix.image.fmix import _device_generator, _thresholds, fourier_noise
from multimix.image.saliencymix import saliency_peaks

ADAPTERS = [ResizeMix, FMix, SaliencyMix]
AS_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}  # each element size's integer type


def official_binarise(noise, lam):
    """FMix's binarise_mask with max_soft=0 (Harris et al.'s code): the top round(lam * N) values keep the sample."""
    flat = noise.reshape(-1).numpy()
    idx = flat.argsort()[::-1]
    mask = np.zeros(flat.size)
    mask[idx[: round(lam * flat.size)]] = 1
    return torch.from_numpy(mask.reshape(noise.shape))


@pytest.mark.parametrize("path", [looped, vectorised])
def test_fmix_equals_the_official_binarised_mask_on_the_same_noise(path):
    x = images()
    out, lam, region = run(path(FMix(1.0)), x)
    for i in range(6):
        mask = official_binarise(region.noise[i], float(PLAN.lam[i]))
        j = int(PLAN.index[i])
        expected = x[i] if i == 5 else torch.where(mask.bool(), x[i], x[j])
        assert torch.equal(out[i], expected)
        assert float(lam[i]) == (float(mask.mean()) if i != 5 else 1.0)


def test_fourier_noise_is_the_official_spectrum():
    # make_low_freq_image of the FMix code, transcribed with the same Gaussian draws (h, w <= grid: no resampling)
    h, w, decay = 12, 10, 3.0
    noise = fourier_noise(1, h, w, decay, torch.Generator().manual_seed(3))
    param = torch.randn(1, h, w // 2 + 1, 2, generator=torch.Generator().manual_seed(3)).double().numpy()
    fx, fy = np.fft.fftfreq(w)[: w // 2 + 1], np.fft.fftfreq(h)[:, None]
    scale = 1.0 / np.maximum(np.sqrt(fx * fx + fy * fy), 1.0 / max(w, h)) ** decay
    spectrum = scale[None, :, :, None] * param
    expected = np.real(np.fft.irfftn(spectrum[..., 0] + 1j * spectrum[..., 1], (h, w), axes=(-2, -1)))
    np.testing.assert_allclose(noise.numpy(), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())  # float32


def thresholds_by_hand(noise, kept):
    """Each row's value with round(kept * size) of its values above: midway between two (1 beyond at the ends)."""
    out = []
    for row, k in zip(noise.flatten(1).tolist(), kept.tolist(), strict=True):
        values, rank = sorted(row, reverse=True), min(max(round(k * len(row)), 0), len(row))
        above = values[rank - 1] if rank > 0 else values[0] + 1
        below = values[rank] if rank < len(row) else values[-1] - 1
        out.append((above + below) / 2)
    return torch.tensor(out, dtype=torch.float32)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 5), size=st.sampled_from([(1, 1), (5, 7), (32, 32)]),
       kept=st.lists(st.sampled_from([0.0, 1e-5, 0.3, 0.5, 0.999999, 1.0]), min_size=2, max_size=2))  # fmt: skip
def test_thresholds_keep_the_drawn_share_of_each_map(seed, n, size, kept):
    """The threshold rule (the sorted noise read at each share's rank) against loops."""
    noise = fourier_noise(n, *size, 3.0, torch.Generator().manual_seed(seed))
    fractions = np.array([[kept[0]] * n, np.linspace(0, 1, n)])  # (K, N), every share from none to all
    ascending = noise.flatten(1).sort(dim=1).values
    thresholds = _thresholds(ascending, fractions)
    for k in range(2):
        expected = thresholds_by_hand(noise, torch.from_numpy(fractions[k]))
        assert torch.equal(thresholds[k], expected)
        counts = (noise.flatten(1) > thresholds[k].view(-1, 1)).sum(1)  # no ties in Gaussian noise
        assert counts.tolist() == np.clip(np.round(fractions[k] * noise[0].numel()), 0, noise[0].numel()).tolist()


def test_device_noise_replays_from_its_seed():
    """A map per sample off the CPU comes from a device generator seeded by one draw of the Mixer's: same seed,
    same maps (shown with a CPU device generator); meta, which holds no values, takes none."""
    first, again, other = (fourier_noise(3, 40, 40, 3.0, _device_generator(torch.device("cpu"), seed), device="cpu")
                           for seed in (7, 7, 8))  # fmt: skip
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert _device_generator(torch.device("meta"), 7) is None
    assert fourier_noise(3, 40, 40, 3.0, None, device="meta").shape == (3, 32, 32)
    for generator, device in ((None, None), (None, "cpu"), (7, "cpu"), (7, None)):
        with pytest.raises(ValueError, match=r"generator must be a torch.Generator \(None only with device='meta'\)"):
            fourier_noise(3, 40, 40, 3.0, generator, device=device)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31), n=st.integers(1, 6), h=st.integers(1, 70), w=st.integers(1, 70),
    per_sample=st.booleans(), path=st.sampled_from([looped, vectorised]), soft=st.sampled_from([0.0, 0.2]),
)  # fmt: skip
def test_fmix_lam_is_the_mask_mean_and_rows_sum_to_one(seed, n, h, w, per_sample, path, soft):
    # Sample i holds the value i everywhere, so what was kept is countable.
    x = torch.arange(n, dtype=torch.float64).view(n, 1, 1, 1).expand(n, 2, h, w).contiguous()
    out = multimix.Mixer(path(FMix(1.0, max_soft=soft)), num_classes=n, per_sample=per_sample, seed=seed)(
        x, torch.arange(n)
    )
    own = (out.inputs - out.index.view(-1, 1, 1, 1)) / (torch.arange(n) - out.index).view(-1, 1, 1, 1)
    kept = torch.where(out.plan.mixed.view(-1, 1, 1, 1), own, 1.0).mean((1, 2, 3))
    torch.testing.assert_close(out.lam.double(), kept, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.targets.sum(1), torch.ones(n))


def saliency_by_hand(image, grid=32):
    """The saliency rule with loops: <= grid cell centres, 3x3 mean blur, central-difference gradient, argmax."""
    _, h, w = image.shape
    sy, sx = max(1, h // grid), max(1, w // grid)
    gh, gw = h // sy, w // sx
    grey = torch.stack([torch.stack([image[:, r * sy + sy // 2, q * sx + sx // 2].mean() for q in range(gw)])
                        for r in range(gh)]).double()  # fmt: skip
    blur = torch.zeros_like(grey)
    for r in range(gh):
        for q in range(gw):
            blur[r, q] = grey[max(r - 1, 0) : r + 2, max(q - 1, 0) : q + 2].mean()
    best, peak = -1.0, (0, 0)
    for r in range(gh):
        for q in range(gw):
            dy = (blur[min(r + 1, gh - 1), q] - blur[max(r - 1, 0), q]) / 2
            dx = (blur[r, min(q + 1, gw - 1)] - blur[r, max(q - 1, 0)]) / 2
            if dy * dy + dx * dx > best + 1e-9:
                best, peak = float(dy * dy + dx * dx), (r, q)
    return min(peak[0] * sy + sy // 2, h - 1), min(peak[1] * sx + sx // 2, w - 1)


def saliency_in_float32(x, grid=32):
    """The same rule batched the plain way (one-channel maps, halved differences, argmax over rows), in float32."""
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    sy, sx = max(1, h // grid), max(1, w // grid)
    gh, gw = h // sy, w // sx
    grey = x[..., sy // 2 :: sy, sx // 2 :: sx][..., :gh, :gw].reshape(n, -1, gh, gw).float().mean(1, keepdim=True)
    padded = F.pad(F.avg_pool2d(grey, 3, 1, 1, count_include_pad=False), (1, 1, 1, 1), mode="replicate")[:, 0]
    dy, dx = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) / 2, (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) / 2
    peak = (dy.square() + dx.square()).flatten(1).argmax(1)
    return (peak // gw * sy + sy // 2).clamp(max=h - 1), (peak % gw * sx + sx // 2).clamp(max=w - 1)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 9), c=st.integers(1, 3), frames=st.sampled_from([(), (2,)]),
       h=st.integers(1, 80), w=st.integers(1, 80), levels=st.sampled_from([0, 2, 255]),
       dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))  # fmt: skip
def test_saliency_peaks_equal_the_plain_float32_rule(seed, n, c, frames, h, w, levels, dtype):
    """Pooling the maps as channels of one channels_last image gives the same peaks, ties (few grey levels),
    clips (B, C, T, H, W) and half precision included."""
    x = torch.rand(n, c, *frames, h, w, generator=torch.Generator().manual_seed(seed))
    x = ((x * levels).round() if levels else x).to(dtype)
    rows, cols = saliency_peaks(x)
    expected_rows, expected_cols = saliency_in_float32(x)
    assert torch.equal(rows, expected_rows) and torch.equal(cols, expected_cols)


def test_saliencymix_gives_unmixed_samples_an_empty_box():
    """Unmixed samples keep every pixel and lam 1 because their drawn box is empty, not because of a mask."""
    x = images(h=12, w=10, seed=4)
    plan = PLAN  # sample 5 is unmixed
    region = SaliencyMix(1.0).draw_region(x, plan, torch.Generator())
    assert region.offsets[5].tolist() == [0, 0, 0, 0] and bool((region.offsets[:5, 1] > 0).any())
    boxes = SaliencyMix(1.0).boxes(x, plan, region)
    assert int(boxes[5, 1] - boxes[5, 0]) == 0 and int(boxes[5, 3] - boxes[5, 2]) == 0


@pytest.mark.parametrize("path", [looped, vectorised])
@pytest.mark.parametrize("size", [(16, 20), (70, 66)])
def test_saliencymix_box_is_centred_on_the_partners_peak(path, size):
    x = images(h=size[0], w=size[1], seed=2)
    x[:, :, size[0] // 3, size[1] // 4] += 4.0  # a bright dot: a clear saliency peak
    x[2, :, 5, 7] += 8.0
    out, lam, _ = run(path(SaliencyMix(1.0)), x)
    rows, cols = saliency_peaks(x)
    expected = x.clone()
    h, w = size
    for i in range(6):
        j = int(PLAN.index[i])
        cy, cx = saliency_by_hand(x[j])
        assert (int(rows[j]), int(cols[j])) == (cy, cx)
        half_h, half_w = int(0.5 * (1 - float(PLAN.lam[i])) ** 0.5 * h), int(0.5 * (1 - float(PLAN.lam[i])) ** 0.5 * w)
        y1, y2, x1, x2 = max(cy - half_h, 0), min(cy + half_h, h), max(cx - half_w, 0), min(cx + half_w, w)
        if i != 5:
            expected[i, :, y1:y2, x1:x2] = x[j, :, y1:y2, x1:x2]
        assert float(lam[i]) == (1 - (y2 - y1) * (x2 - x1) / (h * w) if i != 5 else 1.0)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("adapter_cls", ADAPTERS)
@pytest.mark.parametrize("per_sample", [True, False])
@pytest.mark.parametrize("shape", [(8, 3, 32, 32), (8, 3, 2, 32, 32)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_no_host_device_sync_on_meta(adapter_cls, per_sample, shape, memory_format):
    """Every device path (the layouts a GPU batch comes in, clips too) runs on meta tensors: no value is read back."""
    if len(shape) == 5 and memory_format == torch.channels_last:
        memory_format = torch.channels_last_3d
    x = torch.empty(shape, device="meta").contiguous(memory_format=memory_format)
    mixer = multimix.Mixer([Mixup(0.8), CutMix(1.0), adapter_cls(1.0)], num_classes=5, per_sample=per_sample,
                           switch_prob=[0.0, 0.0, 1.0], seed=0)  # fmt: skip
    out = mixer(x, torch.zeros(8, dtype=torch.long, device="meta"))
    assert out.inputs is x and out.targets.device.type == "meta" and out.lam.shape == (8,)


@pytest.mark.parametrize("adapter_cls", ADAPTERS)
@pytest.mark.parametrize("path", [looped, vectorised])
@pytest.mark.parametrize("per_sample", [True, False])
def test_in_place_unmixed_rows_bit_exact_and_out_of_place(adapter_cls, path, per_sample):
    x = images(8, 24, 24)
    x[:, 0, 0, 0] = float("inf")
    mixer = multimix.Mixer(path(adapter_cls(1.0)), num_classes=8, per_sample=per_sample, p=0.5, seed=5)
    original = x.clone()
    out = mixer(x, torch.arange(8))
    assert out.inputs is x and adapter_cls.hf_inputs == ("pixel_values",)
    unmixed = ~out.plan.mixed
    assert unmixed.any() and torch.equal(x[unmixed], original[unmixed])
    copy = multimix.Mixer(path(adapter_cls(1.0, inplace=False)), num_classes=8, per_sample=per_sample, p=0.5, seed=5)(
        original, torch.arange(8)
    )
    assert copy.inputs is not original and torch.equal(copy.inputs, x)


def soft_fmix(alpha: float, *, inplace: bool) -> FMix:
    """FMix with soft mask edges: its vectorised path blends instead of selecting."""
    return FMix(alpha, max_soft=0.2, inplace=inplace)


@pytest.mark.parametrize("make", [Mixup, CutMix, *ADAPTERS, soft_fmix])
@pytest.mark.parametrize("path", [looped, vectorised])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize(("shape", "memory_format"), [((6, 3, 16, 20), torch.channels_last),
                                                      ((6, 3, 2, 16, 20), torch.channels_last_3d)])  # fmt: skip
def test_out_of_place_keeps_the_layout_and_mixes_as_in_place(make, path, per_sample, shape, memory_format):
    """inplace=False returns a new batch in the input's layout (channels_last stays channels_last, as a model
    trained in it expects), with the in-place result's bits."""
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0)).contiguous(memory_format=memory_format)
    original = x.clone()

    def mixer(inplace: bool) -> multimix.Mixer:
        return multimix.Mixer(path(make(1.0, inplace=inplace)), num_classes=6, per_sample=per_sample, seed=1)

    out = mixer(False)(x, torch.arange(6))
    expected = mixer(True)(x.clone(), torch.arange(6))
    assert out.inputs is not x and torch.equal(x, original)
    assert out.inputs.is_contiguous(memory_format=memory_format)
    assert torch.equal(out.inputs, expected.inputs) and not torch.equal(out.inputs, x)


def test_switching_with_mixup_and_cutmix_picks_each():
    mixer = multimix.Mixer([Mixup(0.8), CutMix(1.0), FMix(1.0), ResizeMix(1.0), SaliencyMix(1.0)], num_classes=4,
                           seed=0)  # fmt: skip
    chosen = {mixer(images(4), torch.arange(4)).plan.choice for _ in range(40)}
    assert chosen == {0, 1, 2, 3, 4}


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: ResizeMix(1.0, scale=(0.9, 0.1)), ValueError, r"scale must be \(low, high\) .*got \(0.9, 0.1\)"),
        (lambda: FMix(1.0, decay_power=0), ValueError, r"decay_power must be a number > 0 .*got 0"),
        (lambda: FMix(1.0, max_soft=0.7), ValueError, r"max_soft must be in \[0, 0.5\] .*got 0.7"),
        (lambda: SaliencyMix(-1.0), ValueError, r"alpha must be finite and > 0"),
        (lambda: multimix.Mixer(ResizeMix(1.0), 3)(torch.rand(3, 8, 8), torch.arange(3)), ValueError,
         r"inputs must have at least 4 dimensions \(B, C, H, W\)"),
        (lambda: multimix.Mixer(FMix(1.0), 3)(torch.rand(3, 8), torch.arange(3)), ValueError,
         r"inputs must have at least 3 dimensions \(B, H, W\), \(B, C, H, W\)"),
    ],
)  # fmt: skip
def test_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_fmix_vectorised_keeps_an_unmixed_sample_whatever_its_partner():
    """One mask for the batch, and a sample left unmixed (lam 1) that still has a partner: it keeps every value."""
    x = images()
    x[2, 0, 0, 0], x[2, 1, 3, 4] = float("inf"), -0.0
    plan = fixed_plan([1, 2, 0, 4, 3, 5], [0.4, 0.4, 1.0, 0.4, 0.4, 0.4], per_sample=False)
    assert not bool(plan.mixed[2]) and int(plan.index[2]) == 0
    adapter = vectorised(FMix(1.0))
    region = adapter.draw_region(x, plan, torch.Generator().manual_seed(0))
    out, lam = adapter.apply(x.clone(), plan, region)
    assert torch.equal(out[2].view(torch.int32), x[2].view(torch.int32)) and float(lam[2]) == 1.0
    mask = adapter.mask(x, region)[0]
    for i in (0, 1, 3, 4, 5):
        assert torch.equal(out[i], torch.where(mask, x[i], x[int(plan.index[i])]))


@pytest.mark.parametrize("path", [looped, vectorised])
def test_fmix_per_batch_mask_follows_a_mixed_samples_lam_when_the_first_is_unmixed(path):
    """With p < 1 the first sample may be one the coin left out (lam 1): the batch's one mask still keeps the mixed
    samples' drawn share (0.3 of 16 x 20 pixels is exactly 96), not all of every image."""
    plan = fixed_plan([0, 2, 1, 4, 3, 5], [1.0, 0.3, 0.3, 0.3, 0.3, 1.0], per_sample=False)
    x = images()
    out, lam, _ = run(path(FMix(1.0)), x, plan)
    assert lam.tolist() == [1.0, 0.3, 0.3, 0.3, 0.3, 1.0]
    assert torch.equal(out[[0, 5]], x[[0, 5]]) and not torch.equal(out[1:5], x[1:5])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "video"])
@pytest.mark.parametrize("inplace", [True, False])
def test_fmix_per_batch_loop_selects_the_bits_the_vectorised_where_selects(dtype, layout, inplace):
    """On a CPU the per-batch loop selects each sample's values by the batch's mask: the bits of the vectorised
    where, inf, NaN and -0.0 included, the unmixed sample untouched, in place or not."""
    plan = fixed_plan(PLAN.index, 0.4, per_sample=False)  # sample 5 is its own partner: unmixed
    x = torch.rand(6, 3, 4, 16, 20, generator=torch.Generator().manual_seed(3)) if layout == "video" else images()
    if dtype.is_floating_point:
        x[..., 0, :3] = torch.tensor([float("inf"), float("nan"), -0.0])
    x = (x if dtype.is_floating_point else x * 255).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    adapter = looped(FMix(1.0, inplace=inplace))
    region = adapter.draw_region(x, plan, torch.Generator().manual_seed(0))
    expected, expected_lam = vectorised(FMix(1.0, inplace=False)).apply(x, plan, region)
    original, batch = x.clone(), x.clone()
    out, lam = adapter.apply(batch, plan, region)
    as_bits = AS_BITS[x.element_size()]
    assert (out is batch) == inplace and out.dtype == dtype and torch.equal(lam, expected_lam)
    assert torch.equal(out.view(as_bits), expected.view(as_bits)) and not torch.equal(out, original)
    assert torch.equal(out[5].view(as_bits), original[5].view(as_bits))
    assert inplace or torch.equal(batch.view(as_bits), original.view(as_bits))
    assert out.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")


@pytest.mark.parametrize("inplace", [True, False])
def test_fmix_per_batch_loop_mixes_a_lazily_negated_view_as_where_does(inplace):
    """The imaginary part of a conjugate is negated lazily (its bits are not its values): the CPU loop mixes its
    values, as the vectorised path does, and in place writes through the view."""
    plan = fixed_plan(PLAN.index, 0.4, per_sample=False)
    z = torch.randn(6, 3, 16, 20, dtype=torch.complex64, generator=torch.Generator().manual_seed(4))
    x = z.conj().imag
    assert x.is_neg()
    adapter = looped(FMix(1.0, inplace=inplace))
    region = adapter.draw_region(x, plan, torch.Generator().manual_seed(0))
    expected, _ = vectorised(FMix(1.0, inplace=False)).apply(x, plan, region)
    original = x.clone()  # the values, negation resolved
    out, _ = adapter.apply(x, plan, region)
    assert torch.equal(out, expected) and not torch.equal(expected, original)
    assert torch.equal(-z.imag, out if inplace else original)  # in place: written through the view


@pytest.mark.parametrize("per_sample", [True, False])
def test_fmix_gradient_flows_to_the_pixels_each_sample_shows(per_sample):
    """Under autograd (out of place, vectorised) each output pixel's gradient goes back to the pixel it shows."""
    x = images().requires_grad_()
    weight = torch.rand(x.shape, generator=torch.Generator().manual_seed(4))
    plan = fixed_plan(PLAN.index, PLAN.lam if per_sample else 0.4, per_sample=per_sample)
    adapter = FMix(1.0)
    region = adapter.draw_region(x, plan, torch.Generator().manual_seed(0))
    out, _ = adapter.apply(x, plan, region)
    (out * weight).sum().backward()
    mask = adapter.mask(x, region).expand(6, -1, -1).unsqueeze(1) | ~plan.mixed.view(-1, 1, 1, 1)
    expected = torch.where(mask, weight, 0.0).index_add(0, plan.index, torch.where(mask, 0.0, weight))
    torch.testing.assert_close(x.grad, expected)


@pytest.mark.parametrize("adapter_cls", [FMix, SaliencyMix])
@pytest.mark.parametrize("path", [looped, vectorised])
@pytest.mark.parametrize("per_sample", [False, True])
def test_spectrograms_b_f_t_mix_as_one_channel_images(adapter_cls, path, per_sample):
    """(B, F, T) maps are mixed exactly as (B, 1, F, T) images on the same plan and region."""
    x = torch.rand(6, 24, 40, generator=torch.Generator().manual_seed(5))
    plan = fixed_plan(PLAN.index, PLAN.lam if per_sample else 0.4, per_sample=per_sample)
    adapter = path(adapter_cls(1.0))
    region = adapter.draw_region(x.unsqueeze(1), plan, torch.Generator().manual_seed(0))
    as_image, image_lam = adapter.apply(x.unsqueeze(1).clone(), plan, region)
    as_spectrogram, spectrogram_lam = adapter.apply(x.clone(), plan, region)
    assert torch.equal(as_spectrogram, as_image.squeeze(1)) and not torch.equal(as_spectrogram, x)
    assert torch.equal(spectrogram_lam, image_lam)
    meta = torch.empty(6, 24, 40, device="meta")  # and on a device without a read-back
    out = multimix.Mixer(adapter_cls(1.0), num_classes=6, per_sample=per_sample)(meta, torch.arange(6, device="meta"))
    assert out.inputs.shape == (6, 24, 40) and out.lam.device.type == "meta"
    with pytest.raises(ValueError, match=r"at least 3 dimensions"):
        multimix.Mixer(adapter_cls(1.0), num_classes=3)(torch.rand(3, 40), torch.arange(3))


def test_constructors_take_the_papers_arguments_in_order():
    assert FMix(0.5, 2.0, 0.1).__dict__ == FMix(0.5, decay_power=2.0, max_soft=0.1).__dict__
    assert ResizeMix(0.5, (0.2, 0.6)).scale == ResizeMix(0.5, scale=(0.2, 0.6)).scale == (0.2, 0.6)
    with pytest.raises(TypeError):
        FMix(1.0, 3.0, 0.0, False)  # inplace stays keyword-only


def test_dict_fields_given_one_adapter_share_its_fitting_on_a_device(monkeypatch):
    """Off the CPU the plan's regions are copies per field (the move to the device rebuilds the tree): the fields
    still share one fitting, so SaliencyMix finds its peaks once, on the first field (meta: the device path)."""
    import multimix.image.saliencymix as saliency

    found = []
    peaks = saliency._peak_centres
    monkeypatch.setattr(saliency, "_peak_centres", lambda x, grid: found.append(x.shape[1]) or peaks(x, grid))
    adapter = SaliencyMix(1.0)
    mixer = multimix.Mixer({"pixel_values": adapter, "depth": adapter}, num_classes=7, per_sample=True, seed=0)
    batch = {"pixel_values": torch.rand(4, 3, 16, 16, device="meta"), "depth": torch.rand(4, 1, 16, 16, device="meta")}
    mixer(batch, torch.zeros(4, 16, 16, dtype=torch.long, device="meta"))
    assert found == [3]  # the RGB field's peaks, for both fields


@pytest.mark.parametrize("adapter", [SaliencyMix(1.0), CutMix(1.0), FMix(1.0), ResizeMix(1.0)])
def test_dict_fields_given_one_adapter_take_the_same_pixels_from_the_same_partner(adapter):
    """Aligned RGB and depth given one adapter object: every pixel of both comes from the same source pixel, and the
    label map follows both (SaliencyMix centred each field's boxes on that field's own saliency peak)."""
    batch, size = 4, 16
    source = torch.arange(batch * size * size, dtype=torch.float32).view(batch, 1, size, size) + 1
    depth = source.clone()
    depth[:, :, 1, 1] += 1e4  # depth's own peak, away from the RGB's
    maps = torch.arange(batch * size * size).view(batch, size, size) % 7
    mixer = multimix.Mixer({"pixel_values": adapter, "depth": adapter}, num_classes=7, per_sample=True, seed=0)
    out = mixer({"pixel_values": source.expand(batch, 3, size, size).clone(), "depth": depth}, maps)
    from_rgb = out.inputs["pixel_values"][:, 0].round().long() - 1
    from_depth = torch.where(out.inputs["depth"][:, 0] > 1e4, out.inputs["depth"][:, 0] - 1e4,
                             out.inputs["depth"][:, 0]).round().long() - 1  # fmt: skip
    assert torch.equal(from_rgb, from_depth)
    if out.targets.dim() == 3:  # whole pixels: the map each pixel now shows is its source's
        assert torch.equal(out.targets, maps.flatten()[from_rgb])
