"""Faithfulness metrics: does removing what a map marks as relevant destroy the prediction?

- :func:`pixel_flipping`: region perturbation (Bach et al. 2015; Samek et al. 2017): patches
  are perturbed in the order of their relevance, most relevant first ("morf"), least
  relevant first ("lerf") or at random; score = AOPC, the mean over steps k = 1..K of
  f(x⁰) − f(xᵏ) (higher is better for MoRF).
- :func:`token_deletion`: pixel-flipping for token sequences: tokens replaced by the padding
  id in the order of their relevance; score = AOPC.
- :func:`deletion` / :func:`insertion` (RISE, Petsiuk et al. 2018): patches removed from x,
  or revealed on the perturbed image, most relevant first; score = area under the curve
  of f against the perturbed fraction (lower is better for deletion, higher for insertion).

Inputs are channels-last: (n, d) vectors, (n, L, C) sequences or (n, H, W, C) images; a
"pixel" is all channels at one position, and a patch is ``patch`` consecutive positions
(``patch`` × ``patch`` on images). Step k of K perturbs the first round(k·P/K) of the P
patches; step K perturbs them all. The explained output f is the selected logit (a final
softmax is stripped), selected on the unperturbed x and kept fixed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from keras_dtd.analyzers.baselines import Gradient

ORDERS = ("morf", "lerf", "random")
PERTURBATIONS = ("constant", "min", "uniform", "blur")


@dataclasses.dataclass(frozen=True)
class FaithfulnessResult:
    """``curves``: (samples, steps + 1), the explained output after each step (step 0:
    unperturbed for pixel-flipping and deletion, fully perturbed for insertion);
    ``score``: per sample, AOPC (pixel-flipping) or the area under the curve (deletion,
    insertion); ``fractions``: the perturbed (or, for insertion, revealed) share of patches
    at each step."""

    curves: np.ndarray
    score: np.ndarray
    fractions: np.ndarray
    metric: str
    order: str


def _patch_ranks(relevance, patch, order, seed):
    """Per pixel: the rank of its patch in the perturbation order (0 = first), and P."""
    n = relevance.shape[0]
    pixels = relevance.sum(axis=-1) if relevance.ndim >= 3 else relevance
    spatial = pixels.shape[1:]
    if any(patch > s for s in spatial):
        raise ValueError(f"patch {patch} is larger than the input's positions {spatial}.")
    grid = tuple(-(-s // patch) for s in spatial)
    padded = np.zeros((n,) + tuple(g * patch for g in grid))
    padded[(slice(None),) + tuple(slice(0, s) for s in spatial)] = pixels
    shape = (n,) + tuple(v for g in grid for v in (g, patch))
    sums = padded.reshape(shape).sum(axis=tuple(range(2, 2 * len(grid) + 1, 2))).reshape(n, -1)
    if order == "morf":
        keys = -sums
    elif order == "lerf":
        keys = sums
    else:
        keys = np.random.default_rng(seed).random(sums.shape)
    ranks = np.empty_like(sums, dtype=np.int32)
    np.put_along_axis(
        ranks, np.argsort(keys, axis=1, kind="stable"), np.arange(sums.shape[1], dtype=np.int32)[None], 1
    )
    ranks = ranks.reshape((n,) + grid)
    for axis in range(1, len(grid) + 1):
        ranks = np.repeat(ranks, patch, axis=axis)
    return ranks[(slice(None),) + tuple(slice(0, s) for s in spatial)], sums.shape[1]


def _replacement(x, perturbation, baseline, seed):
    """The values a perturbed pixel takes."""
    if perturbation == "constant":
        return np.full_like(x, baseline)
    axes = tuple(range(1, x.ndim))
    low = x.min(axis=axes, keepdims=True)
    if perturbation == "min":
        return np.broadcast_to(low, x.shape).copy()
    if perturbation == "uniform":
        high = x.max(axis=axes, keepdims=True)
        return np.random.default_rng(seed).uniform(0, 1, x.shape).astype(x.dtype) * (high - low) + low
    spatial = x.ndim - 2 if x.ndim >= 3 else 1  # blur: 3-wide box over each position axis
    blurred = x.astype(np.float64)
    for axis in range(1, 1 + spatial):
        padded = np.concatenate(
            [np.take(blurred, [0], axis), blurred, np.take(blurred, [-1], axis)], axis=axis
        )
        size = blurred.shape[axis]
        blurred = sum(np.take(padded, range(k, k + size), axis) for k in range(3)) / 3
    return blurred.astype(x.dtype)


def _curves(
    model,
    x,
    relevance,
    order,
    patch,
    steps,
    perturbation,
    baseline,
    neuron_selection,
    seed,
    insert,
    batch_size,
):
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}.")
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {perturbation!r}.")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}.")
    if not isinstance(patch, int) or patch < 1:
        raise ValueError(f"patch must be a positive int, got {patch!r}.")
    scorer = Gradient(model, batch_size=batch_size)
    (x,) = scorer.validate_inputs(x)
    relevance = np.asarray(relevance, np.float64)
    if relevance.shape != x.shape:
        raise ValueError(f"relevance has shape {relevance.shape}, x has {x.shape}; they must match.")
    if not 2 <= x.ndim <= 4:
        raise ValueError(f"x has {x.ndim} axes; metrics take (n, d), (n, L, C) or (n, H, W, C) inputs.")
    indices, all_outputs = scorer.validate_selection(neuron_selection, len(x))
    if all_outputs:
        raise ValueError("neuron_selection='all' is not supported: the metrics follow one output per sample.")
    ranks, n_patches = _patch_ranks(relevance, patch, order, seed)
    if steps > n_patches:
        raise ValueError(f"steps {steps} exceed the {n_patches} patches of size {patch}.")
    counts = np.round(np.arange(steps + 1) * n_patches / steps).astype(np.int32)
    replacement = _replacement(x, perturbation, baseline, seed)
    start, end = (replacement, x) if insert else (x, replacement)
    expand = ranks[..., None] if x.ndim >= 3 else ranks
    # a model with traced custom layers has a graph per input shape: no relaxed shapes
    relaxed = not scorer.graph.traced_calls
    function = tf.function(lambda *a: _steps(scorer, *a), autograph=False, reduce_retracing=relaxed)
    parts = []
    for k in range(0, len(x), batch_size):
        batch = [tf.constant(a[k : k + batch_size]) for a in (x, start, end, expand, indices)]
        parts.append(function(*batch, tf.constant(counts)).numpy())
    return np.concatenate(parts), counts / n_patches


def _steps(scorer, x, start, end, ranks, indices, counts):
    """f at each step, the output selected at x: pixels whose patch rank is below counts[k]
    take their ``end`` value, the others their ``start`` value."""
    mask, _ = scorer.select(scorer.forward([x]).output, indices, False)

    def selected(images):
        f = scorer.forward([images]).output
        return tf.reduce_sum(tf.reshape(mask * f, (tf.shape(images)[0], -1)), axis=-1)

    def body(k, curves):
        return k + 1, curves.write(k, selected(tf.where(ranks < counts[k], end, start)))

    n_steps = tf.shape(counts)[0]
    _, curves = tf.while_loop(lambda k, _: k < n_steps, body, (0, tf.TensorArray(mask.dtype, size=n_steps)))
    return tf.transpose(curves.stack())


def pixel_flipping(
    model,
    x,
    relevance,
    order="morf",
    patch=1,
    steps=10,
    perturbation="constant",
    baseline=0.0,
    neuron_selection="max_activation",
    seed=0,
    batch_size=32,
) -> FaithfulnessResult:
    """Region perturbation in the order of the relevance; score = AOPC =
    (1/K) Σ_{k=1..K} f(x⁰) − f(xᵏ) per sample. ``perturbation``: "constant" (``baseline``),
    "min" (the sample's minimum), "uniform" (noise between the sample's min and max, from
    ``seed``) or "blur" (a 3-wide box blur); ``seed`` also draws the "random" order."""
    curves, fractions = _curves(
        model,
        x,
        relevance,
        order,
        patch,
        steps,
        perturbation,
        baseline,
        neuron_selection,
        seed,
        False,
        batch_size,
    )
    aopc = (curves[:, :1] - curves[:, 1:]).mean(axis=1)
    return FaithfulnessResult(curves, aopc, fractions, "pixel_flipping", order)


def _area(curves, fractions):
    return ((curves[:, 1:] + curves[:, :-1]) / 2 * np.diff(fractions)[None]).sum(axis=1)


def deletion(
    model,
    x,
    relevance,
    order="morf",
    patch=1,
    steps=10,
    perturbation="constant",
    baseline=0.0,
    neuron_selection="max_activation",
    seed=0,
    batch_size=32,
) -> FaithfulnessResult:
    """Deletion: patches of x replaced, most relevant first; score = area under f against the
    deleted fraction (trapezoids; lower is better)."""
    curves, fractions = _curves(
        model,
        x,
        relevance,
        order,
        patch,
        steps,
        perturbation,
        baseline,
        neuron_selection,
        seed,
        False,
        batch_size,
    )
    return FaithfulnessResult(curves, _area(curves, fractions), fractions, "deletion", order)


def insertion(
    model,
    x,
    relevance,
    order="morf",
    patch=1,
    steps=10,
    perturbation="blur",
    baseline=0.0,
    neuron_selection="max_activation",
    seed=0,
    batch_size=32,
) -> FaithfulnessResult:
    """Insertion: patches of x revealed on the perturbed image (by default a blurred x, as
    in RISE), most relevant first; score = area under f against the revealed fraction
    (higher is better)."""
    curves, fractions = _curves(
        model,
        x,
        relevance,
        order,
        patch,
        steps,
        perturbation,
        baseline,
        neuron_selection,
        seed,
        True,
        batch_size,
    )
    return FaithfulnessResult(curves, _area(curves, fractions), fractions, "insertion", order)


def token_deletion(
    model,
    tokens,
    relevance,
    order="morf",
    steps=10,
    pad_id=0,
    neuron_selection="max_activation",
    seed=0,
    batch_size=32,
) -> FaithfulnessResult:
    """Token deletion (Arras et al. 2017): the tokens of ``tokens`` (n, L) replaced by ``pad_id``
    (with ``mask_zero=True``, a masked step) in the order of ``relevance`` (n, L), most relevant
    first ("morf"), least relevant first ("lerf") or at random; score = AOPC =
    (1/K) Σ_{k=1..K} f(x⁰) − f(xᵏ) per sample (higher is better for MoRF)."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.dtype.kind not in "iu":
        raise ValueError(
            f"tokens must be integer ids of shape (n, L); received {tokens.dtype} {tokens.shape}."
        )
    result = pixel_flipping(
        model, tokens, relevance, order, 1, steps, "constant", pad_id, neuron_selection, seed, batch_size
    )
    return dataclasses.replace(result, metric="token_deletion")
