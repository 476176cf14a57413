"""Spectrogram axes: SpecMix bands land on the time axis whatever the layout; wrap picks AST's (B, T, F)."""

import pytest
import torch
from conftest import fixed_plan, looped, vectorised

import multimix
import multimix.hf.adapters
from multimix.audio import SpecMix, SpecMixup

transformers = pytest.importorskip("transformers")
from tiny_models import ast as tiny_ast  # noqa: E402


def spectrograms(frames: int = 48, bins: int = 20) -> torch.Tensor:
    return torch.randn(4, bins, frames, generator=torch.Generator().manual_seed(0))  # (B, F, T), non-square


@pytest.mark.parametrize("path", [looped, vectorised])
@pytest.mark.parametrize("inplace", [True, False])
def test_time_axis_minus_two_is_the_transposed_layout(path, inplace):
    ft = spectrograms()
    labels = torch.tensor([0, 1, 2, 0])
    expected = multimix.Mixer(path(SpecMix(1.0, inplace=False)), num_classes=3, per_sample=True, seed=3)(ft, labels)
    tf = ft.transpose(1, 2).contiguous()  # (B, T, F), as AST's input_values
    original = tf.clone()
    mixer = multimix.Mixer(path(SpecMix(1.0, time_axis=-2, inplace=inplace)), num_classes=3, per_sample=True, seed=3)
    out = mixer(tf, labels)
    assert out.inputs.shape == (4, 48, 20)
    assert (out.inputs is tf) == inplace
    torch.testing.assert_close(out.inputs, expected.inputs.transpose(1, 2), rtol=0, atol=0)
    torch.testing.assert_close(out.targets, expected.targets)
    # the time bands are whole rows of (T, F): every frequency bin of a pasted frame is the partner's
    pasted = 0
    for i, j in enumerate(out.index.tolist()):
        for start, end in out.region.time[i].tolist():
            assert torch.equal(out.inputs[i, start:end, :], original[j, start:end, :])
            pasted += end - start
    assert pasted > 0


def test_wrap_of_ast_puts_the_time_bands_on_its_time_axis():
    base = tiny_ast(num_hidden_layers=1)
    adapter = SpecMix(1.0, time_bands=1, freq_bands=1)
    model = multimix.wrap(base, adapter, seed=0).train()
    assert model.adapter.time_axis == -2 and adapter.time_axis is None  # a copy is configured, not the caller's
    features = torch.randn(4, 48, 32)  # (B, T=48, F=32)
    plan = fixed_plan([1, 2, 3, 0], 0.5)
    region = model.adapter.draw_region(features, plan, torch.Generator().manual_seed(0))
    assert region.time_mask.shape == (4, 48) and region.freq_mask.shape == (4, 32)
    mixed, _ = model.adapter.apply(features, plan, region)
    mask = region.time_mask[:, :, None] | region.freq_mask[:, None, :]
    torch.testing.assert_close(mixed, torch.where(mask, features[plan.index], features), rtol=0, atol=0)
    whisper = transformers.WhisperConfig()
    assert multimix.hf.adapters.SPECTROGRAM_TIME_AXIS[whisper.model_type] == -1


def test_axis_errors():
    with pytest.raises(ValueError, match=r"time_axis must be -1 .*-2 .*got 0"):
        SpecMix(1.0, time_axis=0)
    with pytest.raises(ValueError, match=r"time_axis must be -1 .*got 'TF'"):
        SpecMixup(1.0, time_axis="TF")
    mixer = multimix.Mixer(SpecMixup(1.0, time_axis=-2), num_classes=3, seed=0)
    with pytest.raises(ValueError, match=r"lengths / padding masks run along the last axis, but time_axis=-2"):
        mixer(torch.randn(4, 20, 20), torch.tensor([0, 1, 2, 0]), lengths=torch.tensor([20, 10, 20, 5]))
    with pytest.raises(ValueError, match=r"max_time_width=30 is larger than the time axis of inputs \(20\)"):
        multimix.Mixer(SpecMix(1.0, time_axis=-2, max_time_width=30), num_classes=3)(
            torch.randn(4, 20, 48), torch.tensor([0, 1, 2, 0])
        )
