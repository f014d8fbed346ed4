"""Grad-CAM (Selvaraju et al. 2017): which regions of a face drive the score of an emotion.

For a target class c, the feature maps A_k of a late convolutional layer are weighted by
the spatial mean of ∂score_c/∂A_k, summed, passed through ReLU and upsampled to the face:
bright regions raise the score of c. The default layer is the last 4-D activation with more
than one pixel that is neither a per-class map nor an adaptive pooling's resampling: the
features the classifier head reads (seed CNN: the conv stack's output; mini-Xception: the
input of its class conv; ResNets: the last stage). Any module can be chosen by name.

`explain_images` is the workflow behind `ferkit explain`: detect faces in photos, crop
them as the model expects, and write one heatmap figure per photo.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ferkit.errors import ConfigError, ModelError
from ferkit.infer.defaults import DETECTOR
from ferkit.preprocess import normalize


def _feature_outputs(model, x, layer: str | None):
    """Forward pass recording (module name, output) of every 4-D activation in order."""
    from torch import nn

    records = []
    modules = dict(model.named_modules())
    if layer is not None and layer not in modules:
        names = ", ".join(n for n in modules if n)
        raise ConfigError(f"model has no layer {layer!r}; its layers are: {names}")

    def hook(name):
        def record(module, _inputs, output):
            # adaptive pooling only resamples a map (e.g. vgg16's 3×3 → 7×7): not a feature
            resamples = isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d)
            if hasattr(output, "dim") and output.dim() == 4 and not resamples:
                records.append((name, output))

        return record

    targets = {layer: modules[layer]} if layer is not None else modules
    handles = [m.register_forward_hook(hook(n)) for n, m in targets.items() if n or layer == ""]
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return logits, records


def _pick(records, num_classes: int, layer: str | None):
    if layer is not None:
        if not records:
            raise ConfigError(f"layer {layer!r} gives no 4-D feature map to explain")
        return records[-1]
    for _, output in reversed(records):
        if output.shape[-1] > 1 and output.shape[-2] > 1 and output.shape[1] != num_classes:
            # a tensor passed on unchanged (Sequential, Dropout) is named after its maker
            return next(n for n, o in records if o is output), output
    raise ModelError("the model has no spatial feature map for Grad-CAM (choose --layer)")


def gradcam(
    model,
    faces: np.ndarray,
    targets: Sequence[int] | None = None,
    layer: str | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Grad-CAM heatmaps of uint8 faces (N, H, W) for the model's predicted class, or for
    `targets` (one class index per face).

    Returns (heatmaps (N, H, W) float32 in [0, 1], probabilities (N, C), layer name). The
    model needs `model.ferkit` (from `load_model`) for its preprocessing.
    """
    import torch
    import torch.nn.functional as F

    meta = getattr(model, "ferkit", None)
    if meta is None:
        raise ModelError("Grad-CAM needs a ferkit PyTorch model (load it with ferkit.load_model)")
    faces = np.ascontiguousarray(faces, dtype=np.uint8)
    first = next(model.parameters())
    x = normalize(torch.from_numpy(faces).to(first.device), meta.preprocessing)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits, records = _feature_outputs(model, x, layer)
            name, features = _pick(records, logits.shape[1], layer)
            probs = torch.softmax(logits.float(), dim=1)
            if targets is None:
                chosen = probs.argmax(dim=1)
            else:
                chosen = torch.as_tensor(list(targets), device=logits.device)
                if len(chosen) != len(faces):
                    raise ValueError(f"{len(chosen)} targets for {len(faces)} faces")
            score = logits.gather(1, chosen.view(-1, 1)).sum()
            (grads,) = torch.autograd.grad(score, features)
    finally:
        model.train(was_training)
    weights = grads.float().mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * features.detach().float()).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=faces.shape[1:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp(min=1e-12).view(-1, 1, 1)
    heatmaps = (cam / peak).cpu().numpy().astype(np.float32)
    return heatmaps, probs.detach().cpu().numpy(), name


def explain_images(
    model,
    images: Sequence[str | Path],
    out: str | Path,
    *,
    emotion: str | None = None,
    detector: str | None = DETECTOR,
    layer: str | None = None,
    detector_options: dict | None = None,
    equalize: bool | None = True,
    align: str | None = None,
) -> list[Path]:
    """Grad-CAM figures for every face in each image: `<out>/<image stem>_gradcam.png`.

    `model` is anything `open_classifier` opens with PyTorch, or a loaded model. `emotion` is the
    class to explain ("all" for every class; default: each face's predicted emotion).
    Faces are found and cropped by the recognition pipeline with `Recognizer`'s options
    (`detector` None: the images are faces); images without a face are explained whole.
    """
    from ferkit.evaluate.plots import plot_gradcam
    from ferkit.infer.frames import read_image
    from ferkit.infer.loading import open_classifier
    from ferkit.infer.recognizer import Recognizer

    classifier = open_classifier(model, backend="torch")
    model = getattr(classifier, "model", None)
    meta = getattr(model, "ferkit", None)
    if meta is None:
        raise ModelError("Grad-CAM needs a ferkit PyTorch checkpoint, not another backend")
    names = tuple(meta.class_names)
    if emotion is not None and emotion != "all" and emotion not in names:
        raise ConfigError(f"unknown emotion {emotion!r}; expected one of {', '.join(names)} or all")
    pipeline = Recognizer(
        classifier, detector=detector or "none", detector_options=detector_options,
        equalize=equalize, align=align, tracking=False,
    )  # fmt: skip
    out = Path(out)
    written = []
    for image_path in images:
        image = read_image(image_path)
        found = pipeline.detect(image)
        crops = np.stack([pipeline.crop(image, d) for d in found or [None]])
        predicted_maps, probs, used = gradcam(model, crops, layer=layer)
        if emotion == "all":
            classes = list(range(len(names)))
        elif emotion is not None:
            classes = [names.index(emotion)]
        else:
            classes = None
        panels = []  # (crop, heatmap, title) per face and class
        for k, crop in enumerate(crops):
            if classes is None:
                wanted, maps = [int(probs[k].argmax())], predicted_maps[k : k + 1]
            else:
                wanted = classes
                maps, _, _ = gradcam(model, np.repeat(crop[None], len(wanted), 0), wanted, layer)
            for cls, heat in zip(wanted, maps):
                panels.append((crop, heat, f"face {k + 1}: {names[cls]} {probs[k, cls]:.0%}"))
        target = out / f"{Path(image_path).stem}_gradcam.png"
        written.append(plot_gradcam(panels, target, title=f"{Path(image_path).name} ({used})"))
    return written
