"""Runtime benchmark: crops/s of PyTorch fp32, ONNX Runtime fp32 and ONNX Runtime int8 per
model, and the `fer` package (the peer) on the same FER-2013 PrivateTest crops.

Every runtime does the same job: uint8 48×48 crops in, 7 probabilities out (ferkit's
normalisation and fer's resize + scaling are inside the timings). All run on `--threads`
CPU threads (default 2, this machine's cores). ferkit's three runtimes are timed side by
side, interleaved round by round (best round kept), because absolute speeds drift on a
shared machine; the 1-minute load average is recorded with every measurement. The peer
runs in its own virtualenv (benchmarks/peers/, created on first use) as a subprocess that
writes JSON, right after.

Models: shipped names, checkpoints or run folders; `zoo:NAME` is an untrained model of the
zoo (speed only: its accuracy means nothing). Default: the shipped models, or, before any
is shipped, zoo:seed_cnn, zoo:mini_xception and zoo:resnet18. Trained models are also
scored on the whole PrivateTest split by each runtime (the int8 accuracy change).

Every runtime row is one network pass per crop (as the peer's); a model shipped with a
test-time augmentation (`fast`: flip, two passes per crop) gets one more row, its int8
export as users run it, with the accuracy it gives there.

    python benchmarks/runtime.py [MODEL ...] [--threads 2] [--no-peer] [--seconds 1]
"""
# ruff: noqa: E402 (torch's OpenMP must be configured before torch is imported)

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

# Idle threads sleep in every ferkit runtime, as `OnnxClassifier`'s do. Spinning OpenMP
# threads cut torch's batch-1 rate about 10× on this busy 2-core machine (measured), which
# would say more about the neighbours than about torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from _common import REPO_STORE, fer2013_or_exit, report
from ferkit.data import open_store, prepare
from ferkit.export import export_onnx
from ferkit.infer.backends import OnnxClassifier, TorchClassifier
from ferkit.models import create_model, load_model, save_checkpoint
from ferkit.models.checkpoint import shipped_models
from ferkit.models.temperature import checkpoint_tta
from peers.fer_env import ensure_env
from peers.fer_peer import crops_per_second

PEER = Path(__file__).resolve().parent / "peers" / "fer_peer.py"
ZOO_DEFAULT = ["zoo:seed_cnn", "zoo:mini_xception", "zoo:resnet18"]
INT8 = "ORT int8 (static QDQ)"


def _checkpoint(spec: str, prep, folder: Path) -> tuple[Path, bool]:
    """(checkpoint path, trained?) for a model spec; zoo:NAME is saved untrained."""
    if not spec.startswith("zoo:"):
        from ferkit.models.checkpoint import resolve_checkpoint

        return resolve_checkpoint(spec), True
    arch = spec.removeprefix("zoo:")
    torch.manual_seed(0)
    path = folder / arch / "model.pt"
    save_checkpoint(path, create_model(arch), arch=arch, arch_kwargs={}, preprocessing=prep)
    return path, False


def _side_by_side(runtimes: dict, faces: np.ndarray, batch: int, rounds: int, seconds: float):
    """Best crops/s of each runtime over `rounds` interleaved rounds, and the mean load."""
    best = dict.fromkeys(runtimes, 0.0)
    loads = []
    for _ in range(rounds):
        for name, fn in runtimes.items():
            best[name] = max(best[name], crops_per_second(fn, faces, batch, seconds))
            loads.append(os.getloadavg()[0])
    return best, float(np.mean(loads))


def bench_model(spec, store, faces, labels, args, folder: Path) -> list[dict]:
    with open_store(store) as opened:
        prep = opened.preprocessing()
    path, trained = _checkpoint(spec, prep, folder)
    model = load_model(path)
    name = spec if trained else f"{spec} (untrained)"
    check = None if trained else 256  # trained: the int8 check covers all of PrivateTest
    stem = f"{folder}/{path.stem}-{model.ferkit.arch}"
    fp32 = export_onnx(model, Path(f"{stem}.onnx"), data=store, check_samples=check)
    # An untrained model's top class flips on tiny changes: report its agreement, never fail.
    int8 = export_onnx(
        model, Path(f"{stem}.int8.onnx"), int8="static", data=store, check_samples=check,
        min_agreement=0.9 if trained else 0.0,
    )  # fmt: skip
    # One network pass per crop in every runtime, as the accuracy column (the exports'
    # checks) and the peer; a model that ships with a TTA gets one more row, as users run it.
    classifiers = {
        "torch fp32": TorchClassifier(model, tta=False),
        "ORT fp32": OnnxClassifier(fp32.path, threads=args.threads, tta=False),
        INT8: OnnxClassifier(int8.path, threads=args.threads, tta=False),
    }
    tta = checkpoint_tta(model.ferkit.metrics)
    shipped = f"ORT int8 + {tta} TTA (as shipped)"
    if tta != "none":
        classifiers[shipped] = OnnxClassifier(int8.path, threads=args.threads)
    runtimes = {key: clf.predict_proba for key, clf in classifiers.items()}
    speed = {}
    for batch in (1, 64):
        speed[batch] = _side_by_side(runtimes, faces, batch, args.rounds, args.seconds)
    sizes = {
        "torch fp32": sum(t.numel() * t.element_size() for t in model.state_dict().values()),
        "ORT fp32": fp32.size_bytes,
        INT8: int8.size_bytes,
        shipped: int8.size_bytes,
    }
    accuracy = {}
    if trained:
        accuracy = {"torch fp32": int8.accuracy_torch, "ORT fp32": fp32.accuracy_onnx,
                    INT8: int8.accuracy_onnx}  # fmt: skip
        if shipped in classifiers:
            predicted = classifiers[shipped].predict_proba(faces).argmax(1)
            accuracy[shipped] = float((predicted == labels).mean())
    rows = []
    for key in classifiers:
        rows.append({
            "model": name,
            "runtime": key,
            "MB": sizes[key] / 1e6,
            "PrivateTest acc": f"{accuracy[key]:.2%}" if key in accuracy else "-",
            "crops/s b1": speed[1][0][key],
            "crops/s b64": speed[64][0][key],
            "x torch b64": speed[64][0][key] / speed[64][0]["torch fp32"],
            "load": f"{speed[1][1]:.1f}/{speed[64][1]:.1f}",
        })  # fmt: skip
    rows[list(classifiers).index(INT8)]["int8 agreement"] = int8.agreement
    return rows


def bench_peer(faces, labels, args, folder: Path) -> tuple[list[dict], dict]:
    python = ensure_env()
    crops, out = folder / "privatetest.npz", folder / "peer.json"
    np.savez(crops, faces=faces, labels=labels)
    command = [str(python), str(PEER), "--faces", str(crops), "--out", str(out),
               "--threads", str(args.threads), "--rounds", str(args.rounds),
               "--seconds", str(args.seconds)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"peer failed:\n{done.stderr[-3000:]}")
    result = json.loads(out.read_text())
    rows = []
    for key, label in (("tflite", "fer TFLite int8 (default)"), ("keras", "fer Keras fp32")):
        entry = result.get(key, {})
        if "error" in entry:
            rows.append({"model": "fer mini-Xception", "runtime": label, "MB": "-",
                         "PrivateTest acc": f"failed: {entry['error'][:60]}"})  # fmt: skip
            continue
        rows.append({
            "model": f"fer mini-Xception ({result['package']})",
            "runtime": label,
            "MB": entry["file_bytes"] / 1e6,
            "PrivateTest acc": f"{entry['accuracy']:.2%}",
            "crops/s b1": entry["crops_per_s_b1"],
            "crops/s b64": entry["crops_per_s_b64"],
            "x torch b64": "-",
            "load": f"{entry['load_b1']:.1f}/{entry['load_b64']:.1f}",
        })  # fmt: skip
    return rows, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="shipped names, checkpoints, zoo:NAME")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every runtime")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--seconds", type=float, default=1.0, help="per timing")
    parser.add_argument("--no-peer", action="store_true", help="skip the fer package")
    parser.add_argument("--store", type=Path, default=REPO_STORE)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = args.models or shipped_models() or ZOO_DEFAULT
    with tempfile.TemporaryDirectory(prefix="ferkit-runtime-") as tmp:
        tmp = Path(tmp)
        store = args.store
        if not store.is_file():
            store = prepare(fer2013_or_exit(), tmp / "fer2013.h5").store
        with open_store(store) as opened:
            faces, labels = opened.split_arrays("test")
        labels = labels.astype(np.int64)
        rows = []
        for spec in models:
            rows += bench_model(spec, store, faces, labels, args, tmp)
            print(f"measured {spec}", flush=True)
        peer = None
        if not args.no_peer:
            peer_rows, peer = bench_peer(faces, labels, args, tmp)
            rows += peer_rows
    columns = ["model", "runtime", "MB", "PrivateTest acc", "crops/s b1", "crops/s b64",
               "x torch b64", "load", "int8 agreement"]  # fmt: skip
    rows = [{c: row.get(c, "-") for c in columns} for row in rows]
    report(
        "runtime", rows, threads=args.threads, faces=len(faces), models=models, peer=peer,
        note="crops/s: uint8 48×48 crops in, probabilities out; load = 1-min load average "
        "during the batch-1/batch-64 timings; int8 agreement: same top class as PyTorch",
    )  # fmt: skip


if __name__ == "__main__":
    main()
