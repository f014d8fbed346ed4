"""The face pipeline's defaults, written once: the `Recognizer`, every command that cuts
faces out of images (predict, batch, evaluate --folder, explain, serve, demo) and the
batch settings read them from here. No imports, so the CLI's `--help` can show them
without loading numpy, torch or OpenCV.

- `DETECTOR`: MTCNN. On benchmarks/wild.py's rolled faces it finds far more than Haar's
  frontal cascade, and with tracking it is as fast on benchmarks/recognize.py's clips
  (docs/faces.md, "Faces in the wild").
- `TURNED_SEARCH`: per detector, the angles at which it searches the image turned too,
  where its upright pass finds no face (`ferkit.infer.faces.TurnedSearch`): heads rolled
  past what it finds upright, at no cost while a face is in view. Haar scores nothing, and
  turned it found false faces on objects that tracking did not remove (0.167 a frame on
  benchmarks/recognize.py's clip without faces), so it searches upright only unless asked.
- `TURNED_MIN_SCORE`: per detector, the score a face found turned must reach (0 where
  absent). MTCNN's turned passes also find faces in objects (benchmarks/recognize.py's clip
  without faces: 19 detections in 60 frames, O-Net scores 0.70-0.92) where real faces found
  turned mostly score higher; 0.85 is the highest floor that drops at most one of the 29
  faces found turned on benchmarks/wild.py's scenes of --seed 1 (284 of 300 faces found
  instead of 285). The SSD's O-Net check already holds its turned faces to the upright bar.
"""

DETECTOR = "mtcnn"
TURNED_SEARCH: dict[str, tuple[float, ...]] = {"mtcnn": (-20.0, 20.0), "ssd": (-20.0, 20.0)}
TURNED_MIN_SCORE: dict[str, float] = {"mtcnn": 0.85}
