"""Figures of the training chapters: one module per data set, drawn from mopoe_lib results."""
