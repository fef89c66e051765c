"""Recurrent layers against Arras et al.'s own LRP code (tests/fixtures/arras.npz, made by
make_arras.py from their repository) and against float64 numpy replicas of the rules, step by
step; DTD conservative and positive on each."""

import pathlib
import warnings

import keras
import numpy as np
import pytest

import keras_dtd
from keras_dtd import DTD, LRP, rules

F64 = "float64"
L = keras.layers
ARRAS = np.load(pathlib.Path(__file__).parent / "fixtures" / "arras.npz")
EPS = 0.001


def _keras_gates(m, d):
    """Their gate order (i, g, f, o) in rows → Keras' (i, f, c, o) in columns."""
    i, g, f, o = (m[k * d : (k + 1) * d] for k in range(4))
    return np.concatenate([i, f, g, o]).T


def _arras_model(name):
    w = {k.split("/", 1)[1]: ARRAS[k] for k in ARRAS.files if k.startswith(name + "/")}
    vocabulary, dim = w["E"].shape
    d = w["Whh_Left"].shape[1]
    classes = w["Why_Left"].shape[0]
    inp = keras.Input((w["w"].shape[1],), dtype="int32")
    h = L.Embedding(vocabulary, dim, dtype=F64, name="embedding")(inp)

    def lstm_weights(side):
        bias = w[f"bxh_{side}"] + w[f"bhh_{side}"]
        return [
            _keras_gates(w[f"Wxh_{side}"], d),
            _keras_gates(w[f"Whh_{side}"], d),
            _keras_gates(bias[:, None], d)[0],
        ]

    if name == "bidi":
        h = L.Bidirectional(L.LSTM(d, dtype=F64), dtype=F64)(h)
        top = np.concatenate([w["Why_Left"].T, w["Why_Right"].T])
        recurrent = lstm_weights("Left") + lstm_weights("Right")
    else:
        h = L.LSTM(d, dtype=F64)(h)
        top, recurrent = w["Why_Left"].T, lstm_weights("Left")
    model = keras.Model(inp, L.Dense(classes, use_bias=False, dtype=F64)(h))
    model.set_weights([w["E"], *recurrent, top])
    return model, w


@pytest.mark.parametrize("name", ["bidi", "uni"])
def test_lstm_reproduces_arras_et_al(name):
    model, w = _arras_model(name)
    tokens = w["w"]
    np.testing.assert_allclose(model.predict(tokens, verbose=0), w["scores"], rtol=1e-10, atol=1e-12)
    analyzer = LRP(model, rules.Epsilon(EPS))
    for k in range(w["scores"].shape[1]):
        explanation = analyzer.explain(tokens, neuron_selection=k, return_layers=True)
        expected = w["relevance"][:, k]  # (sequences, steps, embedding size): Rx + Rx_rev
        got = explanation.layers["embedding"]
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, atol=1e-9 * scale, rtol=0)
        np.testing.assert_allclose(explanation.relevance, expected.sum(axis=-1), atol=1e-9 * scale, rtol=0)


# ---------------------------------------------------------------- float64 numpy replicas


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _stabilized(z):
    return z + EPS * np.where(z >= 0, 1.0, -1.0)


def _linear(x, kernel, pre, r):
    """ε-rule: R_i = Σ_j x_i w_ij / (z_j + ε·sign(z_j)) R_j, z the full pre-activation."""
    return x * (kernel @ (r / _stabilized(pre)))


def _sum(terms, r):
    total = sum(terms)
    return [t * r / _stabilized(total) for t in terms]


def _replica(layer, xs, r_out):
    """(outputs of the layer for one sample xs (T, d), relevance of xs for R at those outputs)."""
    cell = layer.cell
    kernel, recurrent = (np.asarray(v, np.float64) for v in (cell.kernel, cell.recurrent_kernel))
    bias = np.zeros(kernel.shape[1]) if cell.bias is None else np.asarray(cell.bias, np.float64)
    u = cell.units
    seq = xs[::-1] if layer.go_backwards else xs
    h = np.zeros(u)
    saved, outputs = [], []
    for x in seq:
        if isinstance(cell, L.GRUCell):
            b_in, b_rec = (bias[0], bias[1]) if cell.reset_after else (bias, np.zeros(3 * u))
            xp = x @ kernel + b_in
            if cell.reset_after:
                hp = h @ recurrent + b_rec
                z, r = _sigmoid(xp[:u] + hp[:u]), _sigmoid(xp[u : 2 * u] + hp[u : 2 * u])
                pre = xp[2 * u :] + r * hp[2 * u :]
            else:
                hp = h @ recurrent[:, : 2 * u]
                z, r = _sigmoid(xp[:u] + hp[:u]), _sigmoid(xp[u : 2 * u] + hp[u:])
                pre = xp[2 * u :] + (r * h) @ recurrent[:, 2 * u :]
            saved.append((x, h, z, r, pre))
            h = z * h + (1 - z) * np.tanh(pre)
        else:  # SimpleRNN
            pre = x @ kernel + h @ recurrent + bias
            saved.append((x, h, pre))
            h = np.tanh(pre)
        outputs.append(h)
    outputs = np.array(outputs) if layer.return_sequences else outputs[-1]
    r_steps = r_out if layer.return_sequences else np.zeros((len(seq), u))
    if not layer.return_sequences:
        r_steps[-1] = r_out
    r_h, r_x = np.zeros(u), []
    for t in reversed(range(len(seq))):
        r_h = r_h + r_steps[t]
        if isinstance(cell, L.GRUCell):
            x, h_prev, z, r, pre = saved[t]
            r_kept, r_written = _sum([z * h_prev, (1 - z) * np.tanh(pre)], r_h)
            s = r_written / _stabilized(pre)
            r_x.append(x * (kernel[:, 2 * u :] @ s))
            if cell.reset_after:  # contributions r_j h_k U_kj
                r_h = r_kept + h_prev * ((recurrent[:, 2 * u :] * r[None, :]) @ s)
            else:  # contributions (r_k h_k) U_kj, all to h
                r_h = r_kept + (r * h_prev) * (recurrent[:, 2 * u :] @ s)
        else:
            x, h_prev, pre = saved[t]
            r_x.append(_linear(x, kernel, pre, r_h))
            r_h = _linear(h_prev, recurrent, pre, r_h)
    r_x = np.array(r_x[::-1])
    return outputs, (r_x[::-1] if layer.go_backwards else r_x)


CASES = {
    "gru": lambda: L.GRU(4, dtype=F64),
    "gru_reset_before": lambda: L.GRU(4, reset_after=False, dtype=F64),
    "simple_rnn": lambda: L.SimpleRNN(4, dtype=F64),
    "gru_sequences": lambda: L.GRU(4, return_sequences=True, dtype=F64),
    "simple_rnn_backwards": lambda: L.SimpleRNN(4, go_backwards=True, dtype=F64),
    "gru_sequences_backwards": lambda: L.GRU(4, return_sequences=True, go_backwards=True, dtype=F64),
}


def _model(make):
    inp = keras.Input((5, 3), dtype=F64)
    layer = make()
    h = layer(inp)
    if len(h.shape) == 3:
        h = L.Flatten(dtype=F64)(h)
    return keras.Model(inp, L.Dense(2, use_bias=False, dtype=F64)(h)), layer


@pytest.mark.parametrize("name", list(CASES))
def test_recurrent_layers_match_the_float64_replica(name):
    model, layer = _model(CASES[name])
    rng = np.random.default_rng(len(name))
    model.set_weights([rng.normal(0, 0.6, w.shape) for w in model.get_weights()])
    x = rng.normal(size=(3, 5, 3))
    relevance = LRP(model, rules.Epsilon(EPS)).analyze(x, neuron_selection=1)
    top = model.layers[-1].get_weights()[0]
    for xs, rs in zip(x, relevance):
        outputs, _ = _replica(layer, xs, np.zeros((5, 4)) if layer.return_sequences else np.zeros(4))
        f = outputs.ravel() @ top
        np.testing.assert_allclose(f, np.asarray(model(xs[None]))[0], rtol=1e-10)  # the replica's forward
        r_top = np.array([0.0, f[1]])
        r_h = _linear(outputs.ravel(), top, f, r_top).reshape(outputs.shape)
        _, expected = _replica(layer, xs, r_h)
        np.testing.assert_allclose(rs, expected, atol=1e-10 * np.abs(expected).max(), rtol=0)


@pytest.mark.parametrize(
    "make",
    [
        *CASES.values(),
        lambda: L.LSTM(4, dtype=F64),
        lambda: L.Bidirectional(L.LSTM(4, return_sequences=True, dtype=F64), dtype=F64),
        lambda: L.Bidirectional(L.GRU(4, dtype=F64), merge_mode="sum", dtype=F64),
        lambda: L.Bidirectional(L.SimpleRNN(4, dtype=F64), merge_mode="ave", dtype=F64),
    ],
)
def test_dtd_on_recurrent_layers_is_conservative_and_positive(make):
    model, _ = _model(make)
    rng = np.random.default_rng(7)
    model.set_weights(
        [
            np.zeros(w.shape) if "bias" in v.path else rng.normal(0, 0.6, w.shape)
            for v, w in zip(model.weights, model.get_weights())
        ]
    )  # biases 0: DTD is exactly conservative
    x = rng.normal(size=(6, 5, 3))
    with pytest.warns(keras_dtd.NonReLUWarning):  # tanh and sigmoid inside: relevance passes through
        analyzer = DTD(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.ZeroRelevanceWarning)
        explanation = analyzer.explain(x)
    assert np.all(explanation.relevance >= 0)
    np.testing.assert_allclose(
        explanation.relevance.reshape(6, -1).sum(axis=1), explanation.target, rtol=1e-9, atol=1e-12
    )
    assert np.any(explanation.target > 0)


def test_unsupported_recurrent_options_are_refused_by_name():
    cases = [
        (lambda: L.LSTM(3, stateful=True), "stateful=True"),
        (lambda: L.Bidirectional(L.LSTM(3), merge_mode="mul"), "merge_mode='mul'"),
        (lambda: L.RNN(_Cell(3)), "runs the cell _Cell"),
    ]
    for make, message in cases:
        inp = keras.Input((4, 2), batch_size=2)
        model = keras.Model(inp, L.Dense(2)(make()(inp)))
        with pytest.raises(keras_dtd.UnsupportedLayerError, match=message):
            LRP(model, rules.Epsilon())


@pytest.mark.parametrize(
    "make",
    [
        lambda: L.LSTM(4, dtype=F64),
        lambda: L.GRU(4, dtype=F64),
        lambda: L.Bidirectional(L.LSTM(4, dtype=F64), dtype=F64),
        lambda: L.Bidirectional(L.SimpleRNN(4, return_sequences=True, dtype=F64), dtype=F64),
    ],
)
def test_masked_steps_carry_relevance_over_and_get_none(make):
    """Padding (token 0, mask_zero=True) before and after a sequence: the padded steps get no
    relevance and the others get what the unpadded sequence gets."""
    inp = keras.Input((None,), dtype="int32")
    h = make()(L.Embedding(10, 3, mask_zero=True, dtype=F64)(inp))
    if len(h.shape) == 3:
        h = L.GlobalAveragePooling1D(dtype=F64)(h)
    model = keras.Model(inp, L.Dense(2, dtype=F64)(h))
    rng = np.random.default_rng(8)
    model.set_weights([rng.normal(0, 0.6, w.shape) for w in model.get_weights()])
    words = rng.integers(1, 10, (3, 4))
    analyzer = LRP(model, rules.Epsilon(EPS))
    unpadded = analyzer.analyze(words, neuron_selection=0)
    for before, after in ((2, 0), (0, 3), (1, 2)):
        padded = np.pad(words, [(0, 0), (before, after)])
        relevance = analyzer.analyze(padded, neuron_selection=0)
        if not isinstance(model.layers[2], L.Bidirectional) or not model.layers[2].return_sequences:
            np.testing.assert_allclose(np.asarray(model(padded)), np.asarray(model(words)), rtol=1e-12)
            np.testing.assert_allclose(relevance[:, before : before + 4], unpadded, rtol=1e-10, atol=1e-13)
        assert np.all(relevance[:, :before] == 0) and np.all(relevance[:, before + 4 :] == 0)


def test_a_masking_layer_masks_float_steps():
    inp = keras.Input((None, 3), dtype=F64)
    model = keras.Model(inp, L.Dense(2, dtype=F64)(L.GRU(4, dtype=F64)(L.Masking(0.0, dtype=F64)(inp))))
    rng = np.random.default_rng(9)
    model.set_weights([rng.normal(0, 0.6, w.shape) for w in model.get_weights()])
    x = rng.normal(size=(2, 4, 3))
    padded = np.concatenate([np.zeros((2, 2, 3)), x], axis=1)
    analyzer = LRP(model, rules.Epsilon(EPS))
    relevance = analyzer.analyze(padded, neuron_selection=1)
    assert np.all(relevance[:, :2] == 0)
    np.testing.assert_allclose(
        relevance[:, 2:], analyzer.analyze(x, neuron_selection=1), rtol=1e-10, atol=1e-13
    )


def test_stacked_recurrent_layers_match_the_replica():
    inp = keras.Input((5, 3), dtype=F64)
    first, second = L.SimpleRNN(4, return_sequences=True, dtype=F64), L.GRU(3, dtype=F64)
    model = keras.Model(inp, L.Dense(2, use_bias=False, dtype=F64)(second(first(inp))))
    rng = np.random.default_rng(10)
    model.set_weights([rng.normal(0, 0.6, w.shape) for w in model.get_weights()])
    x = rng.normal(size=(2, 5, 3))
    relevance = LRP(model, rules.Epsilon(EPS)).analyze(x, neuron_selection=0)
    top = model.layers[-1].get_weights()[0]
    for xs, rs in zip(x, relevance):
        hidden, _ = _replica(first, xs, np.zeros((5, 4)))
        h, _ = _replica(second, hidden, np.zeros(3))
        f = h @ top
        _, r_hidden = _replica(second, hidden, _linear(h, top, f, np.array([f[0], 0.0])))
        _, expected = _replica(first, xs, r_hidden)
        np.testing.assert_allclose(rs, expected, atol=1e-10 * np.abs(expected).max(), rtol=0)


def test_stacked_cells_are_their_layers_one_after_the_other():
    """RNN(StackedRNNCells([SimpleRNNCell, GRUCell])) gives the maps of SimpleRNN(return_sequences) → GRU.
    In float32: Keras' stacked cells keep a float32 initial state, which fails in float64 graphs."""
    inp = keras.Input((5, 3))
    stacked = keras.Model(inp, L.Dense(2)(L.RNN(L.StackedRNNCells([L.SimpleRNNCell(4), L.GRUCell(3)]))(inp)))
    twin = keras.Model(inp, L.Dense(2)(L.GRU(3)(L.SimpleRNN(4, return_sequences=True)(inp))))
    rng = np.random.default_rng(11)
    stacked.set_weights([rng.normal(0, 0.6, w.shape) for w in stacked.get_weights()])
    twin.set_weights(stacked.get_weights())
    x = rng.normal(size=(3, 5, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(stacked(x)), np.asarray(twin(x)), rtol=1e-5, atol=1e-6)
    for analyzer in (lambda m: LRP(m, rules.Epsilon(EPS)), lambda m: LRP(m, rules.ZPlus())):
        expected = analyzer(twin).analyze(x)  # float32 rounding of two equal computations: 1e-5 of max |R|
        scale = np.abs(expected).max()
        np.testing.assert_allclose(analyzer(stacked).analyze(x), expected, rtol=0, atol=1e-5 * scale)


def test_other_recurrent_structures_are_refused_by_name():
    for make, message in (
        (lambda: L.RNN(L.StackedRNNCells([L.LSTMCell(3), _Cell(3)])), "runs the cell _Cell"),
        (lambda: L.ConvLSTM1D(2, 3), "runs the cell ConvLSTMCell"),
    ):
        inp = keras.Input((4, 5, 2) if "Conv" in message else (4, 2))
        h = make()(inp)
        model = keras.Model(inp, L.Dense(2)(L.Flatten()(h)))
        with pytest.raises(keras_dtd.UnsupportedLayerError, match=message):
            LRP(model, rules.Epsilon())


class _Cell(L.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units))

    def call(self, x, states):
        h = keras.ops.tanh(keras.ops.matmul(x, self.w) + states[0])
        return h, [h]


def test_time_distributed_layers_are_their_inner_layer_at_every_step():
    """TimeDistributed(Dense) against Dense on the last axis; TimeDistributed(Conv2D) → (GAP) on
    frames against the same Conv2D applied to each frame by slicing."""
    rng = np.random.default_rng(12)

    def dense_models():
        inp = keras.Input((5, 3), dtype=F64)
        wrapped = L.TimeDistributed(L.Dense(4, activation="relu", dtype=F64), dtype=F64)(inp)
        plain = L.Dense(4, activation="relu", dtype=F64)(inp)
        top = lambda h: L.Dense(2, dtype=F64)(L.Flatten(dtype=F64)(h))  # noqa: E731
        return keras.Model(inp, top(wrapped)), keras.Model(inp, top(plain)), rng.normal(size=(3, 5, 3))

    def video_models():
        inp = keras.Input((2, 6, 6, 1), dtype=F64)
        conv, gap = L.Conv2D(3, 3, activation="relu", dtype=F64), L.GlobalAveragePooling2D(dtype=F64)
        wrapped = L.TimeDistributed(gap, dtype=F64)(L.TimeDistributed(conv, dtype=F64)(inp))
        shared = L.Conv2D(3, 3, activation="relu", dtype=F64)
        frames = [L.GlobalAveragePooling2D(dtype=F64)(shared(inp[:, t])) for t in range(2)]
        sliced = keras.ops.stack(frames, axis=1)
        top = lambda h: L.Dense(2, dtype=F64)(L.Flatten(dtype=F64)(h))  # noqa: E731
        return (
            keras.Model(inp, top(wrapped)),
            keras.Model(inp, top(sliced)),
            rng.uniform(0, 1, (3, 2, 6, 6, 1)),
        )

    for build in (dense_models, video_models):
        model, twin, x = build()
        model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
        twin.set_weights(model.get_weights())
        np.testing.assert_allclose(np.asarray(model(x)), np.asarray(twin(x)), rtol=1e-12)
        for analyzer in (
            lambda m: LRP(m, rules.Epsilon(EPS)),
            lambda m: DTD(m),
            lambda m: LRP(m, rules.ZPlus()),
        ):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", keras_dtd.ZeroRelevanceWarning)
                expected = analyzer(twin).analyze(x)
                np.testing.assert_allclose(analyzer(model).analyze(x), expected, rtol=1e-10, atol=1e-13)


def test_streams_and_the_training_callback_work_with_recurrent_analyzers(tmp_path):
    import tensorflow as tf

    from keras_dtd.callbacks import RelevanceMonitor

    keras.utils.set_random_seed(13)
    inp = keras.Input((6,), dtype="int32")
    h = L.Bidirectional(L.GRU(4))(L.Embedding(12, 3, mask_zero=True)(inp))
    model = keras.Model(inp, L.Dense(2)(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(13)
    tokens, labels = rng.integers(0, 12, (40, 6)).astype("int32"), rng.integers(0, 2, 40).astype("int32")
    analyzer = LRP(model, rules.Epsilon(EPS), batch_size=8)
    streamed = analyzer.analyze(tf.data.Dataset.from_tensor_slices(tokens).batch(7), verbose=0)
    np.testing.assert_allclose(streamed, analyzer.analyze(tokens), rtol=1e-6, atol=1e-8)
    monitor = RelevanceMonitor(tokens[:4], tmp_path, method=lambda m: LRP(m, rules.Epsilon(EPS)))
    model.fit(tokens, labels, epochs=2, batch_size=8, verbose=0, callbacks=[monitor])
    maps = [monitor.history[step] for step in sorted(monitor.history)]
    assert len(maps) == 2 and maps[-1].shape == (4, 6) and np.abs(maps[-1] - maps[0]).max() > 0


def test_dtd_gives_a_recurrent_first_layer_the_first_layer_rule():
    """DTD on float inputs → SimpleRNN → Dense(1): w² for the input's contributions at every step,
    z⁺ for the state's (hidden units), z⁺ at the top; against the float64 replica. With
    input_range, z^B: conservative and positive."""
    inp = keras.Input((4, 3), dtype=F64)
    rnn = L.SimpleRNN(3, use_bias=False, dtype=F64)
    model = keras.Model(inp, L.Dense(1, use_bias=False, dtype=F64)(rnn(inp)))
    rng = np.random.default_rng(14)
    model.set_weights([rng.normal(0, 0.6, w.shape) for w in model.get_weights()])
    kernel, recurrent, top = (w.astype(np.float64) for w in model.get_weights())
    x = rng.uniform(-1, 1, (5, 4, 3))
    with pytest.warns(keras_dtd.NonReLUWarning):
        analyzer = DTD(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.ZeroRelevanceWarning)
        relevance = analyzer.analyze(x)
    for xs, rs in zip(x, relevance):
        hs = [np.zeros(3)]
        for x_t in xs:
            hs.append(np.tanh(x_t @ kernel + hs[-1] @ recurrent))
        f = hs[-1] @ top[:, 0]
        q = np.maximum(hs[-1] * top[:, 0], 0)
        r_h = q / q.sum() * max(f, 0) if q.sum() > 0 else np.zeros(3)
        expected = np.zeros_like(xs)
        for t in reversed(range(4)):
            qx, qh = kernel**2, np.maximum(hs[t][:, None] * recurrent, 0)
            denominator = qx.sum(0) + qh.sum(0)
            s = np.divide(r_h, denominator, out=np.zeros(3), where=denominator > 0)
            expected[t], r_h = qx @ s, qh @ s
        np.testing.assert_allclose(rs, expected, atol=1e-10 * max(np.abs(expected).max(), 1e-300), rtol=0)
    assert np.abs(relevance).max() > 0
    with pytest.warns(keras_dtd.NonReLUWarning):
        bounded = DTD(model, input_range=(-1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.ZeroRelevanceWarning)
        explanation = bounded.explain(x)
    assert np.all(explanation.relevance >= -1e-12)
    np.testing.assert_allclose(
        explanation.relevance.reshape(5, -1).sum(1), explanation.target, rtol=1e-9, atol=1e-12
    )
