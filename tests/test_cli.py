"""The keras-dtd command line."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_dtd
from keras_dtd import DTD
from keras_dtd.cli import main


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    keras.utils.set_random_seed(11)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    root = tmp_path_factory.mktemp("cli")
    path = root / "model.keras"
    model.save(path)
    x = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 1)).astype("float32")
    np.save(root / "x.npy", x)
    return model, root, path, x


def test_explain_npy_batch(saved, tmp_path, capsys):
    model, root, path, x = saved
    code = main(
        [
            "explain",
            str(path),
            str(root / "x.npy"),
            "--method",
            "dtd",
            "--input-range",
            "0",
            "1",
            "--neuron",
            "2",
            "--out",
            str(tmp_path / "grid.png"),
            "--save-npy",
            str(tmp_path / "r.npy"),
        ]
    )
    assert code == 0
    np.testing.assert_allclose(
        np.load(tmp_path / "r.npy"),
        DTD(model, input_range=(0, 1)).analyze(x, neuron_selection=2),
        rtol=1e-5,
        atol=1e-7,
    )
    assert (tmp_path / "grid.png").stat().st_size > 1000
    assert "sample 2: explained output" in capsys.readouterr().out


def test_explain_image_file(saved, tmp_path):
    model, root, path, x = saved
    keras.utils.save_img(tmp_path / "digit.png", np.round(x[0] * 255).astype("uint8"), scale=False)
    assert (
        main(
            [
                "explain",
                str(path),
                str(tmp_path / "digit.png"),
                "--out",
                str(tmp_path / "h.png"),
                "--save-npy",
                str(tmp_path / "r.npy"),
            ]
        )
        == 0
    )
    pixels = np.round(x[:1] * 255) / 255
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), DTD(model).analyze(pixels), rtol=1e-4, atol=1e-6)


def test_export(saved, tmp_path, capsys):
    model, root, path, x = saved
    assert (
        main(["export", str(path), str(tmp_path / "serving"), "--input-range", "0", "1", "--version", "4"])
        == 0
    )
    assert (tmp_path / "serving" / "4" / "saved_model.pb").exists()
    serve = tf.saved_model.load(str(tmp_path / "serving" / "4")).signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    got = {k: v.numpy() for k, v in serve(**{name: tf.constant(x)}).items()}
    f = model.predict_on_batch(x)  # Keras' own forward pass; the model has no softmax
    np.testing.assert_allclose(got["predictions"], f, rtol=1e-5, atol=1e-6 * np.abs(f).max())
    np.testing.assert_array_equal(got["class_index"], f.argmax(axis=1))
    bounded = DTD(model, input_range=(0, 1)).analyze(x)
    # one float32 computation against another of the same rules: atol 1e-6 of max |R|
    np.testing.assert_allclose(got["relevance"], bounded, rtol=1e-5, atol=1e-6 * np.abs(bounded).max())
    np.testing.assert_allclose(got["target"], np.maximum(f.max(axis=1), 0), rtol=1e-5)
    unbounded = DTD(model).analyze(x)  # --input-range chose z^B over w² at the first layer
    assert np.abs(got["relevance"] - unbounded).max() > 1e-2 * np.abs(unbounded).max()
    capsys.readouterr()
    assert main(["export", str(path), str(tmp_path / "serving"), "--version", "4"]) == 1
    assert "pass overwrite=True to replace version 4" in capsys.readouterr().err  # refuses to overwrite


def test_clear_errors(saved, tmp_path, capsys):
    model, root, path, x = saved
    assert main(["explain", str(tmp_path / "missing.keras"), str(root / "x.npy")]) == 1
    assert "model file" in capsys.readouterr().err
    assert main(["explain", str(path), str(tmp_path / "missing.npy")]) == 1
    assert "input file" in capsys.readouterr().err
    assert (
        main(["explain", str(path), str(root / "x.npy"), "--method", "gradient", "--input-range", "0", "1"])
        == 1
    )
    assert "--input-range is used by --method dtd only" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((2, 5)))
    assert main(["explain", str(path), str(tmp_path / "bad.npy")]) == 1
    assert (
        "keras-dtd explain: error: x has shape (2, 5); the model expects (batch, ...) = (None, 8, 8, 1)."
        in capsys.readouterr().err
    )


def test_console_script_help():
    script = os.path.join(os.path.dirname(sys.executable), "keras-dtd")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "keras-dtd demo" in result.stdout and "explain" in result.stdout and "export" in result.stdout


def _command_line(code, env=None):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def test_help_does_not_import_tensorflow():
    for argv in (["--help"], ["explain", "--help"], ["explain-dataset", "--help"]):
        run = _command_line(
            f"from keras_dtd.cli import main; main({argv!r})", {"PYTHONPROFILEIMPORTTIME": "1"}
        )
        imported = [line.split("|")[-1].strip() for line in run.stderr.splitlines() if "import time:" in line]
        assert run.returncode == 0 and "usage: keras-dtd" in run.stdout, run.stderr[-2000:]
        assert "argparse" in imported  # the profile is there, and it has no TensorFlow or Keras
        assert not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras")], argv


def test_without_tensorflow_the_first_use_says_what_to_install(tmp_path):
    blocked = "import sys; sys.modules['tensorflow'] = None; "
    run = _command_line(blocked + "import keras_dtd; print(keras_dtd.__version__); keras_dtd.DTD")
    assert run.stdout.strip() == keras_dtd_version()  # importing the package itself works
    assert run.returncode == 1 and "keras_dtd needs TensorFlow" in run.stderr
    assert "pip install 'keras_dtd[cpu]'" in run.stderr
    run = _command_line(
        blocked + f"from keras_dtd.cli import main; sys.exit(main(['explain', 'm.keras', {str(tmp_path)!r}]))"
    )
    assert run.returncode == 1 and "keras-dtd explain: error: keras_dtd needs TensorFlow" in run.stderr


def keras_dtd_version():
    import keras_dtd

    return keras_dtd.__version__


def test_a_model_with_keras_dtds_constraint_loads_in_a_fresh_process(tmp_path):
    """NonPositive biases (keras_dtd.NonPositive) in a saved model: the CLI registers the constraint
    before loading, also in a process that imported nothing else of keras_dtd."""
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2, bias_constraint=keras_dtd.NonPositive())]
    )
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.ones((2, 4), "float32"))
    script = os.path.join(os.path.dirname(sys.executable), "keras-dtd")
    out = tmp_path / "r.npy"
    result = subprocess.run(
        [script, "explain", str(tmp_path / "m.keras"), str(tmp_path / "x.npy"), "--save-npy", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert np.load(out).shape == (2, 4)
