"""multimix.ranks.RankStates: every rank's mixer state in one checkpoint, each rank restoring its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import multimix
from multimix import ranks as ranks_module
from multimix.image import CutMix, Mixup
from multimix.ranks import RankStates
from multimix.seeding import rank_seed

NUM_CLASSES, BATCH = 10, 4


def mixer(seed: int = 0) -> multimix.Mixer:
    return multimix.Mixer([Mixup(1.0), CutMix(1.0)], NUM_CLASSES, per_sample=True, seed=seed)


def plans(m: multimix.Mixer, n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(p.index, p.lam) for p in (m.draw(BATCH) for _ in range(n))]


def assert_same(got, want):
    assert len(got) == len(want)
    for (i, lam), (i_want, lam_want) in zip(got, want, strict=True):
        assert torch.equal(i, i_want) and torch.equal(lam, lam_want)


def as_rank(monkeypatch, rank: int, world: int) -> None:
    monkeypatch.setattr(ranks_module, "rank_and_world", lambda: (rank, world))


# ---------------------------------------------------------------------------- one process
def test_single_process_round_trip_draws_the_same_plans():
    m = mixer()
    states = RankStates(m)
    reference = plans(mixer(), 2)
    assert_same(plans(m, 2), reference)  # rank 0 keeps the mixer's own stream
    m.set_epoch(3)
    saved = states.state_dict()
    assert saved["world_size"] == 1 and list(saved["ranks"]) == [0]
    straight = plans(m, 4)
    resumed = mixer(seed=7)  # another seed: everything comes from the checkpoint
    RankStates(resumed).load_state_dict(saved)
    assert_same(plans(resumed, 4), straight)
    assert resumed._schedule.epoch == 3


def test_rank_r_draws_from_rank_seed_and_restores_its_own(monkeypatch):
    as_rank(monkeypatch, 1, 2)
    m = mixer()
    RankStates(m)  # rank 1 reseeds at construction
    fresh = torch.Generator().manual_seed(rank_seed(0, 1))
    assert torch.equal(m.generator.get_state(), fresh.get_state())
    rank0 = mixer()  # what rank 0 would have saved
    saved = {"world_size": 2, "ranks": {0: rank0.state_dict(), 1: m.state_dict()}}
    straight = plans(m)
    other = mixer()
    RankStates(other).load_state_dict(saved)
    assert_same(plans(other), straight)
    assert not torch.equal(other.generator.get_state(), rank0.generator.get_state())


def test_world_size_change_warns_and_new_ranks_start_fresh(monkeypatch):
    old = mixer()
    old.set_epoch(2)
    plans(old)
    saved = {"world_size": 1, "ranks": {0: old.state_dict()}}
    as_rank(monkeypatch, 2, 3)  # a new rank: saved schedule, its own fresh stream
    new = mixer()
    RankStates(new).load_state_dict(saved)
    assert new._schedule.epoch == 2
    assert torch.equal(new.generator.get_state(), torch.Generator().manual_seed(rank_seed(0, 2)).get_state())
    as_rank(monkeypatch, 0, 3)
    first = mixer()
    with pytest.warns(UserWarning, match=r"world size 1 is restored on 3 processes: ranks \[0\] restore .* ranks 1..2"):
        RankStates(first).load_state_dict(saved)
    assert torch.equal(first.generator.get_state(), old.generator.get_state())
    as_rank(monkeypatch, 0, 1)
    two = {"world_size": 2, "ranks": {0: old.state_dict(), 1: mixer().state_dict()}}
    with pytest.warns(UserWarning, match=r"world size 2 is restored on 1 processes: .* ranks 1..1 are dropped"):
        RankStates(mixer()).load_state_dict(two)


# ---------------------------------------------------------------------------- errors
def test_errors_name_the_argument_and_the_fix(monkeypatch):
    with pytest.raises(TypeError, match=r"mixer must be a multimix.Mixer, got Mixup; pass the Mixer itself"):
        RankStates(Mixup(1.0))
    states = RankStates(mixer())
    with pytest.raises(ValueError, match=r"got a dict with keys \['alphas', .*one Mixer.state_dict\(\) .* bare mixer"):
        states.load_state_dict(mixer().state_dict())
    with pytest.raises(ValueError, match=r"'ranks' dict and 'world_size', got list; pass what RankStates.state_dict"):
        states.load_state_dict([])
    with pytest.raises(ValueError, match=r"state_dict\['world_size'\] must be an int >= 1, got 0"):
        states.load_state_dict({"world_size": 0, "ranks": {}})
    with pytest.raises(ValueError, match=r"must hold ranks 0..1 \(world_size=2\), got \[0\]"):
        states.load_state_dict({"world_size": 2, "ranks": {0: mixer().state_dict()}})
    as_rank(monkeypatch, 1, 2)
    with pytest.raises(ValueError, match=r"built as rank 0 of 1 but runs as rank 1 of 2: .* after accelerate"):
        states.state_dict()


# ---------------------------------------------------------------------------- two processes
SCRIPT = """
import json, sys
import accelerate, multimix
from multimix.image import CutMix, Mixup
from multimix.ranks import RankStates
from multimix.seeding import rank_seed

phase, folder = sys.argv[1], sys.argv[2]
accelerator = accelerate.Accelerator(cpu=True)
rank = accelerator.process_index

def make():
    return multimix.Mixer([Mixup(1.0), CutMix(1.0)], 10, per_sample=True, seed=0)

mixer, bare = make(), make()
if rank > 0:  # what the docs advised before RankStates
    bare.generator.manual_seed(rank_seed(bare.seed, rank))
accelerator.register_for_checkpointing(RankStates(mixer), bare)

def draw(m, n=3):
    return [(p.index.tolist(), p.lam.tolist()) for p in (m.draw(4) for _ in range(n))]

out = {}
if phase == "save":
    out["before"] = draw(mixer), draw(bare)
    accelerator.save_state(folder + "/checkpoint")
else:  # a fresh run resumes
    accelerator.load_state(folder + "/checkpoint")
out["after"] = draw(mixer), draw(bare)
with open(f"{folder}/{phase}-rank{rank}.json", "w") as f:
    json.dump(out, f)
accelerator.wait_for_everyone()
accelerator.end_training()  # destroys the process group: gloo may abort at exit with one left alive
"""


@pytest.mark.slow
def test_accelerate_two_processes_resume_each_ranks_own_plans(tmp_path):
    """Two gloo processes under torchrun: ``save_state``, then a fresh run that ``load_state``s.

    The mixer registered through ``RankStates`` draws, per rank, exactly what the
    uninterrupted run drew; the bare mixer registered beside it shows the defect fixed:
    accelerate writes rank 0's state only, so after ``load_state`` rank 1 draws rank 0's plans.
    """
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    start = time.perf_counter()
    for phase in ("save", "load"):
        job = subprocess.run(
            [torchrun, "--nproc_per_node", "2", "--standalone", str(script), phase, str(tmp_path)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert job.returncode == 0, f"exit code {job.returncode}; stderr ends: {job.stderr[-4000:]}"
    got = {(phase, r): json.loads((tmp_path / f"{phase}-rank{r}.json").read_text()) for phase in ("save", "load")
           for r in (0, 1)}  # fmt: skip
    saved = torch.load(tmp_path / "checkpoint" / "custom_checkpoint_0.pkl", weights_only=False)
    assert saved["world_size"] == 2 and set(saved["ranks"]) == {0, 1}
    for r in (0, 1):  # RankStates: each rank resumes its own stream exactly
        assert got["load", r]["after"][0] == got["save", r]["after"][0]
    assert got["save", 0]["before"][0] != got["save", 1]["before"][0]  # ranks draw different plans
    assert got["load", 0]["after"][0] != got["load", 1]["after"][0]
    alone = mixer()
    reference = [[p.index.tolist(), p.lam.tolist()] for p in (alone.draw(BATCH) for _ in range(3))]
    assert got["save", 0]["before"][0] == reference  # rank 0 keeps the seed's stream
    # the defect: a bare mixer's checkpoint is rank 0's, so rank 1 resumes rank 0's plans
    assert got["save", 0]["after"][1] != got["save", 1]["after"][1]
    assert got["load", 1]["after"][1] == got["load", 0]["after"][1] == got["save", 0]["after"][1]
    print(f"two torchrun jobs took {time.perf_counter() - start:.1f} s")
