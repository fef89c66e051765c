"""Evaluation of relevance maps: the conservation report and faithfulness metrics."""
