"""Knowledge distillation from trained teachers, as soft targets.

A small model learns more from a strong model's probabilities than from FER-2013's hard,
often noisy labels: the teacher says how much of "fear" there is in a "surprise" face. The
teachers (one or several checkpoints, run folders or shipped names, averaged as an
ensemble) classify every training face once, with the flip TTA they are used with, before
training starts; the student is then trained on

    (1 - weight) · its usual target  +  weight · softmax(log p_teacher / temperature)

through the trainer's one soft-target cross-entropy, so mixup/cutmix and resume work as
for FER+ vote targets. Teachers see the stored faces, the student their augmented
versions: it learns to read a degraded face as the teacher reads the clean one. The
probabilities are cached in the run folder (`teacher_probs.npy`), so a resumed run does
not classify the training split again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ferkit.config import DistillConfig
from ferkit.errors import ConfigError
from ferkit.files import atomic_path
from ferkit.models.temperature import flip_average
from ferkit.preprocess import normalize
from ferkit.train.precision import autocast

logger = logging.getLogger(__name__)
CACHE = "teacher_probs.npy"


def teacher_specs(cfg: DistillConfig) -> list[str]:
    """The teachers named in `distill.teacher` (comma-separated)."""
    return [spec.strip() for spec in cfg.teacher.split(",") if spec.strip()]


@torch.inference_mode()
def teacher_probs(
    spec: str, images: torch.Tensor, class_names, batch_size: int = 512, amp=None
) -> torch.Tensor:
    """(N, C) flip-averaged probabilities of one teacher over uint8 faces (N, H, W)."""
    from ferkit.models.checkpoint import load_model

    model = load_model(spec, device=images.device).eval()
    meta = model.ferkit
    if tuple(meta.class_names) != tuple(class_names):
        raise ConfigError(
            f"distill.teacher {spec}: classes {list(meta.class_names)} differ from the "
            f"training targets' {list(class_names)}"
        )
    out = torch.empty(len(images), len(class_names), device=images.device)
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size], meta.preprocessing)
        with autocast(images.device, amp):
            out[start : start + len(x)] = flip_average(lambda f: model(f).float().softmax(1), x)
    return out


def distilled_targets(
    cfg: DistillConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor | None,
    class_names,
    run_dir: Path,
    amp=None,
) -> torch.Tensor:
    """The training targets blended with the teachers' softened probabilities."""
    if not 0.0 < cfg.weight <= 1.0:
        raise ConfigError(f"distill.weight must be in (0, 1], got {cfg.weight}")
    if not cfg.temperature > 0:
        raise ConfigError(f"distill.temperature must be positive, got {cfg.temperature}")
    cache = Path(run_dir) / CACHE
    if cache.is_file():
        probs = torch.from_numpy(np.load(cache)).to(images.device)
        if probs.shape != (len(images), len(class_names)):
            raise ConfigError(f"{cache} does not match this run's training split; delete it")
    else:
        specs = teacher_specs(cfg)
        logger.info("distillation: %s classify %d training faces", ", ".join(specs), len(images))
        probs = sum(teacher_probs(s, images, class_names, amp=amp) for s in specs) / len(specs)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, probs.cpu().numpy())
    soft = (probs.clamp_min(1e-8).log() / cfg.temperature).softmax(1)
    base = targets if targets is not None else F.one_hot(labels, len(class_names)).float()
    return (1 - cfg.weight) * base + cfg.weight * soft
