"""Analyzers: composites (which rule goes to which layer), the rule assignment, the
:class:`~keras_dtd.analyzers.analyzer.Analyzer` and its documented interface, the
gradient baselines, Taylor decomposition, relevance models and iNNvestigate's names."""
