"""``glyphs``: an embedded, procedural, Omniglot-like dataset (no files, no network).

Every class is a random *stroke program*: two to four cubic Bezier strokes whose control points
are drawn once per class (later strokes often start on an earlier one, as pen strokes of a
handwritten character do). Every image of a class is a perturbed rendering of its program:
control-point jitter, stroke-width variation, a small random affine map (rotation, scale, shear,
translation) and pixel noise. Images are single-channel uint8, bright ink (255) on a dark (0)
background, like Omniglot after learn2learn's ``1 - x`` (Lake et al., 2015; Finn et al., 2017).
This gives the few-shot benchmark of Wang, Zhao & Li (ICML 2021) a dataset every machine can
build in a couple of seconds, with intra-class variation large enough that methods differ.

Reproducibility: generation is bit-identical across runs, thread counts and platforms for the
same seed. Random numbers come from NumPy's ``Generator(PCG64)`` (a platform-independent
stream) and only uniform draws are used; the arithmetic is float64 ``+ - * /``, ``sqrt``,
``min``/``max`` and ``rint``, all exactly specified by IEEE 754, applied element-wise (no BLAS
reductions, no transcendental functions: rotations use the rational parametrisation
``cos = (1 - t^2) / (1 + t^2)``, ``sin = 2t / (1 + t^2)`` with ``t = tan(angle / 2)``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datasets import DatasetInfo, register_dataset
from datasets.base import ClassSplit, DatasetError, FewShotDataset

__all__ = ["GlyphStyle", "build_glyphs", "make_glyphs", "load", "pixel_stats", "SPLIT_STREAMS"]

#: Independent random streams per split, so changing one split's size leaves the others alone.
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
_RENDER_CHUNK = 32  # images rendered at once (bounds the [chunk, segments, H, W] buffers)


@dataclass(frozen=True)
class GlyphStyle:
    """The generator's knobs. Coordinates are normalised: the image spans ``[-1, 1]^2``.

    The defaults were calibrated so that raw pixels are a weak few-shot representation
    (logistic regression on L2-normalised pixels, 5-way 1-shot, roughly 35-55%) while classes
    remain distinct programs a learned feature extractor can separate.
    """

    min_strokes: int = 2
    max_strokes: int = 4
    control_extent: float = 0.7  # class control points uniform in [-e, e]^2
    attach_prob: float = 0.6  # probability that a later stroke starts on an earlier one
    segments_per_stroke: int = 8  # each Bezier stroke is drawn as this many line segments
    jitter: float = 0.22  # per-image control-point jitter, triangular on [-j, j]
    half_width_px: float = 0.8  # stroke half-width in pixels at 28 px (scaled with the size)
    width_range: tuple[float, float] = (0.75, 1.35)  # per-image factor on the half-width
    rotation_deg: float = 25.0  # per-image rotation up to about +-r (uniform tan(angle / 2))
    scale_range: tuple[float, float] = (0.75, 1.15)  # per-image isotropic scale
    stretch: float = 0.15  # per-image anisotropy: x scaled by (1 + a), y by (1 - a)
    shear: float = 0.25  # per-image shear, uniform on [-s, s]
    translate: float = 0.18  # per-image translation, uniform on [-t, t] per axis
    noise: float = 0.12  # per-pixel noise, uniform on [-n, n] in [0, 1] intensity units

    def __post_init__(self) -> None:
        if not 1 <= self.min_strokes <= self.max_strokes:
            raise ValueError(f"need 1 <= min_strokes <= max_strokes, got {self.min_strokes} "
                             f"and {self.max_strokes}")
        if self.segments_per_stroke < 1:
            raise ValueError(f"segments_per_stroke must be >= 1, got {self.segments_per_stroke}")


def _triangular(rng: np.random.Generator, half_range: float, shape: tuple[int, ...]) -> np.ndarray:
    """Triangular noise on ``[-h, h]`` as the mean of two uniforms (only exact arithmetic)."""
    u = rng.random((2, *shape))
    return (u[0] + u[1] - 1.0) * half_range


def _bernstein(t: np.ndarray) -> np.ndarray:
    """Cubic Bernstein weights ``[len(t), 4]`` at parameters ``t`` in ``[0, 1]``."""
    s = 1.0 - t
    return np.stack([s * s * s, 3.0 * s * s * t, 3.0 * s * t * t, t * t * t], axis=1)


def _bezier_points(control: np.ndarray, n_points: int) -> np.ndarray:
    """``n_points`` evenly spaced points on cubic Bezier curves: ``[..., 4, 2] -> [..., P, 2]``.

    The four weighted terms are summed in a fixed order (no BLAS), so every value is a fixed
    sequence of correctly rounded IEEE operations, identical on every platform.
    """
    basis = _bernstein(np.arange(n_points, dtype=np.float64) / (n_points - 1))
    out = basis[:, 0, None] * control[..., None, 0, :]
    for k in range(1, 4):
        out = out + basis[:, k, None] * control[..., None, k, :]
    return out


def _bezier_at(control: np.ndarray, t: np.ndarray) -> np.ndarray:
    """One point per curve: ``control [C, 4, 2]`` at parameters ``t [C]`` -> ``[C, 2]``."""
    weights = _bernstein(t)
    out = weights[:, 0, None] * control[:, 0]
    for k in range(1, 4):
        out = out + weights[:, k, None] * control[:, k]
    return out


def _class_programs(rng: np.random.Generator, n_classes: int,
                    style: GlyphStyle) -> tuple[np.ndarray, np.ndarray]:
    """Draw the stroke programs of ``n_classes`` classes.

    Returns control points ``[C, S, 4, 2]`` (``S = max_strokes``) and the number of strokes
    ``[C]`` each class uses (its first ones). A later stroke starts, with probability
    ``attach_prob``, on a random point of an earlier stroke. Every draw has a fixed shape
    (unused strokes are drawn too), so the random stream does not depend on the outcomes.
    """
    n_strokes_max = style.max_strokes
    extent = style.control_extent
    n_strokes = rng.integers(style.min_strokes, n_strokes_max + 1, size=n_classes)
    control = (rng.random((n_classes, n_strokes_max, 4, 2)) * 2.0 - 1.0) * extent
    attach = rng.random((n_classes, n_strokes_max)) < style.attach_prob
    attach_to = rng.random((n_classes, n_strokes_max))
    attach_at = rng.random((n_classes, n_strokes_max))
    classes = np.arange(n_classes)
    for s in range(1, n_strokes_max):
        earlier = np.minimum((attach_to[:, s] * s).astype(np.int64), s - 1)
        start = _bezier_at(control[classes, earlier], attach_at[:, s])
        control[:, s, 0, :] = np.where(attach[:, s, None], start, control[:, s, 0, :])
    return control, n_strokes


def _affine_maps(rng: np.random.Generator, n: int,
                 style: GlyphStyle) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random affine maps ``x -> A x + b``: ``A [n, 2, 2]``, ``b [n, 2]``.

    ``A = R(angle) @ Shear @ diag(scale * (1 + a), scale * (1 - a))`` with the rotation built
    from ``t = tan(angle / 2)`` (rational, hence exactly reproducible).
    """
    u = rng.random((n, 6))
    t_max = style.rotation_deg / 360.0 * np.pi  # ~tan(r / 2) at these angles; sets the range
    t = (u[:, 0] * 2.0 - 1.0) * t_max
    cos, sin = (1.0 - t * t) / (1.0 + t * t), 2.0 * t / (1.0 + t * t)
    lo, hi = style.scale_range
    scale = lo + u[:, 1] * (hi - lo)
    stretch = (u[:, 2] * 2.0 - 1.0) * style.stretch
    shear = (u[:, 3] * 2.0 - 1.0) * style.shear
    sx, sy = scale * (1.0 + stretch), scale * (1.0 - stretch)
    # R @ [[1, shear], [0, 1]] @ diag(sx, sy), written out element by element.
    a = np.empty((n, 2, 2))
    a[:, 0, 0] = cos * sx
    a[:, 0, 1] = (cos * shear - sin) * sy
    a[:, 1, 0] = sin * sx
    a[:, 1, 1] = (sin * shear + cos) * sy
    b = (u[:, 4:6] * 2.0 - 1.0) * style.translate
    return a, b


def _apply_affine(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Apply per-image affine maps to ``points [n, ..., 2]`` element-wise (no matmul)."""
    extra = (slice(None),) + (None,) * (points.ndim - 2)
    x, y = points[..., 0], points[..., 1]
    nx = a[:, 0, 0][extra] * x + a[:, 0, 1][extra] * y + b[:, 0][extra]
    ny = a[:, 1, 0][extra] * x + a[:, 1, 1][extra] * y + b[:, 1][extra]
    return np.stack([nx, ny], axis=-1)


def _pixel_centres(size: int) -> np.ndarray:
    """Normalised coordinate of each pixel centre along one axis: ``[size]`` in ``(-1, 1)``."""
    return (np.arange(size, dtype=np.float64) + 0.5) / (size / 2.0) - 1.0


def _min_distance(centres: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance from every pixel to the nearest segment: ``[n, H, W]`` for segments ``[n, M, 2]``.

    Uses that the projection parameter of pixel ``(y, x)`` onto a segment is a sum of an
    x-term and a y-term, so the per-pixel work is a handful of in-place ``[n, M, H, W]`` ops.
    """
    d = end - start
    dx, dy = d[..., 0], d[..., 1]  # [n, M]
    inv = 1.0 / np.maximum(dx * dx + dy * dy, 1e-12)
    px = centres[None, None, :] - start[..., 0, None]  # [n, M, W]
    py = centres[None, None, :] - start[..., 1, None]  # [n, M, H]
    t = (py * (dy * inv)[..., None])[..., :, None] + (px * (dx * inv)[..., None])[..., None, :]
    np.clip(t, 0.0, 1.0, out=t)  # [n, M, H, W]: the closest point's parameter on each segment
    ex = px[..., None, :] - t * dx[..., None, None]
    np.multiply(t, dy[..., None, None], out=t)
    ey = np.subtract(py[..., :, None], t, out=t)
    np.multiply(ex, ex, out=ex)
    np.multiply(ey, ey, out=ey)
    np.add(ex, ey, out=ex)
    return np.sqrt(ex.min(axis=1))


def _render(control: np.ndarray, n_strokes: np.ndarray, half_width: np.ndarray, size: int,
            style: GlyphStyle, noise: np.ndarray) -> np.ndarray:
    """Anti-aliased rendering of per-image strokes to uint8 ``[n, H, W]``.

    ``control [n, S, 4, 2]`` holds each image's strokes, of which the first ``n_strokes[i]`` are
    drawn (images are rendered in groups of equal stroke count). A pixel's ink is
    ``clip(half_width - distance + 0.5px, 0, 1px)``: a one-pixel ramp at the stroke's edge.
    ``noise`` (``[n, H, W]`` in ``[-1, 1]``) scaled by ``style.noise`` is added before clipping.
    """
    pixel = 2.0 / size  # one pixel in normalised units
    points = _bezier_points(control, style.segments_per_stroke + 1)
    centres = _pixel_centres(size)
    out = np.empty((control.shape[0], size, size), dtype=np.uint8)
    for k in np.unique(n_strokes):
        group = np.flatnonzero(n_strokes == k)
        for lo in range(0, len(group), _RENDER_CHUNK):
            ix = group[lo:lo + _RENDER_CHUNK]
            pts = points[ix, :k]
            start = pts[:, :, :-1, :].reshape(len(ix), -1, 2)
            end = pts[:, :, 1:, :].reshape(len(ix), -1, 2)
            dist = _min_distance(centres, start, end)
            ink = np.clip((half_width[ix, None, None] - dist) / pixel + 0.5, 0.0, 1.0)
            ink = np.clip(ink + noise[ix] * style.noise, 0.0, 1.0)
            out[ix] = np.rint(ink * 255.0).astype(np.uint8)
    return out


def _perturb(rng: np.random.Generator, control: np.ndarray,
             style: GlyphStyle) -> tuple[np.ndarray, np.ndarray]:
    """One perturbed copy of its class's strokes per image: control-point jitter, then a random
    affine map. Returns control points ``[n, S, 4, 2]`` and half-widths ``[n]`` (normalised)."""
    n = control.shape[0]
    jittered = control + _triangular(rng, style.jitter, control.shape)
    lo, hi = style.width_range
    half_widths = style.half_width_px * (2.0 / 28.0) * (lo + rng.random(n) * (hi - lo))
    a, b = _affine_maps(rng, n, style)
    return _apply_affine(jittered, a, b), half_widths


def _render_split(seed: int, split: str, n_classes: int, per_class: int, image_size: int,
                  first_class: int, style: GlyphStyle) -> ClassSplit:
    """Draw ``n_classes`` stroke programs and ``per_class`` perturbed renderings of each."""
    stream = SPLIT_STREAMS[split]
    programs_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream, 0])))
    images_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream, 1])))
    control, class_strokes = _class_programs(programs_rng, n_classes, style)
    labels = np.repeat(np.arange(n_classes), per_class)
    strokes, half_widths = _perturb(images_rng, control[labels], style)
    noise = images_rng.random((len(labels), image_size, image_size)) * 2.0 - 1.0
    images = _render(strokes, class_strokes[labels], half_widths, image_size, style, noise)
    names = tuple(f"glyph-{first_class + k:04d}" for k in range(n_classes))
    return ClassSplit(split, torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels),
                      names)


def pixel_stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and std of uint8 pixels in ``[0, 1]`` units, from exact integer sums, 4 decimals."""
    x = images.numpy().astype(np.int64).ravel()
    count = x.size
    total, total_sq = int(x.sum()), int((x * x).sum())
    mean = total / count / 255.0
    var = (total_sq / count - (total / count) ** 2) / (255.0 * 255.0)
    return round(mean, 4), round(float(np.sqrt(max(var, 0.0))), 4)


def make_glyphs(seed: int = 0, image_size: int = 28, n_train: int = 256, n_val: int = 64,
                n_test: int = 128, per_class: int = 20,
                style: GlyphStyle = GlyphStyle()) -> FewShotDataset:
    """The ``glyphs`` dataset, generated once per argument set and process (treat the
    returned tensors as read-only: later calls share them).

    Class names are ``glyph-0000`` onwards, numbered train, then val, then test, so the splits
    are disjoint. ``mean``/``std`` come from the train split's pixels.
    """
    return _cached_glyphs(seed, image_size, n_train, n_val, n_test, per_class, style)


def build_glyphs(seed: int = 0, image_size: int = 28, n_train: int = 256, n_val: int = 64,
                 n_test: int = 128, per_class: int = 20,
                 style: GlyphStyle = GlyphStyle()) -> FewShotDataset:
    """Generate ``glyphs`` afresh (uncached); see :func:`make_glyphs`."""
    if image_size < 8:
        raise DatasetError(f"glyphs: image_size must be at least 8 pixels, got {image_size}")
    if min(n_train, n_val, n_test) < 1 or per_class < 1:
        raise DatasetError(
            f"glyphs: every split needs at least one class and one image per class, got "
            f"n_train={n_train}, n_val={n_val}, n_test={n_test}, per_class={per_class}"
        )
    firsts = {"train": 0, "val": n_train, "test": n_train + n_val}
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    splits = {name: _render_split(seed, name, sizes[name], per_class, image_size, firsts[name],
                                  style)
              for name in ("train", "val", "test")}
    mean, std = pixel_stats(splits["train"].images)
    return FewShotDataset(
        name="glyphs", train=splits["train"], val=splits["val"], test=splits["test"],
        mean=(mean,), std=(std,),
        source=(f"generated: glyphs seed={seed} size={image_size} classes "
                f"{n_train}/{n_val}/{n_test} x {per_class} images"),
    )


_cached_glyphs = functools.lru_cache(maxsize=8)(build_glyphs)


def load(root: Path | None = None, *, allow_nonstandard: bool = False) -> FewShotDataset:
    """Registry entry point: the default ``glyphs`` (seed 0, 28 px); ``root`` and
    ``allow_nonstandard`` are ignored (generated, always standard)."""
    return make_glyphs()


register_dataset(
    DatasetInfo(
        name="glyphs",
        load=load,
        description=("procedural Omniglot-like stroke glyphs, generated in-process "
                     "(256/64/128 classes x 20 images, 28 px, no files)"),
        benchmark="glyphs",
        channels=1,
        image_size=28,
        classes=(256, 64, 128),
        mean=None, std=None,  # the train split's pixel statistics (make_glyphs)
        train_augmentation=None,
        small_images=True,
        needs_files=False,
    ),
    "glyph",
)
