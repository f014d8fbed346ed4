"""Recognition pipeline: source → face detection → tracking → classifier → smoothing → outputs.

Entry point: `ferkit.infer.recognizer.Recognizer` (also `ferkit.Recognizer`). Modules:
sources (any input → frames), faces + mtcnn (detectors), tracking (stable ids), backends
(the classifier seam: torch now, ONNX Runtime later), smoothing (per track), results
(Face / FrameResult), writers (video, GIF, CSV/JSONL, summary, timeline), demo.
Imports only `ferkit.models`, `ferkit.preprocess` and shared vocabulary, never train/ or data/.
"""
