"""Why did a language model predict this next token? A tiny KerasHub Gemma, offline.

The task's answer is known: each sequence is 6 random tokens, a separator and a "copy" marker;
the next token is the first one (position 0). A ``GemmaCausalLM`` (2 layers, hidden size 32,
RoPE, RMSNorm, GeGLU; random initial weights, no download) is trained on the prediction at the
last position. ``LRP(model, composites.AttnLRP())`` explains its top next token by default
(``neuron_selection`` can name any ``(position, token)``); its LM head is the token embedding
called with ``reverse=True``, explained as a linear map.

Printed and returned: accuracy of the copied token; the pointing game (the share of sequences
whose most relevant token is the one copied) for AttnLRP, CP-LRP and gradient × input.
Written: ``next_token.png``, a few sequences coloured by their AttnLRP relevance.

    .venv/bin/python examples/next_token.py --out out
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

from keras_dtd import LRP, InputTimesGradient, composites, plot  # noqa: E402

VOCABULARY, WORDS, LENGTH = 24, 6, 8
SEPARATOR, COPY = 1, 2  # ids 3.. are the tokens to copy


def sequences(n, seed):
    """({"token_ids", "padding_mask"}, the next token (n,))."""
    rng = np.random.default_rng(seed)
    tokens = np.zeros((n, LENGTH), np.int32)
    tokens[:, :WORDS] = rng.integers(COPY + 1, VOCABULARY, (n, WORDS))
    tokens[:, WORDS], tokens[:, WORDS + 1] = SEPARATOR, COPY
    return {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}, tokens[:, 0].copy()


def model_for(seed):
    """(the causal LM, a model of its last position's logits to train it)."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=2, num_key_value_heads=1, hidden_dim=32,
        intermediate_dim=64, head_dim=16,
    )  # fmt: skip
    lm = keras_hub.models.GemmaCausalLM(backbone, preprocessor=None)
    inputs = {
        name: keras.Input((LENGTH,), dtype="int32", name=name) for name in ("token_ids", "padding_mask")
    }
    last = keras.Model(inputs, lm(inputs)[:, -1, :])
    last.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return lm, last


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--explain", type=int, default=100)
    parser.add_argument("--out", default="out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    x, y = sequences(args.train, args.seed)
    x_test, y_test = sequences(args.explain, args.seed + 1)
    lm, last = model_for(args.seed)
    last.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0)
    accuracy = float(last.evaluate(x_test, y_test, verbose=0)[1])
    maps = {  # the top next token at the last position (the default selection)
        "AttnLRP": LRP(lm, composites.AttnLRP()).analyze(x_test)["token_ids"],
        "CP-LRP": LRP(lm, composites.CPLRP()).analyze(x_test)["token_ids"],
        "gradient × input": InputTimesGradient(lm).analyze(x_test)["token_ids"],
    }
    pointing = {name: float(np.mean(r.argmax(axis=1) == 0)) for name, r in maps.items()}
    print(f"accuracy of the copied token {accuracy:.3f}")
    for name, value in pointing.items():
        print(f"{name}: pointing game (the copied token most relevant) {value:.2f}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "next_token.png")
    tokens = x_test["token_ids"][:5]
    plot.text_rows(
        [[_word(i) for i in ids] for ids in tokens],
        maps["AttnLRP"][:5],
        [f"next token w{ids[0]}? (AttnLRP)" for ids in tokens],
        save=path,
    )
    print(f"wrote {path}")
    return {"accuracy": accuracy, "pointing_game": pointing, "figure": path}


def _word(i):
    return {SEPARATOR: "|", COPY: "copy:"}.get(int(i), f"w{int(i)}")


if __name__ == "__main__":
    main()
