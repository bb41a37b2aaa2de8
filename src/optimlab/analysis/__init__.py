"""Torch-free analysis of records: statistics, verdicts, budget curves."""
