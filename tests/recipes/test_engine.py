"""Engine pieces on the CPU: checkpoints, output folders, batched augmentation, data, summaries."""

import errno
import os

import pytest
import torch
import torch.nn.functional as F

from multimix_recipes import checkpoint
from multimix_recipes.config import resolve
from multimix_recipes.data import TensorData, epoch_batches, fits_on
from multimix_recipes.distributed import World
from multimix_recipes.engine import epoch_order, steps_per_epoch, summary
from multimix_recipes.image.train import augment, crop_flip
from multimix_recipes.runner import prepare_out


def test_crop_flip_equals_the_per_sample_loop():
    x = torch.randint(0, 256, (5, 3, 6, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    offsets = torch.tensor([[0, 0], [8, 8], [4, 4], [2, 7], [8, 0]])
    flips = torch.tensor([False, True, False, True, True])
    padded = F.pad(x, (4, 4, 4, 4))
    expected = torch.stack([padded[i, :, dy : dy + 6, dx : dx + 7] for i, (dy, dx) in enumerate(offsets.tolist())])
    expected = torch.where(flips.view(-1, 1, 1, 1), expected.flip(3), expected)
    out = crop_flip(x, offsets, flips)
    assert out.shape == x.shape and out.dtype == torch.uint8 and torch.equal(out, expected)
    assert torch.equal(out[2], x[2])  # offset (4, 4) without a flip is the image itself
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_augment_draws_from_the_torch_generator():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    torch.manual_seed(3)
    a = augment(x)
    torch.manual_seed(3)
    assert torch.equal(a, augment(x)) and a.shape == x.shape


def test_tensor_data_batches_and_errors():
    data = TensorData(((torch.arange(10), torch.arange(10) * 2), torch.arange(10) % 3))
    assert len(data) == 10 and fits_on(data, torch.device("cpu")) and data.nbytes == 3 * 10 * 8
    batches = list(epoch_batches(data, [torch.tensor([3, 1]), torch.tensor([0, 9])], torch.device("cpu")))
    (a, b), y = batches[1]
    assert a.tolist() == [0, 9] and b.tolist() == [0, 18] and y.tolist() == [0, 0]
    with pytest.raises(ValueError, match=r"tensors must share their first dimension, got \[\(3,\), \(4,\)\]"):
        TensorData((torch.zeros(3), torch.zeros(4)))


def test_steps_and_epoch_order():
    c = resolve("image", None, {"batch_size": 32, "accumulate": 2})
    assert steps_per_epoch(200, c) == 3 and steps_per_epoch(200, c, world_size=2) == 1
    with pytest.raises(ValueError, match=r"the train set has 100 samples, fewer than one optimizer step needs "
                                         r"\(128 = batch_size 32 x accumulate 2 x 2 device"):  # fmt: skip
        steps_per_epoch(100, c, world_size=2)
    ranks = [epoch_order(200, 0, c, World(rank, 2)) for rank in (0, 1)]
    assert [len(r) for r in ranks] == [64, 64] and not set(ranks[0].tolist()) & set(ranks[1].tolist())
    assert torch.equal(epoch_order(200, 1, c, World()), epoch_order(200, 1, c, World()))
    assert not torch.equal(epoch_order(200, 1, c, World()), epoch_order(200, 2, c, World()))


def test_summary_reports_final_error_and_median_of_last_10():
    history = [{"epoch": e, "test_accuracy": a} for e, a in enumerate([0.5] * 5 + [0.9, 0.8, 0.7, 0.6, 0.95] * 2, 1)]
    final = summary(history)
    assert final["test_error"] == pytest.approx(0.05)
    assert final["test_error_median_last_10"] == pytest.approx(0.2)  # errors 0.05 .. 0.4, median of 10
    assert summary([]) == {}


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.write({"epoch": 0}, path)
    real_save = torch.save

    def disk_full(obj, file, *args, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(OSError, match=r"could not write the checkpoint .*checkpoint.pt \(.*No space left on device\); "
                                      r"the previous checkpoint .* is intact and the temporary file"):  # fmt: skip
        checkpoint.write({"epoch": 1}, path)
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert torch.load(path, weights_only=False) == {"epoch": 0}
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", r"--resume: .*checkpoint.pt is empty, so unreadable"),
        (b"not a zip at all", r"--resume: .*checkpoint.pt is unreadable or corrupt \(not data written by torch.save\)"),
        (None, r"--resume: .*checkpoint.pt is not a multimix recipe checkpoint \(missing \['model'"),
    ],
)
def test_unreadable_checkpoints_name_the_file(tmp_path, content, match):
    path = tmp_path / "checkpoint.pt"
    if content is None:
        torch.save({"epoch": 3}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        checkpoint.read(path)


def test_output_folder_checks(tmp_path):
    assert prepare_out(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--out .*file is a file, not a folder"):
        prepare_out(tmp_path / "file")
    with pytest.raises(ValueError, match=r"--out /proc/multimix-test is not a writable folder"):
        prepare_out("/proc/multimix-test")  # read-only even for root


def toy_task(seed=0):
    """A linear model on fixed data: no BatchNorm, no mixing, so gradients add up exactly."""
    from multimix_recipes.engine import Task

    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    torch.manual_seed(seed)
    model = torch.nn.Linear(5, 3)
    return Task(model, TensorData((x, y)), TensorData((x[:16], y[:16])),
                train_loss=lambda m, b: F.cross_entropy(m(b[0]), b[1]),
                test_logits=lambda m, b: (m(b[0]), b[1]))  # fmt: skip


def toy_config(**keys):
    base = {"method": "erm", "device": "cpu", "progress": False, "optimizer": "sgd", "momentum": 0.0,
            "weight_decay": 0.0, "lr": 0.5, "schedule": "constant", "epochs": 2}  # fmt: skip
    return resolve("image", None, {**base, **keys})


def test_accumulation_equals_the_larger_batch(tmp_path):
    from multimix_recipes.engine import train

    big, small = toy_task(), toy_task()
    train(big, toy_config(batch_size=16), tmp_path / "big")
    train(small, toy_config(batch_size=8, accumulate=2), tmp_path / "small")
    for a, b in zip(big.model.parameters(), small.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    untouched = toy_task()
    assert not torch.allclose(untouched.model.weight, big.model.weight)


def test_grad_clip_bounds_the_step(tmp_path):
    from multimix_recipes.engine import train

    task, before = toy_task(), toy_task()
    train(task, toy_config(batch_size=64, epochs=1, grad_clip=0.01), tmp_path)  # one SGD step
    moved = torch.cat([(a - b).flatten() for a, b in zip(task.model.parameters(), before.model.parameters(),
                                                          strict=True)])  # fmt: skip
    assert float(moved.detach().norm()) == pytest.approx(0.5 * 0.01, rel=1e-4)  # lr x clipped norm


def test_precision_key():
    from multimix_recipes.engine import use_bf16

    cpu = torch.device("cpu")
    assert not use_bf16(toy_config(precision="auto"), cpu) and use_bf16(toy_config(precision="bf16"), cpu)
    assert not use_bf16(toy_config(precision="fp32"), torch.device("cuda", 0))


def test_crop_flip_errors():
    x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"x must be images \(B, C, H, W\), got shape \(3, 4, 4\)"):
        crop_flip(x[0], torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"offsets must be \(2, 2\) and flips \(2,\) for 2 images, got \(3, 2\)"):
        crop_flip(x, torch.zeros(3, 2, dtype=torch.long), torch.zeros(2, dtype=torch.bool))


def test_a_run_first_names_its_device_world_size_and_precision(tmp_path, capsys, monkeypatch):
    from multimix_recipes import distributed
    from multimix_recipes.engine import device_line, train

    train(toy_task(), toy_config(epochs=1, batch_size=16), tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "device cpu, world size 1, precision fp32" and lines[1].startswith("epoch 1: train loss")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"NVIDIA H100 at {device}")
    world = distributed.World(rank=0, size=8, local_rank=0)
    assert device_line(torch.device("cuda", 0), world, True) == (
        "device cuda:0 (NVIDIA H100 at cuda:0), world size 8, precision bf16 autocast"
    )
