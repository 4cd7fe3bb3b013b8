"""keras_googlenet/cpu.py: /proc/cpuinfo read without TensorFlow, and the choice of TensorFlow's
CPU kernels made before it loads."""

from __future__ import annotations

from keras_googlenet.cpu import ONEDNN_SWITCH, choose_kernels, cpu_flags, cpu_vendor

AVX2_ONLY = {"sse4_2", "avx", "avx2", "fma"}  # a Zen 3 EPYC, most laptops


def test_cpuinfo_fields(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx avx2 fma\n")
    assert cpu_flags(info) == {"fpu", "avx", "avx2", "fma"}
    assert cpu_vendor(info) == "AuthenticAMD"
    assert cpu_flags(tmp_path / "none") == set() and cpu_vendor(tmp_path / "none") == ""


def test_onednn_is_turned_on_for_avx2_unless_the_user_chose():
    environ = {}
    assert "oneDNN" in choose_kernels(environ, flags=AVX2_ONLY)
    assert environ == {ONEDNN_SWITCH: "1"}

    for users in ("0", "1"):  # the user's own choice wins, either way
        environ = {ONEDNN_SWITCH: users}
        assert "as set in the environment" in choose_kernels(environ, flags=AVX2_ONLY)
        assert environ == {ONEDNN_SWITCH: users}

    environ = {}  # no AVX2 (an old x86, or an ARM CPU: its cpuinfo has no "flags" line)
    assert "TensorFlow's own choice" in choose_kernels(environ, flags={"sse4_2"})
    assert environ == {}
