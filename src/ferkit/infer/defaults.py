"""The face pipeline's defaults, written once: the `Recognizer`, every command that cuts
faces out of images (predict, batch, evaluate --folder, explain, serve, demo) and the
batch settings read them from here. No imports, so the CLI's `--help` can show them
without loading numpy, torch or OpenCV.

- `DETECTOR`: MTCNN. On benchmarks/wild.py's rolled faces it finds far more than Haar's
  frontal cascade, and with tracking it is as fast on benchmarks/recognize.py's clips
  (docs/faces.md, "Faces in the wild").
- `TURNED_SEARCH`: per detector, the angles at which it searches the image turned too,
  where its upright pass finds no face (`ferkit.infer.faces.TurnedSearch`): heads rolled
  past what it finds upright, at no cost while a face is in view. MTCNN's turned faces
  must score 0.85, which keeps its false faces on objects out; Haar scores nothing, and
  turned it found false faces on objects that tracking did not remove (0.167 a frame on
  benchmarks/recognize.py's clip without faces), so it searches upright only unless asked.
"""

DETECTOR = "mtcnn"
TURNED_SEARCH: dict[str, tuple[float, ...]] = {"mtcnn": (-20.0, 20.0)}
