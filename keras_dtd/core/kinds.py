"""The kinds of layers: what a layer is to the rules (defined once, used everywhere)."""


class Kind:
    """The kinds of layers, the keys composites select rules by.

    ``KERNEL``       a linear map with learned weights, z = x·W + b: Dense, EinsumDense, the convolutions
                     (a SeparableConv as its depthwise and pointwise halves), LayerNormalization
                     (1/σ held constant), ``x @ constant``
    ``POOL``         a fixed linear map with non-negative weights: average pooling, ``mean``/``sum``
    ``ADD``          a weighted sum of tensors: Add, Average, Subtract, InceptionResNet's
                     CustomScaleLayer
    ``BATCH_NORM``   a BatchNormalization that no kernel layer absorbs: z = x·s + t
    ``MAX_POOL``     the largest input wins: max pooling, Maximum, Minimum
    ``GATE``         a Multiply of a signal by gates (squeeze-excitation, gated units, GeGLU)
    ``PRODUCT``      a product of two activations that contracts axes: ``einsum``/``matmul`` of two
                     tensors (q·kᵀ and A·v in a traced attention layer)
    ``NORMALIZE``    x ⊙ 1/σ(x): a normalization's product with the reciprocal of a statistic of
                     its input (RMSNorm traced from its call); 1/σ is held constant
    ``SOFTMAX``      a softmax inside the model (attention weights)
    ``EMBEDDING``    an Embedding lookup: the relevance of a token is its vector's relevance
    ``STRUCTURAL``   layers that only move values: Flatten, Reshape, Concatenate, padding, ...
    ``ELEMENTWISE``  relevance passes unchanged: activations, Dropout, Rescaling, ...
    ``RECURRENT``    LSTM, GRU, SimpleRNN and Bidirectional: a cell unrolled in time, whose
                     rule (:class:`keras_dtd.rules.Recurrent`) uses the composite's rules for
                     kernel layers and sums inside
    ``ATTENTION``    MultiHeadAttention, whose rule (:class:`keras_dtd.rules.Attention`) uses the
                     composite's rule for kernel layers on its projections
    ``MASK``         a boolean value (a comparison, a Keras mask): it carries no relevance
    ``STRIPPED``     a softmax or sigmoid that ends the model, removed by canonizing: DTD
                     explains the score before it
    """

    KERNEL = "kernel"
    POOL = "pool"
    ADD = "add"
    BATCH_NORM = "batch_norm"
    MAX_POOL = "max_pool"
    GATE = "gate"
    PRODUCT = "product"
    NORMALIZE = "normalize"
    SOFTMAX = "softmax"
    EMBEDDING = "embedding"
    STRUCTURAL = "structural"
    ELEMENTWISE = "elementwise"
    RECURRENT = "recurrent"
    ATTENTION = "attention"
    MASK = "mask"
    STRIPPED = "stripped"
    ALL = (
        KERNEL,
        POOL,
        ADD,
        BATCH_NORM,
        MAX_POOL,
        GATE,
        PRODUCT,
        NORMALIZE,
        SOFTMAX,
        EMBEDDING,
        STRUCTURAL,
        ELEMENTWISE,
        RECURRENT,
        ATTENTION,
        MASK,
        STRIPPED,
    )
    LINEAR = (KERNEL, POOL, ADD, BATCH_NORM)  # the kinds with a linear map
