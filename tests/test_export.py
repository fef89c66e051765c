"""The exported SavedModel serves predictions and relevance without keras_dtd or Keras."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_dtd
from keras_dtd import DTD

BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(5)
    inp = keras.Input((6, 6, 1), name="pixels")
    h = keras.layers.Conv2D(3, 3, activation="relu")(inp)
    h = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(h))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h))
    analyzer = DTD(model, input_range=(0, 1))
    root = tmp_path_factory.mktemp("serving")
    path = keras_dtd.export(analyzer, root, version=2)
    x = np.random.default_rng(0).uniform(0, 1, (4, 6, 6, 1)).astype("float32")
    return analyzer, root, path, x


def _run_tensorflow_only(code, tmp_path):
    """Run ``code`` in a fresh interpreter that imports TensorFlow but not Keras or keras_dtd."""
    script = tmp_path / "load.py"
    script.write_text(
        "import sys, json, numpy as np, tensorflow as tf\n"
        + code
        + "\nassert not any(m == 'keras_dtd' or m.startswith('keras_dtd.') for m in sys.modules)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_layout_and_signatures_in_a_tensorflow_only_process(exported, tmp_path):
    analyzer, root, path, x = exported
    assert path == os.path.join(str(root), "2") and os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert os.path.isdir(os.path.join(path, "variables"))
    np.save(tmp_path / "x.npy", x)
    out = _run_tensorflow_only(
        f"""
loaded = tf.saved_model.load({path!r})
x = tf.constant(np.load({str(tmp_path / "x.npy")!r}))
serve = loaded.signatures["serving_default"](pixels=x)
explain = loaded.signatures["explain"](pixels=x, class_index=tf.constant([2, 1, 0, 2], tf.int32))
np.savez({str(tmp_path / "out.npz")!r}, **{{k: v.numpy() for k, v in serve.items()}},
         **{{"explain_" + k: v.numpy() for k, v in explain.items()}})
""",
        tmp_path,
    )
    assert out == ""
    got = np.load(tmp_path / "out.npz")
    model = analyzer.model
    np.testing.assert_allclose(got["predictions"], model.predict_on_batch(x), rtol=1e-5)
    np.testing.assert_array_equal(got["class_index"], model.predict_on_batch(x).argmax(axis=1))
    np.testing.assert_allclose(got["relevance"], analyzer.analyze(x), rtol=1e-5, atol=1e-7)
    top = analyzer.explain(x)
    np.testing.assert_allclose(got["score"], top.score, rtol=1e-5)
    np.testing.assert_allclose(got["target"], top.target, rtol=1e-5)
    chosen = analyzer.explain(x, neuron_selection=[2, 1, 0, 2])
    np.testing.assert_allclose(got["explain_relevance"], chosen.relevance, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["explain_score"], chosen.score, rtol=1e-5)
    np.testing.assert_allclose(got["explain_target"], chosen.target, rtol=1e-5)
    # score is the logit before the softmax: Keras' own outputs of a twin with a linear last layer
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    twin.layers[-1].activation = keras.activations.linear
    logits = np.asarray(twin.predict_on_batch(x), np.float64)
    np.testing.assert_allclose(
        np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), got["predictions"], rtol=1e-5
    )
    scale = np.abs(logits).max()  # float32 logits: atol 1e-6 of their size
    for prefix, chosen_class in (("", logits.argmax(axis=1)), ("explain_", [2, 1, 0, 2])):
        logit = logits[np.arange(4), chosen_class]
        np.testing.assert_allclose(got[prefix + "score"], logit, rtol=1e-5, atol=1e-6 * scale)
        np.testing.assert_allclose(got[prefix + "target"], np.maximum(logit, 0), rtol=1e-5, atol=1e-6 * scale)
        sums = got[prefix + "relevance"].reshape(4, -1).astype(np.float64).sum(axis=1)
        # DTD is conservative here (the biases and BN shifts are 0): Σ R = max(f, 0)
        np.testing.assert_allclose(sums, np.maximum(logit, 0), rtol=1e-5, atol=1e-6 * scale)
    assert (logits[np.arange(4), [2, 1, 0, 2]] > 0).sum() >= 2  # some explained maps are not zero


def test_saved_model_cli_reads_and_runs_it(exported, tmp_path):
    analyzer, root, path, x = exported
    cli = os.path.join(BIN, "saved_model_cli")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    shown = subprocess.run(
        [cli, "show", "--all", "--dir", path], capture_output=True, text=True, env=env, timeout=300
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    for words in (
        "signature_def['serving_default']",
        "signature_def['explain']",
        "inputs['pixels']",
        "inputs['class_index']",
        "outputs['relevance']",
        "outputs['predictions']",
        "outputs['score']",
        "outputs['target']",
        "shape: (-1, 6, 6, 1)",
    ):
        assert words in shown.stdout
    np.save(tmp_path / "x.npy", x)
    ran = subprocess.run(
        [
            cli,
            "run",
            "--dir",
            path,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"pixels={tmp_path / 'x.npy'}",
            "--outdir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    np.testing.assert_allclose(
        np.load(tmp_path / "run" / "relevance.npy"), analyzer.analyze(x), rtol=1e-5, atol=1e-7
    )


def test_versions_are_protected(exported):
    analyzer, root, path, x = exported
    with pytest.raises(FileExistsError, match="overwrite=True"):
        keras_dtd.export(analyzer, root, version=2)
    keras_dtd.export(analyzer, root, version=3)
    keras_dtd.export(analyzer, root, version=2, overwrite=True)
    assert sorted(os.listdir(root)) == ["2", "3"]
    with pytest.raises(ValueError, match=re.escape("version must be a non-negative int") + ".*got 'latest'"):
        keras_dtd.export(analyzer, root, version="latest")
    assert sorted(os.listdir(root)) == ["2", "3"]  # the refused call wrote nothing


def test_a_recurrent_analyzer_exports_with_its_loop_inside(tmp_path):
    """A masked text model (Embedding → Bidirectional(LSTM) → Dense) served by TensorFlow alone."""
    keras.utils.set_random_seed(6)
    inp = keras.Input((7,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(30, 4, mask_zero=True)(inp)
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Bidirectional(keras.layers.LSTM(5))(h)))
    analyzer = keras_dtd.LRP(model, keras_dtd.rules.Epsilon(0.001))
    path = keras_dtd.export(analyzer, tmp_path / "serving")
    tokens = np.random.default_rng(1).integers(1, 30, (4, 7)).astype("int32")
    tokens[:, :2] = 0  # padding
    np.save(tmp_path / "tokens.npy", tokens)
    _run_tensorflow_only(
        f"""
loaded = tf.saved_model.load({path!r})
out = loaded.signatures["serving_default"](tokens=tf.constant(np.load({str(tmp_path / "tokens.npy")!r})))
np.save({str(tmp_path / "relevance.npy")!r}, out["relevance"].numpy())
""",
        tmp_path,
    )
    served = np.load(tmp_path / "relevance.npy")
    expected = analyzer.analyze(tokens)
    assert served.shape == tokens.shape and np.all(served[:, :2] == 0) and np.abs(served).max() > 0
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-7 * np.abs(expected).max())
