"""Float64 numpy replicas of the relevance rules, on layers turned into dense matrices."""

import numpy as np


def layer_matrix(fn, sample_shape):
    """(M, b) of an affine map ``fn`` (numpy batch in, numpy batch out): b = fn(0) and
    M[i, j] = fn(e_i)_j − b_j, found by applying it to every basis vector."""
    d = int(np.prod(sample_shape))
    basis = np.eye(d).reshape((d,) + tuple(sample_shape))
    zero = np.asarray(fn(np.zeros((1,) + tuple(sample_shape)))).reshape(1, -1)
    return np.asarray(fn(basis)).reshape(d, -1) - zero, zero[0]


def proportional(q, r):
    """R_i = Σ_j q_ij / Σ_i' q_i'j · R_j, zero where the denominator is zero."""
    z = q.sum(axis=0)
    s = np.divide(r, z, out=np.zeros_like(r), where=z != 0)
    return q @ s


def pos(a):
    return np.maximum(a, 0)


def neg(a):
    return np.minimum(a, 0)


def rule_relevance(
    rule, x, m, r, bias=None, low=None, high=None, epsilon=None, alpha=None, beta=None, gamma=None
):
    """Input relevance of one linear layer (x: (d,), m: (d, k), r: (k,)) by rule name."""
    xc = x[:, None]
    if rule == "z":
        return proportional(xc * m, r)
    if rule == "zplus":  # sign-aware: (x w)⁺ for outputs y ≥ 0, (x w)⁻ for outputs y < 0
        y = x @ m + (0 if bias is None else bias)
        contributions = xc * m
        return proportional(pos(contributions), np.where(y >= 0, r, 0)) + proportional(
            neg(contributions), np.where(y < 0, r, 0)
        )
    if rule == "wsquare":
        return proportional(m**2, r)
    if rule == "flat":
        return proportional((m != 0).astype(float), r)
    if rule == "gamma":
        return proportional(xc * (m + gamma * pos(m)), r)
    if rule == "zbox":
        return proportional(xc * m - low[:, None] * pos(m) - high[:, None] * neg(m), r)
    if rule == "epsilon":
        q = xc * m
        zb = q.sum(axis=0) + bias
        den = zb + epsilon * np.where(zb >= 0, 1.0, -1.0)
        return q @ (r / den)
    if rule == "alphabeta":
        act = pos(xc) * pos(m) + neg(xc) * neg(m)
        inh = pos(xc) * neg(m) + neg(xc) * pos(m)
        return alpha * proportional(act, r) - beta * proportional(inh, r)
    raise ValueError(rule)


def stabilized_proportional(q, r, bias_term=0.0, stabilizer=None):
    """R_i = Σ_j q_ij / d_j · R_j with d_j = Σ_i q_ij + b̃_j, plus ε·sign(d_j) (sign(0) = +1)
    when a stabilizer ε is given; zero where d_j = 0."""
    d = q.sum(axis=0) + bias_term
    if stabilizer is not None:
        d = d + stabilizer * np.where(d >= 0, 1.0, -1.0)
    return q @ np.divide(r, d, out=np.zeros_like(r), where=d != 0)


def convention_relevance(rule, x, m, b, r, include_bias, stabilizer=None, gamma=0.25, alpha=2.0, beta=1.0):
    """Input relevance of one affine layer y = x·m + b by rule name, with the bias in the
    denominators (zennit's convention) if ``include_bias``; sign-aware rules split the
    outputs by the sign of y either way."""
    xc = x[:, None]
    act = pos(xc) * pos(m) + neg(xc) * neg(m)
    inh = pos(xc) * neg(m) + neg(xc) * pos(m)
    y = x @ m + b
    b = b if include_bias else 0 * b
    if rule == "z":
        return stabilized_proportional(xc * m, r, b, stabilizer)
    if rule == "zplus":  # sign-aware: b⁺ with the positive, b⁻ with the negative contributions
        return stabilized_proportional(
            act, np.where(y >= 0, r, 0), pos(b), stabilizer
        ) + stabilized_proportional(inh, np.where(y < 0, r, 0), neg(b), stabilizer)
    if rule == "alphabeta":
        return alpha * stabilized_proportional(act, r, pos(b), stabilizer) - beta * stabilized_proportional(
            inh, r, neg(b), stabilizer
        )
    if rule == "wsquare":
        return stabilized_proportional(m**2, r, b**2, stabilizer)
    if rule == "gamma":
        return stabilized_proportional(xc * (m + gamma * pos(m)), r, b + gamma * pos(b), stabilizer)
    if rule == "gamma_sign_aware":
        up, down = m + gamma * pos(m), m + gamma * neg(m)
        q_up, q_down = pos(xc) * up + neg(xc) * down, pos(xc) * down + neg(xc) * up
        return stabilized_proportional(q_up, np.where(y > 0, r, 0), b + gamma * pos(b), stabilizer) + (
            stabilized_proportional(q_down, np.where(y < 0, r, 0), b + gamma * neg(b), stabilizer)
        )
    raise ValueError(rule)
