#!/usr/bin/env python3
"""The dependency arrows of DESIGN §2, checked: every #include of a stage's sources and every
nnc_ symbol its library needs must come from the stage itself or one it may depend on.

usage: check_deps.py SOURCE_ROOT [STAGE=LIBRARY.a ...]   (run by ctest as `deps`)

With libraries, their undefined nnc_* symbols are matched against the symbols the other
libraries define (nm), so a call that crosses an arrow fails even when a header hides it.
"""
import os
import re
import subprocess
import sys

# stage -> the stages (and single headers) it may include and link against
ALLOWED = {
    "ir": {"ir", "runtime/philox.h"},
    "frontend": {"frontend", "ir"},
    "passes": {"passes", "ir"},
    "codegen": {"codegen", "ir", "runtime/abi.h", "runtime/philox.h"},
    "runtime": {"runtime"},
    "driver": {"driver", "frontend", "ir", "passes", "codegen", "runtime"},
}
STAGES = list(ALLOWED)
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def target_of(stage, path, name):
    """The stage (or stage/header) an include names, relative to the including file."""
    resolved = os.path.normpath(os.path.join(os.path.dirname(path), name))
    if os.path.exists(resolved):  # the including file's directory is searched first, as cc does
        rel = os.path.relpath(resolved, ROOT)
        first = rel.split(os.sep)[0]
        if first in STAGES:
            return first, rel
    first = name.split("/")[0]
    if first in STAGES:
        return first, name
    return None, name  # generated files (scanner.h, parser.h, *.inc) and system-like headers


def check_includes():
    bad = []
    for stage in STAGES:
        folder = os.path.join(ROOT, stage)
        for f in sorted(os.listdir(folder)):
            if not re.search(r"\.(c|h|l|y|def)$", f):
                continue
            path = os.path.join(folder, f)
            for name in INCLUDE.findall(open(path, encoding="utf-8").read()):
                tstage, rel = target_of(stage, path, name)
                if tstage is None or tstage in ALLOWED[stage] or rel in ALLOWED[stage]:
                    continue
                bad.append("%s/%s includes %s: %s may not depend on %s" % (stage, f, name, stage, tstage))
    return bad


def symbols(lib, defined):
    flag = ["--defined-only"] if defined else ["-u"]
    out = subprocess.run(["nm", "-g"] + flag + [lib], capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if not parts or parts[-1].endswith(":"):
            continue
        if defined and (len(parts) < 3 or parts[1] not in "TDBR"):
            continue
        names.add(parts[-1])
    return {n for n in names if n.startswith("nnc_")}


def check_symbols(libs):
    defined = {stage: symbols(lib, True) for stage, lib in libs.items()}
    bad = []
    for stage, lib in libs.items():
        for name in sorted(symbols(lib, False) - defined[stage]):
            owners = [s for s in defined if name in defined[s]]
            if owners and not any(o in ALLOWED[stage] for o in owners):
                bad.append("%s calls %s, defined in %s" % (os.path.basename(lib), name, "/".join(owners)))
    return bad


ROOT = os.path.abspath(sys.argv[1])
libs = dict(arg.split("=", 1) for arg in sys.argv[2:])
problems = check_includes() + check_symbols(libs)
for p in problems:
    print("FAIL", p)
print("%d stages, %d libraries checked, %d arrows against DESIGN §2" % (len(STAGES), len(libs), len(problems)))
sys.exit(1 if problems else 0)
