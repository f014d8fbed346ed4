"""Batched data augmentation as tensor ops on the training device.

Per-sample Python transforms (PIL/torchvision on one image at a time) cost more than the
forward pass of the small networks FER uses. Here every op draws its random parameters for
the whole batch at once and applies them with a handful of tensor ops, so augmentation runs
where the batch already is (CPU or GPU) at a few percent of a training step.

Images are float tensors (N, C, H, W) in a known value range `(lo, hi)` (the trainer uses
the normalised range of the store, so `fill=0` is the dataset mean). Every op keeps shape,
dtype and range, and is skipped at zero strength, so an all-zero `AugmentConfig` is the
identity. All randomness comes from one `torch.Generator`, which makes runs reproducible
and resumable (`state_dict()`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from ferkit.config import AugmentConfig


def _uniform(n: int, low: float, high: float, g: torch.Generator, like: torch.Tensor):
    return torch.rand(n, generator=g, device=g.device).to(like.dtype) * (high - low) + low


def random_crop(x: torch.Tensor, padding: int, g: torch.Generator, fill: float = 0.0):
    """Pad every image by `padding` pixels and cut an H×W window at a random offset each."""
    if padding <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, value=fill)
    # All (2p+1)² windows as a view (no copy); one advanced index picks one per image.
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (N, C, 2p+1, 2p+1, H, W)
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=g, device=g.device).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=g, device=g.device).to(x.device)
    return windows[torch.arange(n, device=x.device), :, oy, ox]


def random_flip(x: torch.Tensor, p: float, g: torch.Generator, dim: int = -1):
    """Mirror each image along `dim` (-1 horizontal, -2 vertical) with probability p."""
    if p <= 0:
        return x
    chosen = (torch.rand(len(x), generator=g, device=g.device) < p).to(x.device)
    return torch.where(chosen.view(-1, 1, 1, 1), x.flip(dim), x)


def affine_matrices(n: int, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor | None:
    """(n, 2, 3) output→input maps for `F.affine_grid`, or None when every part is off.

    One matrix per image composes the random resized crop (applied to every image) with
    rotation, shear, zoom and shift (applied with probability `affine_p`), so each image
    is resampled once, not once per op.
    """
    has_crop = cfg.resized_crop_scale < 1.0
    has_affine = cfg.affine_p > 0 and (cfg.rotate or cfg.shear or cfg.zoom or cfg.shift)
    if not (has_crop or has_affine):
        return None
    dev = g.device
    theta = torch.eye(2, 3, device=dev).repeat(n, 1, 1)
    linear = torch.eye(2, device=dev).repeat(n, 1, 1)
    if has_affine:
        on = (torch.rand(n, generator=g, device=dev) < cfg.affine_p).float()

        def draw(limit: float) -> torch.Tensor:
            return (torch.rand(n, generator=g, device=dev) * 2 - 1) * limit * on

        angle = torch.deg2rad(draw(cfg.rotate))
        shear = torch.tan(torch.deg2rad(draw(cfg.shear)))
        scale = 1.0 + draw(cfg.zoom)
        cos, sin = torch.cos(angle), torch.sin(angle)
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        shear_m = torch.eye(2, device=dev).repeat(n, 1, 1)
        shear_m[:, 0, 1] = shear
        # Sampling the input at p / scale enlarges the content by `scale`.
        linear = rot @ shear_m / scale.view(n, 1, 1)
        theta[:, 0, 2] = draw(2 * cfg.shift)  # normalised coordinates span 2 per image
        theta[:, 1, 2] = draw(2 * cfg.shift)
    if has_crop:
        area = torch.rand(n, generator=g, device=dev) * (1 - cfg.resized_crop_scale)
        area = area + cfg.resized_crop_scale
        log_ratio = (torch.rand(n, generator=g, device=dev) * 2 - 1) * math.log(4 / 3)
        ratio = torch.exp(log_ratio)
        cw = torch.sqrt(area * ratio).clamp(max=1.0)
        ch = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (torch.rand(n, generator=g, device=dev) * 2 - 1) * (1 - cw)
        cy = (torch.rand(n, generator=g, device=dev) * 2 - 1) * (1 - ch)
        crop = torch.diag_embed(torch.stack([cw, ch], -1))
        theta[:, :, 2] = (crop @ theta[:, :, 2:]).squeeze(-1) + torch.stack([cx, cy], -1)
        linear = crop @ linear
    theta[:, :, :2] = linear
    return theta


def random_affine(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, fill: float = 0.0):
    """Random resized crop + rotation + shift + shear + zoom as one bilinear resample."""
    theta = affine_matrices(len(x), cfg, g)
    if theta is None:
        return x
    eye = torch.eye(2, 3, device=theta.device)
    moved = (theta - eye).abs().amax(dim=(1, 2)) > 0
    idx = moved.nonzero().squeeze(1).to(x.device)
    if len(idx) == 0:
        return x
    sub = x.index_select(0, idx)
    grid = F.affine_grid(theta[moved].to(x.device, x.dtype), list(sub.shape), align_corners=False)
    # Resample (x - fill) with zero padding so that uncovered pixels become `fill`.
    warped = F.grid_sample(sub - fill, grid, mode="bilinear", align_corners=False) + fill
    return x.index_copy(0, idx, warped)


def random_erase(
    x: torch.Tensor, p: float, max_area: float, g: torch.Generator, value_range=(0.0, 1.0)
):
    """Replace a random rectangle (2 %..max_area of the image) by uniform noise, w.p. p."""
    if p <= 0 or max_area <= 0:
        return x
    n, c, h, w = x.shape
    dev = g.device
    chosen = torch.rand(n, generator=g, device=dev) < p
    area = (torch.rand(n, generator=g, device=dev) * (max_area - 0.02) + 0.02).clamp(min=0.0)
    log_ratio = (torch.rand(n, generator=g, device=dev) * 2 - 1) * math.log(3.3)
    ratio = torch.exp(log_ratio)
    eh = torch.sqrt(area * h * w * ratio).round().clamp(1, h)
    ew = torch.sqrt(area * h * w / ratio).round().clamp(1, w)
    y0 = (torch.rand(n, generator=g, device=dev) * (h - eh + 1)).floor()
    x0 = (torch.rand(n, generator=g, device=dev) * (w - ew + 1)).floor()
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    in_rows = (rows >= y0.view(n, 1, 1)) & (rows < (y0 + eh).view(n, 1, 1))
    in_cols = (cols >= x0.view(n, 1, 1)) & (cols < (x0 + ew).view(n, 1, 1))
    inside = in_rows & in_cols & chosen.view(n, 1, 1)
    lo, hi = value_range
    noise = torch.rand(x.shape, generator=g, device=dev).to(x.dtype) * (hi - lo) + lo
    return torch.where(inside.unsqueeze(1).to(x.device), noise.to(x.device), x)


def jitter(
    x: torch.Tensor, brightness: float, contrast: float, g: torch.Generator, value_range=(0.0, 1.0)
):
    """Per-image brightness shift (± fraction of the range) and contrast scaling, clamped."""
    if brightness <= 0 and contrast <= 0:
        return x
    n = len(x)
    lo, hi = value_range
    if contrast > 0:
        factor = _uniform(n, 1 - contrast, 1 + contrast, g, x).view(n, 1, 1, 1).to(x.device)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factor + mean
    if brightness > 0:
        delta = _uniform(n, -brightness, brightness, g, x).view(n, 1, 1, 1).to(x.device)
        x = x + delta * (hi - lo)
    return x.clamp(lo, hi)


def _to_unit(x: torch.Tensor, value_range) -> torch.Tensor:
    lo, hi = value_range
    return (x - lo) / (hi - lo)


def _from_unit(u: torch.Tensor, value_range) -> torch.Tensor:
    lo, hi = value_range
    return u * (hi - lo) + lo


def _gaussian_blur(u: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """3×3 Gaussian blur with one sigma per image (sigma 0 leaves an image unchanged)."""
    n, c, h, w = u.shape
    taps = torch.tensor([-1.0, 0.0, 1.0], device=u.device)
    safe = sigma.clamp(min=1e-3).view(n, 1)
    k1 = torch.exp(-(taps**2) / (2 * safe**2))
    k1 = k1 / k1.sum(1, keepdim=True)
    kernel = (k1[:, :, None] * k1[:, None, :]).to(u.dtype).repeat_interleave(c, 0)
    padded = F.pad(u.reshape(1, n * c, h, w), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kernel.unsqueeze(1), groups=n * c).view(n, c, h, w)


def camera_degrade(x: torch.Tensor, p: float, g: torch.Generator, value_range=(0.0, 1.0)):
    """Make each face look like a raw camera crop with probability p.

    FER-2013 faces are contrast-stretched, sharp and clean; a webcam face is often flat,
    under- or over-exposed, slightly soft and noisy. Per image: contrast × U(0.3, 1),
    brightness ± 0.2, gamma in [0.5, 2] (log-uniform), blur σ U(0, 1) px, noise σ U(0, 0.03),
    then rounding to 8 bits, as a camera delivers them. Values in [0, 1] units of the range.
    """
    if p <= 0:
        return x
    n, dev = len(x), g.device

    def draw(low: float, high: float) -> torch.Tensor:
        return (torch.rand(n, generator=g, device=dev) * (high - low) + low).to(x.device)

    chosen = (torch.rand(n, generator=g, device=dev) < p).to(x.device)
    contrast, brightness = draw(0.3, 1.0), draw(-0.2, 0.2)
    gamma, sigma, noise = (
        torch.exp(draw(math.log(0.5), math.log(2.0))),
        draw(0.0, 1.0),
        draw(0, 0.03),
    )
    shape = (n, 1, 1, 1)
    u = _to_unit(x, value_range)
    mean = u.mean(dim=(1, 2, 3), keepdim=True)
    v = (u - mean) * contrast.view(shape) + mean + brightness.view(shape)
    v = v.clamp(0.0, 1.0) ** gamma.view(shape)
    v = _gaussian_blur(v, sigma)
    grain = torch.randn(x.shape, generator=g, device=dev).to(x.device, x.dtype)
    v = ((v + grain * noise.view(shape)).clamp(0.0, 1.0) * 255).round() / 255
    return torch.where(chosen.view(shape), _from_unit(v, value_range), x)


def equalize(x: torch.Tensor, p: float, g: torch.Generator, value_range=(0.0, 1.0)):
    """Histogram-equalise each image w.p. p, with OpenCV's `equalizeHist` rule on 8-bit levels.

    The Recognizer equalises live face crops by default; training on a share of equalised
    faces makes the model read both kinds, so the stored test faces and live crops agree.
    """
    if p <= 0:
        return x
    n = len(x)
    chosen = (torch.rand(n, generator=g, device=g.device) < p).to(x.device)
    levels = (_to_unit(x, value_range).clamp(0, 1) * 255).round().long().view(n, -1)
    hist = torch.zeros(n, 256, device=x.device).scatter_add_(
        1, levels, torch.ones_like(levels, dtype=torch.float32)
    )
    cdf = hist.cumsum(1)
    first = cdf.gather(1, levels.min(1, keepdim=True).values)  # count of the darkest level
    span = (cdf[:, -1:] - first).clamp(min=1)
    lut = ((cdf - first) * 255 / span).round()
    flat = cdf[:, -1:] == first  # a constant image stays as it is
    lut = torch.where(flat, torch.arange(256, device=x.device).float().expand(n, 256), lut)
    out = _from_unit((lut.gather(1, levels) / 255).view(x.shape).to(x.dtype), value_range)
    return torch.where(chosen.view(n, 1, 1, 1), out, x)


def mix(x: torch.Tensor, y: torch.Tensor, cfg: AugmentConfig, g: torch.Generator):
    """Mixup or CutMix: (images, y_a, y_b, lam); the loss is lam·CE(y_a) + (1-lam)·CE(y_b).

    With both enabled each mixed batch picks one of the two at random. lam for CutMix is
    the exact fraction of pixels kept after clipping the box.
    """
    kinds = [k for k, a in (("mixup", cfg.mixup_alpha), ("cutmix", cfg.cutmix_alpha)) if a > 0]
    if not kinds or cfg.mix_p <= 0:
        return x, y, y, 1.0
    draws = torch.rand(2, generator=g, device=g.device).tolist()
    if draws[0] >= cfg.mix_p:
        return x, y, y, 1.0
    kind = kinds[int(draws[1] * len(kinds))]
    alpha = cfg.mixup_alpha if kind == "mixup" else cfg.cutmix_alpha
    # torch's Beta sampler takes no generator; a numpy one seeded from `g` keeps runs exact.
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=g.device))
    rng = np.random.default_rng(seed)
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=g, device=g.device).to(x.device)
    if kind == "mixup":
        return x * lam + x[perm] * (1 - lam), y, y[perm], lam
    h, w = x.shape[-2:]
    cut = math.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    return out, y, y[perm], 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


@contextmanager
def _single_thread(device: torch.device):
    """Run CPU ops on one thread: a batch of 48×48 images is too small to gain from
    intra-op threads, and their barriers cost milliseconds per op on a busy machine."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Augmenter:
    """All augmentations of an `AugmentConfig`, applied to a batch in a fixed order.

    Order: padded crop → affine (resized crop, rotate, shear, zoom, shift) → flips →
    brightness/contrast → camera-like degradation → equalisation → erasing → mixup/cutmix
    (a camera degrades the face before the Recognizer equalises its crop).
    """

    def __init__(
        self,
        cfg: AugmentConfig,
        *,
        value_range: tuple[float, float] = (0.0, 1.0),
        fill: float = 0.0,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ):
        self.cfg = cfg
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.fill = float(fill)
        self.generator = torch.Generator(device=torch.device(device))
        self.generator.manual_seed(seed)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """Every per-image op (no mixing): same shape, dtype and value range."""
        cfg, g = self.cfg, self.generator
        with _single_thread(x.device):
            x = random_crop(x, cfg.crop_padding, g, self.fill)
            x = random_affine(x, cfg, g, self.fill)
            x = random_flip(x, cfg.hflip, g, dim=-1)
            x = random_flip(x, cfg.vflip, g, dim=-2)
            x = jitter(x, cfg.brightness, cfg.contrast, g, self.value_range)
            x = camera_degrade(x, cfg.camera_p, g, self.value_range)
            x = equalize(x, cfg.equalize_p, g, self.value_range)
            return random_erase(x, cfg.erase_p, cfg.erase_max_area, g, self.value_range)

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        """(images, y_a, y_b, lam) for a training batch; lam = 1 and y_b = y_a when unmixed."""
        images = self.images(x)
        with _single_thread(x.device):
            return mix(images, y, self.cfg, self.generator)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())
