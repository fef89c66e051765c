"""AttnLRP and CP-LRP on a stack of hand-written encoder blocks against a plain gradient of the
same model, in one process (as benchmarks/bench_recurrent.py measures it: build against the
gradient's first call, per-call medians of interleaved pairs and the median ratio).

Model: Embedding(1000, 256) → 4 post-LN encoder blocks (MultiHeadAttention with 4 heads of 64,
residual sum, LayerNormalization, Dense(512, gelu), Dense(256), residual sum,
LayerNormalization) → GlobalAveragePooling1D → Dense(2); sequences of 128 tokens, batch 8;
the gradient is that of the top output at the embedding output.

    .venv/bin/python benchmarks/bench_attention.py
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_recurrent import against_gradient  # noqa: E402

import keras_dtd  # noqa: E402
from keras_dtd import composites  # noqa: E402

L = keras.layers


def encoder(blocks, width, length):
    keras.utils.set_random_seed(0)
    inp = keras.Input((length,), dtype="int32")
    h = L.Embedding(1000, width, name="embedding")(inp)
    for _ in range(blocks):
        h = L.LayerNormalization()(L.Add()([h, L.MultiHeadAttention(4, width // 4)(h, h)]))
        mlp = L.Dense(width)(L.Dense(2 * width, activation="gelu")(h))
        h = L.LayerNormalization()(L.Add()([h, mlp]))
    return keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling1D()(h)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, CPU x{os.cpu_count()}, "
        f"{args.blocks} blocks of width {args.width}, length {args.length}, batch {args.batch}, "
        f"repeats {args.repeats}\n"
    )
    columns = ["method", "build s", "first call s (gradient)", "build ratio", "ms/batch", "gradient ms/batch"]
    print("| " + " | ".join(columns + ["ratio"]) + " |")
    print("|---" * (len(columns) + 1) + "|")
    model = encoder(args.blocks, args.width, args.length)
    tokens = np.random.default_rng(0).integers(0, 1000, (args.batch, args.length)).astype("int32")
    for name, composite in (("AttnLRP", composites.AttnLRP), ("CP-LRP", composites.CPLRP)):
        build, first, ours, theirs, ratio = against_gradient(
            model, tokens, lambda c=composite: keras_dtd.LRP(model, c(), batch_size=args.batch), args.repeats
        )
        print(
            f"| {name} | {build:.2f} | {first:.2f} | {build / first:.1f}× | {ours:.0f} | {theirs:.0f} | "
            f"{ratio:.2f}× |",
            flush=True,
        )


if __name__ == "__main__":
    main()
