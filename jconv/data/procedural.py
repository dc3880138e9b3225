"""A procedural image classification set: any number of classes and images, any resolution.

Nothing is stored or downloaded. :func:`open_procedural` returns a train and a test source
with grain's ``RandomAccessDataSource`` protocol (``len(source)``, ``source[i] -> (image,
label)``); item ``i`` of a split is rendered on demand from ``(seed, split, i)`` alone, so any
process reads any shard in any order and gets the same bytes, and train (split 0) and test
(split 1) never share a generating key.

**Classes.** A class is a pair (shape, fill pattern), drawn in the object's own frame:

* shapes: ``disk, triangle, square, star, cross, ring, crescent, bar``, then ``blobK`` (index
  ``K`` ≥ 8, only when ``num_classes > 40``): radius ``0.75 + Σ_{j=2..4} a_j cos(jθ + φ_j)``,
  ``a_j, φ_j`` fixed by ``K`` alone;
* patterns: ``solid`` (colour A), ``halves`` (A | B across the object's axis), ``stripes``
  (period 0.6 radii), ``checker`` (cells of 0.45 radii), ``rings`` (concentric, period 0.5
  radii); a pattern turns and scales with its shape.

Class ``k`` of ``n`` is shape ``k mod S`` with pattern ``k mod 5``, ``S`` the least integer ≥
max(2, ⌈√n⌉, ⌈n/5⌉) prime to 5 (4 for the default 10: disk, triangle, square, star). The
Chinese remainder theorem makes the ``n`` pairs distinct; from 6 classes on neither attribute
alone gives the label, and from 10 on every shape and every pattern is in two classes or more.
Classes do not depend on ``seed``. Each block of ``n`` consecutive items holds every class
once, in an order drawn from ``(seed, split, block)``.

**Nuisances**, with ``t = difficulty`` in [0, 1], ``U`` a fresh uniform draw in [0, 1]. At
``t = 0`` there are none: the class object alone, upright, centred, of radius 0.28·size, in
colours of luminance A = 0.9 and B = 0.1 on a 0.5 grey. Each scales linearly with ``t``:

* pose, drawn for every object: rotation uniform in ±180°·t; target radius
  0.28·size·exp(0.55·t·(2U − 1)); target centre shifted by up to t·(size/2 − 0.8·radius) on
  each axis;
* colour: the luminances (background, A, B) = (0.5, 0.9, 0.1) are permuted with probability
  t, pulled towards 0.5 by a factor 1 − 0.6·t·U and shifted by ±0.05·t each; every object
  swaps A and B with probability t/2; every colour gets a zero-mean tint of up to ±0.4·t;
* clutter: a smooth colour field (bilinear over a 4×4 grid) of amplitude 0.4·t on the
  background, and Binomial(6, 0.8·t) distractors behind the target, anywhere, each an object
  of another class of this set with 0.35–0.7 of the target's radius (so the class is that of
  the largest object);
* occlusion: with probability 0.8·t a plain bar of a random colour and orientation,
  half-sides 0.2–0.4 × 0.5–1.1 radii, centred 0.4–1 radius from the target's centre, over
  it; last, Gaussian pixel noise of standard deviation 0.2·t.

**Label noise.** With ``label_noise = p`` > 0, each item's label is, with probability ``p``
(drawn from ``(seed, split, index)``), replaced by one of the other classes, uniformly; the
image shows the true class. Train and test labels are noisy alike, so no classifier's expected
test error is below ``p``: the set has a known irreducible error, which a scaling law's floor
should recover.

Edges are anti-aliased from approximate signed distances. Rendering is vectorised NumPy,
each object over its bounding window only.

>>> train, test = open_procedural(num_classes=6, train_size=12, test_size=6, seed=0)
>>> image, label = train[5]
>>> image.shape, image.dtype, type(label), train.class_names[:3]
((32, 32, 3), dtype('uint8'), <class 'int'>, ('disk-solid', 'triangle-halves', 'square-stripes'))
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["ProceduralSource", "open_procedural", "to_arrays", "render", "SHAPES", "PATTERNS"]

SHAPES = ("disk", "triangle", "square", "star", "cross", "ring", "crescent", "bar")
PATTERNS = ("solid", "halves", "stripes", "checker", "rings")
SPLITS = ("train", "test")


def _polygon(u, v, n, circumradius=1.0):
    normals = (2 * np.pi * (np.arange(n) + 0.5) / n).astype(np.float32)
    proj = u[..., None] * np.cos(normals) + v[..., None] * np.sin(normals)  # (H, W, n)
    return circumradius * np.cos(np.pi / n) - proj.max(-1)


_DEPTH = {  # (u, v) in object radii -> depth inside the shape (> 0 inside), ≈ distance in radii
    "disk": lambda u, v: 0.9 - np.hypot(u, v),
    "triangle": lambda u, v: _polygon(u, v, 3, 1.1),
    "square": lambda u, v: _polygon(u, v, 4, 1.0),
    "star": lambda u, v: 0.7 * (0.7 + 0.3 * np.cos(5 * np.arctan2(v, u)) - np.hypot(u, v)),
    "cross": lambda u, v: np.maximum(np.minimum(1 - abs(u), 0.3 - abs(v)),
                                     np.minimum(0.3 - abs(u), 1 - abs(v))),
    "ring": lambda u, v: np.minimum(1 - np.hypot(u, v), np.hypot(u, v) - 0.5),
    "crescent": lambda u, v: np.minimum(1 - np.hypot(u, v), np.hypot(u - 0.5, v) - 0.75),
    "bar": lambda u, v: np.minimum(1 - abs(u), 0.35 - abs(v)),
}
_PATTERN = {  # (u, v) in object radii -> mix from colour A (0) to colour B (1), before clipping
    "solid": lambda u, v, px: np.zeros_like(u),
    "halves": lambda u, v, px: u * px + 0.5,
    "stripes": lambda u, v, px: 0.5 + 1.5 * np.cos(2 * np.pi / 0.6 * u),
    "checker": lambda u, v, px: 0.5 + 3.0 * np.cos(np.pi / 0.45 * u) * np.cos(np.pi / 0.45 * v),
    "rings": lambda u, v, px: 0.5 + 1.5 * np.cos(2 * np.pi / 0.5 * np.hypot(u, v)),
}


def _blob_depth(u, v, amp, phase):
    """Depth of an extra shape (index ≥ 8): radial profile with harmonics 2..4 of ``amp, phase``."""
    theta = np.arctan2(v, u)[..., None]
    r = 0.75 + (amp * np.cos(np.arange(2, 5) * theta + phase)).sum(-1)
    return 0.7 * (r - np.hypot(u, v))


def _blob_params(index):
    rng = np.random.default_rng([index, 7])
    return rng.uniform(0.05, 0.15, 3).astype(np.float32), rng.uniform(0, 2 * np.pi, 3).astype(np.float32)


def _check_int(name, value, low, expected):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


class ProceduralSource:
    """One split of the procedural set: ``source[i]`` renders ``(image, label)`` on demand.

    Images are ``(H, W, 3)`` uint8 with ``H = W = image_size``; labels are Python ints in
    ``[0, num_classes)``. Build sources with :func:`open_procedural`. A source holds only its
    arguments and small lookup tables, so it pickles to grain's worker processes.

    Attributes:
      name: ``"procedural"``.
      split: ``"train"`` or ``"test"``.
      num_classes: number of classes ``n``.
      class_names: ``n`` names ``"shape-pattern"``, indexed by label.
      image_shape: ``(H, W, 3)``.
      difficulty: nuisance strength ``t`` in [0, 1].
      label_noise: the probability ``p`` in [0, 1) that a label names another class.
      seed: the seed every item is drawn from, with the split and the index.
    """

    name = "procedural"

    def __init__(self, split: str, size: int, *, num_classes: int, image_size: int,
                 difficulty: float, seed: int, label_noise: float = 0.0):
        self.split, self.num_classes, self.difficulty, self.seed = split, num_classes, difficulty, seed
        self.label_noise = label_noise
        self._size, self._split_id = size, SPLITS.index(split)
        self.image_shape = (image_size, image_size, 3)
        # S ≥ max(2, ⌈√n⌉, ⌈n/5⌉), prime to 5
        num_shapes = max(2, math.isqrt(num_classes - 1) + 1, -(-num_classes // len(PATTERNS)))
        num_shapes += num_shapes % len(PATTERNS) == 0
        shapes = [SHAPES[s] if s < len(SHAPES) else f"blob{s}" for s in range(num_shapes)]
        self.class_names = tuple(f"{shapes[k % num_shapes]}-{PATTERNS[k % len(PATTERNS)]}"
                                 for k in range(num_classes))
        self._shapes = [(k % num_shapes, k % len(PATTERNS)) for k in range(num_classes)]
        self._blobs = {s: _blob_params(s) for s, _ in self._shapes if s >= len(SHAPES)}
        self._coords = np.arange(image_size, dtype=np.float32) + np.float32(0.5 - image_size / 2)  # (H,) centres
        coarse = np.linspace(0, 3, image_size)  # bilinear weights of a 4x4 blotch grid
        self._blotch = np.maximum(0, 1 - abs(coarse[:, None] - np.arange(4))).astype(np.float32)  # (H, 4)

    def __len__(self) -> int:
        return self._size

    def __repr__(self):
        return (f"ProceduralSource({self.split!r}, len={self._size}, num_classes={self.num_classes}, "
                f"image_shape={self.image_shape}, difficulty={self.difficulty}, seed={self.seed}"
                + (f", label_noise={self.label_noise}" if self.label_noise else "") + ")")

    def true_label(self, index: int) -> int:
        """The class item ``index`` shows, without rendering it."""
        block, pos = divmod(index, self.num_classes)
        order = np.random.default_rng([self.seed, self._split_id, 1, block]).permutation(self.num_classes)
        return int(order[pos])

    def label(self, index: int) -> int:
        """The label of item ``index``: its class, or with probability ``label_noise`` another."""
        label = self.true_label(index)
        if self.label_noise:
            rng = np.random.default_rng([self.seed, self._split_id, 2, index])
            if rng.random() < self.label_noise:
                other = int(rng.integers(self.num_classes - 1))
                label = other + (other >= label)
        return label

    def __getitem__(self, index) -> tuple[np.ndarray, int]:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"index must be an int, got {index!r}")
        index = int(index) + (self._size if index < 0 else 0)
        if not 0 <= index < self._size:
            raise IndexError(f"index {index} out of range for a {self.split} split of {self._size}")
        rng = np.random.default_rng([self.seed, self._split_id, 0, index])
        return self._render(rng, self.true_label(index)), self.label(index)

    def _render(self, rng, label):
        t, size = float(self.difficulty), self.image_shape[0]
        levels = np.array([0.5, 0.9, 0.1])  # luminance of background, colour A, colour B
        if rng.random() < t:
            levels = rng.permutation(levels)
        levels = 0.5 + (levels - 0.5) * (1 - 0.6 * t * rng.random()) + t * rng.uniform(-0.05, 0.05, 3)
        blotch = self._blotch @ rng.uniform(-1, 1, (3, 4, 4)).astype(np.float32) @ self._blotch.T  # (3, H, W)
        image = self._colour(rng, levels[0], t)[:, None, None] + np.float32(0.4 * t) * blotch  # (3, H, W)
        radius = 0.28 * size * math.exp(0.55 * t * rng.uniform(-1, 1))
        shift = t * max(0.0, size / 2 - 0.8 * radius)
        centre = rng.uniform(-shift, shift, 2)
        for _ in range(rng.binomial(6, 0.8 * t)):
            other = int(rng.integers(self.num_classes - 1))
            where = rng.uniform(-size / 2, size / 2, 2)
            scale = radius * rng.uniform(0.35, 0.7)
            self._draw(image, rng, other + (other >= label), where, scale, levels[1:], t)
        self._draw(image, rng, label, centre, radius, levels[1:], t)
        if rng.random() < 0.8 * t:
            angle = rng.uniform(0, 2 * np.pi)
            where = centre + radius * rng.uniform(0.4, 1.0) * np.array([np.cos(angle), np.sin(angle)])
            half = radius * rng.uniform([0.2, 0.5], [0.4, 1.1])
            window, u, v = self._frame(where, rng.uniform(0, np.pi), 1.0, math.hypot(*half) + 1)
            colour = self._colour(rng, rng.uniform(0.1, 0.9), t)
            _paint(image[window], np.minimum(half[0] - abs(u), half[1] - abs(v)), colour, colour, 0)
        if t > 0:
            image += np.float32(0.2 * t) * rng.standard_normal(image.shape, dtype=np.float32)
        return (_unit(image) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0).copy()  # (H, W, 3)

    def _frame(self, centre, angle, scale, extent):
        """Window within ``extent`` pixels of ``centre``, and its object-frame ``u, v`` (pixels / ``scale``)."""
        size = self.image_shape[0]
        lo = [min(size, max(0, math.floor(c + size / 2 - extent))) for c in centre]
        hi = [max(lo_, min(size, math.ceil(c + size / 2 + extent))) for c, lo_ in zip(centre, lo)]
        cols, rows = slice(lo[0], hi[0]), slice(lo[1], hi[1])
        dx = self._coords[None, cols] - np.float32(centre[0])  # (1, w)
        dy = self._coords[rows, None] - np.float32(centre[1])  # (h, 1)
        c, s = np.float32(math.cos(angle) / scale), np.float32(math.sin(angle) / scale)
        return (slice(None), rows, cols), c * dx + s * dy, c * dy - s * dx  # (h, w) each

    @staticmethod
    def _colour(rng, lum, t):
        tint = rng.uniform(-1, 1, 3)
        return _unit(lum + 0.4 * t * (tint - tint.sum() / 3)).astype(np.float32)  # (3,)

    def _draw(self, image, rng, k, centre, radius, lums, t):
        """Object of class ``k`` at ``centre`` (pixels from the image centre); ``lums`` of colours A, B."""
        shape, pattern = self._shapes[k]
        window, u, v = self._frame(centre, t * rng.uniform(-np.pi, np.pi), radius, 1.2 * radius + 1)
        depth = _DEPTH[SHAPES[shape]](u, v) if shape < len(SHAPES) else _blob_depth(u, v, *self._blobs[shape])
        if rng.random() < t / 2:
            lums = lums[::-1]
        a, b = self._colour(rng, lums[0], t), self._colour(rng, lums[1], t)
        _paint(image[window], depth * radius, a, b, _unit(_PATTERN[PATTERNS[pattern]](u, v, radius)))


def _unit(x):
    return np.minimum(np.maximum(x, 0), 1)  # np.clip, without its overhead on small arrays


def _paint(region, depth_px, a, b, mix):
    """Composite colour ``a + mix (b - a)`` over ``region`` (3, h, w) with anti-aliased edge ``depth_px``."""
    alpha = _unit(depth_px + 0.5)  # (h, w)
    region += alpha * (a[:, None, None] + mix * (b - a)[:, None, None] - region)


def open_procedural(num_classes: int = 10, train_size: int = 50_000, test_size: int = 10_000,
                    image_size: int = 32, difficulty: float = 0.5, seed: int = 0,
                    label_noise: float = 0.0) -> tuple[ProceduralSource, ProceduralSource]:
    """The train and test sources of the procedural set (see the module docstring).

    Args:
      num_classes: number of (shape, pattern) classes, ≥ 2.
      train_size: number of train items, ≥ 1.
      test_size: number of test items, ≥ 1.
      image_size: image height and width in pixels, ≥ 16.
      difficulty: nuisance strength in [0, 1]; 0 is one clean object per image.
      seed: non-negative int; with the split and the index it fixes every item.
      label_noise: probability in [0, 1) that an item's label names another class (train and
        test alike); 0 keeps every label true.

    Returns:
      ``(train, test)`` :class:`ProceduralSource` objects; ``source[i]`` is a ``(H, W, 3)``
      uint8 image and an int label.

    Raises:
      ValueError: an argument outside its range, naming it, its value and what was expected.
    """
    num_classes = _check_int("num_classes", num_classes, 2, "an int ≥ 2")
    train_size = _check_int("train_size", train_size, 1, "an int ≥ 1")
    test_size = _check_int("test_size", test_size, 1, "an int ≥ 1")
    image_size = _check_int("image_size", image_size, 16, "an int ≥ 16")
    seed = _check_int("seed", seed, 0, "a non-negative int")
    if isinstance(difficulty, bool) or not isinstance(difficulty, numbers.Real) or not 0 <= difficulty <= 1:
        raise ValueError(f"difficulty must be a number in [0, 1], got {difficulty!r}")
    if isinstance(label_noise, bool) or not isinstance(label_noise, numbers.Real) or not 0 <= label_noise < 1:
        raise ValueError(f"label_noise must be a number in [0, 1), got {label_noise!r}")
    kwargs = dict(num_classes=num_classes, image_size=image_size, difficulty=float(difficulty), seed=seed,
                  label_noise=float(label_noise))
    return (ProceduralSource("train", train_size, **kwargs), ProceduralSource("test", test_size, **kwargs))


def to_arrays(source: ProceduralSource, indices=None) -> tuple[np.ndarray, np.ndarray]:
    """Items ``indices`` (default: all) as ``(N, H, W, 3)`` float32 images in [0, 1], ``(N,)`` int32 labels."""
    indices = range(len(source)) if indices is None else indices
    items = [source[i] for i in indices]
    x = np.stack([im for im, _ in items]).astype(np.float32) / 255  # (N, H, W, 3)
    return x, np.array([lab for _, lab in items], np.int32)


def _render_range(source: ProceduralSource, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    items = [source[i] for i in range(start, stop)]
    return np.stack([im for im, _ in items]), np.array([lab for _, lab in items], np.int32)


def render(source: ProceduralSource, start: int, stop: int, *, workers: int = 1,
           chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Items ``[start, stop)`` as ``(N, H, W, 3)`` uint8 images and ``(N,)`` int32 labels.

    With ``workers > 1`` chunks of ``chunk`` items render in that many spawned processes (each
    item depends only on ``(seed, split, index)``, so the bytes do not depend on ``workers``).
    Spawned processes import the calling script again, so a script that calls this with
    ``workers > 1`` keeps its top-level code under ``if __name__ == "__main__":``.

    >>> train, _ = open_procedural(num_classes=4, train_size=8, test_size=1)
    >>> x, y = render(train, 2, 6)
    >>> x.shape, x.dtype, y.tolist() == [train.label(i) for i in range(2, 6)]
    ((4, 32, 32, 3), dtype('uint8'), True)
    """
    if not 0 <= start <= stop <= len(source):
        raise ValueError(f"render: [start, stop) = [{start}, {stop}); expected 0 ≤ start ≤ stop ≤ "
                         f"{len(source)} (the split's size)")
    bounds = [(lo, min(stop, lo + chunk)) for lo in range(start, stop, chunk)]
    # Chunks are copied into the result as they arrive: the peak is the result, not twice it.
    x, y = np.empty((stop - start, *source.image_shape), np.uint8), np.empty(stop - start, np.int32)
    if workers <= 1 or len(bounds) <= 1:
        for lo, hi in bounds:
            x[lo - start:hi - start], y[lo - start:hi - start] = _render_range(source, lo, hi)
        return x, y
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for (lo, hi), part in zip(bounds, pool.map(_render_range, [source] * len(bounds), *zip(*bounds))):
            x[lo - start:hi - start], y[lo - start:hi - start] = part
    return x, y
