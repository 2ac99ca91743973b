#!/usr/bin/env python3
"""End-to-end tests of character models on text made here: char_rnn learns "abcabc..." (the
loss falls far below the text's unigram entropy, --sample continues the pattern after training
and from --load), the vocabulary travels in the checkpoint, char_lstm and tiny_gpt run through
the text source, and bad inputs give one message and the documented exit status.

usage: test_train_text.py PATH/TO/nnc MODELS_DIR    (run by ctest as `train_text`)
"""
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile

NNC = os.path.abspath(sys.argv[1])
MODELS = os.path.abspath(sys.argv[2])
TMP = tempfile.mkdtemp(prefix="nnc-text-")
failures = []

# Small enough for a few seconds in an unoptimized build. char_rnn runs on the default executor;
# char_lstm and tiny_gpt on the interpreter, since compiling them for the JIT takes minutes
# there (backend_llvm_<model> covers them on the JIT).
RNN = ["--set", "T=16", "--set", "E=8", "--set", "H=32", "--set", "V=8"]
LSTM = ["--target", "interp"] + RNN
GPT = ["--target", "interp", "--schedule", "constant", "--set", "T=16", "--set", "d=16", "--set", "heads=2", "--set", "layers=1", "--set", "V=8"]


def at(name):
    return os.path.join(TMP, name)


def write(name, data):
    with open(at(name), "wb") as f:
        f.write(data)
    return at(name)


def nnc(model, *args):
    cmd = [NNC, os.path.join(MODELS, model + ".nn")] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=TMP)


def check(cond, what, r=None):
    if cond:
        print("ok   ", what)
        return
    print("FAIL ", what)
    if r is not None:
        print("  status", r.returncode, "\n  stdout:", r.stdout[-2000:], "\n  stderr:", r.stderr[-2000:])
    failures.append(what)


def expect_error(r, status, text, what):
    check(r.returncode == status and text in r.stderr and r.stderr.count("error:") == 1, what, r)


def metadata(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))["__metadata__"]


def continues_pattern(text, pattern="abc"):
    """Characters of text that follow the cyclic pattern from its first character."""
    start = pattern.index(text[0])
    return sum(c == pattern[(start + i) % len(pattern)] for i, c in enumerate(text))


abc = write("abc.txt", b"abc" * 1000)

# ---- char_rnn learns the pattern; the summary gives the unigram entropy ----
train = ["--train", "--data", abc, "--epochs", "3", "--lr", "0.01", "--batch", "16"]
r = nnc("char_rnn", *train, *RNN, "--save", "rnn.safetensors", "--sample", "60", "--quiet")
check(r.returncode == 0, "char_rnn trains on abc.txt", r)
m = re.search(r"validation loss ([0-9.]+), validation accuracy ([0-9.]+)%.*unigram entropy ([0-9.]+) nats", r.stdout)
check(m is not None, "the summary reports validation loss, accuracy and the unigram entropy", r)
if m:
    loss, acc, entropy = float(m.group(1)), float(m.group(2)), float(m.group(3))
    check(abs(entropy - math.log(3)) < 1e-3, "unigram entropy of abc... is ln 3 (%.4f)" % entropy)
    check(loss < entropy - 0.5, "validation loss %.4f is far below the unigram entropy" % loss)
    check(acc > 99, "per-token validation accuracy %.2f%%" % acc)
sample = r.stdout.splitlines()[-1] if r.stdout else ""
# No newline in the text: the default prompt is its first character, 'a'.
check(len(sample) == 61 and sample[0] == "a", "--sample 60 prints the prompt and 60 characters", r)
check(sample and continues_pattern(sample) >= 58, "the sample continues abcabc...: %r" % sample, r)

meta = metadata(at("rnn.safetensors"))
check(meta.get("vocab") == "616263", "the checkpoint keeps the vocabulary as hex: %r" % meta.get("vocab"))

# ---- sampling from the checkpoint alone (the data file is not needed) ----
os.rename(abc, at("abc.moved"))
r = nnc("char_rnn", *RNN, "--load", "rnn.safetensors", "--sample", "30", "--prompt", "bca", "--temperature", "0")
check(r.returncode == 0 and r.stdout == "bca" + "bca" * 10 + "\n", "--load --sample --temperature 0 continues exactly", r)
r2 = nnc("char_rnn", *RNN, "--load", "rnn.safetensors", "--sample", "30", "--seed", "5")
r3 = nnc("char_rnn", *RNN, "--load", "rnn.safetensors", "--sample", "30", "--seed", "5")
check(r2.returncode == 0 and r2.stdout == r3.stdout, "a seed gives the same sample", r2)
check(continues_pattern(r2.stdout.strip()) >= 29, "the default temperature keeps the pattern", r2)
os.rename(at("abc.moved"), abc)

# ---- errors ----
r = nnc("char_rnn", "--train", "--data", abc, *RNN[:-2], "--set", "V=2", "--max-steps", "1")
expect_error(r, 1, "the text has 3 distinct characters, model char_rnn's vocabulary has 2", "a vocabulary larger than V")
check("--set V=3" in r.stderr, "the message says how to fix it", r)
r = nnc("char_rnn", "--train", "--data", write("empty.txt", b""), *RNN, "--max-steps", "1")
expect_error(r, 1, "the text is empty", "an empty text")
r = nnc("char_rnn", "--train", "--data", write("short.txt", b"abcabcabc"), *RNN, "--max-steps", "1")
expect_error(r, 1, "too few", "a text shorter than one sequence")
r = nnc("char_rnn", "--train", "--data", at("missing.txt"), *RNN, "--max-steps", "1")
expect_error(r, 1, "missing.txt: No such file", "a missing text")
r = nnc("char_rnn", *RNN, "--load", "rnn.safetensors", "--sample", "5", "--prompt", "xyz")
expect_error(r, 2, "byte 0x78) is not in the model's vocabulary", "a prompt character outside the vocabulary")
r = nnc("char_rnn", *RNN, "--sample", "5")
expect_error(r, 2, "--sample needs trained weights", "--sample without weights")
r = nnc("char_rnn", *RNN, "--check", "--sample", "5")
expect_error(r, 2, "--sample goes with --train", "--sample with another action")
r = nnc("char_rnn", *RNN, "--prompt", "a")
expect_error(r, 2, "go with --sample", "--prompt without --sample")
r = nnc("xor_mlp", "--train", "--sample", "5")
expect_error(r, 2, "--sample needs a character model", "--sample with a model not trained on text")
abd = write("abd.txt", b"abd" * 300)
r = nnc("char_rnn", "--train", "--data", abd, *RNN, "--load", "rnn.safetensors", "--max-steps", "1")
expect_error(r, 1, "trained on other text", "--load of a checkpoint with another vocabulary")

# ---- a directory of files: every regular file, sorted by name ----
os.mkdir(at("dir"))
with open(at("dir/b.txt"), "wb") as f:
    f.write(b"abc" * 300)
with open(at("dir/a.txt"), "wb") as f:
    f.write(b"xyz" * 300)
os.symlink("a.txt", at("dir/link.txt"))
r = nnc("char_rnn", "--train", "--data", at("dir"), *RNN, "--max-steps", "2")
check(r.returncode == 0 and "text %s: 6 distinct characters" % at("dir") in r.stdout, "a directory of texts", r)

# ---- char_lstm and tiny_gpt through the text source and sampling ----
for model, hp in (("char_lstm", LSTM), ("tiny_gpt", GPT)):
    r = nnc(model, "--train", "--data", abc, *hp, "--max-steps", "3", "--batch", "8", "--sample", "20", "--quiet",
            "--save", model + ".safetensors")
    check(r.returncode == 0 and len(r.stdout.splitlines()[-1]) == 21, model + " trains on text and samples", r)
    r = nnc(model, *hp, "--load", model + ".safetensors", "--sample", "10", "--prompt", "abcabcabcabcabcabcabc")
    check(r.returncode == 0 and len(r.stdout) == 21 + 10 + 1, model + " samples from --load with a prompt longer than T", r)

# ---- resume keeps the vocabulary and continues ----
r = nnc("char_rnn", *train, *RNN, "--epochs", "4", "--resume", "rnn.safetensors", "--save", "rnn2.safetensors", "--quiet")
check(r.returncode == 0 and metadata(at("rnn2.safetensors")).get("vocab") == "616263", "--resume keeps the vocabulary", r)

print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
