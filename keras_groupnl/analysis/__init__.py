"""Model analysis: the multiply-accumulate count GroupNL is meant to cut."""

from keras_groupnl.analysis.macs import count_macs

__all__ = ["count_macs"]
