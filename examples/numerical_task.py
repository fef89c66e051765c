"""The worked numerical example of Deep Taylor Decomposition.

A detection–pooling network
    x_j = max(0, Σ_i x_i w_ij + b_j)    (detection: ReLU units, He-initialised weights, b_j <= 0)
    x_k = Σ_j x_j                        (sum pooling)
is explained by hand-written formulas and by keras_dtd, layer by layer:
    pooling:  R_j = x_j / Σ_j' x_j' · x_k = x_j
    w² rule:  R_i = Σ_j w_ij² / Σ_i' w_i'j² · R_j            (inputs in ℝ^d)
    z⁺ rule:  R_i = Σ_j x_i w_ij⁺ / Σ_i' x_i' w_i'j⁺ · R_j    (inputs x_i >= 0)
Both maps are conservative (Σ_i R_i = x_k) and positive (R_i >= 0).

    python examples/numerical_task.py [--inputs 6] [--hidden 4] [--seed 0]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dtd import DTD, rules  # noqa: E402


def detection_pooling_network(inputs, hidden, seed):
    """The network with He-normal weights and biases drawn from [-0.5, 0]."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((inputs,), dtype="float64")
    detection = keras.layers.Dense(
        hidden, activation="relu", kernel_initializer="he_normal", name="detection", dtype="float64"
    )
    pooling = keras.layers.Dense(
        1, use_bias=False, kernel_initializer="ones", trainable=False, name="pooling", dtype="float64"
    )
    model = keras.Model(inp, pooling(detection(inp)))
    w, _ = detection.get_weights()
    detection.set_weights([w, -np.random.default_rng(seed).uniform(0, 0.5, hidden)])
    return model


def by_hand(model, x):
    """Relevance of every layer from the formulas in the docstring (float64 numpy)."""
    w, b = model.get_layer("detection").get_weights()
    hidden = np.maximum(x @ w + b, 0)
    output = hidden.sum()
    r_hidden = hidden / hidden.sum() * output if output > 0 else np.zeros_like(hidden)
    q_w2 = w**2
    r_w2 = q_w2 @ np.divide(r_hidden, q_w2.sum(axis=0))
    q_zplus = x[:, None] * np.maximum(w, 0)
    z = q_zplus.sum(axis=0)
    r_zplus = q_zplus @ np.divide(r_hidden, z, out=np.zeros_like(z), where=z > 0)
    return output, hidden, r_hidden, r_w2, r_zplus


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    model = detection_pooling_network(args.inputs, args.hidden, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    x = rng.uniform(0, 1, args.inputs)  # x >= 0, so both the w² and the z⁺ rule apply
    while model.predict_on_batch(x[None])[0, 0] <= 0:  # the example needs an active output
        x = rng.uniform(0, 1, args.inputs)

    output, hidden, r_hidden, r_w2, r_zplus = by_hand(model, x)
    w2, w2_layers = DTD(model).analyze(x[None], return_layers=True)
    zplus, zplus_layers = DTD(model, layer_rules={"detection": rules.ZPlus()}).analyze(
        x[None], return_layers=True
    )

    print(f"network: {args.inputs} inputs -> {args.hidden} ReLU detection units (b_j <= 0) -> sum pooling")
    print(f"output x_k = {output:.6f}\n")
    print("layer     neuron   activation   R by hand    R keras_dtd")
    for j in range(args.hidden):
        print(
            f"hidden    j={j:<5} {hidden[j]:11.6f}  {r_hidden[j]:11.6f}  {w2_layers['detection'][0, j]:11.6f}"
        )
    print("\ninput     neuron   x_i          w² by hand   w² keras_dtd   z⁺ by hand   z⁺ keras_dtd")
    for i in range(args.inputs):
        print(
            f"input     i={i:<5} {x[i]:11.6f}  {r_w2[i]:11.6f}  {w2[0, i]:12.6f}   "
            f"{r_zplus[i]:11.6f}  {zplus[0, i]:11.6f}"
        )

    checks = {
        "w² matches the formula": np.allclose(w2[0], r_w2, rtol=1e-9, atol=1e-12),
        "z⁺ matches the formula": np.allclose(zplus[0], r_zplus, rtol=1e-9, atol=1e-12),
        "hidden relevance R_j = x_j": np.allclose(w2_layers["detection"][0], hidden, rtol=1e-9),
        "w² conservative: Σ R_i = x_k": np.isclose(w2.sum(), output, rtol=1e-9),
        "z⁺ conservative: Σ R_i = x_k": np.isclose(zplus.sum(), output, rtol=1e-9),
        "w² positive: R_i >= 0": bool((w2 >= 0).all()),
        "z⁺ positive: R_i >= 0": bool((zplus >= 0).all()),
    }
    print()
    for name, ok in checks.items():
        print(f"[{'ok' if ok else 'FAILED'}] {name}")
    print(
        "\nInterpretation: sum pooling hands each detection unit exactly its activation as relevance. "
        "The w² rule then spreads it over the inputs by squared weights alone (what the unit is tuned to), "
        "while z⁺ weighs each input by its actual positive contribution x_i w_ij⁺, so an input that feeds "
        "the active units only through negative weights receives nothing. "
        "Both redistribute all relevance and never produce negative values."
    )
    return {"output": output, "w2": w2[0], "zplus": zplus[0], "checks": checks}


if __name__ == "__main__":
    result = main()
    raise SystemExit(0 if all(result["checks"].values()) else 1)
