#!/usr/bin/env python3
"""What a careless or hostile user does to nnc, and what nnc must do about it: no crash, no hang,
no file destroyed, no work thrown away, the documented exit status (docs/cli.md) and a message
that names the problem. One check per reproduction of the hardening issue.

usage: test_hardening.py PATH/TO/nnc    (run by ctest as `hardening`)
"""
import os
import resource
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time

NNC = os.path.abspath(sys.argv[1])
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TMP = tempfile.mkdtemp(prefix="nnc-hardening-")
MODELS = os.path.join(ROOT, "models")
failures = []
# AddressSanitizer reserves terabytes of address space: limits on it mean nothing there.
SANITIZED = b"__asan_init" in open(NNC, "rb").read()

XOR = """
hparam hidden = 10
model xor(x: f32[B, 2], y: f32[B, 1]) {
  layer fc1 = Linear(hidden)
  layer fc2 = Linear(1)
  minimize mse(fc2(tanh(fc1(x))), y)
  return fc2(tanh(fc1(x)))
}
train {
  data = csv("xor.csv")
  optimizer = SGD(lr=0.1, momentum=0.9)
  batch = 4
  epochs = %d
}
"""


def path(name):
    return os.path.join(TMP, name)


def write(name, text, mode="w"):
    with open(path(name), mode) as f:
        f.write(text)
    return path(name)


def nnc(*args, env=None, timeout=120, stdin=None, limit_as=None):
    e = dict(os.environ)
    e.update(env or {})
    pre = (lambda: resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))) if limit_as else None
    try:
        p = subprocess.run([NNC, *args], capture_output=True, text=True, env=e, timeout=timeout, input=stdin,
                           preexec_fn=pre, cwd=TMP)
    except subprocess.TimeoutExpired:
        return "timeout", "", "timed out after %d s" % timeout
    return p.returncode, p.stdout, p.stderr


def check(cond, what, detail=""):
    if cond:
        print("PASS", what)
    else:
        print("FAIL", what, detail)
        failures.append(what)


def error_lines(err):
    return [l for l in err.split("\n") if "error:" in l]


def fifo(name):
    p = path(name)
    if not os.path.exists(p):
        os.mkfifo(p)
    return p


def xor_model(epochs=200):
    write("xor.csv", "a,b,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
    return write("xor.nn", XOR % epochs)


def finite_checkpoint(p):
    """Every f32 of a safetensors file is finite (the file is read with the format's rules)."""
    import json
    import math
    data = open(p, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        b, e = t["data_offsets"]
        vals = struct.unpack("<%df" % ((e - b) // 4), data[8 + n + b:8 + n + e])
        if not all(math.isfinite(v) for v in vals):
            return False
    return True


# 1. Crashes -------------------------------------------------------------------------------------

def test_size_limit():
    rc, _, err = nnc(os.path.join(MODELS, "fashion_mlp.nn"), "--set", "hidden=21913099", "--check")
    check(rc == 1 and "internal" not in err and "fc1" in err and "17179869184" in err and "fashion_mlp.nn:" in err,
          "a parameter past the element limit is an error at the layer naming the limit", err)


def test_threads_bound():
    rc, _, err = nnc(os.path.join(MODELS, "xor_mlp.nn"), "--threads", "1000", "--check")
    check(rc == 2 and "--threads expects an integer from 1 to" in err and "online cores" in err,
          "--threads past 4x the cores is a usage error naming the bound", err)


def test_llvm_out_of_memory():
    """Compiles under address-space limits that run out at different places (our passes, LLVM's
    C++ allocations, the scratch region): each is nnc's message and status 3, never an abort."""
    if SANITIZED:
        return print("SKIP out-of-memory compiles: address-space limits do not apply under AddressSanitizer")
    statuses = []
    for limit in (200, 220, 240, 260, 280, 300):
        env = {"NNC_CACHE_DIR": tempfile.mkdtemp(dir=TMP)}
        rc, _, err = nnc(os.path.join(MODELS, "tiny_gpt.nn"), "--stats", env=env, limit_as=limit << 20)
        if rc == 127 or rc == 0:  # the loader could not map the libraries / the limit was enough
            continue
        statuses.append(rc)
        check(rc == 3 and "nnc: error: out of memory" in err and "terminate" not in err and "LLVM ERROR" not in err,
              "out of memory while compiling (%d MB) is exit 3 with nnc's message" % limit, err)
    check(len(statuses) > 0, "some limit ran out of memory", statuses)


# 2, 3. Files the writer must not destroy; outputs checked before the work -------------------------

def test_outputs_not_regular(model):
    targets = {"a directory": path("adir"), "a FIFO": fifo("out.fifo"), "a device": "/dev/full"}
    os.makedirs(path("adir"), exist_ok=True)
    for kind, target in targets.items():
        for flag in ("--save", "--plot", "--log"):
            t0 = time.time()
            rc, out, err = nnc(model, "--train", "--target", "interp", flag, target, timeout=30)
            mode = os.stat(target).st_mode
            intact = stat.S_ISDIR(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)
            check(rc == 3 and intact and "trained" not in out and "not a regular file" in err and time.time() - t0 < 20,
                  "%s onto %s is refused before training and left as it was" % (flag, kind), err)
        rc, _, err = nnc(model, "--emit", "ir", "-o", target, timeout=30)
        check(rc == 3 and "not a regular file" in err, "-o onto %s is refused" % kind, err)


def test_save_through_symlink(model):
    os.symlink("real.st", path("link.st"))
    rc, _, err = nnc(model, "--train", "--target", "interp", "--epochs", "3", "--save", path("link.st"), "--quiet")
    check(rc == 0 and os.path.islink(path("link.st")) and os.path.isfile(path("real.st")),
          "--save through a symlink writes its target and keeps the link", err)


def test_stale_temporaries(model):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = path("ck.st.tmp.%d" % dead.pid), path("ck.st.tmp.%d" % os.getpid())
    for p in (stale, live):
        write(os.path.basename(p), "x" * 1000)
    rc, _, err = nnc(model, "--train", "--target", "interp", "--epochs", "2", "--save", path("ck.st"), "--quiet")
    check(rc == 0 and not os.path.exists(stale) and os.path.exists(live),
          "a save removes the temporaries of dead processes and keeps a live one's", err)


# 4. A bad checkpoint never replaces a good one --------------------------------------------------

def test_divergence_keeps_checkpoint(model):
    p = path("div.st")
    rc, _, err = nnc(model, "--train", "--target", "interp", "--lr", "1e6", "--save-every", "1", "--save", p, "--quiet")
    check(rc == 1 and os.path.exists(p) and finite_checkpoint(p) and ("nan" in err or "inf" in err),
          "a diverging run exits 1 and the last checkpoint stays finite", err)
    # a checkpoint with a NaN weight, as another tool might write
    data = bytearray(open(p, "rb").read())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 + n:8 + n + 4] = struct.pack("<f", float("nan"))
    open(path("nan.st"), "wb").write(bytes(data))
    rc, out, err = nnc(model, "--eval", "--target", "interp", "--load", path("nan.st"))
    check(rc == 1 and "not usable" in err and "loss" not in out, "--eval of NaN weights exits 1 with a message", err)


# 5. Readers never block on a FIFO --------------------------------------------------------------

def test_fifo_readers(model):
    f = fifo("in.fifo")
    cases = {
        "the model file": [f, "--check"],
        "--load": [model, "--eval", "--load", f],
        "--resume": [model, "--train", "--resume", f],
        "CSV data": [model, "--train", "--data", f],
    }
    for what, args in cases.items():
        rc, _, err = nnc(*args, timeout=20)
        check(rc == 1 and "FIFO" in err, "%s on a FIFO is refused at once" % what, err)
    os.makedirs(path("idx"), exist_ok=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        if not os.path.exists(path("idx/" + name)):
            os.mkfifo(path("idx/" + name))
    idx = write("idx.nn", "model m(x: u8[B, 28, 28], y: i32[B]) {\n  layer fc = Linear(10)\n"
                "  logits = fc(flatten(normalize(x, mean=0.5, std=0.5)))\n  minimize cross_entropy(logits, y)\n"
                "  return logits\n}\ntrain {\n  data = mnist(\"idx\")\n}\n")
    rc, _, err = nnc(idx, "--train", timeout=20)
    check(rc == 1 and "FIFO" in err, "IDX data on a FIFO is refused at once", err)
    rc, out, err = nnc("-", "--check", stdin=open(model).read())
    check(rc == 0, "a model is read from standard input with '-'", err)


# 6. Data silently changed ------------------------------------------------------------------------

def test_csv_rules(model):
    write("mixed.csv", "0,nan,1\n0,0,0\n")
    rc, _, err = nnc(model, "--train", "--target", "interp", "--data", path("mixed.csv"))
    check(rc == 1 and "mixed.csv:1:3" in err, "a first CSV row with one non-number is an error, not a header", err)
    write("names.csv", "a,b,label\n0,1,1\n")
    rc, _, err = nnc(model, "--train", "--target", "interp", "--data", path("names.csv"), "--max-steps", "1")
    check(rc == 0, "a first row of names is a header", err)
    write("mixedheader.csv", "a,1,label\n0,1,1\n")
    rc, _, err = nnc(model, "--train", "--target", "interp", "--data", path("mixedheader.csv"))
    check(rc == 1 and "mixedheader.csv:1:1" in err and "'a' is not a number" in err,
          "a header row with a numeric field is an error naming row and column", err)
    write("nul.csv", b"a,b,y\n0,1\x009,1\n", "wb")
    rc, _, err = nnc(model, "--train", "--target", "interp", "--data", path("nul.csv"))
    check(rc == 1 and "nul.csv:2:4" in err and "NUL" in err, "a NUL byte in a CSV field is an error", err)


# 7. Exit statuses and messages ------------------------------------------------------------------

def test_statuses(model):
    rc, _, err = nnc(os.path.join(MODELS, "fashion_mlp.nn"), "--emit", "obj", "-o", path("m.o"),
                     env={"NNC_FAULT_WRITE_AFTER": "100"})
    check(rc == 3 and "No space left on device" in err and "LLVM ERROR" not in err and not os.path.exists(path("m.o")),
          "--emit obj onto a full disk exits 3 with nnc's message and leaves no file", err)
    rc, _, err = nnc(model, "--memory-plan", "-o", path("plan.txt"), env={"NNC_FAULT_WRITE_AFTER": "10"})
    check(rc == 3 and "No space left on device" in err, "--memory-plan -o onto a full disk exits 3 with a message", err)
    rc, _, err = nnc(model, "--lr", "1e7", "--check")
    check(rc == 2 and "from 1e-12 to 1e6" in err, "--lr out of range names the range", err)
    rc, _, err = nnc(model, "--set", "hidden=1e3", "--check")
    check(rc == 1 and "the real number 1000" in err and "fraction" not in err, "--set hidden=1e3 says what is wrong", err)
    rc1, out1, _ = nnc(model, "--emit", "dot", "--train")
    rc2, out2, _ = nnc(model, "--train", "--emit", "dot")
    check(rc1 == rc2 == 0 and out1 == out2, "--emit dot --train and --train --emit dot are the same")
    rc, _, err = nnc(model, "--check", "--emit", "ir")
    check(rc == 2 and "--check and --emit cannot be combined" in err, "two actions are a usage error naming both", err)
    if SANITIZED:
        return print("SKIP a huge batch out of memory: address-space limits do not apply under AddressSanitizer")
    mnist = os.path.join(MODELS, "fashion_mlp.nn")
    rc, _, err = nnc(mnist, "--train", "--batch", "1048576", "--max-steps", "1", "--quiet",
                     env={"NNC_CACHE_DIR": tempfile.mkdtemp(dir=TMP)}, limit_as=2 << 30, timeout=300)
    check(rc == 3 and "out of memory" in err, "out of memory for a huge batch exits 3", err)


# 8. Leftovers and signals ---------------------------------------------------------------------

def test_sigterm(model_long):
    p = subprocess.Popen([NNC, model_long, "--train", "--target", "interp", "--save", path("term.st"), "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=TMP)
    time.sleep(1.5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    check(p.returncode == 128 + signal.SIGTERM and os.path.exists(path("term.st")) and "interrupted" in out,
          "SIGTERM saves a checkpoint and exits 143", out + err)
    rc, _, err = nnc(model_long, "--train", "--target", "interp", "--resume", path("term.st"), "--max-steps", "1",
                     "--quiet")
    check(rc == 0 or "past the" in err, "the checkpoint SIGTERM wrote resumes", err)


def test_emit_c_atomic(model):
    out = path("emitted")
    rc, _, err = nnc(model, "--emit", "c", "-o", out)
    before = open(os.path.join(out, "model.c")).read()
    rc, _, err = nnc(os.path.join(MODELS, "fashion_mlp.nn"), "--emit", "c", "-o", out,
                     env={"NNC_FAULT_WRITE_AFTER": "2000"})
    after = open(os.path.join(out, "model.c")).read()
    left = [f for f in os.listdir(out) if ".tmp." in f]
    check(rc == 3 and after == before and not left, "--emit c onto a full disk leaves the previous model.c whole", err)
    rc, _, err = nnc(model, "--emit", "c", "-o", "/dev/full")
    check(rc == 3 and "Not a directory" in err, "--emit c into a file that is not a directory exits 3", err)


os.chdir(TMP)
model = xor_model()
test_size_limit()
test_threads_bound()
test_llvm_out_of_memory()
test_outputs_not_regular(model)
test_save_through_symlink(model)
test_stale_temporaries(model)
test_divergence_keeps_checkpoint(model)
test_fifo_readers(model)
test_csv_rules(model)
test_statuses(model)
test_sigterm(write("long.nn", XOR.replace('csv("xor.csv")', 'csv("%s")' % path("xor.csv")) % 1000000))
test_emit_c_atomic(model)
print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
