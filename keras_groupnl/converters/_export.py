"""TensorFlow-side export of a Keras model that contains GroupNL layers.

Runs only on the TensorFlow backend. While the model is traced, every GroupNL
layer computes with plain TF ops that the TFLite converter maps onto int8
kernels:

- the seed conv is one `tf.nn.conv2d` (a grouped one for the sparse layer,
  which TFLite, XNNPACK and TFLite Micro run as a grouped `CONV_2D`);
- the normalisation is `tf.math.l2_normalize`, one int8 `L2_NORMALIZATION`
  whose output TFLite quantizes with scale 1/128 and zero point 0;
- the channel repeat is a `tf.gather` on the channel axis (TFLite Micro has no
  `TILE`);
- the sinusoids stay exact in float for calibration and end in a fake-quant
  node that fixes their int8 quantization, so that the concatenation with the
  seed maps is int8 with one scale.

The converter leaves each `SIN` in a float island; `_flatbuffer` then swaps
every island for an exact int8 lookup table.

A BatchNormalization that directly follows a GroupNL layer (the usual
`conv -> BN -> ReLU` pattern), and a ReLU / ReLU6 after it, are folded into
the layer: the seed maps get the per-channel scale and shift as one 1x1
depthwise convolution with the activation fused, and the generated maps get
them inside their lookup tables, which then hold `act(a * sin(...) + b)`.
Without this the converter computes the BatchNormalization as MUL then ADD on
the int8 output of the concatenation, whose 1/128 step is coarse for the
generated maps that vary little and that the BatchNormalization scales up most.
"""

import contextlib
import re

import keras
import numpy as np

from keras_groupnl.converters import _flatbuffer
from keras_groupnl.converters._errors import ConversionError
from keras_groupnl.layers.base_group_nl_conv import BaseGroupNLConv

# Without a following BatchNormalization, the NLF output has the quantization
# of the int8 output of L2_NORMALIZATION (scale 1/128, zero point 0), i.e.
# the int8 range [-1, 127/128].
NLF_MIN = -1.0
NLF_MAX = 127.0 / 128.0

ExportError = ConversionError


def groupnl_layers(model):
    """Every GroupNL layer of `model`, nested models included."""
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, BaseGroupNLConv) and layer not in found:
            found.append(layer)
    return found


def _numpy(variable, dtype=np.float32):
    # `.value` is the backend tensor of a keras.Variable.
    return np.asarray(
        keras.ops.convert_to_numpy(getattr(variable, "value", variable)), dtype
    )


def _traced_op(tensor):
    """The TF op that made a traced tensor; None for eager values."""
    try:
        return tensor.op
    except AttributeError:  # Eager tensors have no op.
        return None


def _marker_of(tensor, pattern):
    """The marker match of a traced tensor (through identities), or None."""
    for _ in range(3):
        op = _traced_op(tensor)
        if op is None:
            return None
        match = pattern.search(op.name)
        if match:
            return match
        if op.type not in ("Identity", "Cast") or not op.inputs:
            return None
        tensor = op.inputs[0]
    return None


_OUT_MARKER = re.compile(r"groupnl_export_(\d+)_out")
_BN_MARKER = re.compile(r"groupnl_export_(\d+)_bn")


# --------------------------------------------------------------------------
# Folding plans.


class _Fold:
    """A BatchNormalization (and activation) folded into a GroupNL layer."""

    def __init__(self, scale, shift):
        self.scale = scale  # float32 (filters,)
        self.shift = shift
        self.activation = None  # None, "relu" or "relu6"
        self.range = None  # (min, max) of the folded output
        self.bn_layer = None
        self.act_layer = None


def _batch_norm_affine(layer):
    """`(scale, shift)` of an inference BatchNormalization, or None."""
    if getattr(layer, "axis", None) not in (-1, 3) or not layer.built:
        return None
    channels = int(layer.moving_mean.shape[0])
    mean = _numpy(layer.moving_mean, np.float64)
    variance = _numpy(layer.moving_variance, np.float64)
    gamma = np.ones(channels)
    beta = np.zeros(channels)
    if layer.scale:
        gamma = _numpy(layer.gamma, np.float64)
    if layer.center:
        beta = _numpy(layer.beta, np.float64)
    scale = gamma / np.sqrt(variance + layer.epsilon)
    shift = beta - scale * mean
    # Check that the layer really is this affine map in inference.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 2, channels)).astype(np.float32)
    try:
        expected = keras.ops.convert_to_numpy(layer(x, training=False))
    except Exception:  # E.g. a BatchNormalization built for 2D inputs.
        return None
    if not np.allclose(expected, x * scale + shift, atol=1e-4, rtol=1e-3):
        return None
    return scale.astype(np.float32), shift.astype(np.float32)


def _activation_kind(layer):
    """'relu' or 'relu6' when `layer` is exactly that activation, else None."""
    if isinstance(layer, keras.layers.ReLU):
        if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
            return None
        if layer.max_value is None:
            return "relu"
        if float(layer.max_value) == 6.0:
            return "relu6"
        return None
    if isinstance(layer, keras.layers.Activation):
        name = getattr(layer.activation, "__name__", "")
        if name in ("relu", "relu6"):
            return name
    return None


# --------------------------------------------------------------------------
# The export of one GroupNL layer.


class _LayerExport:
    """Precomputed constants and the TF call of one GroupNL layer."""

    def __init__(self, layer, index):
        if layer.data_format != "channels_last":
            raise ExportError(
                f"Layer '{layer.name}' ({layer.__class__.__name__}) uses "
                "data_format='channels_first'; TFLite's int8 L2_NORMALIZATION "
                "normalises the last axis only, so only channels_last GroupNL "
                "layers can be converted. Rebuild the model with "
                "data_format='channels_last'.",
                layer=layer.name,
                op="L2_NORMALIZATION",
            )
        if not layer.built:
            raise ExportError(
                f"Layer '{layer.name}' is not built; call the model on data "
                "before converting it.",
                layer=layer.name,
            )
        self.layer = layer
        self.index = index
        self.kernel = _numpy(layer.kernel)
        self.bias = _numpy(layer.bias) if layer.use_bias else None
        self.rep_marker = f"groupnl_export_{index}_repeat"
        self.nlf_marker = f"groupnl_export_{index}_nlf"
        self.out_marker = f"groupnl_export_{index}_out"
        self.bn_marker = f"groupnl_export_{index}_bn"
        self.seeds = layer.seed_channels
        self.generated = layer.generated_channels
        self.fold = None
        if self.generated:
            periods = _numpy(layer.nlf_period).reshape(-1)
            shifts = _numpy(layer.nlf_shift).reshape(-1)
            self.pair_periods = periods
            # As the layer computes it: sin(x * T + (-(T * phi))).
            self.pair_offsets = -(periods * shifts)
            self.pair_index = np.asarray(layer.nlf_pair_index(), np.int32)
            self.source = layer.nlf_source_channels()
            self.channel_periods = periods[self.pair_index]
            self.channel_offsets = self.pair_offsets[self.pair_index]

    def call(self, inputs, *args, fake_quant=True, use_fold=True, **kwargs):
        import tensorflow as tf

        layer = self.layer
        dtype = inputs.dtype
        x = tf.cast(inputs, tf.float32)
        seeds = tf.nn.conv2d(
            x,
            tf.constant(self.kernel),
            strides=(1,) + tuple(layer.strides) + (1,),
            padding=layer.padding.upper(),
            dilations=(1,) + tuple(layer.dilation_rate) + (1,),
        )
        if self.bias is not None:
            seeds = tf.nn.bias_add(seeds, tf.constant(self.bias))
        # Same epsilon as the layer: x / max(||x||, 1e-12).
        normalized = tf.math.l2_normalize(seeds, axis=-1, epsilon=1e-24)
        fold = self.fold if (fake_quant and use_fold) else None
        seeds = normalized
        if fold is not None:
            seeds = self._folded_seeds(normalized, fold)
        if not self.generated:
            return tf.cast(tf.identity(seeds, name=self.out_marker), dtype)
        repeated = tf.gather(
            normalized,
            tf.constant(self.source, dtype=tf.int32),
            axis=3,
            name=self.rep_marker,
        )
        generated = tf.sin(
            repeated * tf.constant(self.channel_periods)
            + tf.constant(self.channel_offsets)
        )
        low, high = NLF_MIN, NLF_MAX
        if fold is not None:
            generated = generated * tf.constant(
                fold.scale[self.seeds :]
            ) + tf.constant(fold.shift[self.seeds :])
            generated = _tf_activation(generated, fold.activation)
            low, high = fold.range
        if fake_quant:
            generated = tf.quantization.fake_quant_with_min_max_args(
                generated,
                min=low,
                max=high,
                num_bits=8,
                narrow_range=False,
                name=self.nlf_marker,
            )
        out = tf.concat([seeds, generated], axis=-1, name=self.out_marker)
        return tf.cast(out, dtype)

    def _folded_seeds(self, seeds, fold):
        """Scale, shift and activation of the seed maps: one depthwise op."""
        import tensorflow as tf

        scale = fold.scale[: self.seeds]
        y = tf.nn.depthwise_conv2d(
            seeds,
            tf.constant(scale[None, None, :, None]),
            strides=(1, 1, 1, 1),
            padding="VALID",
        )
        y = tf.nn.bias_add(y, tf.constant(fold.shift[: self.seeds]))
        y = _tf_activation(y, fold.activation)
        return tf.quantization.fake_quant_with_min_max_args(
            y,
            min=fold.range[0],
            max=fold.range[1],
            num_bits=8,
            narrow_range=False,
        )

    def lut_spec(self):
        spec = {
            "layer": self.layer.name,
            "rep_marker": self.rep_marker,
            "nlf_marker": self.nlf_marker,
            "out_marker": self.out_marker,
            "pair_index": self.pair_index,
            "periods": self.pair_periods,
            "offsets": self.pair_offsets,
        }
        if self.fold is not None:
            # One table per generated channel: the BatchNormalization is
            # per channel.
            spec.update(
                pair_index=np.arange(self.generated, dtype=np.int32),
                periods=self.channel_periods,
                offsets=self.channel_offsets,
                gains=self.fold.scale[self.seeds :],
                shifts=self.fold.shift[self.seeds :],
                activation=self.fold.activation,
                folded=[
                    name
                    for name in (
                        self.fold.bn_layer.name,
                        None
                        if self.fold.act_layer is None
                        else self.fold.act_layer.name,
                    )
                    if name
                ],
            )
        return spec

    def self_check(self):
        """Compares the TF export of the layer with the layer itself."""
        layer = self.layer
        rows = max(
            8,
            (layer.kernel_size[0] - 1) * layer.dilation_rate[0]
            + 1
            + layer.strides[0],
        )
        cols = max(
            8,
            (layer.kernel_size[1] - 1) * layer.dilation_rate[1]
            + 1
            + layer.strides[1],
        )
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, rows, cols, layer.in_channels)).astype(
            np.float32
        )
        expected = keras.ops.convert_to_numpy(layer(x)).astype(np.float32)
        actual = np.asarray(self.call(x, fake_quant=False), np.float32)
        if expected.shape != actual.shape or not np.allclose(
            expected, actual, atol=2e-4, rtol=1e-3
        ):
            error = (
                float(np.max(np.abs(expected - actual)))
                if expected.shape == actual.shape
                else f"shape {actual.shape} vs {expected.shape}"
            )
            raise ExportError(
                f"Layer '{layer.name}': the TFLite export of the layer does "
                f"not reproduce the layer (difference {error}); refusing to "
                "convert a model that would compute something else.",
                layer=layer.name,
            )


def _tf_activation(x, kind):
    import tensorflow as tf

    if kind == "relu":
        return tf.nn.relu(x)
    if kind == "relu6":
        return tf.nn.relu6(x)
    return x


# --------------------------------------------------------------------------
# Tracing.


class _Tracer:
    """Patches the GroupNL, BatchNormalization and activation layers."""

    def __init__(self, model, exports):
        self.model = model
        self.exports = exports
        self.batch_norms = {}
        self.activations = {}
        if exports:
            layers = model._flatten_layers(include_self=False, recursive=True)
            for layer in layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    self.batch_norms[id(layer)] = layer
                elif _activation_kind(layer) is not None:
                    self.activations[id(layer)] = layer
        # Computed eagerly here: the patched calls run while tracing.
        self.affines = {
            key: _batch_norm_affine(layer)
            for key, layer in self.batch_norms.items()
        }
        self.mode = "discover"
        self.seen = []  # (kind, export index, layer, tensor) in discovery
        self.stash = []  # folded outputs, in "ranges" mode

    @contextlib.contextmanager
    def patched(self, mode):
        self.mode = mode
        self.seen = []
        self.stash = []
        patched = []
        try:
            for export in self.exports:
                object.__setattr__(
                    export.layer, "call", self._groupnl_call(export)
                )
                patched.append(export.layer)
            for layer in list(self.batch_norms.values()):
                object.__setattr__(layer, "call", self._bn_call(layer))
                patched.append(layer)
            for layer in list(self.activations.values()):
                object.__setattr__(layer, "call", self._act_call(layer))
                patched.append(layer)
            yield
        finally:
            for layer in patched:
                try:
                    object.__delattr__(layer, "call")
                except AttributeError:  # pragma: no cover
                    pass

    def _groupnl_call(self, export):
        def call(inputs, *args, **kwargs):
            out = export.call(inputs, use_fold=self.mode == "export")
            if self.mode == "discover":
                self.seen.append(("groupnl", export.index, export.layer, out))
            return out

        return call

    def _bn_call(self, layer):
        def call(inputs, *args, **kwargs):
            import tensorflow as tf

            match = _marker_of(inputs, _OUT_MARKER)
            affine = self.affines.get(id(layer))
            if match is not None and affine is not None:
                export = self.exports[int(match.group(1))]
                fold = export.fold
                folded = fold is not None and fold.bn_layer is layer
                if self.mode == "discover" or (
                    self.mode == "ranges" and folded
                ):
                    if self.mode == "discover":
                        self.seen.append(("bn", export.index, layer, inputs))
                    out = tf.identity(
                        inputs * affine[0] + affine[1], name=export.bn_marker
                    )
                    if self.mode == "ranges" and export.fold.act_layer is None:
                        self.stash.append((export.index, out))
                    return out
                if self.mode == "export" and folded:
                    return tf.identity(inputs, name=export.bn_marker)
            kwargs["training"] = False
            return type(layer).call(layer, inputs, *args, **kwargs)

        return call

    def _act_call(self, layer):
        def call(inputs, *args, **kwargs):
            import tensorflow as tf

            match = _marker_of(inputs, _BN_MARKER)
            if match is not None:
                export = self.exports[int(match.group(1))]
                fold = export.fold
                folded = fold is not None and fold.act_layer is layer
                if self.mode == "discover":
                    self.seen.append(("act", export.index, layer, inputs))
                elif self.mode == "ranges" and folded:
                    out = type(layer).call(layer, inputs, *args, **kwargs)
                    self.stash.append((export.index, out))
                    return out
                elif self.mode == "export" and folded:
                    return tf.identity(inputs)
            return type(layer).call(layer, inputs, *args, **kwargs)

        return call

    def plan(self):
        """Decides, from the discovery trace, which layers fold."""
        by_index = {}
        for kind, index, layer, tensor in self.seen:
            by_index.setdefault(index, []).append((kind, layer, tensor))
        for index, items in by_index.items():
            export = self.exports[index]
            kinds = [k for k, _, _ in items]
            # One call of the GroupNL layer, its output read by one
            # BatchNormalization and nothing else.
            if kinds.count("groupnl") != 1 or kinds.count("bn") != 1:
                continue
            out = next(t for k, _, t in items if k == "groupnl")
            bn_layer = next(lay for k, lay, _ in items if k == "bn")
            if len(_consumers(out)) != 1:
                continue
            scale, shift = self.affines[id(bn_layer)]
            fold = _Fold(scale, shift)
            fold.bn_layer = bn_layer
            acts = [(lay, t) for k, lay, t in items if k == "act"]
            if len(acts) == 1:
                act_layer, act_in = acts[0]
                if len(_consumers(act_in)) == 1:
                    fold.act_layer = act_layer
                    fold.activation = _activation_kind(act_layer)
            export.fold = fold


def _consumers(tensor):
    """Ops reading a traced tensor, looking through identities."""
    op = _traced_op(tensor)
    if op is None:
        return []
    found = []
    for consumer in tensor.consumers():
        if consumer.type == "Identity":
            found.extend(_consumers(consumer.outputs[0]))
        else:
            found.append(consumer)
    return found


def layer_names(model):
    return [
        layer.name
        for layer in model._flatten_layers(include_self=False, recursive=True)
    ]


def find_layer(names, tensor_names):
    """Best guess of the Keras layer that produced a TFLite tensor.

    Keras runs every layer call in a TF name scope named after the layer
    (uniquified with `_N` suffixes), so tensor names look like
    `functional_1/conv2d_3_1/convolution`.
    """
    known = set(names)
    for full in tensor_names:
        for name in full.split(";"):
            parts = [p for p in re.split(r"[/:]", name) if p]
            for part in reversed(parts):
                if part in known:
                    return part
                stripped = re.sub(r"_\d+$", "", part)
                while stripped != part:
                    if stripped in known:
                        return stripped
                    part = stripped
                    stripped = re.sub(r"_\d+$", "", part)
    return None


def _fold_ranges(model, tracer, input_shape, calibration):
    """Measures the range of every folded output on the calibration data."""
    import tensorflow as tf

    folded = [e for e in tracer.exports if e.fold is not None]
    if not folded:
        return
    with tracer.patched("ranges"):

        def probe(x):
            model(x, training=False)
            return [t for _, t in tracer.stash]

        function = tf.function(
            probe,
            input_signature=[
                tf.TensorSpec((None,) + tuple(input_shape[1:]), tf.float32)
            ],
            autograph=False,
        )
        concrete = function.get_concrete_function()
        order = [index for index, _ in tracer.stash]
    lows = {i: np.inf for i in order}
    highs = {i: -np.inf for i in order}
    samples = np.asarray(list(calibration), np.float32)
    for start in range(0, len(samples), 64):
        outputs = concrete(tf.constant(samples[start : start + 64]))
        for index, value in zip(order, outputs):
            value = value.numpy()
            lows[index] = min(lows[index], float(value.min()))
            highs[index] = max(highs[index], float(value.max()))
    for export in folded:
        low = min(lows.get(export.index, 0.0), 0.0)
        high = max(highs.get(export.index, 0.0), 0.0)
        if not np.isfinite(low) or not np.isfinite(high) or high - low <= 0:
            export.fold = None  # Nothing measured: keep the plain form.
            continue
        export.fold.range = (low, high)


def convert_to_tflite(
    model,
    input_shape,
    calibration,
    int8_io,
    fold_batchnorm=True,
    on_sample=None,
):
    """Converts `model` to an int8 TFLite model with GroupNL lookup tables.

    Args:
        model: a Keras model (TensorFlow backend).
        input_shape: the input shape with batch 1.
        calibration: float32 array of calibration samples.
        int8_io: bool, int8 (True) or float32 (False) input and output.
        fold_batchnorm: fold a BatchNormalization (and ReLU) that follows a
            GroupNL layer into its lookup tables.
        on_sample: optional callable, called once per calibration sample the
            converter reads (progress display).

    Returns:
        `(tflite_bytes, info)`: `info["groupnl"]` describes the lookup tables,
        `info["bias_rescaled"]` the ops whose bias `fix_bias_scales` fixed.

    Raises:
        ConversionError: the model cannot be exported or converted.
    """
    import tensorflow as tf

    exports = [
        _LayerExport(layer, index)
        for index, layer in enumerate(groupnl_layers(model))
    ]
    for export in exports:
        export.self_check()

    tracer = _Tracer(model, exports)
    signature = [tf.TensorSpec(input_shape, tf.float32)]
    if exports and fold_batchnorm:
        with tracer.patched("discover"):
            tf.function(
                lambda x: model(x, training=False),
                input_signature=signature,
                autograph=False,
            ).get_concrete_function()
        tracer.plan()
        _fold_ranges(model, tracer, input_shape, calibration)

    with tracer.patched("export"):
        function = tf.function(
            lambda x: model(x, training=False),
            input_signature=signature,
            autograph=False,
        )
        concrete = function.get_concrete_function()
    holder = tf.Module()
    holder.variables_to_freeze = [
        v.value if hasattr(v, "value") else v for v in model.variables
    ]

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [concrete], holder
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative_dataset():
        for sample in calibration:
            yield [np.asarray(sample, np.float32)[None]]
            if on_sample is not None:
                on_sample(1)

    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_type = tf.int8 if int8_io else tf.float32
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type
    try:
        tflite_bytes = converter.convert()
    except Exception as error:  # The converter raises several types.
        message = str(error)
        quoted = re.findall(r'"([^"]+)"', message)
        layer = find_layer(layer_names(model), quoted)
        op_match = re.search(r"'(tfl|tf)\.(\w+)'", message)
        op = op_match.group(2).upper() if op_match else None
        lines = message.strip().splitlines()
        last = lines[-1] if lines else repr(error)
        raise ExportError(
            "The TFLite converter could not make an int8 model"
            + (f" (layer '{layer}'" if layer else "")
            + (f", op {op})" if layer and op else (")" if layer else ""))
            + f": {last}",
            layer=layer,
            op=op,
        ) from None

    tflite_model = _flatbuffer.read_model(tflite_bytes)
    specs = [e.lut_spec() for e in exports if e.generated]
    lut_info = _flatbuffer.replace_nlf_islands(tflite_model, specs)
    rescaled = _flatbuffer.fix_bias_scales(tflite_model)
    _flatbuffer.remove_unused_tensors(tflite_model)
    info = {"groupnl": lut_info, "bias_rescaled": rescaled}
    return _flatbuffer.write_model(tflite_model), info
