"""The scaling tests use the session's `micro_lm` (tests/conftest.py): untrained, 1 layer, no
dropout, so two runs of the same seed see the same function."""
