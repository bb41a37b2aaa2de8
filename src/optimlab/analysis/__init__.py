"""Torch-free analysis of records: the record types and their readers, statistics, verdicts,
budget curves.

Nothing here imports torch, the training loop or an optimizer class, so that a report, an
export or a notebook reads what the lab wrote without paying for (or having) torch.
"""
