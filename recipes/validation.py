"""Range checks for every configuration key, and the keys that do nothing under the chosen settings.

A value outside its range trains something other than what was asked (``gamma: -1`` trains at
a negative learning rate, ``n_mels: 0`` fails only after the data has loaded), so
:func:`validate` refuses it while the configuration is resolved, before any data loads or
anything is written. :func:`no_effect` names the keys a user gave that the other settings
ignore (``milestones`` without ``schedule: step``): a warning, not an error.
:func:`suggest` finds the key a misspelt one meant.
"""

from __future__ import annotations

import difflib
import math
import warnings
from dataclasses import dataclass
from typing import Any

from multimix_recipes import RECIPES

__all__ = ["MAX_SEED", "RANGES", "Range", "max_mels", "no_effect", "suggest", "validate"]

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes 0..2**63-1


@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (strict where open), ``None`` for no bound; ``why`` says what the key means."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    why: str = ""

    def holds(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def text(self, integer: bool) -> str:
        if integer and self.low is not None and self.high is not None:
            return f"in {self.low}..{'2**63-1' if self.high == MAX_SEED else self.high}"
        if self.low is not None and self.high is not None:
            interval = f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        elif self.low is not None:
            interval = f"{'>' if self.low_open else '>='} {self.low}"
        else:
            interval = f"{'<' if self.high_open else '<='} {self.high}"
        return interval if integer else f"finite and {interval}"


PRECISE_BN = "clean training batches that BatchNorm statistics are recomputed on before each evaluation; 0 = off"
VAL_SIZE = "validation samples carved out of the training data, on which the temperature is fitted and --sweep chooses"
RANGES = {
    "alpha": Range(0, low_open=True, why="lam ~ Beta(alpha, alpha)"),
    "regmixup_alpha": Range(0, low_open=True, why="RegMixup uses 10-20"),
    "regmixup_eta": Range(0, why="the paper uses 1.0"),
    "label_smoothing": Range(0, 1, high_open=True, why="the share of each target spread over all classes"),
    "epochs": Range(1),
    "batch_size": Range(1),
    "accumulate": Range(1),
    "lr": Range(0, low_open=True),
    "weight_decay": Range(0),
    "momentum": Range(0, 1, high_open=True, why="SGD's momentum; 0 = plain SGD"),
    "gamma": Range(0, 1, low_open=True, why="schedule step multiplies the lr by gamma at each milestone"),
    "warmup_epochs": Range(0),
    "grad_clip": Range(0, why="the largest gradient norm; 0 = off"),
    "precise_bn": Range(0, why=PRECISE_BN),
    "val_size": Range(1, why=VAL_SIZE),
    "train_limit": Range(1),
    "test_limit": Range(1),
    "seed": Range(0, MAX_SEED, why="a torch.Generator seed"),
    "image_size": Range(8, 1024, why="the small CNN halves it three times"),
    "sample_rate": Range(1000, 384000, why="in Hz; the front end takes 10 ms frames"),
    "clip_seconds": Range(0, low_open=True, why="clips are padded or cut to it"),
    "n_mels": Range(1, why="mel bands of the front end"),
    "held_out_speakers": Range(1, 5, why="there are 6 speakers in FSDD"),
    "max_length": Range(2, why="tokens per sentence, [CLS] and [SEP] included"),
}
CHOICES = {
    "optimizer": ("sgd", "adamw"),
    "schedule": ("constant", "step", "cosine", "onecycle"),
    "precision": ("auto", "bf16", "fp32"),
    "domain": ("power", "log"),
    "split": ("takes", "speakers"),
}
MODELS = {"image": ("auto", "small_cnn", "preact_resnet18"), "speech": ("auto", "small_cnn", "preact_resnet18")}
# names users bring from other tools, when difflib finds nothing close
SYNONYMS = {"learning_rate": "lr", "wd": "weight_decay", "bs": "batch_size", "num_epochs": "epochs",
            "max_epochs": "epochs", "mixup_alpha": "alpha", "smoothing": "label_smoothing", "warmup": "warmup_epochs",
            "clip_grad": "grad_clip", "max_grad_norm": "grad_clip", "lr_gamma": "gamma", "img_size": "image_size",
            "sr": "sample_rate", "num_mels": "n_mels", "max_seq_length": "max_length"}  # fmt: skip


def suggest(key: str, keys: Any) -> str | None:
    """The valid key ``key`` most likely meant (``epoch`` -> ``epochs``, ``learning_rate`` -> ``lr``), or None."""
    keys = list(keys)
    if SYNONYMS.get(key) in keys:
        return SYNONYMS[key]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return close[0] if close else None


def _fail(key: str, rule: str, value: Any, defaults: dict[str, Any]) -> None:
    example = defaults.get(key)
    fix = f"; set {key}, e.g. --set {key}={example}" if example is not None else ""
    raise ValueError(f"{key} must be {rule}, got {value!r}{fix}")


def _check_ranges(config: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, limits in RANGES.items():
        value = config.get(key)
        if value is None or limits.holds(value):
            continue
        rule = limits.text(isinstance(value, int))
        if key in ("train_limit", "test_limit"):
            rule += " or null (all)"
        _fail(key, f"{rule} ({limits.why})" if limits.why else rule, value, defaults)
    for key, choices in CHOICES.items():
        if key in config and config[key] not in choices:
            _fail(key, f"one of {list(choices)}", config[key], defaults)


def max_mels(sample_rate: int) -> int:
    """The most mel bands whose filters each hold an FFT bin of the front end's 40 ms window at ``sample_rate``."""
    from torchaudio.functional import melscale_fbanks

    n_freqs = 4 * (sample_rate // 100) // 2 + 1
    for n_mels in range(n_freqs, 0, -1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchaudio warns of the empty filters this loop looks for
            banks = melscale_fbanks(n_freqs, 0.0, sample_rate / 2, n_mels, sample_rate)
        if bool((banks.amax(0) > 0).all()) or n_mels == 1:
            return n_mels
    return 1  # pragma: no cover


def _check_speech(config: dict[str, Any], defaults: dict[str, Any]) -> None:
    rate, seconds = config["sample_rate"], config["clip_seconds"]
    window = 4 * (rate // 100)  # n_fft of the front end: 40 ms
    if rate * seconds < window:
        _fail("clip_seconds", f">= {window / rate:g} (one 40 ms STFT window of {window} samples at sample_rate "
                              f"{rate})", seconds, defaults)  # fmt: skip
    most = max_mels(rate)
    if config["n_mels"] > most:
        _fail("n_mels", f"in 1..{most} at sample_rate {rate} (more mel bands leave some filters without an FFT "
                        f"bin of the {window}-sample window)", config["n_mels"], {"n_mels": min(40, most)})  # fmt: skip
    if config["split"] == "speakers" and config["data"] not in ("embedded", "fsdd"):
        raise ValueError(f"split: speakers needs the embedded FSDD (speakers named in its files), got --data "
                         f"{config['data']!r}; use split: takes")  # fmt: skip
    masks = config["spec_augment_masks"]
    if len(masks) != 4 or any(m < 0 for m in masks):
        _fail("spec_augment_masks", "[time masks, widest in frames, frequency masks, widest in bins], "
                                    "each >= 0", masks, {"spec_augment_masks": "[2,10,2,6]"})  # fmt: skip


def validate(recipe: str, config: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Refuse any value outside its key's range, naming the key, the value and an example from ``defaults``.

    Raises:
        ValueError: the first key whose value is out of range, with the fix.
    """
    implemented = RECIPES[recipe][2]
    bogus = [m for m in config["methods"] if m not in implemented]
    if bogus:
        raise ValueError(f"methods {bogus} have no implementation in recipe {recipe!r}; it implements "
                         f"{list(implemented)}")  # fmt: skip
    if config["method"] not in config["methods"]:
        raise ValueError(f"unknown method {config['method']!r} for recipe {recipe!r}; choose one of "
                         f"{config['methods']}")  # fmt: skip
    if config.get("split") not in (None, *CHOICES["split"]):  # the wording data loading has always used
        raise ValueError(f"split must be 'takes' or 'speakers', got {config['split']!r}")
    _check_ranges(config, defaults)
    if recipe in MODELS and config["model"] not in MODELS[recipe]:
        _fail("model", f"one of {list(MODELS[recipe])}", config["model"], defaults)
    if config["warmup_epochs"] >= config["epochs"] and config["warmup_epochs"] > 0:
        raise ValueError(f"warmup_epochs must be < epochs ({config['epochs']}), got {config['warmup_epochs']!r}")
    if config["optimizer"] == "sgd" and config["nesterov"] and config["momentum"] == 0:
        raise ValueError("nesterov: true needs momentum > 0 (Nesterov momentum with none is plain SGD); "
                         "set momentum, e.g. --set momentum=0.9, or nesterov=false")  # fmt: skip
    seeds = config["seeds"]
    ints = all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_SEED for x in seeds)
    if not ints or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers in 0..2**63-1, e.g. --set seeds=0,1,2; got {seeds!r}")
    milestones = config["milestones"]
    integers = all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in milestones)
    if not integers or sorted(milestones) != milestones:
        raise ValueError(f"milestones must be increasing epochs >= 1, got {milestones!r}; "
                         "e.g. --set milestones=[100,150]")  # fmt: skip
    layers = config.get("layers")
    if layers is not None and (not layers or any(isinstance(k, bool) or not isinstance(k, int) or k < 0
                                                 for k in layers)):  # fmt: skip
        _fail("layers", "a non-empty list of encoder layers >= 0", layers, {"layers": "[3,4,5]"})
    if recipe == "speech":
        _check_speech(config, defaults)
    _check_sizes(config)
    _check_compile(config)


def _check_sizes(config: dict[str, Any]) -> None:
    """What ``train_limit`` of an embedded set allows, before any data loads: the validation split and one
    optimizer step (for other sources, and a limit above the set's size, loading the data says the same)."""
    limit, held = config["train_limit"], config["val_size"]
    if config["data"] != "embedded" or limit is None:
        return
    if not 1 <= held < limit:
        raise ValueError(f"val_size must be >= 1 and below the {limit} training samples (train_limit), got {held}; "
                         "lower val_size or raise train_limit")  # fmt: skip
    need = config["batch_size"] * config["accumulate"]
    if limit - held < need:
        raise ValueError(
            f"train_limit {limit} less val_size {held} leaves {limit - held} training samples, fewer than one "
            f"optimizer step needs ({need} = batch_size {config['batch_size']} x accumulate {config['accumulate']}); "
            "lower batch_size or raise train_limit"
        )


def _check_compile(config: dict[str, Any]) -> None:
    """``compile`` (auto/true/false, any case) and ``compile_backend``, refused before config.yaml is written."""
    from multimix_recipes.step import check_backend, check_compile  # imports torch: only once a config resolves

    check_compile(config["compile"])
    check_backend(config["compile_backend"])


def no_effect(config: dict[str, Any], given: set[str]) -> list[str]:
    """One line per key in ``given`` (set by the user) that the chosen settings ignore, saying why."""
    lines = []
    schedule, optimizer = config["schedule"], config["optimizer"]
    for key in ("milestones", "gamma"):
        if key in given and schedule != "step":
            lines.append(f"{key} has no effect: only schedule step uses it, and schedule is {schedule!r}")
    if schedule == "step":
        if not config["milestones"]:
            lines.append("schedule step with no milestones keeps the lr constant; set milestones, "
                         "e.g. --set milestones=[100,150]")  # fmt: skip
        late = [m for m in config["milestones"] if m >= config["epochs"]]
        if late:
            lines.append(f"milestones {late} have no effect: the run ends after epoch {config['epochs']}")
    for key in ("momentum", "nesterov"):
        if key in given and optimizer != "sgd":
            lines.append(f"{key} has no effect: only optimizer sgd uses it, and optimizer is {optimizer!r}")
    if "warmup_epochs" in given and config["warmup_epochs"] > 0 and schedule == "onecycle":
        lines.append("warmup_epochs has no effect: schedule onecycle has its own warm-up; "
                     "use schedule constant, step or cosine")  # fmt: skip
    if "spec_augment_masks" in given and not config.get("spec_augment", True):
        lines.append("spec_augment_masks has no effect: spec_augment is false")
    if "held_out_speakers" in given and config.get("split") != "speakers":
        lines.append(f"held_out_speakers has no effect: only split speakers uses it, and split is "
                     f"{config.get('split')!r}")  # fmt: skip
    if "image_size" in given and config["data"] in ("cifar10", "cifar100", "fashion_mnist"):
        lines.append(f"image_size has no effect with --data {config['data']}: its images keep their own size")
    return lines
