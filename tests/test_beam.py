"""The Apache Beam pipeline (``keras-dtd explain-dataset``, ``keras_dtd.beam``) run for real on the
DirectRunner, against ``analyzer.explain`` on the same inputs.

Two runs: every sample's top class with two subprocess workers (``multi_processing``) that cannot import
keras_dtd (a package of that name that raises stands first on their path, so they run only what the pipeline
ships: ``keras_dtd.beam`` pickled by value), and class 2 in process (``in_memory``). Then the errors a user
meets, each named with its fix.
"""

import contextlib
import io
import re
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_dtd
from keras_dtd import beam as kbeam  # make test installs the [beam] extra
from keras_dtd.cli import main

SHAPE = (8, 8, 1)
FILES = {"a": 5, "b": 3, "c": 1, "d": 4}  # c.npy: one sample without a batch axis; d: TFRecord Examples
COLUMNS = "file,index,class_index,score,target,relevance_sum,negative_share"


def _model():
    keras.utils.set_random_seed(7)
    inp = keras.Input(SHAPE, name="pixels")
    h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    h = keras.layers.BatchNormalization()(keras.layers.Conv2D(6, 3)(h))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h))
    bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    bn.set_weights(
        [
            np.linspace(0.5, 1.5, 6),
            np.linspace(-0.2, 0.2, 6),
            np.linspace(-0.1, 0.1, 6),
            np.linspace(0.5, 2, 6),
        ]
    )
    dense = model.layers[-1]  # class 2's logit near 0, so that class 2 meets both signs
    dense.set_weights([dense.get_weights()[0], np.array([0.0, 0.0, -0.018], "float32")])
    return model


def _write_tfrecord(path, samples, feature="x"):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for sample in samples:
            values = tf.train.Feature(float_list=tf.train.FloatList(value=sample.reshape(-1)))
            example = tf.train.Example(features=tf.train.Features(feature={feature: values}))
            writer.write(example.SerializeToString())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(analyzer, export directory, input folder, {name: inputs})."""
    root = tmp_path_factory.mktemp("beam")
    analyzer = keras_dtd.DTD(_model(), input_range=(0, 1))
    keras_dtd.export(analyzer, root / "export")
    rng = np.random.default_rng(3)
    (root / "in").mkdir()
    inputs = {}
    for name, n in FILES.items():
        inputs[name] = x = rng.uniform(0, 1, (n,) + SHAPE).astype("float32")
        if name == "c":
            np.save(root / "in" / "c.npy", x[0])
        elif name == "d":
            _write_tfrecord(root / "in" / "d.tfrecord", x)
        else:
            np.save(root / "in" / f"{name}.npy", x)
    return analyzer, root / "export", root / "in", inputs


def _run(*argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["explain-dataset", *map(str, argv)])
    return code, err.getvalue()


def _rows(path):
    lines = path.read_text().splitlines()
    assert lines[0] == COLUMNS
    rows = {}
    for line in lines[1:]:
        file, index, class_index, *numbers = line.split(",")
        assert (file, int(index)) not in rows
        rows[file, int(index)] = (int(class_index), *map(float, numbers))
    return rows


def _check_run(analyzer, out, inputs, files, selection):
    """Every map equals analyze's, and every summary row says what the map and the model say."""
    rows = _rows(out / "summary.csv")
    assert len(rows) == sum(len(inputs[f]) for f in files)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{f}.npy" for f in files] + ["summary.csv"])
    for f in files:
        x = inputs[f]
        expected = analyzer.explain(x, neuron_selection=selection)
        got = np.load(out / f"{f}.npy")
        assert got.shape == x.shape  # c.npy held one sample without a batch axis: its map has one
        np.testing.assert_allclose(
            got, expected.relevance, rtol=1e-5, atol=1e-5 * np.abs(expected.relevance).max()
        )
        table = np.array([rows[f, k] for k in range(len(x))])
        logits = analyzer.model.predict_on_batch(x)
        classes = logits.argmax(axis=1) if selection == "max_activation" else np.full(len(x), selection)
        np.testing.assert_array_equal(table[:, 0], classes)
        np.testing.assert_allclose(table[:, 1], expected.score, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(table[:, 2], expected.target, rtol=1e-5, atol=1e-7)
        sums = got.reshape(len(x), -1).astype(np.float64).sum(axis=1)
        np.testing.assert_allclose(table[:, 3], sums, rtol=1e-6, atol=1e-9)  # written with 9 digits
        np.testing.assert_allclose(table[:, 3], table[:, 2], rtol=1e-4, atol=1e-7)  # conservative
        assert np.all(table[:, 4] == 0) and got.min() >= 0  # positive
    return rows


def test_two_workers_without_keras_dtd_explain_every_top_class(setup, tmp_path, monkeypatch):
    analyzer, export, folder, inputs = setup
    poison = tmp_path / "poison" / "keras_dtd"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise ImportError('a Beam worker imported keras_dtd')\n")
    monkeypatch.setenv("PYTHONPATH", str(poison.parent))  # the workers' path; this process has its keras_dtd
    monkeypatch.chdir(tmp_path)  # and not the repository as their working directory
    code, message = _run(
        export, folder / "*", tmp_path / "top", "--runner", "DirectRunner",
        "--direct_running_mode=multi_processing", "--direct_num_workers=2", "--batch-size", "4",
    )  # fmt: skip
    assert code == 0, message[-3000:]
    _check_run(analyzer, tmp_path / "top", inputs, "abcd", "max_activation")


def test_class_index_in_process_explains_negative_logits_as_zero_maps(setup, tmp_path):
    analyzer, export, folder, inputs = setup
    code, message = _run(
        export, folder / "*.npy", tmp_path / "class2", "--runner", "DirectRunner",
        "--direct_running_mode=in_memory", "--class-index", "2", "--batch-size", "3",
    )  # fmt: skip
    assert code == 0, message[-3000:]
    rows = _check_run(analyzer, tmp_path / "class2", inputs, "abc", 2)
    table = np.array(list(rows.values()))
    assert np.any(table[:, 1] < 0) and np.any(table[:, 1] > 0), "class 2's logit should have both signs here"
    assert np.all(table[table[:, 1] < 0, 2] == 0)  # DTD explains max(f, 0)


def _bad(tmp_path, name, write):
    folder = tmp_path / name
    folder.mkdir()
    write(folder)
    return folder


BAD_INPUTS = [  # (name, what the folder holds, pattern, what the message says)
    ("shape", lambda d: np.save(d / "wrong.npy", np.zeros((2, 7, 7, 1), "float32")), "*",
     [r"wrong\.npy", r"\(2, 7, 7, 1\)", r"\(8, 8, 1\)"]),
    ("nan", lambda d: np.save(d / "nan.npy", np.full((2,) + SHAPE, np.nan, "float32")), "*",
     [r"nan\.npy: sample 0 has NaN"]),
    ("feature", lambda d: _write_tfrecord(d / "other.tfrecord", np.zeros((1,) + SHAPE), "pixels"), "*",
     [r"no feature 'x' \(it has \['pixels'\]\)", "--feature"]),
    ("suffix", lambda d: (d / "notes.txt").write_text("1 2 3"), "*", [r"unknown input type '\.txt'"]),
    ("empty", lambda d: np.save(d / "none.npy", np.zeros((0,) + SHAPE, "float32")), "*",
     [r"none\.npy holds no samples"]),
    ("clash", lambda d: (np.save(d / "a.npy", np.zeros(SHAPE, "float32")),
                         _write_tfrecord(d / "a.tfrecord", np.zeros((1,) + SHAPE))), "*",
     ["share the base name 'a'"]),
    ("nothing", lambda d: None, "*.npy", ["No input file matches"]),
]  # fmt: skip


@pytest.mark.parametrize("name, write, pattern, expected", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_named_with_its_fix(setup, tmp_path, name, write, pattern, expected):
    _, export, _, _ = setup
    folder = _bad(tmp_path, name, write)
    code, message = _run(export, folder / pattern, tmp_path / "out", "--direct_running_mode=in_memory")
    assert code == 1, message[-3000:]
    assert message.startswith("keras-dtd explain-dataset: error:"), message[-3000:]
    for part in expected:
        assert re.search(part, message), (part, message[-3000:])


def test_an_export_that_is_not_keras_dtds_is_refused(tmp_path):
    plain = tf.Module()
    plain.f = tf.function(lambda x: x, input_signature=[tf.TensorSpec((None, 2))])
    tf.saved_model.save(plain, str(tmp_path / "plain"))
    with pytest.raises(ValueError, match="no 'explain' and 'serving_default' signatures"):
        kbeam.ExplanationModelHandler(str(tmp_path / "plain")).load_model()
    with pytest.raises(FileNotFoundError, match="holds no SavedModel"):
        kbeam.saved_model_dir(str(tmp_path))
    with pytest.raises(ValueError, match="class_index must be None or a non-negative int"):
        kbeam.ExplanationModelHandler(str(tmp_path / "plain"), class_index=-1)


def test_without_beam_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "apache_beam", None)
    for name in ("keras_dtd.beam", "keras_dtd.integrations.beam"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ImportError, match=r'pip install "keras_dtd\[beam\]"'):
        import keras_dtd.beam  # noqa: F401
    code, message = _run(tmp_path, tmp_path / "*.npy", tmp_path / "out", "--runner", "DirectRunner")
    assert code == 1 and "keras-dtd explain-dataset: error: keras_dtd.beam needs Apache Beam" in message


def test_other_commands_refuse_unknown_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["export", "model.keras", "out", "--runner", "DirectRunner"])
    assert (
        exit_.value.code == 2 and "unrecognized arguments: --runner DirectRunner" in capsys.readouterr().err
    )


def test_a_recurrent_text_model_runs_in_the_pipeline(tmp_path):
    keras.utils.set_random_seed(8)
    inp = keras.Input((6,), dtype="int32")
    h = keras.layers.Bidirectional(keras.layers.LSTM(4))(keras.layers.Embedding(20, 3, mask_zero=True)(inp))
    analyzer = keras_dtd.LRP(keras.Model(inp, keras.layers.Dense(2)(h)), keras_dtd.rules.Epsilon(0.001))
    keras_dtd.export(analyzer, tmp_path / "export")
    tokens = np.random.default_rng(4).integers(0, 20, (5, 6)).astype("int32")
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "t.npy", tokens)
    code, message = _run(
        tmp_path / "export", tmp_path / "in" / "*.npy", tmp_path / "out", "--runner", "DirectRunner",
        "--direct_running_mode=in_memory", "--batch-size", "2",
    )  # fmt: skip
    assert code == 0, message[-3000:]
    expected = analyzer.analyze(tokens)
    got = np.load(tmp_path / "out" / "t.npy")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert got.shape == tokens.shape and np.all(got[tokens == 0] == 0)
