"""MixupCallback under a real Lightning Trainer on the CPU: mixing, schedule, resume, DDP, errors.

Run as a script (``python tests/test_lightning.py OUT_DIR``) it is the 2-process DDP job that
``test_ddp_ranks_draw_different_plans_and_checkpoint_every_rank`` launches: Lightning's
``strategy="ddp"`` starts rank 1 by re-running this file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")

import multimix  # noqa: E402
from multimix.image import CutMix, Mixup  # noqa: E402
from multimix.lightning import MixupCallback, rank_seed  # noqa: E402
from multimix.mixer import MixedBatch  # noqa: E402

NUM_CLASSES, BATCH, STEPS_PER_EPOCH = 5, 4, 4
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*GPU available but not used.*")


def dataset(n: int = BATCH * STEPS_PER_EPOCH) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 2, 3, generator=g), torch.randint(0, NUM_CLASSES, (n,), generator=g)


class Images(torch.utils.data.Dataset):
    """``(x, y)`` samples, or ``{"pixel_values": x, "labels": y}`` dicts with ``as_dict``."""

    def __init__(self, as_dict: bool = False) -> None:
        self.x, self.y = dataset()
        self.as_dict = as_dict

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return {"pixel_values": self.x[i], "labels": self.y[i]} if self.as_dict else (self.x[i], self.y[i])


class Recorder(pl.LightningModule):
    """Trains on soft targets and records what ``training_step`` saw and the callback's plan."""

    def __init__(self, inputs_key=0, targets_key=1) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(6, NUM_CLASSES)
        self.keys = inputs_key, targets_key
        self.seen: list[tuple[torch.Tensor, torch.Tensor, MixedBatch]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch[self.keys[0]], batch[self.keys[1]]
        callback = next(c for c in self.trainer.callbacks if isinstance(c, MixupCallback))
        self.seen.append((x.detach().clone(), y.detach().clone(), callback.last))
        return multimix.soft_cross_entropy(self.layer(x.flatten(1)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(root, callback, **kwargs) -> pl.Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=root,
    )
    callbacks = callback if isinstance(callback, list) else [callback]
    return pl.Trainer(callbacks=callbacks, **{**options, **kwargs})


def loader(as_dict: bool = False) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(Images(as_dict), batch_size=BATCH, shuffle=False)


def expected(step: int, plan) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand-computed mixup of batch ``step`` of the unshuffled data under ``plan``."""
    x, y = dataset()
    x, y = x[step * BATCH : (step + 1) * BATCH], y[step * BATCH : (step + 1) * BATCH]
    lam = plan.lam.float()
    mixed = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[plan.index]
    rows = torch.nn.functional.one_hot(y, NUM_CLASSES).float()
    return mixed, lam[:, None] * rows + (1 - lam[:, None]) * rows[plan.index]


# ---------------------------------------------------------------------------- mixing
def test_training_step_sees_the_mixed_batch(tmp_path):
    module, callback = Recorder(), MixupCallback(multimix.Mixer(Mixup(1.0), NUM_CLASSES, per_sample=True, seed=3))
    trainer(tmp_path, callback, max_steps=3).fit(module, loader())
    reference = multimix.Mixer(Mixup(1.0), NUM_CLASSES, per_sample=True, seed=3)  # rank 0 keeps the seed's stream
    assert len(module.seen) == 3
    for step, (x, y, last) in enumerate(module.seen):
        plan = reference.draw(BATCH)
        assert torch.equal(last.plan.index, plan.index) and torch.equal(last.plan.lam, plan.lam)
        assert not torch.equal(plan.index, torch.arange(BATCH))  # really mixed, not the identity
        mixed, soft = expected(step, plan)
        torch.testing.assert_close(x, mixed)
        torch.testing.assert_close(y, soft)
        assert y.shape == (BATCH, NUM_CLASSES) and last.inputs is None
        torch.testing.assert_close(last.lam, plan.lam.float())


def test_dict_batches_with_a_field_mixer(tmp_path):
    mixer = multimix.Mixer({"pixel_values": Mixup(1.0)}, NUM_CLASSES, per_sample=True, seed=4)
    module = Recorder("pixel_values", "labels")
    trainer(tmp_path, MixupCallback(mixer), max_steps=2).fit(module, loader(as_dict=True))
    for step, (x, y, last) in enumerate(module.seen):
        mixed, soft = expected(step, last.plan)
        torch.testing.assert_close(x, mixed)
        torch.testing.assert_close(y, soft)


def test_dict_batches_with_batch_keys(tmp_path):
    mixer = multimix.Mixer(Mixup(1.0), NUM_CLASSES, per_sample=True, seed=5)
    module = Recorder("pixel_values", "labels")
    callback = MixupCallback(mixer, batch_keys=("pixel_values", "labels"))
    trainer(tmp_path, callback, max_steps=2).fit(module, loader(as_dict=True))
    for step, (x, y, last) in enumerate(module.seen):
        mixed, soft = expected(step, last.plan)
        torch.testing.assert_close(x, mixed)
        torch.testing.assert_close(y, soft)


def test_off_epoch_and_alpha_schedule_follow_the_trainer_epoch(tmp_path):
    adapter = Mixup(2.0)
    mixer = multimix.Mixer(adapter, NUM_CLASSES, seed=0, off_epoch=1, alpha_schedule=lambda epoch: 0.5**epoch)
    module = Recorder()
    alphas = []

    class Alphas(pl.Callback):
        def on_train_batch_end(self, *args):
            alphas.append(adapter.alpha)

    fit = trainer(tmp_path, MixupCallback(mixer), max_epochs=2)
    fit.callbacks.append(Alphas())
    fit.fit(module, loader())
    assert len(module.seen) == 2 * STEPS_PER_EPOCH
    assert alphas == [2.0] * STEPS_PER_EPOCH + [1.0] * STEPS_PER_EPOCH
    for step, (x, y, last) in enumerate(module.seen):
        mixed, soft = expected(step % STEPS_PER_EPOCH, last.plan)
        torch.testing.assert_close(x, mixed)
        torch.testing.assert_close(y, soft)
        identity = torch.equal(last.plan.index, torch.arange(BATCH)) and bool((last.plan.lam == 1).all())
        assert identity == (step >= STEPS_PER_EPOCH)  # mixing until off_epoch, plain one-hot rows from it on
    assert not mixer.enabled


def test_mixing_runs_on_meta_tensors_so_it_cannot_sync_a_device():
    callback = MixupCallback(multimix.Mixer(Mixup(1.0), NUM_CLASSES, per_sample=True, seed=0))
    batch = [torch.empty(BATCH, 1, 2, 3, device="meta"), torch.empty(BATCH, dtype=torch.long, device="meta")]
    callback.on_train_batch_start(SimpleNamespace(current_epoch=0), None, batch, 0)
    assert batch[1].shape == (BATCH, NUM_CLASSES) and batch[1].device.type == "meta"
    assert callback.last.lam.device.type == "meta" and callback.last.plan.index.device.type == "cpu"


@pytest.mark.gpu
def test_training_step_sees_the_mixed_batch_on_the_gpu(tmp_path):
    module, callback = Recorder(), MixupCallback(multimix.Mixer(Mixup(1.0), NUM_CLASSES, per_sample=True, seed=3))
    trainer(tmp_path, callback, max_steps=2, accelerator="gpu").fit(module, loader())
    for step, (x, y, last) in enumerate(module.seen):
        assert x.is_cuda and y.is_cuda and last.lam.is_cuda
        mixed, soft = expected(step, last.plan)
        torch.testing.assert_close(x.cpu(), mixed)
        torch.testing.assert_close(y.cpu(), soft)


# ---------------------------------------------------------------------------- checkpoints
def plans_of(module: Recorder) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(last.plan.index, last.plan.lam) for _, _, last in module.seen]


@pytest.mark.parametrize("stop_step", [STEPS_PER_EPOCH, STEPS_PER_EPOCH + 2], ids=["epoch-end", "mid-epoch"])
def test_resume_draws_the_plans_of_an_uninterrupted_run(tmp_path, stop_step):
    total = 3 * STEPS_PER_EPOCH

    def mixer(seed):
        return multimix.Mixer(
            [Mixup(1.0), CutMix(1.0)],
            NUM_CLASSES,
            per_sample=True,
            seed=seed,
            alpha_schedule=lambda epoch: 1.0 / (epoch + 1),
        )

    straight = Recorder()  # one run, checkpointed every 2 steps as ModelCheckpoint does in practice
    saver = pl.callbacks.ModelCheckpoint(tmp_path, every_n_train_steps=2, save_top_k=-1)
    run = trainer(tmp_path, [MixupCallback(mixer(11)), saver], max_steps=total, enable_checkpointing=True)
    run.fit(straight, loader())
    ckpt = tmp_path / f"epoch={(stop_step - 1) // STEPS_PER_EPOCH}-step={stop_step}.ckpt"
    saved = torch.load(ckpt, weights_only=True)["callbacks"]["MixupCallback"]
    assert saved["world_size"] == 1 and set(saved["ranks"]) == {0}

    resumed = Recorder()  # another seed: the checkpoint, not the seed, must decide the plans
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*resuming from a checkpoint that ended before the epoch ended.*")
        warnings.filterwarnings("ignore", ".*callbacks used to create the checkpoint need to be provided.*")
        trainer(tmp_path / "resumed", MixupCallback(mixer(99)), max_steps=total).fit(resumed, loader(), ckpt_path=ckpt)
    got, want = plans_of(resumed), plans_of(straight)[stop_step:]
    assert len(got) == len(want) == total - stop_step
    for (index, lam), (index_want, lam_want) in zip(got, want, strict=True):
        assert torch.equal(index, index_want) and torch.equal(lam, lam_want)


def test_load_state_dict_from_another_world_size_warns_and_keeps_this_rank():
    saved = MixupCallback(multimix.Mixer(Mixup(1.0), NUM_CLASSES, seed=1))
    saved.mixer.draw(BATCH)
    state = saved.state_dict()
    state = {"world_size": 2, "ranks": {0: state["ranks"][0], 1: state["ranks"][0]}}
    fresh = MixupCallback(multimix.Mixer(Mixup(1.0), NUM_CLASSES, seed=2))
    with pytest.warns(
        UserWarning,
        match=r"saved with world size 2 is restored on 1 processes: ranks \[0\] restore .* ranks 1..1 are dropped",
    ):
        fresh.load_state_dict(state)
    assert torch.equal(fresh.mixer.generator.get_state(), saved.mixer.generator.get_state())


def test_rank_seed_separates_ranks_and_seeds():
    seeds = {rank_seed(seed, rank) for seed in range(4) for rank in range(1, 9)}
    assert len(seeds) == 32 and all(0 <= s < 2**63 for s in seeds)


# ---------------------------------------------------------------------------- DDP
def ddp_job(out: Path) -> None:
    """2 processes on gloo: fit, checkpoint, resume, and an uninterrupted run to compare with."""
    torch.set_num_threads(1)

    def fit(module, callback, steps, ckpt_path=None):
        fit = trainer(out, callback, max_steps=steps, strategy="ddp", devices=2)
        fit.fit(module, loader(), ckpt_path=ckpt_path)
        return fit

    def mixer():
        return multimix.Mixer(Mixup(1.0), NUM_CLASSES, per_sample=True, seed=5)

    first, callback = Recorder(), MixupCallback(mixer())
    run = fit(first, callback, 2)
    run.save_checkpoint(out / "ddp.ckpt")  # every rank takes part: the callback gathers the states
    rank, state_at_save = run.global_rank, callback.mixer.generator.get_state()
    resumed = Recorder()
    fit(resumed, MixupCallback(multimix.Mixer(Mixup(1.0), NUM_CLASSES, per_sample=True, seed=0)), 4, out / "ddp.ckpt")
    straight = Recorder()
    fit(straight, MixupCallback(mixer()), 4)
    torch.save(
        {
            "state_at_save": state_at_save,
            "interrupted": plans_of(first) + plans_of(resumed),
            "straight": plans_of(straight),
        },
        out / f"rank{rank}.pt",
    )
    if torch.distributed.is_initialized():  # a gloo group alive at exit aborts the process now and then
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_ranks_draw_different_plans_and_checkpoint_every_rank(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("LOCAL_RANK", None)
    start = time.perf_counter()
    job = subprocess.run(
        [sys.executable, __file__, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert job.returncode == 0, f"exit code {job.returncode}; stderr ends: {job.stderr[-4000:]}"
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    saved = torch.load(tmp_path / "ddp.ckpt", weights_only=True)["callbacks"]["MixupCallback"]
    assert saved["world_size"] == 2 and set(saved["ranks"]) == {0, 1}
    for r in (0, 1):  # the checkpoint holds each rank's own generator
        assert torch.equal(saved["ranks"][r]["generator"], ranks[r]["state_at_save"])
        assert len(ranks[r]["straight"]) == 4
        for (i, lam), (i_want, lam_want) in zip(ranks[r]["interrupted"], ranks[r]["straight"], strict=True):
            assert torch.equal(i, i_want) and torch.equal(lam, lam_want)
    rank0, rank1 = ranks[0]["straight"], ranks[1]["straight"]
    assert all(not torch.equal(a[1], b[1]) for a, b in zip(rank0, rank1, strict=True))  # different plans
    reference = multimix.Mixer(Mixup(1.0), NUM_CLASSES, per_sample=True, seed=5)
    assert all(torch.equal(reference.draw(BATCH).lam, lam) for _, lam in rank0)  # rank 0 keeps the seed's stream
    print(f"DDP job took {time.perf_counter() - start:.1f} s")


# ---------------------------------------------------------------------------- errors
def test_constructor_errors_name_the_argument():
    mixer = multimix.Mixer(Mixup(1.0), NUM_CLASSES, seed=0)
    with pytest.raises(TypeError, match=r"mixer must be a multimix.Mixer, got Mixup; build one with"):
        MixupCallback(Mixup(1.0))
    with pytest.raises(TypeError, match=r"batch_keys must be a pair \(inputs, targets\).*got 'image'"):
        MixupCallback(mixer, batch_keys="image")
    with pytest.raises(TypeError, match=r"batch_keys must be two different ints .* got \(0, 'y'\)"):
        MixupCallback(mixer, batch_keys=(0, "y"))
    with pytest.raises(TypeError, match=r"batch_keys must be two different .* got \(1, 1\)"):
        MixupCallback(mixer, batch_keys=(1, 1))
    fields = multimix.Mixer({"pixel_values": Mixup(1.0)}, NUM_CLASSES, seed=0)
    with pytest.raises(ValueError, match=r"batch_keys=\(0, 1\) but this Mixer mixes dict batches .* leave batch_keys"):
        MixupCallback(fields, batch_keys=(0, 1))


def test_batch_errors_say_what_to_return():
    x, y = dataset(BATCH)
    callback = MixupCallback(multimix.Mixer(Mixup(1.0), NUM_CLASSES, seed=0))
    with pytest.raises(TypeError, match=r"a tuple does not allow; return a list \[x, y\]"):
        callback.on_train_batch_start(None, None, (x, y), 0)
    with pytest.raises(TypeError, match=r"dict batch with keys \['image', 'label'\] but no batch_keys"):
        callback.on_train_batch_start(None, None, {"image": x, "label": y}, 0)
    with pytest.raises(ValueError, match=r"list of 1 items, batch_keys=\(0, 1\) needs more"):
        callback.on_train_batch_start(None, None, [x], 0)
    with pytest.raises(TypeError, match=r"list \[x, y\] or dict batches, got Tensor"):
        callback.on_train_batch_start(None, None, x, 0)
    mixed = multimix.Mixer(Mixup(1.0), NUM_CLASSES, seed=0)(x.clone(), y)
    with pytest.raises(TypeError, match=r"already a MixedBatch .* not both"):
        callback.on_train_batch_start(None, None, mixed, 0)
    keyed = MixupCallback(multimix.Mixer(Mixup(1.0), NUM_CLASSES, seed=0), batch_keys=("image", "label"))
    with pytest.raises(ValueError, match=r"batch has no key\(s\) \['label'\] from batch_keys; it has \['image', 'y'\]"):
        keyed.on_train_batch_start(None, None, {"image": x, "y": y}, 0)
    with pytest.raises(TypeError, match=r"batch_keys=\('image', 'label'\) names dict keys, but the batch is a list"):
        keyed.on_train_batch_start(None, None, [x, y], 0)
    fields = MixupCallback(multimix.Mixer({"pixel_values": Mixup(1.0)}, NUM_CLASSES, seed=0))
    with pytest.raises(TypeError, match=r"mixes dict batches with fields \['pixel_values'\], got a list batch"):
        fields.on_train_batch_start(None, None, [x, y], 0)
    assert torch.equal(x, dataset(BATCH)[0])  # nothing was written by a refused batch


def test_two_callbacks_and_bad_state_are_refused(tmp_path):
    mixer = multimix.Mixer(Mixup(1.0), NUM_CLASSES, seed=0)
    fit = trainer(tmp_path, MixupCallback(mixer), max_steps=1)
    fit.callbacks.append(MixupCallback(mixer))
    with pytest.raises(ValueError, match=r"2 MixupCallbacks, which would mix every batch more than once"):
        fit.fit(Recorder(), loader())
    with pytest.raises(
        ValueError, match=r"a 'ranks' dict .* got a dict with keys \['generator'\]; this is one Mixer.state_dict\(\)"
    ):
        MixupCallback(mixer).load_state_dict({"generator": mixer.generator.get_state()})
    state = MixupCallback(mixer).state_dict()["ranks"][0]
    before = mixer.generator.get_state()
    with pytest.raises(ValueError, match=r"\['world_size'\] must be an int >= 1, got None"):
        MixupCallback(mixer).load_state_dict({"ranks": {}})  # restored nothing, warning of world size 0
    with pytest.raises(ValueError, match=r"must hold ranks 0..0 \(world_size=1\), got \['0'\]; pass what Mixup"):
        MixupCallback(mixer).load_state_dict({"world_size": 1, "ranks": {"0": state}})  # restored nothing, silently
    assert torch.equal(mixer.generator.get_state(), before)


if __name__ == "__main__":
    ddp_job(Path(sys.argv[1]))
