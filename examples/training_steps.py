"""How relevance changes with the number of training steps.

A small ReLU CNN (biases <= 0) trains on scikit-learn's bundled 8×8 digits while a
RelevanceMonitor explains the same test digits every few batches with Deep Taylor
(z^B for pixels in [0, 1]) and logs them to TensorBoard. Afterwards we show the maps
after chosen step counts side by side and summarise each step count by test accuracy,
the share of relevance on ink pixels (x > 0.1), how concentrated the maps are (share
of relevance in the top 10% of pixels) and the conservation error.

    python examples/training_steps.py [--steps 1 5 20 100 400] [--out out]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dtd import datasets, plot  # noqa: E402
from keras_dtd.callbacks import RelevanceMonitor  # noqa: E402
from keras_dtd.demo import digit_cnn  # noqa: E402


class AccuracyAt(keras.callbacks.Callback):
    """Test accuracy after the given batch counts."""

    def __init__(self, steps, x, y):
        super().__init__()
        self.steps, self.x, self.y = set(steps), x, y
        self.batches = 0
        self.accuracy = {}

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.batches in self.steps:
            predicted = self.model.predict_on_batch(self.x).argmax(axis=1)
            self.accuracy[self.batches] = float(np.mean(predicted == self.y))


def top_share(relevance, fraction=0.1):
    """Share of a map's relevance held by its largest `fraction` of pixels (mean over maps)."""
    flat = np.sort(relevance.reshape(len(relevance), -1), axis=1)[:, ::-1]
    k = max(1, int(round(fraction * flat.shape[1])))
    total = flat.sum(axis=1)
    return float(np.mean(flat[:, :k].sum(axis=1)[total > 0] / total[total > 0]))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 5, 20, 100, 400])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--out", default="out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    steps = sorted(set(args.steps))

    (x_train, y_train), (x_test, y_test) = datasets.digits(seed=args.seed)
    samples, labels = x_test[: args.samples], y_test[: args.samples]
    keras.utils.set_random_seed(args.seed)
    model = digit_cnn(x_train.shape[1:])
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    log_dir = os.path.join(args.out, "training_steps_logs")
    monitor = RelevanceMonitor(
        samples,
        log_dir,
        targets="true",
        labels=labels,
        input_range=(0.0, 1.0),  # DTD (the default method) with z^B at the first layer
        every_n_batches=steps,
    )
    accuracy = AccuracyAt(steps, x_test, y_test)
    batch_size = 32
    per_epoch = -(-len(x_train) // batch_size)
    epochs = -(-steps[-1] // per_epoch)
    print(
        f"training {epochs} epochs of {per_epoch} batches; maps of {len(samples)} test digits logged after "
        f"batches {steps} to {log_dir} (TensorBoard)"
    )
    model.fit(
        x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[monitor, accuracy]
    )

    ink = samples > 0.1
    print("\nsteps   test acc   relevance on ink   top-10% share   conservation error")
    for step in steps:
        r = monitor.history[step]
        on_ink = float((r * ink).sum() / r.sum()) if r.sum() > 0 else float("nan")
        print(
            f"{step:5d}   {accuracy.accuracy[step]:8.3f}   {on_ink:16.3f}   {top_share(r):13.3f}   "
            f"{monitor.scalars[step]['conservation_error']:.2e}"
        )
    print(f"(ink pixels are {ink.mean():.1%} of the image)")

    os.makedirs(args.out, exist_ok=True)
    maps = np.concatenate([monitor.history[s] for s in steps])
    titles = [f"step {s}: digit {d}" for s in steps for d in labels]
    path = os.path.join(args.out, "training_steps.png")
    plot.grid(maps, titles=titles, ncols=len(samples), size=1.4, save=path)
    print(f"\nfigure: {path} (one row per step count)")
    return {"steps": steps, "accuracy": accuracy.accuracy, "scalars": {s: monitor.scalars[s] for s in steps}}


if __name__ == "__main__":
    main()
