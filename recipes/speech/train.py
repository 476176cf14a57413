"""Speech recipe: spoken digits (FSDD, embedded), a log-mel front end on the device, a small CNN.

    multimix run speech                        # embedded FSDD, takes 0-4 held out
    multimix run speech --set split=speakers --compare erm,mixup,specmix --set seeds=0,1,2   # unseen speakers
    multimix run speech --compare erm,mixup,mixup-dominant,regmixup    # calibration: ECE before and after T

Clips are padded or cut to ``clip_seconds`` with their valid lengths kept. ``wavemix``
mixes the waveforms (lengths-aware) before the front end; ``mixup`` (SpecMixup) and
``specmix`` mix the log-mel spectrograms after it, on the device; ``mixup-dominant`` is
SpecMixup trained on the label of the larger share; ``regmixup`` trains on the clean and
the SpecMixup batch together. ``spec_augment`` masks time and frequency
bands of each training clip's log-mel spectrogram after any mixing, as augmentation
pipelines order them; a masked band becomes silence (the dB scale's floor), with any method.
"""

from __future__ import annotations

import io
import math
import re
import tarfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio
from torch import nn

import multimix
from multimix.audio import Masks, SpecAugment, SpecMix, SpecMixup, WaveMix
from multimix_recipes import data_file, models
from multimix_recipes.data import (
    TensorData,
    group_split,
    load_source,
    require_classes,
    split_folders,
    split_off,
    to_device,
)
from multimix_recipes.embedded import FSDD_URL, download
from multimix_recipes.engine import Task, mixer_for, pick_device
from multimix_recipes.step import SplitLoss, stand_in

NAMED = ("speech_commands", "fsdd")
FSDD_NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav$")


def _read_with_wave(data: bytes) -> tuple[np.ndarray, int]:
    """The standard library's reader (8/16/24/32-bit integer PCM), used when soundfile is missing."""
    with wave.open(io.BytesIO(data)) as handle:
        width, channels, rate = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
        raw = np.frombuffer(handle.readframes(handle.getnframes()), dtype=np.uint8)
    if width == 1:  # 8-bit WAV is unsigned
        samples = (raw.astype(np.float32) - 128) / 128
    else:
        padded = np.zeros((len(raw) // width, 4), dtype=np.uint8)
        padded[:, 4 - width :] = raw.reshape(-1, width)  # little-endian sample in the top bytes of an int32
        samples = padded.view("<i4").reshape(-1).astype(np.float32) / 2**31
    return samples.reshape(-1, channels), rate


def read_wav(data: bytes, name: str = "<bytes>") -> tuple[torch.Tensor, int]:
    """A WAV file (any bit depth) as a mono float tensor in [-1, 1] and its sample rate.

    Read with ``soundfile`` when it is installed, else with the standard library's ``wave``.
    A file neither can read is an error naming ``name``.
    """
    try:
        import soundfile
    except ImportError:  # the audio extra is optional for this reader
        soundfile = None
    try:
        if soundfile is not None:
            samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        else:
            samples, rate = _read_with_wave(data)
    except (RuntimeError, EOFError, ValueError, wave.Error) as error:  # soundfile raises LibsndfileError
        raise ValueError(f"--data: cannot read the WAV file {name} ({error}); remove or replace it") from error
    if samples.size == 0:
        raise ValueError(f"--data: the WAV file {name} holds no samples; remove or replace it")
    return torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32)), int(rate)


def clips(items: list[tuple[torch.Tensor, int]], sample_rate: int, seconds: float) -> TensorData:
    """Waveforms padded or cut to ``seconds``, with their valid lengths: ``((waves, lengths), labels)``."""
    size = int(sample_rate * seconds)
    waves = torch.zeros(len(items), size)
    lengths = torch.zeros(len(items), dtype=torch.long)
    for i, (clip, _) in enumerate(items):
        n = min(len(clip), size)
        waves[i, :n], lengths[i] = clip[:n], n
    return TensorData(((waves, lengths), torch.tensor([label for _, label in items], dtype=torch.long)))


def _resampled(clip: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    return clip if rate == target else torchaudio.functional.resample(clip, rate, target)


def load_embedded(config: dict[str, Any], source: Path | None = None) -> tuple[list, list, list[str]]:
    """FSDD. ``split: takes``: takes 0-4 of every digit and speaker are the test set (the dataset's usual split);
    ``split: speakers``: every clip of ``held_out_speakers`` speakers drawn by the seed is (unseen speakers)."""
    items, speakers, takes = [], [], []
    with tarfile.open(source or data_file("fsdd-recordings.tar.xz")) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            match = FSDD_NAME.search(member.name)
            if not member.isfile() or match is None:
                continue
            clip, rate = read_wav(archive.extractfile(member).read(), member.name)
            items.append((_resampled(clip, rate, config["sample_rate"]), int(match.group(1))))
            speakers.append(match.group(2))
            takes.append(int(match.group(3)))
    if config["split"] == "speakers":
        held = set(group_split(speakers, config["held_out_speakers"], config["seed"]))
        is_test = [speaker in held for speaker in speakers]
    else:
        is_test = [take < 5 for take in takes]
    train = [item for item, test in zip(items, is_test, strict=True) if not test]
    test = [item for item, test in zip(items, is_test, strict=True) if test]
    return train, test, [str(d) for d in range(10)]


def load_named(name: str, config: dict[str, Any]) -> tuple[list, list, list[str]]:
    """FSDD from its GitHub repository, or Speech Commands v0.02 through torchaudio (downloaded into ``data_root``)."""
    root = Path(config["data_root"]).expanduser()
    if name == "fsdd":  # the embedded set's source, for an installation without recipes/data/
        return load_embedded(config, download(FSDD_URL, root / "fsdd" / FSDD_URL.rsplit("/", 1)[1]))
    root.mkdir(parents=True, exist_ok=True)
    try:
        splits = {s: torchaudio.datasets.SPEECHCOMMANDS(root, download=True, subset=s) for s in ("training", "testing")}
    except (OSError, RuntimeError) as error:
        raise ValueError(
            f"could not download {name} into {root} ({error}); offline, use the embedded data (--data embedded) "
            "or a local folder of WAV files (--data PATH)"
        ) from error
    classes = sorted({splits["training"].get_metadata(i)[2] for i in range(len(splits["training"]))})
    loaded = []
    for split in splits.values():
        items = []
        for i in range(len(split)):
            relative, rate, label, *_ = split.get_metadata(i)
            clip, rate = read_wav((Path(split._archive) / relative).read_bytes(), relative)
            items.append((_resampled(clip, rate, config["sample_rate"]), classes.index(label)))
        loaded.append(items)
    return loaded[0], loaded[1], classes


def _wav_files(folder: Path) -> tuple[list[Path], list[str]]:
    """The WAV files under ``folder`` and their labels: the subfolder's name, or the name's prefix before ``_``."""
    files = sorted(folder.rglob("*.wav"))
    if not files:
        raise ValueError(f"--data {folder} holds no .wav files (expected <label>/*.wav or <label>_*.wav)")
    return files, [f.parent.name if f.parent != folder else f.stem.split("_")[0] for f in files]


def _read_clips(files: list[Path], labels: list[str], classes: list[str], rate: int) -> list:
    return [(_resampled(*read_wav(f.read_bytes(), str(f)), rate), classes.index(label))
            for f, label in zip(files, labels, strict=True)]  # fmt: skip


def load_split_folders(root: Path, config: dict[str, Any]) -> tuple[list, list, list[str], list | None]:
    """WAV files in ``<label>/`` subfolders or named ``<label>_*.wav``: train, test, classes, validation or None.

    ``root/train/`` beside ``root/val/`` (or ``valid/``, ``validation/``) and/or ``root/test/`` keeps the
    folder's split (``test/`` is the test set, else ``val/``; a ``val/`` beside a ``test/`` is the
    validation split); otherwise the clips are split 80/20 by the seed.
    """
    rate, splits = config["sample_rate"], split_folders(root)
    if splits is None:
        files, labels = _wav_files(root)
        classes = sorted(set(labels))
        items = _read_clips(files, labels, classes, rate)
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(config["seed"])).tolist()
        cut = int(0.8 * len(items))
        return [items[i] for i in order[:cut]], [items[i] for i in order[cut:]], classes, None
    found = {split: _wav_files(path) for split, path in splits.items()}
    classes = sorted(set(found["train"][1]))
    for split, (_, labels) in found.items():
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise ValueError(f"--data {root}: {splits[split].name}/ has labels {unknown} that train/ has not; "
                             "give every split the same labels")  # fmt: skip
    items = {split: _read_clips(files, labels, classes, rate) for split, (files, labels) in found.items()}
    test = items.pop("test") if "test" in items else items.pop("val")  # val/ alone is the held-out test set
    return items["train"], test, classes, items.get("val")


def load_folder(root: Path, config: dict[str, Any]) -> tuple[list, list, list[str]]:
    """Train, test and classes of a WAV folder (:func:`load_split_folders` without its validation split)."""
    return load_split_folders(root, config)[:3]


def load_data(config: dict[str, Any]) -> tuple[TensorData, TensorData, TensorData, list[str]]:
    """Train, validation (the folder's own, or a seeded ``val_size`` carved out of the training clips), test,
    class names."""
    if config["split"] not in ("takes", "speakers"):
        raise ValueError(f"split must be 'takes' or 'speakers', got {config['split']!r}")
    data = config["data"]
    if config["split"] == "speakers" and data not in ("embedded", "fsdd"):
        raise ValueError(f"split: speakers needs the embedded FSDD (speakers named in its files), got --data {data!r}; "
                         "use split: takes")  # fmt: skip
    train, test, classes, val = load_source(config, lambda c: (*load_embedded(c), None),
                                            lambda name, c: (*load_named(name, c), None), NAMED,
                                            load_split_folders)  # fmt: skip
    require_classes(classes, data)
    for split, limit in ((train, config["train_limit"]), (test, config["test_limit"])):
        if limit is not None and limit < len(split):
            order = torch.randperm(len(split), generator=torch.Generator().manual_seed(config["seed"]))
            split[:] = [split[i] for i in sorted(order[:limit].tolist())]
    if val is None:
        keep, held = split_off(len(train), config["val_size"], config["seed"])
        val = [train[i] for i in held.tolist()]
        train = [train[i] for i in keep.tolist()]
    rate, seconds = config["sample_rate"], config["clip_seconds"]
    return clips(train, rate, seconds), clips(val, rate, seconds), clips(test, rate, seconds), classes


def build_mixer(config: dict[str, Any], num_classes: int) -> multimix.Mixer | None:
    alpha = config["alpha"]
    return mixer_for(config, num_classes, {
        "mixup": lambda: SpecMixup(alpha, domain=config["domain"], db=True),
        "specmix": lambda: SpecMix(alpha),
        "wavemix": lambda: WaveMix(alpha),
        "regmixup": lambda: SpecMixup(config["regmixup_alpha"], domain=config["domain"], db=True),
    })  # fmt: skip


def build(config: dict[str, Any]) -> Task:
    """Data, front end, model and mixer for one run."""
    train_set, val_set, test_set, classes = load_data(config)
    device = pick_device(config["device"])
    hop = config["sample_rate"] // 100  # 10 ms frames
    mel = torchaudio.transforms.MelSpectrogram(config["sample_rate"], n_fft=4 * hop, hop_length=hop,
                                               n_mels=config["n_mels"]).to(device)  # fmt: skip
    to_db = torchaudio.transforms.AmplitudeToDB(top_db=80).to(device)
    if len(config["spec_augment_masks"]) != 4:
        raise ValueError("spec_augment_masks must be [time masks, widest in frames, frequency masks, widest in bins], "
                         f"e.g. [2, 10, 2, 6]; got {config['spec_augment_masks']!r}")  # fmt: skip
    # masked cells become -inf dB, then silence: AmplitudeToDB's floor, top_db below the batch's peak
    masks = None
    if config["spec_augment"]:
        masks = SpecAugment(*config["spec_augment_masks"], value=-math.inf, seed=config["seed"])
    model = nn.Sequential(nn.BatchNorm2d(1), models.build(config["model"], 1, len(classes), device))
    mixer = build_mixer(config, len(classes))
    frames = lambda lengths: lengths.div(hop, rounding_mode="floor") + 1  # noqa: E731

    stft = mel.spectrogram  # torchaudio's settings; its forward breaks a torch.compile graph (torch.jit.isinstance)

    def features(waves: torch.Tensor) -> torch.Tensor:
        """Log-mel in dB ``(B, n_mels, T)``: torchaudio's power spectrogram (one ``torch.stft``), mel scale, dB."""
        with torch.autocast(device.type, enabled=False):  # the STFT stays in float32
            power = torch.stft(waves.float(), stft.n_fft, stft.hop_length, stft.win_length, stft.window, stft.center,
                               stft.pad_mode, normalized=False, onesided=stft.onesided, return_complex=True)
            return to_db(mel.mel_scale(power.abs().pow(2.0)))

    def augment(spec: torch.Tensor, bands: Masks | None) -> torch.Tensor:
        """SpecAugment on a (mixed) training batch; its bands become silence, as masked power would in dB."""
        if bands is None:
            return spec
        floor = spec.amax() - to_db.top_db  # AmplitudeToDB's floor of a (B, F, T) batch, before any cell is masked
        return torch.maximum(masks.apply(spec, bands), floor)

    def smoothed(labels: torch.Tensor) -> torch.Tensor:  # every method's clean targets carry label_smoothing
        return multimix.soft_targets(labels, len(classes), label_smoothing=config["label_smoothing"])

    def draw(batch: Any) -> tuple[Any, torch.Tensor, Masks | None, torch.Tensor | None]:
        """The step's host part: the mixing plan (for the waves, or the log-mels' shape), SpecAugment's bands,
        and the clean targets where the loss takes them (soft_targets checks the labels)."""
        (waves, lengths), labels = batch
        shape = (len(labels), config["n_mels"], waves.shape[-1] // hop + 1)  # the log-mels (B, F, T)
        spec_lengths = frames(lengths).clamp(max=shape[-1])
        plan, clean = None, None
        if mixer is None or config["method"] == "regmixup":
            clean = smoothed(labels)
        if config["method"] == "wavemix":
            plan = mixer.plan_for(waves, labels, lengths=lengths)
        elif mixer is not None:
            plan = mixer.plan_for(stand_in(shape, waves.device), labels, lengths=spec_lengths)
        bands = None
        if masks is not None:
            rows = 2 * len(labels) if config["method"] == "regmixup" else len(labels)
            bands = Masks(*to_device(tuple(masks.draw(rows, *shape[1:])), waves.device))
        return plan, spec_lengths, bands, clean

    def loss(module: nn.Module, batch: Any, draws: Any) -> torch.Tensor:
        """The step's traced part: log-mels, mixing by the plan, SpecAugment by the bands, forward, loss."""
        (waves, lengths), labels = batch
        plan, spec_lengths, bands, clean_targets = draws
        if config["method"] == "wavemix":
            out = mixer.apply(waves, labels, plan, lengths=lengths)
            return multimix.soft_cross_entropy(module(augment(features(out.inputs), bands).unsqueeze(1)), out.targets)
        spec = features(waves)
        if mixer is None:
            return multimix.soft_cross_entropy(module(augment(spec, bands).unsqueeze(1)), clean_targets)
        clean = spec.clone() if config["method"] == "regmixup" else None  # the mixer writes in place
        out = mixer.apply(spec, labels, plan, lengths=spec_lengths)
        if clean is None:
            return multimix.soft_cross_entropy(module(augment(out.inputs, bands).unsqueeze(1)), out.targets)
        both = augment(torch.cat([clean, out.inputs]), bands)  # the clean and the mixed batch, each clip its own masks
        clean_logits, mixed_logits = module(both.unsqueeze(1)).split(len(labels))
        return multimix.regmixup_loss(clean_logits, clean_targets, mixed_logits, out.targets,
                                      config["regmixup_eta"])

    def test_logits(model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        (waves, _), labels = batch
        return model(features(waves).unsqueeze(1)), labels

    return Task(model, train_set, test_set, SplitLoss(draw, loss), test_logits, mixer=mixer, class_names=classes,
                val_set=val_set, stateful={"spec_augment": masks} if masks is not None else {})  # fmt: skip
