"""Gradient baselines on token ids: taken at the embedding vectors, against the closed form."""

import keras
import numpy as np
import pytest

import keras_dtd


def test_gradient_baselines_on_token_ids_are_taken_at_the_embeddings():
    inp = keras.Input((3,), dtype="int32")
    embedding, dense = keras.layers.Embedding(5, 2), keras.layers.Dense(1, use_bias=False)
    model = keras.Model(inp, dense(keras.layers.Flatten()(embedding(inp))))
    rng = np.random.default_rng(0)
    table, w = rng.normal(size=(5, 2)).astype("float32"), rng.normal(size=(6, 1)).astype("float32")
    embedding.set_weights([table])
    dense.set_weights([w])
    tokens = np.array([[4, 0, 2], [1, 1, 3]])
    per_token = w.reshape(3, 2)  # ∂f/∂e_t: f = Σ_t e(id_t)·w_t
    np.testing.assert_allclose(
        keras_dtd.Gradient(model).analyze(tokens), np.tile(per_token.sum(1), (2, 1)), rtol=1e-6
    )
    expected = (table[tokens] * per_token[None]).sum(-1)
    np.testing.assert_allclose(
        keras_dtd.InputTimesGradient(model).analyze(tokens), expected, rtol=1e-6, atol=1e-7
    )
    with pytest.raises(ValueError, match="integer"):
        keras_dtd.IntegratedGradients(model)
