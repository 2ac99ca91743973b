#!/usr/bin/env python3
"""Turns a text file into a C string literal body (an .inc file #included by codegen/).

usage: gen_inc.py INPUT OUTPUT
The build makes abi_text.inc from runtime/abi.h, philox_text.inc from runtime/philox.h and
loader_text.inc from codegen/loader_body.h
(CMakeLists.txt), so the texts are never stale."""
import os
import sys

def literal(text):
    lines = text.split("\n")
    if text.endswith("\n"):
        lines = lines[:-1]
    out = []
    for line in lines:
        out.append('"' + line.replace("\\", "\\\\").replace('"', '\\"') + '\\n"')
    return "\n".join(out) + "\n"

src, dst = sys.argv[1], sys.argv[2]
with open(src, encoding="utf-8") as f:
    text = f.read()
os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
with open(dst, "w", encoding="utf-8") as f:
    f.write("/* Generated from %s by scripts/gen_inc.py: do not edit. */\n" % os.path.basename(src))
    f.write(literal(text))
