"""What a target's `convert` gets (`TargetJob`) and gives back (`Converted`)."""

import dataclasses
import typing

import numpy as np


@dataclasses.dataclass
class TargetJob:
    """One conversion, as the pipeline hands it to a target.

    Attributes:
        sample_shape: input shape without the batch axis.
        calibration: float32 samples that calibrate the int8 ranges.
        workdir: a private temporary directory.
        layer_names: every layer name of the model (to name ops' layers).
        int8_io: int8 (True) or float32 (False) model input and output.
        integer_only: full-integer model (phone option).
        fold: fold BatchNormalization / activation into GroupNL layers.
        mcu_kernel: the "mcu" target's GroupNL tails: `"builtin"` ops,
            or the fused op (`"fused"`, `"fused_channel_tables"`).
        on_sample: called with 1 for every calibration sample read.
    """

    sample_shape: tuple
    calibration: np.ndarray
    workdir: str
    layer_names: typing.List[str]
    int8_io: bool
    integer_only: bool = False
    fold: bool = True
    mcu_kernel: str = "builtin"
    on_sample: typing.Optional[typing.Callable] = None


@dataclasses.dataclass
class Converted:
    """A target's converted model.

    Attributes:
        model_bytes: the final TFLite flatbuffer.
        op_layers: the Keras layer of every op (names may be stripped from
            the file, so they are kept here).
        deployed: the deploy layers that replaced the GroupNL layers.
        tables: `{layer: table bytes}` (lookup graphs; 256 per NLF).
        runtime: where it is verified: `"litert"`, `"tflm"`, or
            `"tflm_fused"` (TFLite Micro for the builtin ops, the NumPy
            reference for the fused GroupNL ops).
    """

    model_bytes: bytes
    op_layers: typing.List[typing.Optional[str]]
    deployed: list
    tables: dict
    runtime: str
