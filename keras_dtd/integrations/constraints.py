"""Training constraints that make ReLU networks fit Deep Taylor Decomposition exactly."""

import keras


@keras.saving.register_keras_serializable(package="keras_dtd")
class NonPositive(keras.constraints.Constraint):
    """Keeps weights ≤ 0: w ← min(w, 0). Used on biases, DTD's z⁺ rule is then exactly
    conservative (Montavon et al. 2017 assume b_j ≤ 0): a ReLU neuron can only be
    active through its inputs, never through its bias alone."""

    def __call__(self, w):
        return keras.ops.minimum(w, 0.0)
