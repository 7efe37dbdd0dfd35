"""Tests of `keras_groupnl.analysis.describe_machine`."""

import os

import keras
import pytest

from keras_groupnl.analysis import Machine
from keras_groupnl.analysis import describe_machine
from keras_groupnl.analysis import machine as machine_module


def test_reads_the_cpu_of_this_machine():
    machine = describe_machine()
    assert machine.cpu and machine.architecture
    assert machine.cores >= 1
    assert machine.tensorflow_onednn is None
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            text = f.read()
        assert machine.cpu in text
        if " avx2" in text:
            assert "AVX2" in machine.vector_isa
        if " avx512_vnni" in text:
            assert "AVX-512 VNNI" in machine.vector_isa


def test_isa_names_from_flags(monkeypatch):
    cpuinfo = (
        "processor\t: 0\nmodel name\t: Example CPU\n"
        "flags\t\t: fpu avx2 avx512f avx512_vnni amx_int8\n"
        "processor\t: 1\nmodel name\t: Other\nflags\t\t: fpu\n"
    )
    monkeypatch.setattr(
        machine_module, "_cpuinfo", lambda: machine_module._parse(cpuinfo)
    )
    monkeypatch.setattr(machine_module.platform, "machine", lambda: "x86_64")
    machine = describe_machine()
    assert machine.cpu == "Example CPU"
    assert machine.vector_isa == ("AVX2", "AVX-512", "AVX-512 VNNI", "AMX-INT8")
    arm = "Features\t: fp asimd asimddp i8mm\nCPU part\t: 0xd44\n"
    monkeypatch.setattr(
        machine_module, "_cpuinfo", lambda: machine_module._parse(arm)
    )
    monkeypatch.setattr(machine_module.platform, "machine", lambda: "aarch64")
    assert describe_machine().vector_isa == ("NEON", "dot-product", "I8MM")


def test_label_and_round_trip():
    machine = Machine("X", "x86_64", ("AVX2",), 2, tensorflow_onednn=False)
    assert machine.label() == (
        "X (x86_64; AVX2; 2 cores); TensorFlow oneDNN off"
    )
    assert Machine(**machine.to_dict()).label() == machine.label()


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="asks TensorFlow; run in the TensorFlow test process",
)
def test_onednn_answer_follows_the_environment():
    flag = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    onednn = describe_machine(tensorflow=True).tensorflow_onednn
    if flag == "0":
        assert onednn is False
    elif flag == "1":
        assert onednn is True
