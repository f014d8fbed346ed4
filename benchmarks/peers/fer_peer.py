"""The `fer` package's emotion classifier on ferkit's face crops: accuracy and crops/s → JSON.

Runs inside the peer virtualenv (fer_env.py) as a subprocess of benchmarks/runtime.py, which
hands it the PrivateTest crops as an .npz (uint8 `faces` (N, 48, 48), `labels`). Each crop
goes through what `FER.detect_emotions` does to a face it found: resize to the model's
64×64 (OpenCV's default interpolation), scale to [-1, 1], then `FER._classify_emotions`.
Timings cover that whole step (uint8 crop in, probabilities out), as ferkit's do.

Two of fer's models run: the TFLite int8 one (its default; it runs face by face) and the
Keras mini-Xception it was converted from (batched). The TFLite interpreter gets the same
thread count as ferkit's runtimes, through the class-level cache fer keeps for it.

`crops_per_second` is also what runtime.py times ferkit with (one definition; this file
imports nothing beyond numpy at module level so ferkit's environment can import it).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def crops_per_second(fn, faces: np.ndarray, batch: int, seconds: float) -> float:
    """Crops per second of `fn(batch of faces)` over at least `seconds` (after one warm-up
    call), cycling through `faces` in batches of `batch`."""
    batches = [faces[i : i + batch] for i in range(0, len(faces) - batch + 1, batch)]
    fn(batches[0])
    done, calls, start = 0, 0, time.perf_counter()
    while True:
        fn(batches[calls % len(batches)])
        done, calls = done + batch, calls + 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def _measure(classify, faces, labels, rounds: int, seconds: float) -> dict:
    probs = np.concatenate([classify(faces[i : i + 64]) for i in range(0, len(faces), 64)])
    result = {"accuracy": float((probs.argmax(1) == labels).mean()), "faces": len(faces)}
    for batch in (1, 64):
        best = max(crops_per_second(classify, faces, batch, seconds) for _ in range(rounds))
        result[f"crops_per_s_b{batch}"] = best
        result[f"load_b{batch}"] = os.getloadavg()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", required=True, help=".npz with faces and labels")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from importlib.metadata import version

    import cv2
    import fer
    import tensorflow as tf
    from fer.fer import FER

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    cv2.setNumThreads(1)
    data = np.load(args.faces)
    faces, labels = data["faces"], data["labels"].astype(np.int64)
    data_dir = os.path.join(os.path.dirname(fer.__file__), "data")

    def prepare(batch: np.ndarray) -> np.ndarray:
        resized = np.stack([cv2.resize(face, (64, 64)) for face in batch]).astype(np.float32)
        return (resized / 255.0 - 0.5) * 2.0

    results = {"package": f"fer {version('fer')}", "tensorflow": tf.__version__}
    interpreter = tf.lite.Interpreter(
        model_path=os.path.join(data_dir, "emotion_model_quantized.tflite"),
        num_threads=args.threads,
    )
    interpreter.allocate_tensors()
    FER._tflite_interpreter_cache = interpreter
    tflite = FER(use_tflite=True)
    results["tflite"] = _measure(
        lambda b: np.asarray(tflite._classify_emotions(prepare(b))),
        faces, labels, args.rounds, args.seconds,
    )  # fmt: skip
    results["tflite"]["file_bytes"] = os.path.getsize(
        os.path.join(data_dir, "emotion_model_quantized.tflite")
    )
    try:
        keras = FER(use_tflite=False)
        results["keras"] = _measure(
            lambda b: np.asarray(keras._classify_emotions(prepare(b))),
            faces, labels, args.rounds, args.seconds,
        )  # fmt: skip
        results["keras"]["file_bytes"] = os.path.getsize(
            os.path.join(data_dir, "emotion_model.hdf5")
        )
    except Exception as error:  # an old .hdf5 that this Keras cannot read: report, go on
        results["keras"] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
