"""Relevance models (Min-Max, training-free) and Taylor decomposition at a root point."""

import warnings

import keras
import numpy as np
import pytest
import replica
import tensorflow as tf

from keras_dtd import DTD
from keras_dtd.relevance_models import MinMax, MinMaxLayer, TrainingFree
from keras_dtd.taylor import RootNotFoundWarning, Taylor


@pytest.fixture(scope="module")
def detection_pooling():
    """features (ReLU) → detectors (ReLU, biases ≤ 0) → sum pooling: above 'features' the
    relevance is exactly a Min-Max function of the features, f = Σ_j max(0, h·w_j + b_j)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    h = keras.layers.Dense(10, activation="relu", name="features")(inp)
    detectors = keras.layers.Dense(4, activation="relu", name="detectors")
    out = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name="pool")(detectors(h))
    model = keras.Model(inp, out)
    w, _ = detectors.get_weights()
    detectors.set_weights([w, -np.random.default_rng(0).uniform(0, 0.2, 4).astype("float32")])
    x = np.random.default_rng(1).uniform(0, 1, (512, 8)).astype("float32")
    return model, x


@pytest.fixture(scope="module")
def fitted(detection_pooling):
    model, x = detection_pooling
    keras.utils.set_random_seed(1)
    relevance_model = MinMax(model, "features", units=4)
    before = relevance_model.evaluate(x[:128], input_range=(0, 1))
    history = relevance_model.fit(x, epochs=100, batch_size=32, verbose=0)
    return relevance_model, before, history


def test_min_max_forward_matches_numpy_and_its_bias_is_never_positive():
    layer = MinMaxLayer(5)
    x = np.random.default_rng(0).uniform(0, 1, (7, 4)).astype("float32")
    context = np.random.default_rng(1).normal(size=(7, 3)).astype("float32")
    layer([x, context])
    v, v_context, d = (
        np.random.default_rng(k).normal(size=w.shape).astype("float32") for k, w in enumerate(layer.weights)
    )
    layer.set_weights([v, v_context, d])
    a = np.minimum(context @ v_context + d, 0)
    np.testing.assert_allclose(layer([x, context]), np.maximum(x @ v + a, 0), rtol=1e-5, atol=1e-6)
    assert (np.asarray(layer.bias(context)) <= 0).all() and (a < 0).any()


def test_fitting_lowers_the_error_and_fits_the_detection_pooling_network(detection_pooling, fitted):
    model, x = detection_pooling
    relevance_model, before, history = fitted
    after = relevance_model.evaluate(x[:128], input_range=(0, 1))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert after["mse"] < 0.01 * before["mse"] and after["r2"] > 0.999  # measured: r2 ≈ 0.9999
    assert after["negative_share"] == 0


def test_min_max_heatmaps_match_the_explicit_dtd_heatmaps(detection_pooling, fitted):
    model, x = detection_pooling
    relevance_model, _, _ = fitted
    modelled = relevance_model.analyzer(input_range=(0, 1)).analyze(x[:64])
    explicit = DTD(model, input_range=(0, 1)).analyze(x[:64])
    assert np.abs(modelled - explicit).max() < 0.03 * np.abs(explicit).max()  # measured: ≈ 1.4 %


def test_saved_model_gives_the_same_maps(detection_pooling, fitted, tmp_path):
    model, x = detection_pooling
    relevance_model, _, _ = fitted
    relevance_model.save(tmp_path / "minmax.npz")
    loaded = MinMax.load(tmp_path / "minmax.npz", model)
    assert (loaded.layer, loaded.units, loaded.rule) == ("features", 4, "zplus")
    np.testing.assert_allclose(
        loaded.analyzer((0, 1)).analyze(x[:8]), relevance_model.analyzer((0, 1)).analyze(x[:8])
    )


def test_w2_rule_redistributes_by_squared_weights(detection_pooling, fitted):
    model, x = detection_pooling
    relevance_model, _, _ = fitted
    w2 = MinMax(model, "features", units=4, rule="w2")
    w2.min_max.set_weights(relevance_model.min_max.get_weights())
    activations, context, _ = w2.features(x[:5])
    v = w2.min_max.get_weights()[0]
    y = np.maximum(
        activations @ v + np.minimum(context @ w2.min_max.get_weights()[1] + w2.min_max.get_weights()[2], 0),
        0,
    )
    expected = y @ (v**2 / (v**2).sum(axis=0)).T
    np.testing.assert_allclose(w2._redistribute(activations, context), expected, rtol=1e-4, atol=1e-6)


def test_training_free_model_gives_dtds_maps():
    """Relevance proportional to activation above 'pooled' is z⁺ through the upper layers' own weights
    (checked against a float64 replica) and DTD's maps below it."""
    keras.utils.set_random_seed(2)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    h = keras.layers.MaxPooling2D(2, name="pooled")(h)
    conv = keras.layers.Conv2D(6, 2, activation="relu")
    dense = keras.layers.Dense(3)
    model = keras.Model(inp, dense(keras.layers.Flatten()(conv(h))))
    for layer in (conv, dense):  # biases < 0: the rectifiers are not all on, and DTD stays conservative
        layer.set_weights([layer.get_weights()[0], np.full(layer.get_weights()[1].shape, -0.05, "float32")])
    x = np.random.default_rng(0).uniform(0, 1, (6, 8, 8, 1)).astype("float32")
    free = TrainingFree(model, "pooled")
    assert free.fit(x) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explanation = free.analyzer((0, 1)).explain(x, return_layers=True)
        dtd = DTD(model, input_range=(0, 1)).analyze(x)
        report = free.evaluate(x, (0, 1))
    # float64 replica: f → z⁺ through the Dense → z⁺ through the convolution, from the pooled activations
    pooled = np.asarray(keras.Model(inp, h)(x), np.float64).reshape(len(x), -1)
    linear = keras.layers.Conv2D(6, 2)  # the convolution without its ReLU, as an affine map
    linear.build((None, 3, 3, 4))
    linear.set_weights(conv.get_weights())
    m_conv, b_conv = replica.layer_matrix(lambda b: linear(b.astype("float32")).numpy(), (3, 3, 4))
    m_dense = dense.get_weights()[0].astype(np.float64)
    for k, hk in enumerate(pooled):
        a = np.maximum(hk @ m_conv + b_conv, 0)
        f = a @ m_dense + dense.get_weights()[1]
        r_top = np.where(np.arange(3) == f.argmax(), max(f.max(), 0), 0)
        r_a = replica.proportional(replica.pos(a[:, None] * m_dense), r_top)
        r_pooled = replica.proportional(replica.pos(hk[:, None] * m_conv), r_a)
        # float32 sums of nonnegative terms (≤ 36 per denominator, two layers): relative error ≤ ~1e-5
        np.testing.assert_allclose(
            explanation.layers["pooled"][k].reshape(-1), r_pooled, rtol=1e-5, atol=1e-6 * f.max()
        )
    np.testing.assert_allclose(explanation.relevance, dtd, rtol=1e-5, atol=1e-7)
    sums, f = dtd.reshape(len(x), -1).sum(axis=1), model.predict_on_batch(x).max(axis=1)
    assert report["negative_share"] == 0 and report["conservation_error"] == pytest.approx(
        np.max(np.abs(sums - f)[f > 0] / f[f > 0]), abs=1e-6
    )


def test_relevance_model_errors(detection_pooling):
    model, x = detection_pooling
    with pytest.raises(ValueError, match="no layer 'nope'"):
        MinMax(model, "nope")
    with pytest.raises(ValueError, match="no ReLU-like activations"):
        MinMax(model, "pool")
    with pytest.raises(ValueError, match="rule must be"):
        MinMax(model, "features", rule="z")
    relevance_model = MinMax(model, "features", units=2)
    with pytest.raises(ValueError, match="empty"):
        relevance_model.fit(x[:0])
    with pytest.raises(ValueError, match="shape"):
        relevance_model.fit(x[:, :5])


# ----------------------------------------------------------------------------- Taylor
def test_taylor_on_a_linear_model_finds_the_analytic_root():
    inp = keras.Input((5,))
    dense = keras.layers.Dense(1)
    model = keras.Model(inp, dense(inp))
    w, b = np.array([[1.0], [-2.0], [0.5], [0.0], [3.0]], "float32"), np.array([0.7], "float32")
    dense.set_weights([w, b])
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    e = Taylor(model).explain(x)
    f = x @ w[:, 0] + b
    root = x - np.outer(f / (w[:, 0] @ w[:, 0]), w[:, 0])  # orthogonal projection onto w·ξ + b = 0
    np.testing.assert_allclose(e.root, root, atol=1e-5)
    np.testing.assert_allclose(e.relevance, w[:, 0] * (x - root), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(e.relevance.sum(axis=1), f, rtol=1e-5, atol=1e-6)
    assert e.converged.all() and np.abs(e.remainder).max() < 1e-5
    np.testing.assert_allclose(e.distance, np.abs(f) / np.linalg.norm(w), rtol=1e-5)


def test_taylor_on_detection_pooling_sums_to_f_within_the_remainder(detection_pooling):
    model, x = detection_pooling
    e = Taylor(model, input_range=(0, 1)).explain(x[:16])
    f = model.predict(x[:16], verbose=0)[:, 0]
    assert e.converged.all() and (np.abs(e.root_value) <= 1e-4 * np.abs(f)).all()
    np.testing.assert_allclose(e.score, f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(e.relevance.sum(axis=1) + e.remainder, f, rtol=1e-5, atol=1e-6)
    assert ((e.root >= 0) & (e.root <= 1)).all()
    # the map is ∇f(x̃) ⊙ (x − x̃) with ∇f from Keras at the root found, and f(x̃) is Keras' output there
    root = tf.constant(e.root)
    with tf.GradientTape() as tape:
        tape.watch(root)
        at_root = model(root)[:, 0]
    gradient = tape.gradient(at_root, root).numpy()
    np.testing.assert_allclose(e.root_value, at_root.numpy(), rtol=1e-5, atol=1e-6 * np.abs(f).max())
    scale = np.abs(gradient * (x[:16] - e.root)).max()
    np.testing.assert_allclose(e.relevance, gradient * (x[:16] - e.root), rtol=1e-5, atol=1e-6 * scale)


def test_taylor_with_a_given_root_and_no_root_in_the_domain():
    inp = keras.Input((3,))
    dense = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inp, dense(inp))
    dense.set_weights([np.ones((3, 2), "float32"), np.array([5.0, 0.0], "float32")])
    x = np.full((2, 3), 0.5, "float32")
    given = Taylor(model, root=np.zeros(3)).explain(x, neuron_selection=0)  # f = Σx + 5, before the softmax
    np.testing.assert_allclose(given.relevance, 0.5 * np.ones((2, 3)), rtol=1e-6)
    np.testing.assert_allclose(given.root_value, 5.0, rtol=1e-6)
    np.testing.assert_allclose(given.remainder, 5.0, rtol=1e-6)  # f(x) − ΣR = 6.5 − 1.5: the root's own value
    assert not given.converged.any()
    with pytest.warns(RootNotFoundWarning, match="2 of 2 samples"):
        searched = Taylor(model, input_range=(0, 1)).explain(x, neuron_selection=0)  # f ≥ 5 on the box
    assert not searched.converged.any()
    # the closest point found is the box's corner 0, where f = 5 is smallest: the same map as the given root
    np.testing.assert_allclose(searched.root, 0, atol=1e-6)
    np.testing.assert_allclose(searched.root_value, 5.0, rtol=1e-6)
    np.testing.assert_allclose(searched.relevance, 0.5, rtol=1e-5)
