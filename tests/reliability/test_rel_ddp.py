"""Distributed training under ``torchrun --nproc_per_node=2`` on the CPU (gloo): the run matches a single-process
run with the same global batch size, only rank 0 writes the run directory, and metrics are reduced across ranks.

Tolerance: the backbone is timm's ``test_efficientnet_gn`` (GroupNorm, no BatchNorm), so each sample's forward
pass does not depend on the other samples of its rank's batch. Both runs then see the same samples in the same
steps (EpochSampler strides one seeded permutation across ranks) with the same per-sample augmentation, and the
DDP gradient (the mean over ranks of per-rank mean losses, equal-sized shards) equals the single-process mean;
the only difference left is the float summation order of the all-reduce: ~1e-7 relative. We allow 1e-5 on
weights and losses and require identical accuracies. With BatchNorm (test_resnet) each rank normalises over its
own 2 images instead of 4, which changes the losses by a few percent: not a useful bound for a correctness test.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from rel_helpers import base_recipe, copy_data, metrics_rows, subprocess_env, without_timing, write_recipe

from fgvc.engine.checkpoint import load_checkpoint
from fgvc.engine.distributed import EpochSampler, ShardSampler


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun() -> list[str]:
    exe = shutil.which("torchrun")
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.parametrize("n,world", [(21, 2), (24, 2), (7, 3)])
def test_distributed_samplers_partition_the_data(n, world):
    train = [EpochSampler(n, 5, True, r, world) for r in range(world)]
    for s in train:
        s.set_epoch(2)
    shards = [s.indices() for s in train]
    assert len({len(x) for x in shards}) == 1  # equal shards: every rank takes the same number of steps
    assert sorted(set(sum(shards, []))) == list(range(n))  # every sample, padding repeats only a few
    whole = EpochSampler(n, 5, True, 0, 1)
    whole.set_epoch(2)
    assert [shards[r][i] for i in range(len(shards[0])) for r in range(world)][:n] == whole.indices()
    evals = [list(ShardSampler(n, r, world)) for r in range(world)]
    assert sorted(sum(evals, [])) == list(range(n))  # evaluation: each image exactly once, no padding


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_single_process(tmp_path):
    cfg = base_recipe(copy_data(tmp_path / "data"), model={"backbone": "test_efficientnet_gn.r160_in1k"})
    recipe = write_recipe(tmp_path / "r.yaml", cfg)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    env = subprocess_env()
    cmd = [*_torchrun(), "--nproc_per_node=2", f"--master_port={_free_port()}", "-m", "fgvc.train", str(recipe),
           "--output", str(ddp)]
    ref = subprocess.Popen([sys.executable, "-m", "fgvc.train", str(recipe), "--output", str(single)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)  # runs alongside
    res_ddp = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    _, ref_err = ref.communicate(timeout=300)
    assert res_ddp.returncode == 0, res_ddp.stdout[-3000:] + res_ddp.stderr[-3000:]
    assert ref.returncode == 0, ref_err[-3000:]

    # rank 0 alone writes the run directory: one log, one row per epoch, one set of checkpoints
    assert "device cpu x2" in res_ddp.stdout and res_ddp.stdout.count("epoch 1/2 [main]") == 1
    log = (ddp / "train.log").read_text()
    assert log.count("run directory:") == 1 and log.count("epoch 2/2 [main]") == 1
    assert sorted(p.name for p in (ddp / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())

    # metrics reduced over ranks: the whole test split is scored, not each rank's half
    f_single, f_ddp = (json.loads((r / "final.json").read_text()) for r in (single, ddp))
    assert f_ddp["n_images"] == f_single["n_images"] == 24
    assert without_timing(f_ddp) == without_timing(f_single)  # same accuracies, steps, epochs
    r_single, r_ddp = metrics_rows(single), metrics_rows(ddp)
    assert len(r_single) == len(r_ddp) == 2
    for a, b in zip(r_single, r_ddp):
        assert a["step"] == b["step"] == 5 * (a["epoch"] + 1) and a["lr"] == b["lr"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["train_top1"] == a["train_top1"] and b["val_top1"] == a["val_top1"]
    w_single, w_ddp = (load_checkpoint(r / "checkpoints" / "last.pt")["model"] for r in (single, ddp))
    for k in w_single:
        assert torch.allclose(w_ddp[k].float(), w_single[k].float(), rtol=1e-5, atol=1e-5), k
