"""Deep Taylor on a big ImageNet network from keras.applications (VGG16 or ResNet50).

Runs with random weights by default; uses the real ImageNet weights when they are
already in the Keras cache (~/.keras/models) — nothing is downloaded. Prints the time
per image of DTD and of a plain input gradient, measured in the same process.

    python examples/large_cnn.py [--model vgg16|resnet50] [--size 224] [--batch 4] [--image photo.jpg]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dtd import DTD, Gradient, plot  # noqa: E402

NETWORKS = {
    "vgg16": (
        keras.applications.VGG16,
        keras.applications.vgg16.preprocess_input,
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "resnet50": (
        keras.applications.ResNet50,
        keras.applications.resnet50.preprocess_input,
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
    ),
}


def cached_weights(filename):
    path = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models", filename)
    return path if os.path.isfile(path) else None


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(NETWORKS), default="vgg16")
    parser.add_argument("--size", type=int, default=224, help="image side (224 for the real weights)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image", default=None, help="an image file to explain (default: random pixels)")
    parser.add_argument("--out", default="out")
    args = parser.parse_args(argv)

    build, preprocess, filename = NETWORKS[args.model]
    weights = cached_weights(filename) if args.size == 224 else None
    if weights:
        print(f"{args.model}: ImageNet weights from the Keras cache ({weights})")
    else:
        why = (
            "not in the Keras cache"
            if args.size == 224
            else f"the real ones need --size 224, not {args.size}"
        )
        print(f"{args.model}: random weights (ImageNet weights {why}; nothing is downloaded)")
    keras.utils.set_random_seed(0)
    model = build(weights=weights, input_shape=(args.size, args.size, 3), classifier_activation="softmax")

    if args.image:
        image = keras.utils.img_to_array(keras.utils.load_img(args.image, target_size=(args.size, args.size)))
        images = np.repeat(image[None], args.batch, axis=0)
    else:
        images = (
            np.random.default_rng(0).uniform(0, 255, (args.batch, args.size, args.size, 3)).astype("float32")
        )
    x = preprocess(images.copy())

    start = time.perf_counter()
    analyzer = DTD(model, batch_size=args.batch)  # preprocessed inputs are unbounded: w² first
    relevance = analyzer.analyze(x)
    build_seconds = time.perf_counter() - start
    gradient = Gradient(model, batch_size=args.batch)
    gradient.analyze(x)

    dtd_s = median_seconds(lambda: analyzer.analyze(x), args.repeats)
    grad_s = median_seconds(lambda: gradient.analyze(x), args.repeats)
    sums = relevance.reshape(len(x), -1).sum(axis=1)
    kernel, bias = model.layers[
        -1
    ].get_weights()  # f from Keras' own layers: the top logit before the softmax
    logits = (
        np.asarray(keras.Model(model.inputs, model.layers[-2].output).predict_on_batch(x)) @ kernel + bias
    )
    target = np.maximum(logits.max(axis=1), 0)
    print(f"layers traced: {len(analyzer.rules)}, build + first batch: {build_seconds:.1f} s")
    print(
        f"DTD:      {1000 * dtd_s / len(x):8.1f} ms per image (batch of {len(x)}, median of {args.repeats})"
    )
    print(
        f"gradient: {1000 * grad_s / len(x):8.1f} ms per image   ratio DTD / gradient: {dtd_s / grad_s:.2f}x"
    )
    error = np.max(np.abs(sums - target) / np.maximum(target, 1e-12))
    print(f"conservation: max |ΣR - f| / f = {error:.2e}; smallest relevance: {relevance.min():.2e}")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"large_cnn_{args.model}.png")
    plot.overlay(relevance[0], images[0] / 255.0, title=f"{args.model}: DTD", save=path)
    print(f"figure: {path}")
    return {
        "dtd_ms": 1000 * dtd_s / len(x),
        "gradient_ms": 1000 * grad_s / len(x),
        "conservation_error": error,
    }


if __name__ == "__main__":
    main()
