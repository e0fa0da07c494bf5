#!/usr/bin/env python3
"""rewrite_citations — points citations of the old out-of-tree documents at the project's own docs.

    tools/abigen/rewrite_citations.py [--check] [PATH ...]

Rewrites, in every tracked text file (or only in the given files / directories):
    the old op specification, §x.y   -> docs/spec.md §x.y   (the section numbers are the same)
    the old design rules, §x         -> docs/design.md §x   (the section numbers are the same)
    the old style guide              -> docs/design.md §6
(the three outside file names are spelled below as OPS/DESIGN/STYLE + ".md", so that this
script does not itself cite them). A backquoted name keeps its backquotes. With --check nothing is written: the files that still
cite an outside document are listed and the exit status is 1 if there are any.

After rewriting generator sources (tools/abigen/*.py), re-run abigen.py and gen_facade.py so the
generated files match again (their freshness tests compare them).
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SELF = Path(__file__).resolve()

# The outside documents' base names, split so this file does not match its own pattern.
_OPS, _DESIGN, _STYLE = "O" + "PS", "DE" + "SIGN", "ST" + "YLE"

# Order matters: the sectioned forms first.
RULES = [
    (re.compile(r"\b" + _DESIGN + r"(?:\.md)? §"), "docs/design.md §"),
    (re.compile(r"\b" + _DESIGN + r"\.md\b"), "docs/design.md"),
    (re.compile(r"\b" + _STYLE + r"\.md\b"), "docs/design.md §6"),
    (re.compile(r"(?<![\w/])" + _OPS + r"\.md\b"), "docs/spec.md"),
]
PATTERN = re.compile(r"(?<![\w/])" + _OPS + r"\.md\b|\b" + _DESIGN + r"(?:\.md)? §|\b" + _DESIGN +
                     r"\.md\b|\b" + _STYLE + r"\.md\b")


def rewrite(text):
    for rx, repl in RULES:
        text = rx.sub(repl, text)
    return text


def tracked_files(paths):
    args = ["git", "-C", str(ROOT), "ls-files", "-z", "--"] + [str(p) for p in paths]
    out = subprocess.run(args, check=True, capture_output=True).stdout.decode()
    return [ROOT / p for p in out.split("\0") if p]


def main(argv):
    check = "--check" in argv
    paths = [a for a in argv if a != "--check"]
    files = tracked_files([Path(p).resolve() for p in paths] if paths else [])
    hits = []
    for path in files:
        if path.resolve() == SELF or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary or unreadable: no citations to fix
        if not PATTERN.search(text):
            continue
        rel = path.relative_to(ROOT)
        n = len(PATTERN.findall(text))
        hits.append(f"{rel} ({n})")
        if not check:
            path.write_text(rewrite(text), encoding="utf-8")
    if check:
        if hits:
            print("rewrite_citations: files citing documents outside the repository:\n  " +
                  "\n  ".join(hits))
            return 1
        print("rewrite_citations: no citation of an outside document")
        return 0
    for h in hits:
        print(f"rewrite_citations: rewrote {h}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
