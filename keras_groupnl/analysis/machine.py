"""The machine a speed figure was measured on.

Speed ratios depend on the CPU: where int8 convolution is fast (AVX-512
VNNI or AMX on x86, the dot-product and I8MM instructions of Arm cores),
a GroupNL model's float tail is a larger share of its time than on an
AVX2-only CPU, and TensorFlow's kernels change with oneDNN, which it turns
on by default only on CPUs with such instructions. Every benchmark table
and conversion report records `describe_machine()` beside its figures.
"""

import dataclasses
import os
import platform
import typing

# /proc/cpuinfo flag -> the name a reader knows, in reporting order.
_X86_ISA = (
    ("avx2", "AVX2"),
    ("avx512f", "AVX-512"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512_bf16", "AVX-512 BF16"),
    ("amx_int8", "AMX-INT8"),
)
_ARM_ISA = (
    ("asimd", "NEON"),
    ("asimddp", "dot-product"),
    ("i8mm", "I8MM"),
    ("sve", "SVE"),
)


@dataclasses.dataclass(frozen=True)
class Machine:
    """A CPU and how the frameworks use it.

    Attributes:
        cpu: the CPU's model name.
        architecture: `platform.machine()`, e.g. `"x86_64"`, `"aarch64"`.
        vector_isa: the vector / int8 instruction sets it has, of those
            that move int8 and float speed (`"AVX2"`, `"AVX-512"`,
            `"AVX-512 VNNI"`, `"AVX-VNNI"`, `"AMX-INT8"`; `"NEON"`,
            `"dot-product"`, `"I8MM"`, `"SVE"`).
        cores: CPUs this process may run on.
        tensorflow_onednn: whether TensorFlow runs its oneDNN kernels
            (`None`: not asked, e.g. a run without TensorFlow).
    """

    cpu: str
    architecture: str
    vector_isa: typing.Tuple[str, ...]
    cores: int
    tensorflow_onednn: typing.Optional[bool] = None

    def label(self):
        """One line for a table caption or a report."""
        isa = ", ".join(self.vector_isa) or "no vector ISA found"
        text = f"{self.cpu} ({self.architecture}; {isa}; {self.cores} cores)"
        if self.tensorflow_onednn is not None:
            text += "; TensorFlow oneDNN " + (
                "on" if self.tensorflow_onednn else "off"
            )
        return text

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["vector_isa"] = list(self.vector_isa)
        return data


def describe_machine(tensorflow=False):
    """The `Machine` this process runs on.

    Args:
        tensorflow: bool, whether to ask TensorFlow (importing it) if its
            oneDNN kernels are on. Defaults to `False`.
    """
    cpu, flags = _cpuinfo()
    table = _ARM_ISA if platform.machine() in ("aarch64", "arm64") else _X86_ISA
    return Machine(
        cpu=cpu or platform.processor() or "unknown CPU",
        architecture=platform.machine(),
        vector_isa=tuple(name for flag, name in table if flag in flags),
        cores=len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        tensorflow_onednn=tensorflow_onednn() if tensorflow else None,
    )


def _cpuinfo():
    """(model name, set of feature flags) from /proc/cpuinfo, if any."""
    try:
        with open("/proc/cpuinfo") as f:
            return _parse(f.read())
    except OSError:
        return None, set()


def _parse(text):
    """(model name, feature flags) of the first CPU in a /proc/cpuinfo."""
    cpu, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and cpu is None:
            cpu = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return cpu, flags


def tensorflow_onednn():
    """Whether TensorFlow runs its oneDNN CPU kernels in this process.

    Asked by running the one op that exists only with oneDNN: TensorFlow's
    own CPU kernels have no channels_first (NCHW) `Conv2D`. Whatever turned
    oneDNN on or off (the CPU, `TF_ENABLE_ONEDNN_OPTS`), this sees it.
    """
    import tensorflow as tf

    with tf.init_scope(), tf.device("/CPU:0"):
        try:
            tf.nn.conv2d(
                tf.zeros((1, 2, 4, 4)),
                tf.zeros((3, 3, 2, 2)),
                strides=1,
                padding="SAME",
                data_format="NCHW",
            )
        except tf.errors.OpError:
            return False
    return True
