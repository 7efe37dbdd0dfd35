"""Model analysis: the multiply-accumulate count GroupNL is meant to cut,
and the machine a speed figure was measured on."""

from keras_groupnl.analysis.machine import Machine
from keras_groupnl.analysis.machine import describe_machine
from keras_groupnl.analysis.macs import count_macs

__all__ = ["Machine", "count_macs", "describe_machine"]
