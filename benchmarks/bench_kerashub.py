"""AttnLRP and CP-LRP on KerasHub models against a plain gradient of the same model, in one
process: build (analyzer construction and first call) against the gradient's first call,
per-call medians of interleaved pairs and the median ratio (bench_recurrent.against_gradient).

Models (random weights, built offline): a ``BertTextClassifier`` with 4 layers, hidden size 256,
4 heads, intermediate size 1024, 128 tokens, batch 8 (the gradient: of the top logit at the
token embedding output); a ``ViTImageClassifier`` with 4 layers, hidden size 256, 4 heads,
64×64 images in 8×8 patches, batch 8 (the gradient: at the images). LXT's number for the same
BERT is benchmarks/lxt_bert.py's, run in its own environment.

    .venv/bin/python benchmarks/bench_kerashub.py
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_recurrent import against_gradient  # noqa: E402

import keras_dtd  # noqa: E402
from keras_dtd import composites  # noqa: E402


def bert(layers, width, length, batch):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30522, num_layers=layers, num_heads=4, hidden_dim=width, intermediate_dim=4 * width,
        max_sequence_length=length,
    )  # fmt: skip
    model = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(1, 30522, (batch, length)).astype("int32"),
        "padding_mask": np.ones((batch, length), "int32"),
        "segment_ids": np.zeros((batch, length), "int32"),
    }
    embedding = backbone.get_layer("token_embedding")
    inputs = backbone.input
    rest = keras.Model([embedding.output, inputs["padding_mask"], inputs["segment_ids"]], backbone.output)

    def make_gradient(model):
        @tf.function
        def gradient(x):
            e = embedding(x["token_ids"])
            with tf.GradientTape() as tape:
                tape.watch(e)
                pooled = rest([e, x["padding_mask"], x["segment_ids"]], training=False)["pooled_output"]
                top = tf.reduce_max(model.output_dense(pooled), axis=-1)
            return tape.gradient(top, e)

        return gradient

    return model, x, make_gradient


def vit(layers, width, size, batch):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(size, size, 3), patch_size=8, num_layers=layers, num_heads=4, hidden_dim=width,
        mlp_dim=4 * width,
    )  # fmt: skip
    model = keras_hub.models.ViTImageClassifier(backbone, num_classes=10, preprocessor=None)
    x = {"images": np.random.default_rng(0).random((batch, size, size, 3)).astype("float32")}

    def make_gradient(model):
        @tf.function
        def gradient(x):
            images = x["images"]
            with tf.GradientTape() as tape:
                tape.watch(images)
                top = tf.reduce_max(model(images, training=False), axis=-1)
            return tape.gradient(top, images)

        return gradient

    return model, x, make_gradient


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, KerasHub {keras_hub.__version__}, "
        f"CPU x{os.cpu_count()}, TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}, "
        f"{args.layers} layers of width {args.width}, batch {args.batch}, repeats {args.repeats}\n"
    )
    columns = ["model", "method", "build s", "first call s (gradient)", "build ratio", "ms/batch"]
    columns += ["gradient ms/batch", "ratio"]
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for name, (model, x, make_gradient) in (
        (f"BERT, {args.length} tokens", bert(args.layers, args.width, args.length, args.batch)),
        (f"ViT, {args.size}×{args.size}", vit(args.layers, args.width, args.size, args.batch)),
    ):
        for method, composite in (("AttnLRP", composites.AttnLRP), ("CP-LRP", composites.CPLRP)):
            build, first, ours, theirs, ratio = against_gradient(
                model,
                x,
                lambda c=composite: keras_dtd.LRP(model, c(), batch_size=args.batch),
                args.repeats,
                make_gradient,
            )
            print(
                f"| {name} | {method} | {build:.2f} | {first:.2f} | {build / first:.1f}× | {ours:.0f} | "
                f"{theirs:.0f} | {ratio:.2f}× |",
                flush=True,
            )


if __name__ == "__main__":
    main()
