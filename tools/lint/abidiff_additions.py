#!/usr/bin/env python3
"""abidiff of a plugin against the committed 1.0 baseline, accepting additions only.

    abidiff_additions.py ABIDIFF BASELINE.abi PLUGIN.so

A 1.x plugin built with newer headers may grow the ABI at the end (appended struct members,
longer tables, new functions): abidiff then exits 4 (ABI change). Anything else fails: abidiff's
error bits (1, 2), an incompatible change (8), a removed function or variable, a member
deletion, a member whose offset moved, or a type that got smaller.
"""
import re
import subprocess
import sys


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    abidiff, baseline, plugin = sys.argv[1:]
    r = subprocess.run([abidiff, baseline, plugin], capture_output=True, text=True)
    report = r.stdout + r.stderr
    problems = []
    if r.returncode & (1 | 2 | 8):
        problems.append(f"abidiff exit status {r.returncode} (error or incompatible change)")
    for kind in ("function", "variable"):
        m = re.search(r"(\d+) Removed.* " + kind, report)
        if m and int(m.group(1)) != 0:
            problems.append(f"{m.group(1)} {kind}(s) removed")
    for pat, what in ((r"data member deletion", "a struct member was deleted"),
                      (r"offset changed from", "a struct member moved"),
                      (r"data member .* changed from .* to .* at offset", "a member changed in place")):
        if re.search(pat, report):
            problems.append(what)
    for old, new in re.findall(r"type size changed from (\d+) to (\d+)", report):
        if int(new) < int(old):
            problems.append(f"a type shrank from {old} to {new} bits")
    if problems:
        print(report)
        print("abidiff: not an additions-only change: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"abidiff: {'identical' if r.returncode == 0 else 'additions only'} against {baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
