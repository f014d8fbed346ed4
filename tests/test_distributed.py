"""DDP on CPU: two gloo processes train in lockstep and resume exactly.

The processes get the environment torchrun would give them (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT) and call `train()` like `python -m ferkit train` does under torchrun.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from ferkit.config import TrainConfig, apply_overrides
from ferkit.train.trainer import train
from synthetic_train import learnable_store

WORLD = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(store, out) -> TrainConfig:
    return apply_overrides(
        TrainConfig(),
        {
            "data.path": str(store), "out": str(out), "model.name": "mini_xception",
            "device": "cpu", "epochs": 2, "batch_size": 8, "optim.name": "adamw",
            "optim.lr": 0.005, "ema_decay": 0.9, "model.args.dropout": 0.2,
            "augment.mixup_alpha": 0.3, "log.progress": False, "threads": 1,
        },
    )  # fmt: skip


def _worker(rank: int, ports: list[int], store: str, folder: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1"
    )
    runs = [
        ("whole", {}),
        ("split", {"on_epoch": lambda stats: stats.epoch == 1}),
        ("split", {"resume": True}),
    ]
    results = []
    for port, (name, options) in zip(ports, runs, strict=True):
        os.environ["MASTER_PORT"] = str(port)
        results.append(train(_config(store, os.path.join(folder, name)), **options))
    whole, interrupted, resumed = results
    torch.save(
        {
            "whole": whole.model.state_dict(),
            "resumed": resumed.model.state_dict(),
            "epochs": [whole.epochs, interrupted.epochs, resumed.epochs],
            "val_acc": [s.val_acc for s in whole.history],
            "resumed_val_acc": [s.val_acc for s in resumed.history],
        },
        os.path.join(folder, f"rank{rank}.pt"),
    )


def test_two_gloo_processes_end_with_identical_weights_and_resume_exactly(tmp_path):
    store = learnable_store(tmp_path / "stripes.h5", per_class=(6, 3, 1))
    ports = [_free_port() for _ in range(3)]
    mp.spawn(_worker, args=(ports, str(store), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for rank in ranks:
        assert rank["epochs"] == [2, 1, 2]
        assert rank["val_acc"] == rank["resumed_val_acc"] == ranks[0]["val_acc"]
    for key, value in ranks[0]["whole"].items():
        assert torch.equal(value, ranks[1]["whole"][key]), key
        assert torch.equal(value, ranks[0]["resumed"][key]), key
        assert torch.equal(value, ranks[1]["resumed"][key]), key
    # Only rank 0 writes the run folder; it holds one process's worth of files.
    assert sorted(p.name for p in (tmp_path / "whole").iterdir()) == [
        "best.pt", "config.yaml", "curves.png", "last.pt", "metrics.csv",
    ]  # fmt: skip
