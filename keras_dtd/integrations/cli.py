"""The ``keras-dtd`` command line."""

from __future__ import annotations

import argparse
import os
import sys

DESCRIPTION = """\
Explain Keras models with Deep Taylor Decomposition / LRP.

examples:
  keras-dtd demo --out out
      train a small CNN on bundled digits, explain it, write figures to out/
  keras-dtd explain model.keras digit.png --input-range 0 1 --out heatmap.png
      relevance map of one image (pixels scaled to [0, 1]) for the top class
  keras-dtd explain model.keras batch.npy --neuron 3 --save-npy relevance.npy
      maps of a batch of inputs (.npy) for class 3
  keras-dtd export model.keras serving/ --input-range 0 1
      a TensorFlow Serving SavedModel returning predictions and relevance
  keras-dtd explain-dataset serving/ 'batches/*.npy' maps/ --runner DirectRunner
      maps of every batch with Apache Beam (pip install "keras_dtd[beam]"); any
      Beam runner and its options, e.g. --runner DataflowRunner --project P ...
"""

METHODS = ("dtd", "lrp.z", "lrp.epsilon", "lrp.alpha_1_beta_0", "lrp.alpha_2_beta_1", "gradient")


def main(argv=None):
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "explain-dataset":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pipeline_args = extra
    if args.command is None:
        parser.print_help()
        return 2
    try:
        import keras_dtd.core  # noqa: F401  (TensorFlow, imported only now: a clear error if it is missing)

        return args.run(args)
    except (FileNotFoundError, ValueError, TypeError, ImportError, FileExistsError) as error:
        print(f"keras-dtd {args.command}: error: {error}", file=sys.stderr)
        return 1


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-dtd", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    explain = commands.add_parser("explain", help="relevance map(s) of inputs for a saved model")
    explain.add_argument("model", help="a saved Keras model (.keras)")
    explain.add_argument("input", help="inputs: a .npy array (one sample or a batch) or an image file")
    _method_arguments(explain)
    explain.add_argument(
        "--neuron", type=int, default=None, help="output neuron to explain (default: top class)"
    )
    explain.add_argument("--out", default="heatmap.png", help="figure to write (default: heatmap.png)")
    explain.add_argument("--save-npy", default=None, help="also save the relevance array here")
    explain.add_argument("--raw-pixels", action="store_true", help="do not divide image pixels by 255")
    explain.set_defaults(run=_explain)

    export = commands.add_parser("export", help="write a TensorFlow Serving SavedModel with relevance")
    export.add_argument("model", help="a saved Keras model (.keras)")
    export.add_argument("directory", help="export directory; the model goes to DIRECTORY/VERSION")
    _method_arguments(export)
    export.add_argument("--version", type=int, default=1, help="model version (default: 1)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing version")
    export.set_defaults(run=_export)

    dataset = commands.add_parser(
        "explain-dataset",
        help="explain .npy / TFRecord files with Apache Beam (any runner)",
        description="Explain every sample in the files matching INPUT_PATTERN with the SavedModel in "
        "EXPORT_DIR (written by `keras-dtd export`), on Apache Beam. Writes OUTPUT_DIR/<base name>.npy "
        "per input file and OUTPUT_DIR/summary.csv. Options not listed here are Beam's pipeline options "
        "(--runner DirectRunner | DataflowRunner | FlinkRunner | SparkRunner, and each runner's own).",
    )
    dataset.add_argument(
        "export_dir", help="a keras_dtd export: a SavedModel directory or its versions' parent"
    )
    dataset.add_argument(
        "input_pattern", help="input files: .npy batches or TFRecords of tf.train.Example (quote globs)"
    )
    dataset.add_argument("output_dir", help="where the maps and summary.csv go (local, gs://, s3://, ...)")
    dataset.add_argument(
        "--class-index", type=int, default=None, help="output to explain (default: each sample's top class)"
    )
    dataset.add_argument(
        "--batch-size", type=int, default=32, help="largest batch per model call (default: 32)"
    )
    dataset.add_argument(
        "--feature", default="x", help="TFRecord inputs: the Example feature holding a sample (default: x)"
    )
    dataset.set_defaults(run=_explain_dataset)

    demo = commands.add_parser("demo", help="train on bundled digits, explain, write figures (offline)")
    demo.add_argument("--out", default="out", help="output folder (default: out)")
    demo.add_argument("--mnist", action="store_true", help="use MNIST from the Keras cache if present")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs")
    demo.add_argument("--samples", type=int, default=None, help="explain only this many test images")
    demo.set_defaults(run=_demo)
    return parser


def _method_arguments(parser):
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="dtd",
        help="dtd (Deep Taylor: z^B first layer with --input-range, else w²), "
        "an LRP variant, or gradient (default: dtd)",
    )
    parser.add_argument(
        "--input-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="bounds of the input values for dtd, e.g. 0 1 for scaled pixels",
    )


def _analyzer(args, model):
    from keras_dtd.analyzers.analyzer import DTD
    from keras_dtd.analyzers.innvestigate import create_analyzer

    if args.method == "dtd":
        return DTD(model, input_range=tuple(args.input_range) if args.input_range else None)
    if args.input_range:
        raise ValueError(f"--input-range is used by --method dtd only, not by {args.method}.")
    return create_analyzer(args.method, model).analyzer


def _load_model(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file '{path}' does not exist.")
    import keras

    import keras_dtd.integrations.constraints  # noqa: F401  (registers NonPositive, which saved models may use)

    return keras.saving.load_model(path, compile=False)


def _load_input(path, model, raw_pixels):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file '{path}' does not exist.")
    import numpy as np

    shape = tuple(model.inputs[0].shape[1:])
    if path.endswith(".npy"):
        x = np.load(path)
    else:
        import keras

        grayscale = shape[-1] == 1
        image = keras.utils.load_img(
            path, color_mode="grayscale" if grayscale else "rgb", target_size=shape[:2]
        )
        x = keras.utils.img_to_array(image)
        if not raw_pixels:
            x = x / 255.0
    if x.shape == shape:
        x = x[None]
    return x.astype("float32")


def _explain(args):
    import numpy as np

    from keras_dtd.integrations import plot

    model = _load_model(args.model)
    x = _load_input(args.input, model, args.raw_pixels)
    analyzer = _analyzer(args, model)
    selection = "max_activation" if args.neuron is None else args.neuron
    explanation = analyzer.explain(x, neuron_selection=selection)
    relevance = explanation.relevance
    sums = relevance.reshape(len(x), -1).sum(axis=1)
    for k, (s, f) in enumerate(zip(sums, explanation.score)):
        print(f"sample {k}: explained output f = {f:.4g}, sum of relevance = {s:.4g}")
    if args.save_npy:
        np.save(args.save_npy, relevance)
        print(f"relevance saved to {args.save_npy}")
    if relevance.ndim >= 3:
        titles = [f"#{k} f={f:.3g}" for k, f in enumerate(explanation.score)]
        if len(x) == 1:
            plot.heatmap(relevance[0], title=titles[0], save=args.out)
        else:
            plot.grid(relevance, titles=titles, save=args.out)
        print(f"figure written to {args.out}")
    return 0


def _export(args):
    from keras_dtd.integrations.export import export

    model = _load_model(args.model)
    path = export(_analyzer(args, model), args.directory, version=args.version, overwrite=args.overwrite)
    print(f"SavedModel written to {path} (signatures: serving_default, explain)")
    return 0


def _explain_dataset(args):
    from keras_dtd.integrations.beam import explain_dataset

    explain_dataset(
        args.export_dir,
        args.input_pattern,
        args.output_dir,
        class_index=args.class_index,
        batch_size=args.batch_size,
        feature=args.feature,
        pipeline_args=args.pipeline_args,
    )
    print(f"relevance maps and summary.csv written to {args.output_dir}")
    return 0


def _demo(args):
    from keras_dtd.integrations import demo

    demo.run(out=args.out, mnist=args.mnist, epochs=args.epochs, samples=args.samples)
    print(f"done: see {args.out}/heatmaps.png, overlays.png, conservation.png, positivity.png, summary.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
