#!/usr/bin/env python3
"""gendocs — validates the op documentation and generates docs/ops.md.

Sources (one source for the semantics of every op, kept beside the registry):
  abi/registry/ops.txt      the signatures (parsed by abigen.load_registry)
  abi/registry/ops_doc.md   the meaning of every op and field, in this format:

      ## Shared fields                   one line per field name that means the same in
      - `name` (zero/default): text      every op that has it (an op's own line overrides it)

      ## Ops
      ### op_name                        one section per registry op, in any order
      Summary text (any number of lines; blank lines separate paragraphs).
      - `field` (zero/default): text     one line per field; "(…)" is optional
      facade: text                       what the facade does when the slot is NULL
                                         (required exactly for ops whose NULL slot is `facade`)
      spec: §x.y, §z                     docs/spec.md sections that apply

Validation (any failure exits non-zero, naming the op and field):
  - every registry op has a section with a summary;
  - every field of every op is documented by its section, by the section of the op it aliases
    (`==other`), or by a shared entry;
  - every documented op and field exists; every shared entry is used by some op;
  - `facade:` is present exactly where the NULL slot is `facade`.

abigen.py calls generate() and writes (or, with --check, compares) docs/ops.md with its other
outputs; running this script does the same.
"""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import abigen  # noqa: E402

ROOT = abigen.ROOT
DOC_SRC = ROOT / "abi/registry/ops_doc.md"
OUT = ROOT / "docs/ops.md"

FIELD_RE = re.compile(r"^- `([a-z_0-9]+)`(?:\s*\(([^)]*(?:\([^)]*\)[^)]*)*)\))?:\s*(.*)$")

FLAG_WORDS = {"A": "asynchronous", "S": "synchronising", "G": "capturable", "H": "touches host memory"}
NULL_WORDS = {
    "required": "unsupported (a complete backend must fill this slot)",
    "unsupported": "unsupported",
    "facade": "the facade composes the op from other ops",
}


class DocError(SystemExit):
    pass


class OpDoc:
    def __init__(self, name):
        self.name = name
        self.summary = []      # paragraphs (lists of lines)
        self.fields = {}       # name -> (default, text)
        self.facade = None
        self.spec = None


def parse_doc(text, path="abi/registry/ops_doc.md"):
    """Returns (shared fields dict, {op: OpDoc})."""
    shared, ops = {}, {}
    section, cur, para = None, None, []
    errors = []

    def flush_para():
        nonlocal para
        if cur is not None and para:
            cur.summary.append(para)
        para = []

    for n, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{n}"
        if line.startswith("## "):
            flush_para()
            title = line[3:].strip().lower()
            section = "shared" if title.startswith("shared fields") else "ops" if title == "ops" else None
            cur = None
            continue
        if line.startswith("### "):
            flush_para()
            if section != "ops":
                errors.append(f"{where}: op section outside '## Ops'")
                continue
            name = line[4:].strip().strip("`")
            if name in ops:
                errors.append(f"{where}: op '{name}' documented twice")
            cur = ops.setdefault(name, OpDoc(name))
            continue
        m = FIELD_RE.match(line)
        if m and section in ("shared", "ops"):
            flush_para()
            fname, default, ftext = m.group(1), (m.group(2) or "").strip(), m.group(3).strip()
            if not ftext:
                errors.append(f"{where}: field '{fname}' has no text")
            target = shared if section == "shared" else (cur.fields if cur else None)
            if target is None:
                errors.append(f"{where}: field line before any op section")
                continue
            if fname in target:
                errors.append(f"{where}: field '{fname}' documented twice")
            target[fname] = (default, ftext)
            continue
        if line.startswith("  ") and line.strip() and section in ("shared", "ops") and not para:
            # continuation of the previous field line
            target = shared if section == "shared" else (cur.fields if cur else None)
            if target:
                last = next(reversed(target))
                d, t = target[last]
                target[last] = (d, t + " " + line.strip())
                continue
        if cur is None:
            continue
        if line.startswith("facade:"):
            flush_para()
            cur.facade = line[len("facade:"):].strip()
        elif line.startswith("spec:"):
            flush_para()
            cur.spec = line[len("spec:"):].strip()
        elif not line.strip():
            flush_para()
        else:
            para.append(line.strip())
    flush_para()
    if errors:
        raise DocError("gendocs: " + "\n  ".join(errors))
    return shared, ops


def alias_of(op):
    m = re.match(r"^[a-z0-9_]+\(==([a-z0-9_]+)\)$", op.raw.strip())
    return m.group(1) if m else None


def validate(ops, shared, docs):
    errors = []
    by_name = {op.name: op for op in ops}
    for name in docs:
        if name not in by_name:
            errors.append(f"op '{name}' is documented but not in abi/registry/ops.txt")
    used_shared = set()
    for op in ops:
        d = docs.get(op.name)
        if d is None:
            errors.append(f"op '{op.name}': no section '### {op.name}' in abi/registry/ops_doc.md")
            continue
        if not d.summary:
            errors.append(f"op '{op.name}': no summary")
        names = [f.name for f in op.fields]
        for fname in d.fields:
            if fname not in names:
                errors.append(f"op '{op.name}': documented field '{fname}' is not a field of the op")
        target = docs.get(alias_of(op) or "")
        for fname in names:
            if fname in d.fields or (target and fname in target.fields):
                continue
            if fname in shared:
                used_shared.add(fname)
                continue
            errors.append(f"op '{op.name}': field '{fname}' is not documented "
                          f"(add '- `{fname}`: …' to its section or to '## Shared fields')")
        if op.null == "facade" and not d.facade:
            errors.append(f"op '{op.name}': NULL slot is 'facade' but the section has no 'facade:' line")
        if op.null != "facade" and d.facade:
            errors.append(f"op '{op.name}': has a 'facade:' line but its NULL slot is '{op.null}'")
    for fname in shared:
        if fname not in used_shared:
            errors.append(f"shared field '{fname}' is used by no op (or every op overrides it)")
    if errors:
        raise DocError("gendocs: the op documentation does not match the registry:\n  " +
                       "\n  ".join(errors))


# ------------------------------------------------------------------------------------ output
def esc(s):
    return s.replace("|", "\\|")


def direction(f):
    if f.buf:
        return f.buf[0]
    if f.kind == "hostout":
        return "out (host)"
    if f.kind == "host":
        return "in (host)"
    return "in"


def shape_of(f):
    spec = f.comment
    if f.kind == "qweight":
        spec = "ferrum_qweight*"
    for prefix in ("in ", "out ", "inout ", "host ", "hostout "):
        if spec.startswith(prefix):
            spec = spec[len(prefix):]
            break
    if f.optional:
        spec += " (may be NULL)"
    return f"`{spec}`"


def facade_param_defaults():
    try:
        import gen_facade  # noqa: E402
        return dict(getattr(gen_facade, "DEFAULT_ARGS", {}))
    except Exception:  # the facade generator is optional for the docs
        return {}


def legend():
    return """## Legend: the registry's columns

Each row of `abi/registry/ops.txt` is

```
<family>  <op>(<field>: <kind>, ...) [since=1.<m>]  | <flags> | <tolerance> | <NULL slot> | <cpu> | <cuda> | <ctx>
```

Released minors are frozen: ids, slots, sizes and offsets of 1.0 in `abi/registry/layout_v1_0.json`
and of 1.1 in `abi/registry/layout_v1_1.json`; abigen refuses a registry change that moves a frozen
layout, so additions go to 1.2, the open minor.

| column | values | meaning |
|---|---|---|
| family | `memory`, `context`, `graph`, `dense`, `attention`, `paged_kv`, `quant_kv`, `quant_matmul`, `moe`, `mla`, `collective` | the family table (`ferrum_<family>_table`) that holds the slot; the op id is the row number, frozen once released |
| fields | `name: kind`, in struct order | the members of `ferrum_<op>_args` after `struct_size` (kinds: [spec §0.1](spec.md#01-how-an-op-is-described)) |
| flags | `A` `S` `G` `H`, or `—` | **A** asynchronous (enqueued; returns before completion), **S** synchronising (returns after earlier work and the op are done), **G** capturable during a graph capture, **H** reads or writes host memory during the call ([spec §0.1](spec.md#01-how-an-op-is-described), [§0.4](spec.md#04-execution)) |
| tolerance | `E` `F` `L` `Q` `R`, or `—` | how exactly the conformance kit judges the result ([spec §0.13](spec.md#013-tolerance-classes-used-by-the-conformance-tests)); several outputs are listed as `F (out), L (lse)`; `—` = no numeric output; class `A` (quantised activations) replaces `F` where an op's section says so (`gguf_matmul` on a weight loaded with `act_precision = FERRUM_QUANT_ACT_Q8`) |
| NULL slot | `required`, `unsupported`, `facade` | what the facade does when a plugin leaves the slot NULL: `required` — reports *unsupported*, and a complete backend must fill the slot; `unsupported` — reports *unsupported*; `facade` — composes the op from other ops ([spec §0.14](spec.md#014-facade-defaults)) |
| cpu, cuda | `req`, `opt` | whether the project's CPU / CUDA plugin must fill the slot (`opt`: it may leave it, or its whole family, NULL) |
| ctx | `ctx`, `noctx` | `noctx` (`[no ctx]`): the op ignores its context argument (pass NULL) and is thread-safe |

Field notation:

| notation | meaning |
|---|---|
| `+name` | a field ferrum added to the seed's signature of the op; like every field listed at ABI 1.0 it is part of the 1.0 struct, so no caller lacks it |
| `since=1.<m>` after an op's `)` | the op, its args struct and its table slot were appended in minor 1.m; a plugin declaring an older `abi_minor` has no such slot (the facade answers *unsupported* naming both versions) |
| `name: kind since=1.<m> default=<v>` | a field appended to the op's struct in minor 1.m, after every older field; a caller of an older minor, whose `struct_size` ends before it, means `<v>` (0 / NULL when omitted). Plugins read it with the generated accessor `ferrum_<op>_args_<name>(args)`; the facade refuses a value other than `<v>` on a plugin of an older minor |
| `(==other)` | the op has exactly the fields of `other` (same names, order, meaning); only its storage or behaviour differs as its entry says |
| `(may be NULL)` | the handle or pointer is optional; the entry says what NULL means |
| `in` / `out` / `inout` | a device buffer the op reads / writes / reads then writes |
| `host` / `hostout` | caller memory the op reads / fills during the call |
| `act`, `idx`, `tab`, `any`, `X`, `F32`, `I32`, `I8`, `F8_E4M3` | dtype classes ([spec §0.1](spec.md#01-how-an-op-is-described)): `act` = the call's activation dtype (F32, F16 or BF16, one per call), `idx` = U32 or I32 per buffer, `tab` = activation dtype or F32, `any` = any dtype, `X` = one float dtype shared by the call's buffers, a dtype name = exactly that dtype |
| `[a, b·c]` | the shape, row-major; `·` multiplies; dimensions are field names of the op or the letters below. The generated checks enforce every shape whose dimensions are all fields of the op (the buffer needs at least that many elements) |
| `[pool]` | a KV pool in the layout of [spec §0.10](spec.md#010-kv-cache-layouts); its block count is derived from its size |
| `N`, `S`, `R`, `P`, `G`, `cap`, `cap_blocks`, `vocab`, `rows` | dimensions not passed as fields: pool blocks, the KV stride (`kv_seq_stride` or `kv_len`), MLA ranks, GPTQ groups, MoE routing capacities ([spec §13.1](spec.md#131-pairs-and-routing)), table rows derived from the buffer size |
| `bytes` | a `const void*` / `void*` of elements of the dtype another field names |

Each op below lists: its C slot, the registry row, what it does, one line per field (C type,
direction, shape or kind, meaning, and the value zero or an omitted default stands for), then its
flags, tolerance class, NULL-slot behaviour and the spec sections that apply.
"""


def gen_ops_md(ops, shared, docs):
    fdefaults = facade_param_defaults()
    o = ["<!-- GENERATED by tools/abigen/gendocs.py from abi/registry/ops.txt and "
         "abi/registry/ops_doc.md — do not edit. -->",
         "# ferrum op reference",
         "",
         "Every op of the ferrum C ABI: what it computes, every field of its args struct, its flags,",
         "tolerance class and what a NULL slot means. Rules shared by many ops (dtypes, layouts,",
         "errors, attention, RoPE, paged caches, graphs …) are in [spec.md](spec.md), whose section",
         "numbers (§x.y) the entries cite. Plugin authors: [plugin-guide.md](plugin-guide.md).",
         "",
         legend(),
         "## Contents", ""]
    for fam in abigen.FAMILIES:
        fops = [op for op in ops if op.family == fam]
        title = abigen.FAMILY_TITLES[fam].split(" (")[0]
        links = ", ".join(f"[`{op.name}`](#{op.name})" for op in fops)
        o.append(f"- [{fam}](#{fam}) — {title}: {links}")
    o += ["- [Op table](#op-table)", ""]
    for fam in abigen.FAMILIES:
        fops = [op for op in ops if op.family == fam]
        title = abigen.FAMILY_TITLES[fam].split(" (")[0]
        o += [f'<a id="{fam}"></a>', "", f"## {fam} — {title}", "",
              f"Slots of `ferrum_{fam}_table`, in table order.", ""]
        for op in fops:
            o += gen_op(op, shared, docs, fdefaults)
    o += ['<a id="op-table"></a>', "", "## Op table", "",
          "| id | op | family | flags | tolerance | NULL slot | cpu | cuda | ctx |",
          "|---|---|---|---|---|---|---|---|---|"]
    for op in ops:
        o.append(f"| {op.id} | [`{op.name}`](#{op.name}) | {op.family} | {op.flags} | {esc(op.tol)} | "
                 f"{op.null} | {op.cpu} | {op.cuda} | {op.ctx} |")
    o.append("")
    return "\n".join(o)


def gen_op(op, shared, docs, fdefaults):
    d = docs[op.name]
    target = docs.get(alias_of(op) or "")
    o = [f'<a id="{op.name}"></a>', "", f"### `{op.name}`", ""]
    ctx = "NULL (ignored)" if op.ctx == "noctx" else "ctx"
    o += ["```c",
          f"ferrum_status (*{op.name})(ferrum_context* ctx, const ferrum_{op.name}_args* args);"
          + ("  /* pass " + ctx + " */" if op.ctx == "noctx" else ""),
          f"/* id FERRUM_OP_{op.name.upper()} = {op.id}; registry: {op.raw.strip()} */",
          "```", ""]
    if op.since:
        o += [f"Since ABI 1.{op.since}: a plugin declaring an older minor has no such slot.", ""]
    for para in d.summary:
        o += [link_sections(" ".join(para)), ""]
    if op.fields:
        o += ["| field | C type | dir | shape / kind | meaning | 0 / default |",
              "|---|---|---|---|---|---|"]
        for f in op.fields:
            default, text = (d.fields.get(f.name) or (target.fields.get(f.name) if target else None)
                             or shared[f.name])
            fd = fdefaults.get((op.name, f.name))
            if fd:
                default = (default + "; " if default else "") + f"C++ facade: `{fd}`"
            name = f"`{'+' if f.added else ''}{f.name}`"
            if f.since > op.since:
                name += f" (since 1.{f.since})"
                dv = f.default if f.default is not None else ("NULL" if f.ctype.endswith("*") else "0")
                default = (default + "; " if default else "") + f"older callers: `{dv}`"
            o.append(f"| {name} | `{f.ctype}` | {direction(f)} | {esc(shape_of(f))} | "
                     f"{link_sections(esc(text))} | {link_sections(esc(default))} |")
        o.append("")
    else:
        o += ["No fields besides `struct_size`.", ""]
    flags = op.flags.replace(" ", "")
    fw = ", ".join(FLAG_WORDS[c] for c in flags if c in FLAG_WORDS) or "neither enqueued nor synchronising"
    o.append(f"- **Flags:** {op.flags} ({fw}){' · `[no ctx]`, thread-safe' if op.ctx == 'noctx' else ''}")
    o.append(f"- **Tolerance:** {op.tol}")
    o.append(f"- **NULL slot:** `{op.null}` — {NULL_WORDS[op.null]}"
             + (f": {d.facade}" if d.facade else ""))
    o.append(f"- **Project plugins:** CPU {op.cpu}, CUDA {op.cuda}")
    if d.spec:
        secs = re.findall(r"§[0-9.]+", d.spec)
        o.append("- **Spec:** " + ", ".join(f"[{s}](spec.md#{anchor(s)})" for s in secs))
    o.append("")
    return o


SPEC_ANCHORS = {}


def link_sections(text):
    """Turns every §x.y in prose into a link to that section of docs/spec.md."""
    return re.sub(r"§([0-9]+(?:\.[0-9]+)?)", lambda m: f"[§{m.group(1)}](spec.md#{anchor(m.group(0))})", text)


def anchor(sec):
    """GitHub-style anchor of the heading of docs/spec.md that starts with the section number."""
    if not SPEC_ANCHORS:
        spec = ROOT / "docs/spec.md"
        for line in spec.read_text().splitlines() if spec.exists() else []:
            m = re.match(r"^#{2,3} ([0-9]+(?:\.[0-9]+)?)\.? (.*)$", line)
            if m:
                slug = re.sub(r"[^a-z0-9 _-]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                SPEC_ANCHORS[m.group(1)] = slug
    key = sec.lstrip("§").rstrip(".")
    if key not in SPEC_ANCHORS:
        raise DocError(f"gendocs: spec section {sec} cited in ops_doc.md does not exist in docs/spec.md")
    return SPEC_ANCHORS[key]


def generate(ops, doc_text=None):
    """Validates and returns {path: text} of the generated docs."""
    text = DOC_SRC.read_text() if doc_text is None else doc_text
    shared, docs = parse_doc(text)
    validate(ops, shared, docs)
    return {OUT: gen_ops_md(ops, shared, docs)}


if __name__ == "__main__":
    # docs/ops.md is one of abigen's outputs: running this script runs (or checks) all of them.
    sys.exit(abigen.main())
