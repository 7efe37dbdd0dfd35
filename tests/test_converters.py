"""Tests of `keras_groupnl.converters` (TensorFlow backend).

Small GroupNL classifiers (dense and sparse, strides 1 and 2, around a
Conv2D+BN+ReLU stem and a Dense head) are trained for a few steps on a
synthetic 4-class task, converted for both targets, and the converted models
are run again here, from the files on disk, in LiteRT and TensorFlow Lite
Micro and compared with Keras.

Thresholds: top-1 agreement with Keras >= 0.95 on the verification samples,
and max |logit error| <= 5% of the spread of the Keras logits.
"""

import json
import os
import re
import shutil
import subprocess

import keras
import numpy as np
import pytest

from keras_groupnl.layers import GroupNLConv2D
from keras_groupnl.layers import SparseGroupNLConv2D

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
tflite_micro = pytest.importorskip("tflite_micro")

from keras_groupnl import cli  # noqa: E402
from keras_groupnl.converters import ConversionError  # noqa: E402
from keras_groupnl.converters import _flatbuffer  # noqa: E402
from keras_groupnl.converters import convert  # noqa: E402

requires_tf_backend = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="in-process conversion tests run on the TensorFlow backend; "
    "test_other_backend_converts_in_subprocess covers the others",
)
pytestmark = requires_tf_backend

MIN_AGREEMENT = 0.95
MAX_RELATIVE_LOGIT_ERROR = 0.05
SHAPE = (16, 16, 3)
CLASSES = 4


def _dataset(n, seed=0):
    """Four classes of tinted, oriented stripes with noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    patterns = np.stack(
        [
            np.sin(rows * 0.8),
            np.sin(cols * 0.8),
            np.sin((rows + cols) * 0.6),
            np.sin((rows - cols) * 0.6),
        ]
    )
    x = patterns[y][..., None] * rng.uniform(0.5, 1.0, (n, 1, 1, SHAPE[2]))
    # A class-dependent tint as well, so that a few steps learn it.
    tint = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]])
    x = x + 0.5 * tint[y][:, None, None, :]
    x = x + 0.3 * rng.standard_normal((n,) + SHAPE)
    return x.astype("float32"), y


def _model(kind, strides, after="bn_relu", **layer_kwargs):
    """Stem, one GroupNL layer, then `after` ("bn_relu", "bn_relu6",
    "bn_hard_swish", "bn" or "none"), pooling and a dense head; trained a
    few steps."""
    keras.utils.set_random_seed(1)
    layer_cls = GroupNLConv2D if kind == "dense" else SparseGroupNLConv2D
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    kwargs = dict(
        filters=16,
        kernel_size=3,
        strides=strides,
        padding="same",
        reduction_ratio=2,
        num_groups=4,
        seed=3,
    )
    kwargs.update(layer_kwargs)
    x = layer_cls(name="groupnl", **kwargs)(x)
    if after != "none":
        x = keras.layers.BatchNormalization(name="groupnl_bn")(x)
    if after in ("bn_relu", "bn_relu6"):
        limit = 6.0 if after == "bn_relu6" else None
        x = keras.layers.ReLU(max_value=limit, name="groupnl_relu")(x)
    if after == "bn_hard_swish":
        x = keras.layers.Activation("hard_swish", name="groupnl_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(CLASSES, name="head")(x)
    model = keras.Model(inputs, outputs, name=f"{kind}_s{strides}")
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x_train, y_train = _dataset(512, seed=1)
    model.fit(x_train, y_train, batch_size=32, epochs=4, verbose=0)
    return model


@pytest.fixture(scope="module")
def data():
    return _dataset(96, seed=2)


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(kind, strides):
        if (kind, strides) not in cache:
            cache[(kind, strides)] = _model(kind, strides)
        return cache[(kind, strides)]

    return get


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _litert_predict(model_bytes, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes, num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    results = []
    for sample in x:
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            sample = np.clip(np.round(sample / scale) + zero, -128, 127)
        interpreter.set_tensor(inp["index"], sample[None].astype(inp["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] == np.int8:
            scale, zero = out["quantization"]
            y = (y - zero) * scale
        results.append(y[0])
    return np.stack(results)


def _tflm_predict(model_bytes, x, arena_size=None):
    interpreter = tflite_micro.runtime.Interpreter.from_bytes(
        model_bytes, arena_size=arena_size or (1 << 20)
    )
    inp = interpreter.get_input_details(0)
    out = interpreter.get_output_details(0)
    in_scale = inp["quantization_parameters"]["scales"][0]
    in_zero = inp["quantization_parameters"]["zero_points"][0]
    out_scale = out["quantization_parameters"]["scales"][0]
    out_zero = out["quantization_parameters"]["zero_points"][0]
    results = []
    for sample in x:
        q = np.clip(np.round(sample / in_scale) + in_zero, -128, 127)
        interpreter.set_input(q[None].astype(np.int8), 0)
        interpreter.invoke()
        y = interpreter.get_output(0).astype(np.float32)
        results.append((y[0] - out_zero) * out_scale)
    return np.stack(results)


def _check_agreement(reference, output):
    agreement = np.mean(reference.argmax(1) == output.argmax(1))
    spread = reference.max() - reference.min()
    error = np.abs(reference - output).max()
    assert agreement >= MIN_AGREEMENT, agreement
    assert error <= MAX_RELATIVE_LOGIT_ERROR * spread, (error, spread)


def _ops_and_types(model_bytes):
    model = _flatbuffer.read_model(model_bytes)
    subgraph = model.subgraphs[0]
    ops = [_flatbuffer.op_name(model, op) for op in subgraph.operators]
    types = {_flatbuffer.TYPE_NAMES[t.type] for t in subgraph.tensors}
    return ops, types


# --------------------------------------------------------------------------
# Both targets on dense and sparse GroupNL, strides 1 and 2.


@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("strides", [1, 2])
def test_mcu_target(models, data, tmp_path, kind, strides):
    model = models(kind, strides)
    x, y = data
    out = tmp_path / "mcu"
    result = convert(model, "mcu", x, out, labels=y, verbose=0)
    report = result.report

    expected = {
        "model.tflite",
        "model_data.cc",
        "model_data.h",
        "model_ops.h",
        "model_report.json",
    }
    assert set(os.listdir(out)) == expected
    assert result.tflite_path == str(out / "model.tflite")
    with open(result.report_path) as f:
        assert json.load(f) == report.to_dict()

    # Full integer: no float tensor, no float op, int8 input and output.
    model_bytes = _read(result.tflite_path)
    ops, types = _ops_and_types(model_bytes)
    assert report.float_ops == 0
    assert not types & {"FLOAT32", "FLOAT16", "FLOAT64"}, types
    assert "SIN" not in ops and "DEQUANTIZE" not in ops
    # The compact graph: one table per NLF, indexed by QUANTIZE to int32.
    assert {"L2_NORMALIZATION", "QUANTIZE", "GATHER"} <= set(ops)
    assert "CAST" not in ops
    assert set(ops) <= set(_flatbuffer.TFLM_RESOLVER_METHODS)
    assert report.input["dtype"] == report.output["dtype"] == "int8"
    assert report.weights["int8"] == report.weights["ops"]
    assert report.sizes["file"] == len(model_bytes)
    assert report.op_histogram == {op: ops.count(op) for op in sorted(set(ops))}
    assert report.resolver_ops == sorted(
        _flatbuffer.TFLM_RESOLVER_METHODS[op] for op in set(ops)
    )
    (layer,) = report.groupnl
    assert layer.tables == 4 and layer.table_bytes == 4 * 256
    assert report.sizes["tables"] == 4 * 256

    # Runs in TFLM (from the file, in the measured arena) and agrees with
    # Keras. LiteRT refuses its int8 -> int32 QUANTIZE.
    reference = model.predict(x, verbose=0)
    tflm = _tflm_predict(model_bytes, x, arena_size=report.arena.arena_bytes)
    _check_agreement(reference, tflm)
    assert report.top1_agreement >= MIN_AGREEMENT
    assert list(report.verification) == ["tflm"]
    assert report.verification["tflm"].accuracy is not None
    assert report.keras_accuracy is not None
    assert report.latency["tflm"].median_ms > 0


@pytest.mark.parametrize(
    "kind,strides,io_dtype",
    [
        ("dense", 1, "float32"),
        ("sparse", 2, "float32"),
        ("dense", 2, "int8"),
        ("sparse", 1, "int8"),
    ],
)
def test_phone_target(models, data, tmp_path, kind, strides, io_dtype):
    model = models(kind, strides)
    x, y = data
    out = tmp_path / "phone"
    result = convert(
        model, "phone", x, out, labels=y, io_dtype=io_dtype, verbose=0
    )
    report = result.report
    assert set(os.listdir(out)) == {"model.tflite", "model_report.json"}
    model_bytes = _read(result.tflite_path)
    ops, _ = _ops_and_types(model_bytes)
    # The GroupNL layer's tail (with its BN and ReLU) is float and XNNPACK
    # runs it: one partition, every op delegated, no lookup table.
    assert (
        "SIN" in ops and "GATHER" not in ops and "L2_NORMALIZATION" not in ops
    )
    assert set(report.float_ops_by_layer) == {"groupnl"}
    assert report.delegation.partitions == 1
    assert report.delegation.undelegated_ops == []
    (layer,) = report.groupnl
    assert layer.folded_layers == ["groupnl_bn", "groupnl_relu"]
    assert report.input["dtype"] == io_dtype
    assert report.input["scale"] > 0
    reference = model.predict(x, verbose=0)
    _check_agreement(reference, _litert_predict(model_bytes, x))
    assert report.arena is None
    assert report.latency["litert"].median_ms > 0
    assert list(report.verification) == ["litert"]
    # Noisy synthetic data is not taken for images: no input stage, and
    # MediaPipe's image classifier is not tried; the metadata still names
    # the classes by index.
    android = report.android
    assert android.color_space is None and android.input_stage == []
    assert android.class_names == "class indices"
    clients = {c.client: c for c in android.clients}
    assert clients["LiteRT CompiledModel"].accepted
    assert clients["MediaPipe Tasks ImageClassifier"].accepted is None


# Layer variants both targets must convert: (kind, strides, what follows the
# GroupNL layer, layer arguments).
VARIANTS = {
    "dense_r2": ("dense", 1, "bn_relu", {}),
    "dense_s2_r3": ("dense", 2, "bn_relu", dict(reduction_ratio=3)),
    "dense_r4_shuffle_relu6": (
        "dense",
        1,
        "bn_relu6",
        dict(reduction_ratio=4, shuffle=True),
    ),
    "dense_uneven_groups_bn": (
        "dense",
        1,
        "bn",
        dict(filters=20, num_groups=3),
    ),
    "dense_partial_copy": (
        "dense",
        1,
        "bn_relu",
        dict(filters=14, reduction_ratio=4, num_groups=2),
    ),
    "dense_s2_into_pooling": ("dense", 2, "none", {}),
    "sparse_s2_r4_into_pooling": ("sparse", 2, "none", dict(reduction_ratio=4)),
    "sparse_relu6": ("sparse", 1, "bn_relu6", {}),
    "sparse_s2_hard_swish": ("sparse", 2, "bn_hard_swish", {}),
    "dense_bias_valid": (
        "dense",
        1,
        "bn_relu",
        dict(use_bias=True, padding="valid"),
    ),
    "dense_dilation": ("dense", 1, "bn_relu", dict(dilation_rate=2)),
    "dense_r1": ("dense", 1, "bn_relu", dict(reduction_ratio=1)),
}


@pytest.fixture(scope="module")
def variant_models():
    cache = {}

    def get(key):
        if key not in cache:
            kind, strides, after, kwargs = VARIANTS[key]
            cache[key] = _model(kind, strides, after=after, **kwargs)
        return cache[key]

    return get


@pytest.mark.parametrize("key", list(VARIANTS))
def test_mcu_layer_variants(variant_models, data, tmp_path, key):
    model = variant_models(key)
    x, _ = data
    result = convert(model, "mcu", x[:48], tmp_path / "out", verbose=0)
    model_bytes = _read(result.tflite_path)
    ops, types = _ops_and_types(model_bytes)
    assert result.report.float_ops == 0
    assert not types & {"FLOAT32", "FLOAT16", "FLOAT64"}
    assert set(ops) <= set(_flatbuffer.TFLM_RESOLVER_METHODS)
    folded = ["groupnl_bn"] if VARIANTS[key][2] != "none" else []
    after = VARIANTS[key][2]
    folded += (
        ["groupnl_relu"] if after.startswith("bn_") and after != "bn" else []
    )
    assert result.report.groupnl[0].folded_layers == folded
    reference = model.predict(x[:48], verbose=0)
    _check_agreement(reference, _tflm_predict(model_bytes, x[:48]))


@pytest.mark.parametrize("key", list(VARIANTS))
def test_phone_runs_in_one_xnnpack_partition(
    variant_models, data, tmp_path, key
):
    """Every GroupNL variant stays in one XNNPACK partition, every op
    delegated, and agrees with Keras."""
    model = variant_models(key)
    x, _ = data
    result = convert(model, "phone", x[:48], tmp_path / "out", verbose=0)
    report = result.report
    assert report.delegation.partitions == 1
    assert report.delegation.undelegated_ops == []
    assert set(report.float_ops_by_layer) <= {"groupnl"}
    reference = model.predict(x[:48], verbose=0)
    _check_agreement(
        reference, _litert_predict(_read(result.tflite_path), x[:48])
    )


@pytest.mark.parametrize(
    "key",
    [
        "dense_r2",
        "dense_r4_shuffle_relu6",
        "dense_partial_copy",
        "sparse_s2_hard_swish",
    ],
)
def test_phone_int8_concatenation_on_large_outputs(
    variant_models, data, tmp_path, monkeypatch, key
):
    """Above `INT8_CONCAT_MIN_VALUES` (here lowered to every layer) the
    tail is folded per part and concatenated in int8: still one
    partition, and it agrees with Keras."""
    from keras_groupnl.converters import _phone

    monkeypatch.setattr(_phone, "INT8_CONCAT_MIN_VALUES", 0)
    model = variant_models(key)
    x, _ = data
    result = convert(model, "phone", x[:48], tmp_path / "out", verbose=0)
    report = result.report
    (layer,) = report.groupnl
    assert layer.variant.endswith("int8 concatenation")
    assert "CONCATENATION" not in report.float_ops_by_layer["groupnl"]
    assert report.delegation.partitions == 1
    assert report.delegation.undelegated_ops == []
    reference = model.predict(x[:48], verbose=0)
    _check_agreement(
        reference, _litert_predict(_read(result.tflite_path), x[:48])
    )


def test_phone_integer_only(models, data, tmp_path):
    """The full-integer phone model: no float op inside, runs in LiteRT."""
    model = models("dense", 2)
    x, _ = data
    result = convert(
        model,
        "phone",
        x[:48],
        tmp_path / "out",
        integer_only=True,
        io_dtype="int8",
        verbose=0,
    )
    report = result.report
    model_bytes = _read(result.tflite_path)
    ops, types = _ops_and_types(model_bytes)
    assert report.integer_only and report.float_ops == 0
    assert "FLOAT32" not in types and "SIN" not in ops
    # LiteRT's CAST + ADD index, not TFLite Micro's int8 -> int32 QUANTIZE.
    assert {"CAST", "ADD", "GATHER"} <= set(ops)
    _check_agreement(
        model.predict(x[:48], verbose=0), _litert_predict(model_bytes, x[:48])
    )
    with pytest.raises(
        ValueError, match="`integer_only` applies to the 'phone'"
    ):
        convert(model, "mcu", x[:8], tmp_path / "x", integer_only=True)
    with pytest.raises(
        ValueError, match="`integer_only` must be True or False"
    ):
        convert(model, "phone", x[:8], tmp_path / "x", integer_only="yes")


def test_mcu_without_batchnorm_folding(models, data, tmp_path):
    model = models("sparse", 1)
    x, _ = data
    result = convert(
        model, "mcu", x[:48], tmp_path / "out", fold_batchnorm=False, verbose=0
    )
    assert result.report.float_ops == 0
    assert result.report.groupnl[0].folded_layers == []
    # One 256-byte table per (period, shift) pair, folded or not.
    assert result.report.groupnl[0].tables == 4
    _check_agreement(
        model.predict(x[:48], verbose=0),
        _tflm_predict(_read(result.tflite_path), x[:48]),
    )


def test_conv_directly_after_groupnl_gets_consistent_bias(data, tmp_path):
    """A conv reading the GroupNL output (whose scale is fixed to 1/128) has
    a bias on the scale its kernel uses: input scale x weight scale."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input(SHAPE)
    x = GroupNLConv2D(16, 3, padding="same", seed=1, name="groupnl")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="after")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(x))
    x_data, _ = data
    result = convert(model, "mcu", x_data[:48], tmp_path / "out", verbose=0)
    tfl = _flatbuffer.read_model(_read(result.tflite_path))
    subgraph = tfl.subgraphs[0]
    for op in subgraph.operators:
        if (
            _flatbuffer.op_name(tfl, op) in ("CONV_2D", "FULLY_CONNECTED")
            and len(op.inputs) > 2
            and op.inputs[2] >= 0
        ):
            scales = [
                _flatbuffer.quantization(subgraph.tensors[op.inputs[i]])[0]
                for i in range(3)
            ]
            s_in, s_w, s_b = scales[0][0], scales[1], scales[2]
            np.testing.assert_allclose(s_b, s_in * np.asarray(s_w), rtol=1e-5)
    _check_agreement(
        model.predict(x_data[:48], verbose=0),
        _tflm_predict(_read(result.tflite_path), x_data[:48]),
    )


# --------------------------------------------------------------------------
# The NLF lookup table.


def _bare_model(**layer_kwargs):
    """GroupNL straight into pooling: nothing to fold into the layer."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem_conv")(inputs)
    kwargs = dict(filters=16, kernel_size=3, padding="same", seed=3)
    kwargs.update(layer_kwargs)
    x = GroupNLConv2D(name="groupnl", **kwargs)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(x))


def _tflite_round(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


@pytest.mark.parametrize(
    "layer_kwargs",
    [
        dict(),
        dict(reduction_ratio=4),
        dict(reduction_ratio=4, shuffle=True),
        dict(filters=14, reduction_ratio=4, num_groups=2),
        dict(filters=20, num_groups=3),
    ],
    ids=["r2", "r4", "r4_shuffle", "partial_copy", "uneven_groups"],
)
def test_generated_channels_are_exact_tables(data, tmp_path, layer_kwargs):
    """Inside the full-integer model, every generated channel is exactly the
    NLF `sin(T * (u - phi))` of its int8 normalised seed channel `u`,
    rounded once to the output quantization (1/128). Checked in the
    LiteRT-compatible variant (`integer_only`), whose tables are the MCU's."""
    from ai_edge_litert.interpreter import Interpreter

    model = _bare_model(**layer_kwargs)
    layer = model.get_layer("groupnl")
    x, _ = data
    result = convert(
        model, "phone", x[:32], tmp_path / "out", integer_only=True, verbose=0
    )
    interpreter = Interpreter(
        model_path=result.tflite_path, experimental_preserve_all_tensors=True
    )
    interpreter.allocate_tensors()
    tfl = _flatbuffer.read_model(_read(result.tflite_path))
    subgraph = tfl.subgraphs[0]
    by_op = {}
    for op in subgraph.operators:
        by_op.setdefault(_flatbuffer.op_name(tfl, op), []).append(op)
    (norm,) = by_op["L2_NORMALIZATION"]
    (concat,) = [
        op
        for op in by_op["CONCATENATION"]
        if subgraph.tensors[int(op.outputs[0])].shape[-1] == layer.filters
    ]
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], x[:1])
    interpreter.invoke()
    u = interpreter.get_tensor(int(norm.outputs[0])).astype(np.float64)
    out = interpreter.get_tensor(int(concat.outputs[0])).astype(np.float64)
    quant = _flatbuffer.quantization(subgraph.tensors[int(concat.outputs[0])])
    assert (quant[0][0], quant[1][0]) == (1 / 128, 0)
    form = layer.deploy_form()
    value = np.sin(form.period * (u[..., form.source] / 128.0 - form.shift))
    want = np.clip(_tflite_round(value * 128), -128, 127)
    np.testing.assert_array_equal(out[..., : layer.seed_channels], u)
    np.testing.assert_array_equal(out[..., layer.seed_channels :], want)
    assert result.report.groupnl[0].tables == form.periods.size


# --------------------------------------------------------------------------
# The fused GroupNL kernel (mcu_kernel="fused", "fused_channel_tables").


def _kernel_evaluate(tmp_path):
    """`_fused.evaluate` computed by the C kernel, compiled here."""
    import ctypes

    from tests.test_fused_kernel import KERNELS
    from tests.test_fused_kernel import run_kernel

    library = tmp_path / "tail.so"
    subprocess.run(
        [
            "gcc",
            "-std=c99",
            "-O2",
            "-fPIC",
            "-shared",
            "-o",
            str(library),
            os.path.join(KERNELS, "keras_groupnl_tail.c"),
            "-lm",
        ],
        check=True,
    )
    lib = ctypes.CDLL(str(library))

    def evaluate(tail, x):
        status, out = run_kernel(lib, tail, x)
        assert status == 0
        return out

    return evaluate


@pytest.mark.parametrize(
    "kind,strides,mcu_kernel",
    [
        ("dense", 1, "fused"),
        ("sparse", 2, "fused"),
        ("dense", 2, "fused_channel_tables"),
    ],
)
def test_mcu_fused_kernel(
    models, data, tmp_path, monkeypatch, kind, strides, mcu_kernel
):
    from keras_groupnl.converters import _fused
    from keras_groupnl.converters import _partitioned

    model = models(kind, strides)
    x, y = data
    builtin = convert(model, "mcu", x, tmp_path / "builtin", verbose=0)
    result = convert(
        model,
        "mcu",
        x,
        tmp_path / "fused",
        labels=y,
        verbose=0,
        mcu_kernel=mcu_kernel,
    )
    report = result.report
    kernel_files = {
        "keras_groupnl_tail.c",
        "keras_groupnl_tail.h",
        "keras_groupnl_tail_tflm.cc",
    }
    assert kernel_files <= set(os.listdir(tmp_path / "fused"))
    assert not kernel_files & set(os.listdir(tmp_path / "builtin"))
    # One custom op replaces the tail; nothing of the builtin tail is left.
    ops, types = _ops_and_types(_read(result.tflite_path))
    assert ops.count("CUSTOM:KERAS_GROUPNL_TAIL") == 1
    assert not {"L2_NORMALIZATION", "GATHER", "QUANTIZE", "SPLIT"} & set(ops)
    # The sparse seed conv (8 groups of one channel) is its depthwise conv
    # alone: no 1x1 conv beside the stem's.
    assert ops.count("CONV_2D") == (1 if kind == "sparse" else 2)
    assert not types & {"FLOAT32", "FLOAT16", "FLOAT64"}, types
    ops_header = open(result.files["ops_header"]).read()
    assert "TFLMRegistration* Register_KERAS_GROUPNL_TAIL();" in ops_header
    assert (
        'resolver.AddCustom("KERAS_GROUPNL_TAIL", '
        "Register_KERAS_GROUPNL_TAIL())" in ops_header
    )
    # Verified (TFLite Micro + the reference) against Keras; not timed.
    assert set(report.verification) == {"tflm_fused"}
    assert report.top1_agreement >= MIN_AGREEMENT
    assert report.latency == {}
    (layer,) = report.groupnl
    assert layer.variant.startswith("fused KERAS_GROUPNL_TAIL")
    if mcu_kernel == "fused":
        assert layer.table_bytes == 256 * 4  # One table per NLF.
        assert report.sizes["file"] < builtin.report.sizes["file"]
    else:
        assert layer.table_bytes == 256 * 16  # One per output channel.
    # Fewer ops and tensors: no more arena than the builtin graph.
    assert report.arena.arena_bytes <= builtin.report.arena.arena_bytes
    # The desktop check before flashing, for both kinds of "mcu" file.
    from keras_groupnl.converters import mcu_predict

    # The same int8 outputs (dequantized in float32 and float64 here).
    np.testing.assert_allclose(
        mcu_predict(builtin.tflite_path, x[:4]),
        _tflm_predict(_read(builtin.tflite_path), x[:4]),
        rtol=1e-6,
    )
    _check_agreement(
        model.predict(x, verbose=0), mcu_predict(result.tflite_path, x)
    )
    # The C kernel, compiled here, gives the same outputs, byte for byte.
    runner = _partitioned.PartitionedRunner(_read(result.tflite_path))
    raw = np.clip(
        np.round(x / runner.input_detail["scale"])
        + runner.input_detail["zero_point"],
        -128,
        127,
    ).astype(np.int8)
    expected = [runner.invoke_raw(raw[i : i + 1]) for i in range(8)]
    monkeypatch.setattr(_fused, "evaluate", _kernel_evaluate(tmp_path))
    for i, want in enumerate(expected):
        np.testing.assert_array_equal(runner.invoke_raw(raw[i : i + 1]), want)


def test_mcu_fused_kernel_without_generated_maps(data, tmp_path):
    # reduction_ratio=1: every map is a seed map, no NLF table at all.
    model = _model("dense", 1, reduction_ratio=1)
    x, _ = data
    result = convert(
        model, "mcu", x, tmp_path / "out", verbose=0, mcu_kernel="fused"
    )
    ops, _ = _ops_and_types(_read(result.tflite_path))
    assert ops.count("CUSTOM:KERAS_GROUPNL_TAIL") == 1
    assert result.report.top1_agreement >= MIN_AGREEMENT
    from keras_groupnl.converters import mcu_predict

    _check_agreement(
        model.predict(x, verbose=0), mcu_predict(result.tflite_path, x)
    )


def test_mcu_fused_kernel_refuses_a_tail_op_it_does_not_compute(
    models, data, tmp_path, monkeypatch
):
    from keras_groupnl.converters import _fused_graph

    # As if GATHER were not the fused kernel's: the layer is named, and
    # nothing is left behind.
    monkeypatch.setattr(
        _fused_graph, "_TAIL_OPS", _fused_graph._TAIL_OPS - {"GATHER"}
    )
    x, _ = data
    with pytest.raises(ConversionError, match=r"'groupnl'.*: GATHER"):
        convert(
            models("dense", 1), "mcu", x, tmp_path / "out", mcu_kernel="fused"
        )
    assert not (tmp_path / "out").exists()


def _two_layer_model():
    """A wide GroupNL layer (pays) and a narrow one, each with BN + ReLU."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((16, 16, 16))
    x = inputs
    for name, filters in (("wide", 64), ("narrow", 8)):
        x = GroupNLConv2D(
            filters,
            3,
            padding="same",
            reduction_ratio=4,
            num_groups=2,
            seed=1,
            name=name,
        )(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return keras.Model(inputs, x)


def test_layer_costs_on_a_microcontroller():
    from keras_groupnl.converters import layer_costs

    costs = layer_costs(_two_layer_model(), "mcu", samples=4)
    assert [c.layer for c in costs.layers] == ["wide", "narrow"]
    assert costs.measures == sorted(_cortex_m_targets())
    wide, narrow = costs.layers
    assert wide.input_shape == (16, 16, 16)
    assert narrow.input_shape == (16, 16, 64)
    assert wide.folded == ["wide_bn", "wide_relu"]
    for cost in costs.layers:
        for measure in costs.measures:
            assert cost.ratios[measure] == pytest.approx(
                cost.groupnl[measure] / cost.conv[measure]
            )
    # r = 4 on a 16 -> 64 conv: a quarter of the MACs, so it pays with
    # CMSIS-NN; the exclusion list names exactly the layers that do not.
    assert wide.pays("cortex-m4f/cmsis-nn")
    assert costs.exclude("cortex-m4f/cmsis-nn") == [
        c.layer for c in costs.layers if c.ratios["cortex-m4f/cmsis-nn"] >= 1
    ]
    table = costs.summary()
    assert "| wide | 16x16x16 |" in table and "narrow" in table
    # With the fused op the tail costs less on a Cortex-M55 (CMSIS-NN).
    fused = layer_costs(
        _two_layer_model(), "mcu", samples=4, mcu_kernel="fused"
    )
    measure = "cortex-m55/cmsis-nn"
    for mine, builtin in zip(fused.layers, costs.layers):
        assert mine.ratios[measure] < builtin.ratios[measure]


def test_layer_costs_on_a_phone_and_bad_target():
    from keras_groupnl.converters import layer_costs

    model = _two_layer_model()
    costs = layer_costs(model, "phone", samples=4)
    assert costs.measures == ["litert ms"]
    assert all(c.groupnl["litert ms"] > 0 for c in costs.layers)
    assert costs.machine["cores"] >= 1
    with pytest.raises(ValueError, match=r"target='gpu'"):
        layer_costs(model, "gpu")


def _cortex_m_targets():
    from keras_groupnl.converters import _cortex_m

    return _cortex_m.costs()["targets"]


# --------------------------------------------------------------------------
# Firmware artefacts.


@pytest.fixture(scope="module")
def mcu_result(models, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("firmware")
    return convert(models("sparse", 2), "mcu", data[0][:32], out, verbose=0)


def test_c_array_compiles_and_matches(mcu_result, tmp_path):
    compiler = shutil.which("gcc")
    if compiler is None:
        pytest.skip("gcc is not installed")
    source = mcu_result.files["c_source"]
    text = open(source).read()
    assert "alignas(16) const unsigned char g_model_data[]" in text
    obj = tmp_path / "model_data.o"
    subprocess.run([compiler, "-c", source, "-o", str(obj)], check=True)
    assert obj.stat().st_size > 0
    payload = bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", text))
    assert payload == _read(mcu_result.tflite_path)
    assert f"g_model_data_len = {len(payload)};" in text
    header = open(mcu_result.files["c_header"]).read()
    arena = mcu_result.report.arena.arena_bytes
    assert f"#define MODEL_TENSOR_ARENA_SIZE {arena}" in header
    ops_header = open(mcu_result.files["ops_header"]).read()
    for method in mcu_result.report.resolver_ops:
        assert f"resolver.{method}()" in ops_header


def test_constant_buffers_are_16_byte_aligned(mcu_result):
    from ai_edge_litert import schema_py_generated as schema

    buf = bytearray(_read(mcu_result.tflite_path))
    model = schema.Model.GetRootAsModel(buf, 0)
    checked = 0
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength() == 0:
            continue
        start = buffer._tab.Vector(buffer._tab.Offset(4))
        assert start % 16 == 0, (i, start)
        checked += 1
    assert checked > 0


def test_measured_arena_is_enough(mcu_result, data):
    arena = mcu_result.report.arena.arena_bytes
    assert 0 < arena < 1 << 20 and arena % 16 == 0
    _tflm_predict(_read(mcu_result.tflite_path), data[0][:2], arena_size=arena)


# --------------------------------------------------------------------------
# Refusals: the converter never writes a model that is not what it claims.


@keras.saving.register_keras_serializable(package="test_converters")
class _FloatSin(keras.layers.Layer):
    def call(self, x):
        return keras.ops.sin(x)


@keras.saving.register_keras_serializable(package="test_converters")
class _Tile(keras.layers.Layer):
    def call(self, x):
        return keras.ops.tile(x, (1, 1, 1, 2))

    def compute_output_shape(self, shape):
        return shape[:3] + (shape[3] * 2,)


def _model_with(layer):
    inputs = keras.Input((8, 8, 3))
    x = GroupNLConv2D(8, 3, padding="same", seed=1, name="gnl")(inputs)
    x = layer(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


@pytest.mark.parametrize("target", ["mcu", "phone"])
def test_refuses_float_op(tmp_path, target):
    model = _model_with(_FloatSin(name="my_sin"))
    x = np.random.default_rng(0).random((8, 8, 8, 3)).astype("float32")
    out = tmp_path / "out"
    match = r"layer 'my_sin'.*float op SIN"
    with pytest.raises(ConversionError, match=match) as info:
        convert(model, target, x, out, verbose=0)
    assert info.value.layer == "my_sin" and info.value.op == "SIN"
    assert not out.exists()


def test_refuses_op_missing_in_tflm(tmp_path):
    model = _model_with(_Tile(name="my_tile"))
    x = np.random.default_rng(0).random((8, 8, 8, 3)).astype("float32")
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match=r"Layer 'my_tile'.*TILE.*Micro"):
        convert(model, "mcu", x, out, verbose=0)
    assert not out.exists()


def test_refuses_below_min_agreement(models, data, tmp_path, monkeypatch):
    from keras_groupnl.converters import _runtime

    predict = _runtime.LiteRTRunner.predict
    # A runtime that disagrees with Keras: negated logits flip the top-1.
    monkeypatch.setattr(
        _runtime.LiteRTRunner,
        "predict",
        lambda self, x, progress=None: -predict(self, x, progress),
    )
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConversionError, match="below min_top1_agreement=0.9"):
        convert(
            models("dense", 1),
            "phone",
            data[0][:16],
            out,
            min_top1_agreement=0.9,
            verbose=0,
        )
    assert os.listdir(out) == []


# --------------------------------------------------------------------------
# Bad inputs: a clear ValueError and no file left behind.


@pytest.fixture(scope="module")
def small_model():
    inputs = keras.Input(SHAPE)
    x = GroupNLConv2D(8, 3, padding="same", seed=1)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(x))


def _assert_nothing_written(tmp_path, before):
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    "make_data,match",
    [
        (lambda: None, r"`representative_data` is required"),
        (lambda: np.zeros((0,) + SHAPE, "float32"), r"is empty"),
        (lambda: [], r"is empty"),
        (lambda: iter(()), r"is empty"),
        (
            lambda: np.zeros((4, 16, 16, 1), "float32"),
            r"does not fit the model.*\(16, 16, 3\)",
        ),
        (lambda: np.zeros(SHAPE, "float32"), r"does not fit the model.*4 axes"),
        (lambda: np.full((2,) + SHAPE, "a"), r"real numbers"),
        (lambda: np.zeros((2,) + SHAPE, bool), r"real numbers"),
        (lambda: np.zeros((2,) + SHAPE, np.complex64), r"real numbers"),
        (lambda: np.full((2,) + SHAPE, np.nan, "float32"), r"NaN or infinite"),
        (lambda: "data.npz", r"array of samples or an iterable"),
    ],
    ids=[
        "none",
        "empty_array",
        "empty_list",
        "empty_iterator",
        "wrong_shape",
        "no_batch_axis",
        "strings",
        "bool",
        "complex",
        "nan",
        "path",
    ],
)
def test_bad_representative_data(small_model, tmp_path, make_data, match):
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match=match):
        convert(small_model, "mcu", make_data(), tmp_path / "out", verbose=0)
    _assert_nothing_written(tmp_path, before)


def test_bad_target_and_options(small_model, tmp_path):
    x = np.zeros((2,) + SHAPE, "float32")
    with pytest.raises(ValueError, match=r"Unknown `target`.*target='gpu'"):
        convert(small_model, "gpu", x, tmp_path / "out", verbose=0)
    with pytest.raises(ValueError, match=r"'mcu' target is full-integer"):
        convert(small_model, "mcu", x, tmp_path / "out", io_dtype="float32")
    with pytest.raises(ValueError, match=r"`io_dtype` must be.*'uint16'"):
        convert(small_model, "phone", x, tmp_path / "out", io_dtype="uint16")
    with pytest.raises(ValueError, match=r"'mcu' target is full-integer"):
        convert(small_model, "mcu", x, tmp_path / "out", io_dtype="uint8")
    with pytest.raises(ValueError, match=r"`name` must be a C identifier"):
        convert(small_model, "mcu", x, tmp_path / "out", name="my model")
    with pytest.raises(ValueError, match=r"`labels` must hold one class"):
        convert(small_model, "mcu", x, tmp_path / "out", labels=[0, 1, 2])
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\)"):
        convert(small_model, "mcu", x, tmp_path / "out", labels=[0, 7])
    with pytest.raises(ValueError, match=r"mcu_kernel=.fast."):
        convert(small_model, "mcu", x, tmp_path / "out", mcu_kernel="fast")
    with pytest.raises(ValueError, match=r"applies to the 'mcu' target"):
        convert(small_model, "phone", x, tmp_path / "out", mcu_kernel="fused")
    assert list(tmp_path.iterdir()) == []


def test_unreadable_model(tmp_path):
    x = np.zeros((2,) + SHAPE, "float32")
    with pytest.raises(ValueError, match=r"Cannot read the model: no file"):
        convert(str(tmp_path / "missing.keras"), "mcu", x, tmp_path / "out")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"Cannot read the model at .*corrupt"):
        convert(str(corrupt), "mcu", x, tmp_path / "out")
    other = tmp_path / "weights.h5"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match=r"expected a Keras v3 '.keras' file"):
        convert(str(other), "mcu", x, tmp_path / "out")
    with pytest.raises(ValueError, match=r"`model` must be a keras.Model"):
        convert(object(), "mcu", x, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "corrupt.keras",
        "weights.h5",
    ]


def test_unwritable_output_dir(small_model, tmp_path):
    x = np.zeros((2,) + SHAPE, "float32")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    unwritable = r"`output_dir` cannot be written: "
    with pytest.raises(ValueError, match=unwritable + "it is a file"):
        convert(small_model, "mcu", x, a_file, verbose=0)
    with pytest.raises(ValueError, match=unwritable + "it lies under"):
        convert(small_model, "mcu", x, a_file / "sub" / "dir", verbose=0)
    if os.geteuid() != 0:  # root writes everywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match=r"`output_dir` cannot be written"):
            convert(small_model, "mcu", x, locked / "out", verbose=0)
        locked.chmod(0o700)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left in (["a_file"], ["a_file", "locked"])


# --------------------------------------------------------------------------
# Input forms, the CLI, other backends.


def test_iterable_batches_path_and_labels(models, data, tmp_path):
    model = models("dense", 2)
    path = tmp_path / "model.keras"
    model.save(path)
    x, y = data

    def batches():
        for start in range(0, 48, 16):
            yield x[start : start + 16], y[start : start + 16]

    result = convert(
        str(path),
        "phone",
        batches(),
        tmp_path / "out",
        name="fashion_net",
        verbose=0,
    )
    assert result.report.num_samples == 48
    assert result.report.verification["litert"].accuracy is not None
    assert os.path.basename(result.tflite_path) == "fashion_net.tflite"


def test_verification_data_is_held_out(models, data, tmp_path):
    model = models("dense", 1)
    x, y = data
    result = convert(
        model,
        "mcu",
        x[:16],
        tmp_path / "out",
        verification_data=(x[16:40], y[16:40]),
        verbose=0,
    )
    report = result.report
    assert report.calibration_samples == 16
    assert report.num_samples == 24
    expected = np.mean(
        _tflm_predict(_read(result.tflite_path), x[16:40]).argmax(1) == y[16:40]
    )
    assert report.verification["tflm"].accuracy == pytest.approx(expected)
    with pytest.raises(ValueError, match="Received: verification_data.shape"):
        convert(
            model,
            "mcu",
            x[:16],
            tmp_path / "bad",
            verification_data=x[:4, :10],
            verbose=0,
        )
    assert not (tmp_path / "bad").exists()


def test_cli_convert(models, data, tmp_path, capsys):
    model_path = tmp_path / "model.keras"
    models("sparse", 1).save(model_path)
    data_path = tmp_path / "calibration.npz"
    np.savez(data_path, x=data[0][:32], y=data[1][:32])
    out = tmp_path / "out"
    status = cli.main(
        [
            "convert",
            str(model_path),
            "--target",
            "mcu",
            "--calibration",
            str(data_path),
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "| float ops" in captured.out and "| tensor arena" in captured.out
    assert "top-1 agreement" in captured.out
    assert (out / "model_data.cc").exists()

    held_out = tmp_path / "held_out.npz"
    np.savez(held_out, x=data[0][32:48], y=data[1][32:48])
    labels = tmp_path / "labels.txt"
    labels.write_text("stripes\ncolumns\ndiagonal\nanti-diagonal\n")
    status = cli.main(
        [
            "convert",
            str(model_path),
            "--target",
            "phone",
            "--calibration",
            str(data_path),
            "--verification",
            str(held_out),
            "--out",
            str(tmp_path / "phone"),
            "--labels",
            str(labels),
            "--io-dtype",
            "uint8",
            "--json",
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    printed = json.loads(captured.out)
    assert printed["num_samples"] == 16
    assert printed["input"]["dtype"] == "uint8"
    assert printed["android"]["class_names"] == "given"

    # Bad input: exit status 2, a message, nothing written.
    status = cli.main(
        [
            "convert",
            str(model_path),
            "--target",
            "mcu",
            "--calibration",
            str(tmp_path / "nope.npz"),
            "--out",
            str(tmp_path / "out2"),
        ]
    )
    assert status == 2
    assert "no file" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()
    assert (
        cli.main(
            [
                "convert",
                str(model_path),
                "--target",
                "tpu",
                "--calibration",
                str(data_path),
                "--out",
                str(out),
            ]
        )
        == 2
    )


# --------------------------------------------------------------------------
# Savings against the plain twin (sizes and arena bytes are deterministic).


@pytest.fixture(scope="module")
def resnet8_pair():
    """GroupNL ResNet-8 (MLPerf Tiny topology, dense r = 2) and its plain
    twin from the same builder, with random data in the input range."""
    from keras_groupnl import applications

    keras.utils.set_random_seed(0)
    kwargs = dict(input_shape=(32, 32, 3), classes=10, seed=0)
    groupnl = applications.GroupNLResNet8(conv_type="dense", **kwargs)
    plain = applications.GroupNLResNet8(conv_type="plain", **kwargs)
    x = np.random.default_rng(0).random((16, 32, 32, 3), dtype="float32")
    return groupnl, plain, x


def test_mcu_is_smaller_than_plain_and_needs_no_more_activation_memory(
    resnet8_pair, tmp_path
):
    from keras_groupnl.converters import _memory_plan

    groupnl, plain, x = resnet8_pair
    result = convert(
        groupnl, "mcu", x, tmp_path / "out", compare_with=plain, verbose=0
    )
    report, twin = result.report, result.report.comparison
    assert twin.model == plain.name and twin.params == plain.count_params()
    # Flash: the file, tables included, is smaller than the plain model's.
    assert report.sizes["file"] <= 0.85 * twin.sizes["file"]
    assert twin.ratios["file"] == report.sizes["file"] / twin.sizes["file"]
    assert report.sizes["tables"] == sum(g.table_bytes for g in report.groupnl)
    # RAM: activations exactly the plain model's; the rest is bookkeeping.
    assert report.arena.activation_bytes == twin.arena.activation_bytes
    assert report.arena.arena_bytes <= 1.25 * twin.arena.arena_bytes
    # The offline plan reaches the lower bound: the most bytes ever live.
    tfl = _flatbuffer.read_model(_read(result.tflite_path))
    assert _memory_plan.plan(tfl)[1] == _memory_plan.live_peak(tfl)
    assert report.arena.activation_bytes == _memory_plan.live_peak(tfl)
    # Nothing TFLite Micro does not read: no tensor names, no signatures.
    assert not any(t.name for t in tfl.subgraphs[0].tensors)
    assert not tfl.signatureDefs
    assert [m.name for m in tfl.metadata] == [b"OfflineMemoryAllocation"]
    text = result.summary()
    assert "compared with the plain model" in text and "tensor arena" in text


def test_phone_comparison_reports_both_models(resnet8_pair, tmp_path):
    groupnl, plain, x = resnet8_pair
    report = convert(
        groupnl, "phone", x, tmp_path / "out", compare_with=plain, verbose=0
    ).report
    twin = report.comparison
    assert report.delegation.partitions == twin.delegation.partitions == 1
    assert report.sizes["file"] < twin.sizes["file"]
    assert twin.latency["litert"].median_ms > 0
    ratio = (
        report.latency["litert"].median_ms / twin.latency["litert"].median_ms
    )
    assert twin.ratios["latency_litert"] == pytest.approx(ratio)
    # The CPU the latencies came from, as the report and its table say.
    from keras_groupnl.analysis import describe_machine

    here = describe_machine(tensorflow=True)
    assert report.machine == here.to_dict()
    assert isinstance(report.machine["tensorflow_onednn"], bool)
    assert "measured on" in report.summary()
    assert here.label() in report.summary()


# --------------------------------------------------------------------------
# Faults: endless data, stale artefacts, unknown ops, bad files.


def test_endless_representative_data_is_read_only_as_needed(
    small_model, tmp_path
):
    read = {"batches": 0}

    def endless():
        rng = np.random.default_rng(0)
        while True:
            read["batches"] += 1
            yield rng.standard_normal((4,) + SHAPE).astype("float32")

    result = convert(
        small_model,
        "phone",
        endless(),
        tmp_path / "out",
        calibration_samples=16,
        verification_samples=12,
        verbose=0,
    )
    assert result.report.calibration_samples == 16
    assert result.report.num_samples == 12
    # 16 samples are needed: 4 batches, and one more read to find that out.
    assert read["batches"] <= 5


def test_converting_again_leaves_only_this_targets_artefacts(
    small_model, tmp_path
):
    x = np.random.default_rng(0).standard_normal((8,) + SHAPE).astype("float32")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    (out / "other_model.tflite").write_bytes(b"another model of the user")
    convert(small_model, "mcu", x, out, verbose=0)
    assert (out / "model_data.cc").exists()
    convert(small_model, "phone", x, out, verbose=0)
    assert sorted(p.name for p in out.iterdir()) == [
        "model.tflite",
        "model_report.json",
        "notes.txt",
        "other_model.tflite",
    ]
    report = json.loads((out / "model_report.json").read_text())
    assert report["target"] == "phone"


@pytest.mark.parametrize("target", ["mcu", "phone"])
def test_refuses_an_op_tflite_lacks_naming_layer_and_op(tmp_path, target):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.Lambda(keras.ops.erf, name="my_erf")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    x = np.random.default_rng(0).random((8, 8, 8, 3)).astype("float32")
    with pytest.raises(
        ConversionError, match=r"layer 'my_erf'.*op ERF"
    ) as info:
        convert(model, target, x, tmp_path / "out", verbose=0)
    assert (info.value.layer, info.value.op) == ("my_erf", "ERF")
    assert "tf.entry_function" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_truncated_keras_file_is_named_as_such(small_model, tmp_path):
    path = tmp_path / "model.keras"
    small_model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    x = np.zeros((2,) + SHAPE, "float32")
    with pytest.raises(ValueError, match=r"not a complete .keras archive"):
        convert(str(path), "mcu", x, tmp_path / "out", verbose=0)


def test_cli_bad_npz_files_are_named(small_model, tmp_path, capsys):
    model_path = tmp_path / "model.keras"
    small_model.save(model_path)
    not_npz = tmp_path / "calibration.npz"
    not_npz.write_bytes(b"plain text, not an archive")
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([{"a": 1}, None], dtype=object))
    for path, match in (
        (not_npz, "is not an .npz archive"),
        (objects, "hold Python objects"),
    ):
        status = cli.main(
            [
                "convert",
                str(model_path),
                "--target",
                "mcu",
                "--calibration",
                str(path),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        err = capsys.readouterr().err
        assert status == 2
        assert match in err and str(path) in err
        assert "allow_pickle" not in err
    assert not (tmp_path / "out").exists()


def test_quiet_conversion_prints_nothing(small_model, tmp_path, capfd):
    x = np.random.default_rng(0).standard_normal((8,) + SHAPE).astype("float32")
    capfd.readouterr()
    convert(small_model, "mcu", x, tmp_path / "out", verbose=0)
    out, err = capfd.readouterr()
    assert out == ""
    assert "fully_quantize" not in err and "XNNPACK" not in err
