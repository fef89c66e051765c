"""The Apache Beam pipeline (``keras-dtd explain-dataset``) against ``analyzer.analyze``.

The pipeline's outputs come from ``tests/fixtures/make_beam.py``, run with the DirectRunner (two subprocess
workers without keras_dtd) in its own environment; this suite never imports Apache Beam.
"""

import io
import pathlib
import sys

import keras
import numpy as np
import pytest

from keras_dtd import DTD
from keras_dtd.cli import main

FIXTURE = np.load(pathlib.Path(__file__).parent / "fixtures" / "beam.npz")
COLUMNS = "file,index,class_index,score,target,relevance_sum,negative_share"


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory):
    path = tmp_path_factory.mktemp("beam") / "model.keras"
    path.write_bytes(FIXTURE["model_keras"].tobytes())
    return DTD(keras.saving.load_model(path, compile=False), input_range=(0, 1))


def _rows(lines):
    assert lines[0] == COLUMNS
    rows = {}
    for line in lines[1:]:
        file, index, class_index, *numbers = line.split(",")
        rows[file, int(index)] = (int(class_index), *map(float, numbers))
    return rows


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("run, files, selection", [("top", "abcd", "max_activation"), ("class2", "abc", 2)])
def test_maps_and_summary_equal_analyze(analyzer, run, files, selection):
    rows = _rows(FIXTURE[f"{run}_summary"])
    assert len(rows) == sum(len(FIXTURE[f"input_{f}"]) for f in files)
    for f in files:
        x = FIXTURE[f"input_{f}"]
        expected = analyzer.explain(x, neuron_selection=selection)
        got = FIXTURE[f"{run}_{f}"]
        assert got.shape == x.shape  # c.npy held one sample without a batch axis: its map has one
        _close(got, expected.relevance)
        table = np.array([rows[f, k] for k in range(len(x))])
        classes = (
            analyzer.model.predict_on_batch(x).argmax(axis=1)
            if selection == "max_activation"
            else [2] * len(x)
        )
        np.testing.assert_array_equal(table[:, 0], classes)
        np.testing.assert_allclose(table[:, 1], expected.score, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(table[:, 2], expected.target, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(table[:, 3], got.reshape(len(x), -1).sum(axis=1), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(table[:, 3], table[:, 2], rtol=1e-4, atol=1e-7)  # conservative
        assert np.all(table[:, 4] == 0) and got.min() >= 0  # positive


def test_class_index_explains_negative_logits_as_zero_maps(analyzer):
    table = np.array(list(_rows(FIXTURE["class2_summary"]).values()))
    assert np.any(table[:, 1] < 0) and np.any(table[:, 1] > 0), (
        "the fixture should meet both signs of the class-2 logit"
    )
    assert np.all(table[table[:, 1] < 0, 2] == 0)  # DTD explains max(f, 0)
    assert list(FIXTURE["class2_outputs"]) == ["a.npy", "b.npy", "c.npy", "summary.csv"]


def test_bad_file_is_named_with_its_shape():
    assert int(FIXTURE["bad_code"]) == 1
    message = str(FIXTURE["bad_message"])
    assert "wrong.npy" in message and "(2, 7, 7, 1)" in message and "(8, 8, 1)" in message


def test_without_beam_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "apache_beam", None)
    monkeypatch.delitem(sys.modules, "keras_dtd.beam", raising=False)
    with pytest.raises(ImportError, match=r'pip install "keras_dtd\[beam\]"'):
        import keras_dtd.beam  # noqa: F401
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert (
        main(
            [
                "explain-dataset",
                str(tmp_path),
                str(tmp_path / "*.npy"),
                str(tmp_path / "out"),
                "--runner",
                "DirectRunner",
            ]
        )
        == 1
    )
    assert "keras-dtd explain-dataset: error: keras_dtd.beam needs Apache Beam" in err.getvalue()


def test_other_commands_refuse_unknown_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["export", "model.keras", "out", "--runner", "DirectRunner"])
    assert (
        exit_.value.code == 2 and "unrecognized arguments: --runner DirectRunner" in capsys.readouterr().err
    )
