"""Local --data folders: split layouts keep their own split, one class is refused, odd layouts say why."""

import wave

import numpy as np
import pytest
import torch

from multimix_recipes.config import resolve
from multimix_recipes.data import split_folders
from multimix_recipes.image import train as image
from multimix_recipes.speech import train as speech


def images(folder, classes, count, shade=0):
    from PIL import Image

    for k, label in enumerate(classes):
        (folder / label).mkdir(parents=True)
        for i in range(count):  # the red channel says the class, the green one the split
            Image.new("RGB", (8, 8), (40 * k, shade, i)).save(folder / label / f"{i}.png")


def load_images(root, **keys):
    return image.load_data(resolve("image", None, {"data": str(root), "val_size": 2, **keys}))


@pytest.mark.parametrize("held", ["val", "valid", "validation", "test"])
def test_image_train_beside_a_held_out_split_keeps_the_folder_split(tmp_path, held):
    images(tmp_path / "train", ["cat", "dog", "fox"], 4, shade=0)
    images(tmp_path / held, ["cat", "dog", "fox"], 2, shade=200)
    train, val, test, classes = load_images(tmp_path)
    assert classes == ["cat", "dog", "fox"]  # not ["train", "valid"]
    assert len(train) == 10 and len(val) == 2 and len(test) == 6
    assert set(test.tensors[0][:, 1, 0, 0].tolist()) == {200}  # every test image from the held-out folder
    assert set(train.tensors[0][:, 1, 0, 0].tolist()) == {0} and set(val.tensors[0][:, 1, 0, 0].tolist()) == {0}
    assert torch.bincount(test.tensors[1]).tolist() == [2, 2, 2]
    assert (test.tensors[0][:, 0, 0, 0] == test.tensors[1] * 40).all()  # labels follow the class folders


def test_image_train_valid_and_test_use_all_three(tmp_path):
    images(tmp_path / "train", ["cat", "dog"], 4, shade=0)
    images(tmp_path / "valid", ["cat", "dog"], 3, shade=100)
    images(tmp_path / "test", ["cat", "dog"], 2, shade=200)
    train, val, test, classes = load_images(tmp_path)
    assert classes == ["cat", "dog"] and (len(train), len(val), len(test)) == (8, 6, 4)  # val_size unused
    assert set(val.tensors[0][:, 1, 0, 0].tolist()) == {100} and set(test.tensors[0][:, 1, 0, 0].tolist()) == {200}


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda root: images(root, ["cat"], 6), r"holds 1 class\(es\) \['cat'\]; a classifier needs at least two"),
        (lambda root: images(root / "train", ["cat"], 6) or images(root / "val", ["cat"], 2), r"holds 1 class\(es\)"),
        (lambda root: images(root / "train", ["cat", "dog"], 3), r"holds a train/ folder with no val/, valid/ or test/ "
                                                                 r"beside it; add one, or pass --data .*train"),
        (lambda root: images(root / "val", ["cat", "dog"], 3), r"holds \['val'\] but no train/ folder"),
        (lambda root: images(root / "train", ["cat", "dog"], 3) or images(root / "val", ["cat", "dog"], 3)
         or images(root / "valid", ["cat", "dog"], 3), r"holds both val/ and valid/ as the validation split"),
        (lambda root: images(root / "train", ["cat", "dog"], 3) or images(root / "test", ["cat", "dog"], 3)
         or images(root, ["bird"], 3), r"holds the split folders \['test', 'train'\] beside other folders \['bird'\]"),
        (lambda root: images(root / "train", ["cat", "dog"], 3) or images(root / "test", ["cat", "emu"], 3),
         r"test/ has classes \['cat', 'emu'\], train/ has \['cat', 'dog'\]"),
    ],
)  # fmt: skip
def test_image_folders_that_cannot_train_are_refused(tmp_path, make, match):
    make(tmp_path)
    with pytest.raises(ValueError, match=match):
        load_images(tmp_path)


def test_split_folders_reads_names_case_blind_and_skips_hidden(tmp_path):
    for name in ("Train", "VALID", ".cache"):
        (tmp_path / name).mkdir()
    assert split_folders(tmp_path) == {"train": tmp_path / "Train", "val": tmp_path / "VALID"}
    (tmp_path / "cat").mkdir()
    with pytest.raises(ValueError, match=r"beside other folders \['cat'\]"):
        split_folders(tmp_path)


def write_wav(path, frequency, rate=8000):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.sin(np.arange(800) * frequency) * 8000).astype("<i2").tobytes())


def test_speech_split_layout_and_one_label(tmp_path):
    for split, count in (("train", 5), ("test", 2)):
        for label in ("no", "yes"):
            for k in range(count):
                write_wav(tmp_path / split / label / f"{k}.wav", 0.1 if split == "train" else 0.3)
    train, val, test, classes = speech.load_data(resolve("speech", None, {"data": str(tmp_path), "val_size": 2}))
    assert classes == ["no", "yes"] and (len(train), len(val), len(test)) == (8, 2, 4)
    assert torch.bincount(test.tensors[1]).tolist() == [2, 2]
    test_waves = {w.numpy().tobytes() for w in test.tensors[0][0]}
    assert len(test_waves) == 1 and not test_waves & {w.numpy().tobytes() for w in train.tensors[0][0]}
    single = tmp_path / "single"
    for k in range(4):
        write_wav(single / f"yes_{k}.wav", 0.1 * (k + 1))
    with pytest.raises(ValueError, match=r"--data .*single holds 1 class\(es\) \['yes'\]"):
        speech.load_data(resolve("speech", None, {"data": str(single), "val_size": 1}))
