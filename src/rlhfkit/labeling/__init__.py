"""The labeling web app and its store: people rank, compare and rate model outputs in a
browser; `label export` turns their answers into records for `rlhfkit rm --data`.

Needs `pip install rlhfkit[label]`. See docs/labeling.md.
"""
