"""Training throughput: ferkit's device-resident pipeline vs a plain torch DataLoader.

Both pipelines train the same model with the same optimizer and equivalent augmentation
(padded random crop, horizontal flip, rotation ±10° and zoom ±10 %, half of the images):
    ferkit      the store's train split on the device as uint8; a batch is one index
                select + `normalize` + batched tensor augmentation (ferkit.data.augment)
    dataloader  a torch `Dataset` that decodes one PNG per item and augments it with
                OpenCV/numpy, batched by `DataLoader(num_workers=...)`, as notebooks do
Both feed the same model in the same step, channels_last as `ferkit train` runs it by default;
the ferkit pipeline is also timed with a contiguous (NCHW) copy of the model, which is what
a notebook trains, and with bf16 autocast; `--compile` adds the bf16 step through
`torch.compile` (inductor; opt-in, since compiling takes about a minute per model; written to
results/train_compile.json). The first row times the data pipelines alone (no model): on a CPU
the model step dominates a training step, so the end-to-end ratio there is much smaller than
the pipeline ratio. Measurements alternate in rounds and the best round counts, since other
work on a shared machine slows any one of them.
Target (issue 3): ferkit ≥ 1.5× the DataLoader images/s for seed_cnn on CPU.

    python benchmarks/train.py [--models seed_cnn mini_xception] [--steps 20] [--batch 64]
                               [--compile]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from _common import REPO_STORE, report
from ferkit.config import AugmentConfig
from ferkit.data.augment import Augmenter
from ferkit.data.loader import BatchIterator, load_split
from ferkit.data.store import write_store
from ferkit.models.registry import create_model
from ferkit.train.precision import bf16_is_native_on_cpu

AUGMENT = AugmentConfig(crop_padding=4, hflip=0.5, rotate=10.0, zoom=0.1, affine_p=0.5)


def synthetic_store(folder: Path) -> Path:
    """A FER-sized stand-in (smooth random faces) when the real store is absent."""
    rng = np.random.default_rng(0)
    n = 4096
    small = rng.integers(0, 256, size=(n, 12, 12), dtype=np.uint8)
    images = np.stack([cv2.resize(im, (48, 48), interpolation=cv2.INTER_CUBIC) for im in small])
    return write_store(folder / "synthetic.h5", images, rng.integers(0, 7, n), np.zeros(n))


class PngDataset(torch.utils.data.Dataset):
    """One encoded PNG per item, decoded and augmented per item (the notebook way)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float):
        self.png = [cv2.imencode(".png", image)[1].tobytes() for image in images]
        self.labels = labels.astype(np.int64)
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.png)

    def __getitem__(self, i: int):
        image = cv2.imdecode(np.frombuffer(self.png[i], np.uint8), cv2.IMREAD_GRAYSCALE)
        image = image.astype(np.float32) / 255.0
        rng = np.random.default_rng()
        padded = np.pad(image, 4, constant_values=self.mean)
        y, x = rng.integers(0, 9, size=2)
        image = padded[y : y + 48, x : x + 48]
        if rng.random() < 0.5:
            image = image[:, ::-1]
        if rng.random() < 0.5:
            angle, scale = rng.uniform(-10, 10), rng.uniform(0.9, 1.1)
            matrix = cv2.getRotationMatrix2D((23.5, 23.5), angle, scale)
            image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (48, 48),
                                   borderValue=float(self.mean))  # fmt: skip
        image = (image - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(image))[None], self.labels[i]


def ferkit_batches(split, batch: int, device):
    loader = BatchIterator(split, batch, shuffle=True, drop_last=True)
    prep = split.preprocessing
    lo, hi = -prep.mean / prep.std, (1 - prep.mean) / prep.std
    augment = Augmenter(AUGMENT, value_range=(lo, hi), device=device)
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        for x, y in loader:
            yield augment.images(x), y
        epoch += 1


def dataloader_batches(dataset, batch: int, workers: int):
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0,
    )  # fmt: skip
    while True:
        yield from loader


def time_steps(model, optimizer, batches, steps: int, device, amp, channels_last: bool) -> float:
    """Images per second over `steps` training steps (after one warm-up step); with
    `channels_last` the batch is made NHWC like the model, as the trainer does."""
    model.train()
    for i in range(steps + 1):
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(y) / (time.perf_counter() - start)


def time_batches(batches, count: int, device) -> float:
    """Images per second of the data pipeline alone (no model)."""
    x, _ = next(batches)
    start = time.perf_counter()
    for _ in range(count):
        x, _ = next(batches)
        x = x.to(device, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count * len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["seed_cnn", "mini_xception"])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; best counts")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--bf16-steps", type=int, default=3, help="(emulated on AVX2: slow)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (bf16)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        store = REPO_STORE if REPO_STORE.exists() else synthetic_store(Path(tmp))
        rows, results = [], []
        for device in devices:
            start = time.perf_counter()
            split = load_split(store, "train", device)
            load_s = time.perf_counter() - start
            images, labels = split.images.cpu().numpy(), split.labels.cpu().numpy()
            prep = split.preprocessing
            # Per-item cost does not depend on the dataset size; 8k rows keep the setup short.
            dataset = PngDataset(images[:8192], labels[:8192], prep.mean, prep.std)
            ours = ferkit_batches(split, args.batch, device)
            plain = dataloader_batches(dataset, args.batch, args.workers)
            data = [0.0, 0.0]
            for _ in range(args.rounds):
                data[0] = max(data[0], time_batches(ours, 5 * args.steps, device))
                data[1] = max(data[1], time_batches(plain, 5 * args.steps, device))
            rows.append({"model": "(data pipeline only)", "device": device.type,
                         "ferkit img/s": round(data[0]), "DataLoader img/s": round(data[1]),
                         "ferkit / DataLoader": round(data[0] / data[1], 2),
                         "ferkit NCHW img/s": "-", "channels_last gain": "-",
                         "ferkit bf16 img/s": "-", "bf16 / fp32": "-",
                         **({"compiled bf16 img/s": "-", "compiled / eager bf16": "-"}
                            if args.compile else {})})  # fmt: skip
            results.append({"model": None, "device": device.type, "ferkit img/s": data[0],
                            "DataLoader img/s": data[1], "store_load_s": load_s})  # fmt: skip
            del plain
            for name in args.models:
                torch.manual_seed(0)
                model = create_model(name).to(device, memory_format=torch.channels_last)
                optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                nchw = create_model(name).to(device)
                nchw_optimizer = torch.optim.SGD(nchw.parameters(), lr=0.01, momentum=0.9)
                ours = ferkit_batches(split, args.batch, device)
                plain = dataloader_batches(dataset, args.batch, args.workers)
                # The compiled module shares the eager model's parameters and optimizer.
                compiled = torch.compile(model) if args.compile else None
                variants = [
                    ("ferkit", model, optimizer, ours, False, args.steps),
                    ("dataloader", model, optimizer, plain, False, args.steps),
                    ("ferkit_nchw", nchw, nchw_optimizer, ours, False, args.steps),
                    ("ferkit_bf16", model, optimizer, ours, True, args.bf16_steps),
                ]
                if compiled is not None:
                    variants.append(
                        ("compiled_bf16", compiled, optimizer, ours, True, args.bf16_steps)
                    )
                best = {variant[0]: 0.0 for variant in variants}
                for _ in range(args.rounds):
                    for key, net, opt, batches, amp, steps in variants:
                        cl = net is not nchw
                        rate = time_steps(net, opt, batches, steps, device, amp, cl)
                        best[key] = max(best[key], rate)
                result = {
                    "model": name,
                    "device": device.type,
                    "ferkit img/s": best["ferkit"],
                    "DataLoader img/s": best["dataloader"],
                    "ferkit / DataLoader": best["ferkit"] / best["dataloader"],
                    "ferkit NCHW img/s": best["ferkit_nchw"],
                    "channels_last gain": best["ferkit"] / best["ferkit_nchw"],
                    "ferkit bf16 img/s": best["ferkit_bf16"],
                    "bf16 / fp32": best["ferkit_bf16"] / best["ferkit"],
                }
                if compiled is not None:
                    result["compiled bf16 img/s"] = best["compiled_bf16"]
                    result["compiled / eager bf16"] = best["compiled_bf16"] / best["ferkit_bf16"]
                rows.append({k: (round(v, 2) if isinstance(v, float) else v)
                             for k, v in result.items()})  # fmt: skip
                results.append({**result, "store_load_s": load_s})
                del plain  # stops the DataLoader's workers
    seed = next((r for r in results if r["model"] == "seed_cnn" and r["device"] == "cpu"), None)
    report(
        "train_compile" if args.compile else "train",  # keeps the issue-3 figures in train.json
        rows,
        store=str(store),
        batch=args.batch,
        steps=args.steps,
        rounds=args.rounds,
        dataloader_workers=args.workers,
        augment=AUGMENT.__dict__,
        torch_threads=torch.get_num_threads(),
        bf16_native_on_cpu=bf16_is_native_on_cpu(),
        results=results,
        seed_cnn_cpu_ratio=seed["ferkit / DataLoader"] if seed else math.nan,
        target_ratio=1.5,
    )


if __name__ == "__main__":
    main()
