"""A small KerasHub BERT explained token by token under AttnLRP and CP-LRP, offline.

The task's answer is known: sequences of 6 to 16 tokens start with a class token and are padded
with id 0; half contain the key token once, at a random position, and are labelled 1. A
KerasHub ``BertTextClassifier`` (2 layers, hidden size 32, random initial weights, no
download) learns it; a functional wrapper takes the token ids alone and makes the padding
mask and segment ids from them, so the token-deletion metric can delete tokens.

Printed and returned: test accuracy; the pointing game on the correctly classified positive
sequences (the share whose most relevant token is the key token) for AttnLRP, CP-LRP,
gradient × input and attention rollout (Abnar & Zuidema 2020: head-averaged attention plus the
identity, multiplied through the layers, read at the class token); token deletion, most
relevant first (AOPC over 4 steps, higher is more faithful). Written: ``transformer_text.png``,
a few sequences coloured by their AttnLRP relevance.

    .venv/bin/python examples/transformer_text.py --out out
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

from keras_dtd import LRP, InputTimesGradient, composites, metrics, plot  # noqa: E402

LENGTH = 16
VOCABULARY = 40
CLASS_TOKEN, KEY = 1, 2  # ids 3.. are neutral tokens


def sequences(n, seed):
    """(token ids (n, LENGTH), labels (n,), position of the key token or -1)."""
    rng = np.random.default_rng(seed)
    tokens = np.zeros((n, LENGTH), np.int32)
    labels = rng.integers(0, 2, n).astype(np.int32)
    where = np.full(n, -1)
    for k in range(n):
        length = rng.integers(6, LENGTH + 1)
        tokens[k, 0] = CLASS_TOKEN
        tokens[k, 1:length] = rng.integers(KEY + 1, VOCABULARY, length - 1)
        if labels[k]:
            where[k] = rng.integers(1, length)
            tokens[k, where[k]] = KEY
    return tokens, labels, where


def model_for(seed):
    """The KerasHub classifier behind a functional model of the token ids alone."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
        max_sequence_length=LENGTH, dropout=0.0,
    )  # fmt: skip
    classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None, dropout=0.0)
    tokens = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    mask = keras.ops.cast(keras.ops.not_equal(tokens, 0), "int32")
    logits = classifier(
        {"token_ids": tokens, "padding_mask": mask, "segment_ids": keras.ops.zeros_like(tokens)}
    )
    model = keras.Model(tokens, logits)
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def attention_rollout(analyzer, tokens):
    """Attention rollout read at the class token: Π_l (½ mean_heads(A_l) + ½ I), rows normalised."""
    graph = analyzer.graph
    producer = {out: node.path for node in graph.nodes for out in node.outputs}
    forward = analyzer.forward([keras.ops.convert_to_tensor(tokens)])
    mask = (tokens != 0)[:, None, :]
    rollout = np.eye(LENGTH)[None]
    for node in graph.nodes:
        if not isinstance(node.layer, keras.layers.MultiHeadAttention):
            continue
        x = forward.layers[producer[node.inputs[1]]]  # the query (= value) input
        _, weights = node.layer(x, x, attention_mask=mask, return_attention_scores=True)
        a = 0.5 * np.asarray(weights).mean(axis=1) + 0.5 * np.eye(LENGTH)
        rollout = (a / a.sum(-1, keepdims=True)) @ rollout
    return rollout[:, 0, :] * (tokens != 0)


def pointing_game(relevance, where):
    """The share of sequences whose most relevant token is the key token."""
    return float(np.mean(relevance.argmax(axis=1) == where))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--explain", type=int, default=200)
    parser.add_argument("--out", default="out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    x, y, _ = sequences(args.train, args.seed)
    x_test, y_test, where = sequences(args.explain, args.seed + 1)
    model = model_for(args.seed)
    model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    predicted = np.asarray(model.predict(x_test, verbose=0)).argmax(axis=1)
    attnlrp = LRP(model, composites.AttnLRP())
    maps = {
        "AttnLRP": attnlrp.analyze(x_test, neuron_selection=predicted),
        "CP-LRP": LRP(model, composites.CPLRP()).analyze(x_test, neuron_selection=predicted),
        "gradient × input": InputTimesGradient(model).analyze(x_test, neuron_selection=predicted),
        "attention rollout": attention_rollout(attnlrp, x_test),
    }
    hits = (y_test == 1) & (predicted == 1)
    pointing = {name: pointing_game(r[hits], where[hits]) for name, r in maps.items()}
    aopc = {
        name: float(
            metrics.token_deletion(model, x_test, r, steps=4, neuron_selection=predicted).score.mean()
        )
        for name, r in maps.items()
    }
    print(f"test accuracy {accuracy:.3f}")
    for name in maps:
        print(f"{name}: pointing game {pointing[name]:.2f}, token deletion AOPC (4 steps) {aopc[name]:.3f}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "transformer_text.png")
    keep = [ids != 0 for ids in x_test[:6]]  # the tokens, without the padding
    plot.text_rows(
        [[_word(i) for i in ids[k]] for ids, k in zip(x_test, keep)],
        [r[k] for r, k in zip(maps["AttnLRP"], keep)],
        [f"predicted {label} (AttnLRP)" for label in predicted[:6]],
        save=path,
    )
    print(f"wrote {path}")
    return {"accuracy": accuracy, "pointing_game": pointing, "aopc": aopc, "figure": path}


def _word(i):
    return {CLASS_TOKEN: "[CLS]", KEY: "KEY"}.get(int(i), f"w{int(i)}")


if __name__ == "__main__":
    main()
