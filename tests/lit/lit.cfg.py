# lit configuration for nnc's regression suite (run by ctest as the test "lit").
import os
import lit.formats

config.name = "nnc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".nn", ".ir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.excludes = ["Inputs", "lit.cfg.py"]

params = lit_config.params
nnc = params.get("nnc")
tools = params.get("llvm_tools", "/usr/lib/llvm-19/bin")
root = params.get("source_root", os.path.abspath(os.path.join(config.test_source_root, "..", "..")))
if not nnc:
    lit_config.fatal("run with --param nnc=PATH/TO/nnc (ctest does)")

config.substitutions.append(("%nnc", nnc))
config.substitutions.append(("%models", os.path.join(root, "models")))
config.substitutions.append(("%root", root))
for tool in ("FileCheck", "not", "count"):
    config.substitutions.append((r"\b%s\b" % tool, os.path.join(tools, tool)))
config.environment["NNC_NO_COLOR"] = "1"
for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "HOME", "TMPDIR"):
    if var in os.environ:
        config.environment[var] = os.environ[var]
# The CUDA printer's hand-built kernels and schedules (tests/backend/cuda_compile.c --print NAME).
config.substitutions.append(("%cuda_compile", params.get("cuda_compile", os.path.join(os.path.dirname(nnc), "tests", "cuda_compile"))))
# Tests of what nnc says without CUDA run where there is no CUDA driver.
try:
    import ctypes
    ctypes.CDLL("libcuda.so.1")
except OSError:
    config.available_features.add("no-cuda-device")
# Tests that compile CUDA C to PTX (REQUIRES: nvrtc) run where nnc finds NVRTC.
import re
import subprocess
_devices = subprocess.run([nnc, "--devices"], capture_output=True, text=True)
if re.search(r"^nvrtc: [0-9]", _devices.stdout, re.M):
    config.available_features.add("nvrtc")
# Tests of the LLVM backend (REQUIRES: llvm) run where nnc was built with it (NNC_WITH_LLVM=ON).
import subprocess
_probe = subprocess.run([nnc, "--check-kernels", os.devnull], capture_output=True, text=True)
if "without the LLVM backend" not in _probe.stderr:
    config.available_features.add("llvm")
