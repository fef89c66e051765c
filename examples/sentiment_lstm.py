"""A recurrent sentiment classifier explained word by word (Arras et al. 2017), offline.

The data is synthetic: sentences of 8 to 16 words drawn from a vocabulary of neutral words with
one to three planted sentiment words ("great", "awful", ...); the label is the sign of
(positive − negative) planted words (ties are left out), and sentences are padded with id 0
(``mask_zero=True``). An ``Embedding → Bidirectional(LSTM) → Dense`` model learns it; LRP-ε
(``LRP(model, rules.Epsilon(0.001))``, Arras et al.'s rule) explains the predicted class.

Printed and returned: test accuracy; the share of |relevance| on the planted words (for LRP,
gradient × input and DTD); token deletion, most relevant first (AOPC, higher is more faithful)
for LRP, gradient × input and a random order. Written: ``sentiment_lstm.png``, the words of a
few test sentences coloured by their relevance (red for, blue against the predicted class).

    .venv/bin/python examples/sentiment_lstm.py --out out
"""

import argparse
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_dtd  # noqa: E402
from keras_dtd import LRP, InputTimesGradient, metrics, plot, rules  # noqa: E402

POSITIVE = ["great", "good", "excellent", "wonderful", "love", "enjoyable"]
NEGATIVE = ["awful", "bad", "terrible", "boring", "hate", "dull"]
NEUTRAL = (
    "the a movie film plot actor scene story it was is and of to in this that with for on as at by "
    "an director music ending characters script time year people one some very really quite"
).split()
VOCABULARY = ["<pad>"] + POSITIVE + NEGATIVE + NEUTRAL
PLANTED = set(range(1, 1 + len(POSITIVE) + len(NEGATIVE)))
LENGTH = 16


def sentences(n, seed):
    """(token ids (n, LENGTH), labels (n,)): 1 for positive."""
    rng = np.random.default_rng(seed)
    tokens, labels = [], []
    while len(tokens) < n:
        length = rng.integers(8, LENGTH + 1)
        words = list(rng.integers(1 + len(PLANTED), len(VOCABULARY), length))
        planted = rng.integers(1, 1 + len(PLANTED), rng.integers(1, 4))
        score = sum(1 if p <= len(POSITIVE) else -1 for p in planted)
        if score == 0:
            continue
        for p, position in zip(planted, rng.choice(length, len(planted), replace=False)):
            words[position] = p
        tokens.append(words + [0] * (LENGTH - length))
        labels.append(int(score > 0))
    return np.array(tokens, np.int32), np.array(labels, np.int32)


def model_for(seed):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((LENGTH,), dtype="int32")
    h = keras.layers.Embedding(len(VOCABULARY), 16, mask_zero=True)(inp)
    h = keras.layers.Bidirectional(keras.layers.LSTM(16))(h)
    model = keras.Model(inp, keras.layers.Dense(2)(h))
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def planted_share(tokens, relevance):
    magnitude = np.abs(relevance)
    return float((magnitude * np.isin(tokens, list(PLANTED))).sum() / magnitude.sum())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--explain", type=int, default=200)
    parser.add_argument("--out", default="out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    x, y = sentences(args.train, args.seed)
    x_test, y_test = sentences(args.explain, args.seed + 1)
    model = model_for(args.seed)
    model.fit(x, y, epochs=args.epochs, batch_size=64, verbose=0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    predicted = np.asarray(model.predict(x_test, verbose=0)).argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.NonReLUWarning)
        maps = {
            "LRP-ε (Arras et al.)": LRP(model, rules.Epsilon(0.001)).analyze(
                x_test, neuron_selection=predicted
            ),
            "gradient × input": InputTimesGradient(model).analyze(x_test, neuron_selection=predicted),
            "DTD": keras_dtd.DTD(model).analyze(x_test, neuron_selection=predicted),
        }
    shares = {name: planted_share(x_test, r) for name, r in maps.items()}
    rng = np.random.default_rng(args.seed)
    orders = {
        "LRP-ε (Arras et al.)": maps["LRP-ε (Arras et al.)"],
        "gradient × input": maps["gradient × input"],
        "random": rng.normal(size=x_test.shape),
    }
    aopc = {
        name: float(
            metrics.token_deletion(model, x_test, r, steps=4, neuron_selection=predicted).score.mean()
        )
        for name, r in orders.items()
    }
    print(f"test accuracy {accuracy:.3f}")
    for name, share in shares.items():
        print(f"share of |relevance| on planted words, {name}: {share:.2f}")
    for name, value in aopc.items():
        print(f"token deletion AOPC (4 steps, most relevant first), {name}: {value:.3f}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "sentiment_lstm.png")
    keep = [ids != 0 for ids in x_test[:6]]  # the words, without the padding
    plot.text_rows(
        [[VOCABULARY[i] for i in ids[k]] for ids, k in zip(x_test, keep)],
        [r[k] for r, k in zip(maps["LRP-ε (Arras et al.)"], keep)],
        [f"predicted {'positive' if label else 'negative'}" for label in predicted[:6]],
        save=path,
    )
    print(f"wrote {path}")
    return {"accuracy": accuracy, "planted_share": shares, "aopc": aopc, "figure": path}


if __name__ == "__main__":
    main()
