"""The embedded datasets: counts, classes, train/validation/test disjointness, the speaker split."""

import hashlib

import pytest
import torch

from multimix_recipes.config import resolve
from multimix_recipes.image import train as image
from multimix_recipes.speech import train as speech
from multimix_recipes.text import train as text


def digests(rows) -> set[str]:
    return {hashlib.sha1(row.numpy().tobytes()).hexdigest() for row in rows}


def test_image_embedded_cifar10_is_the_whole_dataset():
    config = resolve("image", None, {"train_limit": None, "test_limit": None})
    train, val, test, classes = image.load_data(config)
    assert classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert len(train) == 49000 and len(val) == 1000 and len(test) == 10000
    x, y = train.tensors
    assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.uint8
    assert (torch.bincount(y) + torch.bincount(val.tensors[1])).tolist() == [5000] * 10
    assert torch.bincount(test.tensors[1]).tolist() == [1000] * 10
    assert not digests(x[:5000]) & digests(test.tensors[0])


def test_image_limits_are_seeded_subsets():
    config = resolve("image", None, {"train_limit": 100, "test_limit": 50, "val_size": 20, "batch_size": 16})
    a, a_val, _, _ = image.load_data(config)
    b, b_val, test, _ = image.load_data(config)
    assert len(a) == 80 and len(a_val) == 20 and len(test) == 50
    assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a_val.tensors[0], b_val.tensors[0])
    assert not digests(a.tensors[0]) & digests(a_val.tensors[0])


def test_speech_embedded_fsdd_holds_out_takes_0_to_4():
    config = resolve("speech", None, {})
    train, val, test, classes = speech.load_data(config)
    assert classes == [str(d) for d in range(10)]
    assert len(train) == 2400 and len(val) == 300 and len(test) == 300  # 45 and 5 takes x 6 speakers x 10 digits
    ((waves, lengths), labels), ((test_waves, _), test_labels) = train.tensors, test.tensors
    assert (torch.bincount(labels) + torch.bincount(val.tensors[1])).tolist() == [270] * 10
    assert torch.bincount(test_labels).tolist() == [30] * 10
    assert waves.shape == (2400, 8000) and (lengths > 0).all() and (lengths <= 8000).all()
    assert not digests(waves) & digests(test_waves) and not digests(waves) & digests(val.tensors[0][0])
    assert float(waves.abs().max()) <= 1.0 and float(waves.std()) > 0.01  # real audio, not silence


def test_text_embedded_mr():
    config = resolve("text", None, {"train_limit": None, "test_limit": None, "device": "cpu"})
    train, val, test, classes = text.load_data(config)
    assert classes == ["negative", "positive"]
    assert len(train) == 10977 and len(val) == 500 and len(test) == 1275
    assert not {t for t, _ in train} & {t for t, _ in test} and not {t for t, _ in train} & {t for t, _ in val}
    labels = [label for _, label in train + val + test]
    assert labels.count(1) > labels.count(0) > 5000  # fresh 7,403 / rotten 5,405 before de-duplication


@pytest.mark.parametrize(
    ("module", "recipe", "match"),
    [
        (image, "image", r"--data '/no/such/place' is neither a dataset name \(\['embedded', 'cifar10'"),
        (speech, "speech", r"--data '/no/such/place' is neither a dataset name "
                           r"\(\['embedded', 'speech_commands', 'fsdd'\]\)"),
        (text, "text", r"--data '/no/such/place' is neither a dataset name \(\['embedded', 'rotten_tomatoes'"),
    ],
)
def test_unknown_data_is_an_error(module, recipe, match):
    with pytest.raises(ValueError, match=match):
        module.load_data(resolve(recipe, None, {"data": "/no/such/place"}))


def test_local_folders_and_csv(tmp_path):
    from PIL import Image

    for label in ("cats", "dogs"):
        (tmp_path / "img" / label).mkdir(parents=True)
        for k in range(5):
            Image.new("RGB", (40, 40), (k * 40, 0, 0)).save(tmp_path / "img" / label / f"{k}.png")
    train, val, test, classes = image.load_data(resolve("image", None, {"data": str(tmp_path / "img"), "val_size": 2}))
    assert classes == ["cats", "dogs"] and len(train) == 6 and len(val) == 2 and len(test) == 2
    assert train.tensors[0].shape[1:] == (3, 32, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"--data .*empty has no images in <class>/ subfolders"):
        image.load_data(resolve("image", None, {"data": str(tmp_path / "empty")}))
    csv = tmp_path / "reviews.csv"
    csv.write_text("text,label\n" + "".join(f"review {i},{'pos' if i % 2 else 'neg'}\n" for i in range(20)))
    train, val, test, classes = text.load_data(resolve("text", None, {"data": str(csv), "val_size": 3}))
    assert classes == ["neg", "pos"] and len(train) == 15 and len(val) == 3 and len(test) == 2
    (tmp_path / "bad.csv").write_text("sentence,y\na,1\n")
    with pytest.raises(ValueError, match=r"line 1: the header must name the columns text,label"):
        text.load_data(resolve("text", None, {"data": str(tmp_path / "bad.csv")}))
    with pytest.raises(ValueError, match=r"holds no .wav files"):
        speech.load_data(resolve("speech", None, {"data": str(tmp_path / "empty")}))


def test_wav_folder_by_label(tmp_path):
    import wave

    import numpy as np

    for label in ("yes", "no"):
        for k in range(5):
            with wave.open(str(tmp_path / f"{label}_{k}.wav"), "wb") as handle:
                handle.setnchannels(1)
                handle.setsampwidth(2)
                handle.setframerate(16000)
                handle.writeframes((np.sin(np.arange(4000) * (k + 1) / 10) * 8000).astype("<i2").tobytes())
    train, val, test, classes = speech.load_data(resolve("speech", None, {"data": str(tmp_path), "val_size": 1}))
    assert classes == ["no", "yes"] and len(train) == 7 and len(val) == 1 and len(test) == 2
    assert int(train.tensors[0][1].max()) == 2000  # 0.25 s resampled from 16 kHz to 8 kHz


def wav_bytes(samples, width, rate=8000):
    import io
    import wave

    import numpy as np

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        if width == 1:
            handle.writeframes((np.asarray(samples) * 128 + 128).astype(np.uint8).tobytes())
        else:
            ints = (np.asarray(samples) * 2 ** (8 * width - 1)).astype("<i4")
            handle.writeframes(b"".join(int(v).to_bytes(width, "little", signed=True) for v in ints))
    return buffer.getvalue()


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_wav_any_bit_depth_with_soundfile_and_the_standard_library(width):
    samples = [0.0, 0.5, -0.5, 0.25, -1.0]
    data = wav_bytes(samples, width, rate=16000)
    clip, rate = speech.read_wav(data, "x.wav")
    fallback, _ = speech._read_with_wave(data)
    assert rate == 16000 and clip.dtype == torch.float32
    assert clip.tolist() == pytest.approx(samples, abs=1 / 127)
    assert fallback[:, 0].tolist() == pytest.approx(clip.tolist(), abs=1e-6)


def test_corrupt_wav_in_data_is_named(tmp_path):
    (tmp_path / "yes").mkdir()
    (tmp_path / "yes" / "a.wav").write_bytes(wav_bytes([0.1] * 400, 2))
    (tmp_path / "yes" / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(ValueError, match=r"--data: cannot read the WAV file .*yes/broken.wav"):
        speech.load_data(resolve("speech", None, {"data": str(tmp_path)}))
    with pytest.raises(ValueError, match=r"--data: cannot read the WAV file .*bad.wav"):
        speech.read_wav(b"RIFF", "bad.wav")


def test_read_wav_falls_back_to_the_standard_library(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "soundfile", None)  # as if the audio extra were not installed
    clip, rate = speech.read_wav(wav_bytes([0.5, -0.25, 0.0], 3, rate=22050), "x.wav")
    assert rate == 22050 and clip.tolist() == pytest.approx([0.5, -0.25, 0.0], abs=1e-6)
    with pytest.raises(ValueError, match=r"cannot read the WAV file y.wav"):
        speech.read_wav(b"RIFF", "y.wav")


def test_text_is_tokenized_once_and_batched_by_length():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(text.default_model_path())
    rows = [("word " * n, n % 2) for n in (1, 9, 2, 8, 3, 7, 4, 6)]
    data = text.Tokenized(rows, tokenizer, max_length=64)
    assert data.lengths.tolist() == [n + 2 for n in (1, 9, 2, 8, 3, 7, 4, 6)]  # [CLS] words [SEP]
    batches = text.length_buckets(data.lengths)(torch.arange(8), 2, torch.Generator().manual_seed(0))
    assert sorted(tuple(sorted(data.lengths[b].tolist())) for b in batches) == [(3, 4), (5, 6), (8, 9), (10, 11)]


@pytest.mark.parametrize("method", ["mixup", "specmix", "wavemix", "erm"])
def test_speech_masks_after_mixing_and_a_masked_band_is_silence(method):
    """SpecAugment comes after the mixer, so a masked band holds the dB floor exactly (masking first and then
    mixing would blend it with the partner), for every method."""
    config = resolve("speech", None, {"method": method, "spec_augment": True, "spec_augment_masks": [2, 12, 2, 8],
                                      "train_limit": 40, "val_size": 8, "batch_size": 16, "device": "cpu",
                                      "seed": 1})  # fmt: skip
    task = speech.build(config)
    (waves, lengths), labels = task.train_set[torch.arange(16)]
    seen = []
    task.train_loss(lambda spec: seen.append(spec.clone()) or torch.zeros(16, 10, requires_grad=True),
                    ((waves, lengths), labels))  # fmt: skip
    spec = seen[0][:, 0]  # (B, F, T)
    floor = spec.min()  # AmplitudeToDB's floor: 80 dB below the batch's peak before masking
    assert float(spec.amax() - floor) <= 80 and bool(torch.isfinite(floor))
    silent_frames = (spec == floor).all(dim=1)  # whole columns at the floor: time bands
    silent_bins = (spec == floor).all(dim=2)  # whole rows: frequency bands
    assert bool((silent_frames.any(1) | silent_bins.any(1)).all())  # every clip got a band


@pytest.mark.parametrize("model", ["preact_resnet18", "small_cnn"])
def test_image_manifold_mixes_at_the_input_and_after_the_first_stages(model):
    """method: manifold wraps either model at its MANIFOLD_LAYERS (PreAct-18: the input, after stages 1 and 2,
    as Verma et al.); one training step mixes at each point in turn and gives a finite loss."""
    config = resolve("image", None, {"method": "manifold", "model": model, "train_limit": 40, "val_size": 8,
                                     "device": "cpu", "batch_size": 4})  # fmt: skip
    task = image.build(config)
    wrapped = task.model
    assert list(wrapped.mix_points) == image.MANIFOLD_LAYERS[model]
    images, labels = task.train_set[torch.arange(4)]
    for point in wrapped.mix_points:
        wrapped.adapter.choose = lambda points, generator, point=point: point
        loss = task.train_loss(wrapped.train(), (images, labels))
        assert loss.dim() == 0 and bool(torch.isfinite(loss))
