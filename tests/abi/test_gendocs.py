#!/usr/bin/env python3
"""Tests of tools/abigen/gendocs.py: the op documentation must match the registry exactly, and
docs/ops.md must be what the generator makes of the committed sources (freshness)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools/abigen"))
import abigen  # noqa: E402
import gendocs  # noqa: E402

failures = []


def expect_error(label, text, needle):
    try:
        gendocs.generate(OPS, text)
    except SystemExit as e:
        if needle not in str(e):
            failures.append(f"{label}: error does not mention {needle!r}: {e}")
        return
    failures.append(f"{label}: accepted, expected an error mentioning {needle!r}")


OPS = abigen.load_registry()
DOC = gendocs.DOC_SRC.read_text()

# 1. The committed sources validate and docs/ops.md is fresh.
out = gendocs.generate(OPS)
for path, text in out.items():
    if not path.exists() or path.read_text() != text:
        failures.append(f"{path.relative_to(ROOT)} is stale: run tools/abigen/abigen.py")

# 2. An undocumented field fails, naming op and field.
line = "- `kv_seq_stride` (0 = `kv_len`): `S`, the row capacity of `k` and `v` per head"
assert line in DOC, "fixture line moved; update the test"
start = DOC.index(line)
end = DOC.index("\n", start) + 1
expect_error("missing field", DOC[:start] + DOC[end:],
             "op 'flash_attention': field 'kv_seq_stride' is not documented")

# 3. A documented field the op does not have fails.
expect_error("unknown field", DOC.replace("### gelu\n", "### gelu\n- `alpha`: not a field.\n", 1),
             "op 'gelu': documented field 'alpha' is not a field of the op")

# 4. A documented op that is not in the registry fails.
expect_error("unknown op", DOC + "\n### gelu_tanh\nNot an op.\n",
             "op 'gelu_tanh' is documented but not in abi/registry/ops.txt")

# 5. A missing op section fails.
s = DOC.index("### gelu\n")
e = DOC.index("### add_inplace\n")
expect_error("missing op", DOC[:s] + DOC[e:], "op 'gelu': no section")

# 6. A facade op without its composition, and a non-facade op with one, fail.
expect_error("facade missing",
             DOC.replace("facade: `to_vec` of the logits and the same rule on the host.\n", "", 1),
             "op 'argmax_rows_f16': NULL slot is 'facade'")
expect_error("facade extra", DOC.replace("### gelu\n", "### gelu\nfacade: something.\n", 1),
             "op 'gelu': has a 'facade:' line")

# 7. An unused shared entry fails; a citation of a missing spec section fails.
expect_error("unused shared", DOC.replace("## Shared fields\n", "## Shared fields\n- `nonsense`: x.\n", 1),
             "shared field 'nonsense' is used by no op")
expect_error("bad section", DOC.replace("spec: §0.2, §0.6\n", "spec: §0.2, §99.9\n", 1),
             "§99.9")

# 8. Every relative link of the docs resolves to an existing file and, with #anchor, to a heading
#    or an explicit <a id> of that file (GitHub's anchor rules).
import re  # noqa: E402


def anchors_of(path):
    text = path.read_text()
    ids = set(re.findall(r'<a id="([^"]+)"></a>', text))
    for line in text.splitlines():
        m = re.match(r"^#{1,6} (.*)$", line)
        if m:
            ids.add(re.sub(r"[^a-z0-9 _-]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return ids


DOCS = [ROOT / "README.md", ROOT / "examples/c_plugin/README.md", ROOT / "abi/CHANGELOG.md"] + \
    sorted((ROOT / "docs").glob("*.md"))
links = 0
for doc in DOCS:
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, frag = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        links += 1
        if not dest.exists():
            failures.append(f"{doc.relative_to(ROOT)}: link to missing file {target}")
        elif frag and dest.suffix == ".md" and frag not in anchors_of(dest):
            failures.append(f"{doc.relative_to(ROOT)}: link to missing anchor {target}")
if links < 100:
    failures.append(f"only {links} relative links found in the docs; the link check is not looking")

if failures:
    print("test_gendocs: FAILED\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"test_gendocs: 9 checks passed, {links} doc links resolve")
