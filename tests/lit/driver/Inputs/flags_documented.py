"""Checks that `nnc --help` (or docs/cli.md) documents every long option driver/main.c accepts.

Usage: flags_documented.py MAIN_C HELP_TEXT_FILE. Prints each undocumented flag and exits 1.
"""
import re
import sys

source = open(sys.argv[1]).read()
table = source[source.index("longopts[]"):]
table = table[:table.index("};")]
flags = re.findall(r'\{"([a-z][a-z-]*)",', table)
help_text = open(sys.argv[2]).read()
missing = [f for f in flags if not re.search(r"(^|[\s`])--%s\b" % re.escape(f), help_text)]
for f in missing:
    print("undocumented: --%s" % f)
print("%d flags, %d documented" % (len(flags), len(flags) - len(missing)))
sys.exit(1 if missing or not flags else 0)
