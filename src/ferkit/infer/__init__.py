"""Recognition pipeline: source → face detection → tracking → classifier → smoothing → outputs.

Entry point: `ferkit.infer.recognizer.Recognizer` (also `ferkit.Recognizer`). Modules:
loading (`open_classifier`: which model, on which backend — the one place that decides),
backends (the classifier seam: PyTorch, ONNX Runtime, ensembles), frames (`load_source`:
any input → frames), detection + faces + mtcnn (detectors), align (faces onto the training framing),
tracking and scenecut (stable ids), smoothing (per track), results (Face / FrameResult),
writers (video, GIF, CSV/JSONL, summary, timeline), demo (bundled media).
Imports only `ferkit.models`, `ferkit.preprocess` and shared vocabulary, never train/ or data/.
"""
