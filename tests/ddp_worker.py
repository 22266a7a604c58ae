"""Run by test_train.py under torchrun: trains 6 steps with DDP and dumps each rank's weights.

Arguments: the output folder and the loss (``fm`` by default; ``otcfm`` solves each rank's
couplings ahead in background threads; a ``-conditional`` suffix conditions on the moons).
"""

import os
import sys
from pathlib import Path

import torch

from ecnf.config import TrainConfig
from ecnf.losses import LossConfig
from ecnf.nets import MLPConfig
from ecnf.train import fit


def main(out: Path, loss: str) -> None:
    num_classes = 2 if loss.endswith("-conditional") else 0
    cfg = TrainConfig(
        data="moons",
        loss=LossConfig(loss.removesuffix("-conditional")),
        model=MLPConfig(data_shape=(2,), width=16, depth=2, num_classes=num_classes),
        iterations=6,
        batch_size=32,
        log_every=2,
        checkpoint_every=3,
        out_dir=str(out),
        device="cpu",
    )
    result = fit(cfg)
    rank = int(os.environ["RANK"])
    torch.save({n: p.detach() for n, p in result.model.named_parameters()}, out / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "fm")
