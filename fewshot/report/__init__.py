"""Reporting: comparisons with a baseline, Table 1, its notes, and the accuracy plots."""
