#!/usr/bin/env python3
"""abigen — generates ferrum's op-dependent code from the one op registry.

The registry (abi/registry/ops.txt) holds one row per op (the notation and every column are
explained in the legend of docs/ops.md; the meaning of every op and field is in
abi/registry/ops_doc.md, checked and rendered by gendocs.py):

    <family> <op>(<field>: <kind>, ...)  | <flags> | <tolerance> | <NULL slot> | <cpu> | <cuda> | <ctx|noctx>

A field list written `(==other_op)` reuses another op's fields. Op ids are the row numbers
(1-based) and are frozen once released: new ops are appended at the end.

Outputs (all committed; `abigen.py --check` fails when one is stale, which CI runs):
  abi/include/ferrum/ferrum_ops.h            args structs, size constants, op ids, X-macro, family tables
  common/include/ferrum/common/op_info_gen.hpp   op metadata + slot lookup (C++, internal)
  common/include/ferrum/common/checks_gen.hpp    generic per-op argument checks (C++, internal)
  tests/abi/layout_v1_0_gen.c                static asserts of the frozen 1.0 sizes and offsets
  docs/ops.md                                the op reference (gendocs.py; fails on undocumented fields)

The 1.0 layout is frozen in abi/registry/layout_v1_0.json: regenerating with a changed 1.0
layout is an error (append new fields/ops instead and add a new minor).
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ROOT / "abi/registry/ops.txt"
BASE_H = ROOT / "abi/include/ferrum/ferrum_base.h"


def frozen_path(minor):
    """The frozen layout of released minor 1.<minor> (present once it is released)."""
    return ROOT / f"abi/registry/layout_v1_{minor}.json"


def layout_test_path(minor):
    return ROOT / f"tests/abi/layout_v1_{minor}_gen.c"

DOCS_BANNER = ("Semantics of every op and field: docs/ops.md and docs/spec.md (installed under "
               "share/doc/ferrum/).")
FAMILIES = ["memory", "context", "graph", "dense", "attention", "paged_kv", "quant_kv",
            "quant_matmul", "moe", "mla", "collective"]
FAMILY_TITLES = {
    "memory": "Memory and transfer (docs/spec.md §1)",
    "context": "Context, capability flags and timer (docs/spec.md §2, §9)",
    "graph": "Graph capture and replay (docs/spec.md §8)",
    "dense": "Dense ops and the QK-norm/RoPE family (docs/spec.md §3, §4)",
    "attention": "Contiguous KV and attention, batched per-cache decode (docs/spec.md §5)",
    "paged_kv": "Paged KV writers and attention (docs/spec.md §6)",
    "quant_kv": "Quantised KV: int8 and fp8 (docs/spec.md §7)",
    "quant_matmul": "Quantised matmul: GGUF and GPTQ int4 (docs/spec.md §11, §12)",
    "moe": "Mixture of experts (docs/spec.md §13)",
    "mla": "Multi-head latent attention (docs/spec.md §14)",
    "collective": "Collectives (docs/spec.md §10)",
}
# Fields whose zero value means "no work": NULL buffer handles are then accepted (docs/spec.md §0.12).
WORK_FIELDS = ["tokens", "len", "m", "batch", "num_seqs", "num_tokens", "rows", "new_tokens",
               "ids_len", "num_pairs", "m_total", "total_q_tokens", "num_tiles", "data_len",
               "local_len"]
# Pairs of fields that docs/spec.md allows to be the same handle although one is written.
MAY_ALIAS = {
    "rms_norm": {("out", "x")},
    "fused_add_rms_norm": {("out", "x")},
    "layer_norm": {("out", "x")},
    "gelu": {("out", "x")},
    "add_inplace": {("residual", "x")},
    "copy_slice": {("dst", "src")},  # non-overlapping ranges: checked by the op
}
DTYPE_CONST = {"F32": "FERRUM_DTYPE_F32", "F16": "FERRUM_DTYPE_F16", "BF16": "FERRUM_DTYPE_BF16",
               "I32": "FERRUM_DTYPE_I32", "U32": "FERRUM_DTYPE_U32", "I8": "FERRUM_DTYPE_I8",
               "U8": "FERRUM_DTYPE_U8", "F8_E4M3": "FERRUM_DTYPE_F8_E4M3"}
SCALARS = {"u64": ("uint64_t", 8), "u32": ("uint32_t", 4), "flag": ("uint32_t", 4),
           "i32": ("int32_t", 4), "f32": ("float", 4), "f64": ("double", 8)}
HOST_ELEM = {"f32": "float", "u32": "uint32_t", "u8": "uint8_t", "i32": "int32_t", "f64": "double",
             "u64": "uint64_t"}


class Field:
    def __init__(self, name, added, kind, ctype, size, buf=None, shape=None, optional=False,
                 comment=""):
        self.name, self.added, self.kind, self.ctype, self.size = name, added, kind, ctype, size
        self.buf = buf          # None or (direction, dtype class)
        self.shape = shape      # list of expressions or None
        self.optional = optional
        self.comment = comment
        self.since = 0          # the minor (1.<since>) that appended the field
        self.default = None     # C literal an older caller's short struct implies (since > 0)

    def default_c(self):
        """The default as a C expression of the field's type (NULL / 0 when none was given)."""
        if self.ctype.endswith("*"):
            return "NULL"
        return f"({self.ctype})({self.default if self.default is not None else '0'})"


class Op:
    def __init__(self, idx, family, name, fields, flags, tol, null, cpu, cuda, ctx, raw):
        self.id, self.family, self.name, self.fields = idx, family, name, fields
        self.flags, self.tol, self.null, self.cpu, self.cuda, self.ctx = flags, tol, null, cpu, cuda, ctx
        self.raw = raw
        self.since = 0          # the minor (1.<since>) that appended the op and its table slot

    def fields_at(self, minor):
        """The fields a caller of ABI 1.<minor> knows."""
        return [f for f in self.fields if f.since <= minor]

    def size_at(self, minor):
        """sizeof the args struct at ABI 1.<minor>; None when the op did not exist yet."""
        return None if self.since > minor else layout(self.fields, minor)[1]

    def grown(self):
        """The fields appended after the op's own minor (read through the accessors)."""
        return [f for f in self.fields if f.since > self.since]


def split_top(s, sep=","):
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == sep and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


ATTR_RE = re.compile(r"\s+(since|default)=(\S+)")


def parse_since(text, where):
    m = re.fullmatch(r"1\.([0-9]+)", text)
    if not m:
        raise SystemExit(f"{where}: since={text}: expected 1.<minor>")
    return int(m.group(1))


def parse_field(text, opname):
    attrs = dict(ATTR_RE.findall(text))
    text = ATTR_RE.sub("", text)
    f = parse_field_kind(text, opname)
    if "since" in attrs:
        f.since = parse_since(attrs["since"], f"{opname}.{f.name}")
    if "default" in attrs:
        if f.since == 0:
            raise SystemExit(f"{opname}.{f.name}: default= needs since= (a 1.0 field is always present)")
        d = attrs["default"]
        if f.ctype.endswith("*") and d not in ("0", "NULL"):
            raise SystemExit(f"{opname}.{f.name}: a pointer field defaults to NULL, given {d}")
        if not f.ctype.endswith("*") and not re.fullmatch(r"-?[0-9][0-9.eE+-]*[fu]?", d):
            raise SystemExit(f"{opname}.{f.name}: default={d}: expected a number")
        f.default = d
    return f


def parse_field_kind(text, opname):
    m = re.match(r"^(\+?)([a-z_0-9]+):\s*(.*)$", text)
    if not m:
        raise SystemExit(f"{opname}: cannot parse field '{text}'")
    added, name, spec = m.group(1) == "+", m.group(2), m.group(3).strip()
    optional = "(may be NULL)" in spec
    spec = spec.replace("(may be NULL)", "").strip()
    comment = spec
    if spec in SCALARS:
        t, sz = SCALARS[spec]
        return Field(name, added, spec, t, sz, comment=spec)
    bm = re.match(r"^(in|out|inout)\s+([A-Za-z0-9_]+)(\[(.*)\])?$", spec)
    if bm:
        direction, cls, shape = bm.group(1), bm.group(2), bm.group(4)
        ctype = "const ferrum_buffer*" if direction == "in" else "ferrum_buffer*"
        dims = [d.strip() for d in split_top(shape)] if shape else None
        return Field(name, added, "buffer", ctype, 8, buf=(direction, cls), shape=dims,
                     optional=optional, comment=spec)
    hm = re.match(r"^host\s+(.*)$", spec)
    if hm:
        t = hm.group(1)
        if t == "bytes" or t.startswith("scales_dtype"):
            ctype = "const void*"
        elif t in ("ferrum_release_fn", "userdata"):  # 1.1: a host callback and its user data
            ctype = "ferrum_release_fn" if t == "ferrum_release_fn" else "void*"
        elif t.startswith("ferrum_buffer*"):
            ctype = "ferrum_buffer* const*"
        elif t.startswith("(const i32*)"):
            ctype = "const int32_t* const*"
        elif t.startswith("(const void*)"):
            ctype = "const void* const*"
        else:
            em = re.match(r"^([a-z0-9]+)\[", t)
            ctype = "const " + HOST_ELEM[em.group(1)] + "*"
        return Field(name, added, "host", ctype, 8, optional=optional, comment=spec)
    om = re.match(r"^hostout\s+(.*)$", spec)
    if om:
        t = om.group(1)
        if t == "bytes":
            ctype = "void*"
        elif t in ("ferrum_buffer*", "ferrum_qweight*", "ferrum_timer*", "ferrum_context*", "ferrum_event*"):
            ctype = t + "*"
        elif t == "ferrum_kv_cache_quant":
            ctype = "ferrum_kv_cache_quant*"
        else:
            em = re.match(r"^([a-z0-9]+)(\[.*\])?$", t)
            base = em.group(1)
            ctype = (HOST_ELEM.get(base) or SCALARS[base][0]) + "*"
        return Field(name, added, "hostout", ctype, 8, comment=spec)
    if spec == "ferrum_qweight*":
        return Field(name, added, "qweight", "const ferrum_qweight*", 8, optional=optional,
                     comment="quantised weight")
    if spec in ("ferrum_buffer*", "ferrum_timer*", "ferrum_context*", "ferrum_event*"):
        return Field(name, added, "handle", spec, 8, comment=spec)
    raise SystemExit(f"{opname}: unknown kind '{spec}' of field {name}")


def load_registry():
    ops, by_name = [], {}
    for line in REGISTRY.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        head, *cols = [c.strip() for c in line.split("|")]
        fam, rest = head.split(None, 1)
        m = re.match(r"^([a-z0-9_]+)\((.*)\)(?:\s+since=(\S+))?$", rest.strip())
        name, ftext = m.group(1), m.group(2)
        flags, tol, null, cpu, cuda, ctx = cols
        if ftext.startswith("=="):
            fields = by_name[ftext[2:]].fields
        else:
            fields = [parse_field(f, name) for f in split_top(ftext)] if ftext.strip() else []
        op = Op(len(ops) + 1, fam, name, fields, flags, tol, null, cpu, cuda, ctx, rest)
        if m.group(3):
            op.since = parse_since(m.group(3), name)
        check_growth(op, ops)
        ops.append(op)
        by_name[name] = op
    return ops


def check_growth(op, earlier):
    """Growth is append-only: an op's minor is >= every earlier op's, a field's >= the op's and
    >= every earlier field's (so each minor's fields follow the older ones)."""
    last = max((o.since for o in earlier), default=0)
    if op.since < last:
        raise SystemExit(f"{op.name}: since=1.{op.since} after an op of 1.{last}: new ops are appended")
    prev = op.since
    for f in op.fields:
        if f.since and f.since <= op.since:
            raise SystemExit(f"{op.name}.{f.name}: since=1.{f.since} but the op itself exists since "
                             f"1.{op.since}: drop the field's since=")
        f_since = max(f.since, op.since)
        if f_since < prev:
            raise SystemExit(f"{op.name}.{f.name}: a field of 1.{f_since} after one of 1.{prev}: "
                             "new fields are appended")
        prev = f_since


def current_minor():
    """FERRUM_ABI_VERSION_MINOR of abi/include/ferrum/ferrum_base.h."""
    m = re.search(r"#define FERRUM_ABI_VERSION_MINOR ([0-9]+)", BASE_H.read_text())
    return int(m.group(1))


def layout(fields, minor=None):
    """LP64 layout with explicit padding: returns list of (field|None for pad, offset), size.

    The fields of each later minor start at the padded end of the struct before it, so an older
    struct keeps its size and trailing padding. minor: only the fields known at ABI 1.<minor>."""
    off, items, cur = 8, [], 0
    for f in fields:
        if minor is not None and f.since > minor:
            break
        if f.since != cur:
            cur = f.since
            if off % 8:
                items.append((None, off))
                off += 4
        if off % f.size:
            items.append((None, off))
            off += 4
        items.append((f, off))
        off += f.size
    if off % 8:
        items.append((None, off))
        off += 4
    return items, off


def upper(name):
    return name.upper()


def table_size(ops, fam, minor):
    return 8 + 8 * len([op for op in ops if op.family == fam and op.since <= minor])


# ------------------------------------------------------------------------------- C header
def gen_header(ops):
    o = []
    w = o.append
    w("/* GENERATED by tools/abigen/abigen.py from abi/registry/ops.txt — do not edit. */")
    w("/*")
    w(" * ferrum — every op of the ABI: ids, one args struct per op, and the family tables.")
    w(" *")
    w(f" * {DOCS_BANNER}")
    w(" *")
    w(" * Each op slot has the form")
    w(" *     ferrum_status (*op)(ferrum_context* ctx, const ferrum_<op>_args* args);")
    w(" * Ops marked [no ctx] ignore ctx (pass NULL). Every args struct starts with")
    w(" * struct_size (set it to sizeof); field meanings, shapes, units and edge cases are")
    w(" * in docs/ops.md under the op's name. Buffer fields: `in` = const handle the")
    w(" * op reads, `out`/`inout` = handle it writes. `host` pointers are read during the call")
    w(" * only; `hostout` pointers are caller memory the op fills before returning. reserved_*")
    w(" * fields are explicit padding and must be 0.")
    w(" *")
    w(" * Thread contract: a slot that takes a context is externally synchronised on that")
    w(" * context; [no ctx] slots are thread-safe. Flags per op: A = asynchronous (enqueued),")
    w(" * S = synchronising, G = capturable, H = touches host memory during the call.")
    w(" */")
    w("#ifndef FERRUM_OPS_H")
    w("#define FERRUM_OPS_H")
    w("")
    w('#include "ferrum_base.h"')
    w("")
    w("#ifdef __cplusplus")
    w('extern "C" {')
    w("#endif")
    w("")
    w("/* ---- op ids (stable; 0 is invalid) -------------------------------------------- */")
    for op in ops:
        w(f"#define FERRUM_OP_{upper(op.name)} {op.id}" + (f" /* since 1.{op.since} */" if op.since else ""))
    for m in range(current_minor() + 1):
        n = len([op for op in ops if op.since <= m])
        if m == 0 or any(op.since == m for op in ops):
            w(f"#define FERRUM_OP_COUNT_V1_{m} {n}")
    w(f"#define FERRUM_OP_COUNT {len(ops)} /* this header's minor */")
    w("")
    w("/* ---- X-macro over every op: X(id, name, family) ---------------------------------- */")
    w("#define FERRUM_OP_LIST(X) \\")
    for i, op in enumerate(ops):
        end = " \\" if i + 1 < len(ops) else ""
        w(f"  X({op.id}, {op.name}, {op.family}){end}")
    w("")
    w("/* ---- per family, its slots in table order: FERRUM_<FAMILY>_SLOTS(X) calls X(op) once per")
    w(" * slot. A plugin that names its slot functions after the ops fills a table with")
    w(" *     #define SLOT(op) op,")
    w(" *     const ferrum_dense_table t = { sizeof(ferrum_dense_table), FERRUM_DENSE_SLOTS(SLOT) };")
    w(" * so an op appended to the registry cannot be forgotten or put in the wrong place;")
    w(" * FERRUM_DENSE_SLOTS(FERRUM_SLOT_DECL) declares every such function of the family (in")
    w(" * C++ inside your namespace; in C prefer prefixed names: `sync` or `rank` clash with libc).")
    w(" * An op the plugin does not implement still gets a name that is NULL, so the list stays whole:")
    w(" *     #define SLOT(op) my_##op,          (C: the pasted name is expanded again)")
    w(" *     #define my_gelu NULL")
    w(" * or in C++, with unprefixed names, `constexpr std::nullptr_t gelu = nullptr;` in the")
    w(" * namespace of the slot functions. A new op is then a compile error until the plugin")
    w(" * implements it or names it NULL. */")
    w("#define FERRUM_SLOT_DECL(op) ferrum_status op(ferrum_context* ctx, const ferrum_##op##_args* args);")
    for fam in FAMILIES:
        names = [f"X({op.name})" for op in ops if op.family == fam]
        rows = [" ".join(names[i:i + 4]) for i in range(0, len(names), 4)]
        w(f"#define FERRUM_{upper(fam)}_SLOTS(X) \\")
        for i, row in enumerate(rows):
            w(f"  {row}" + (" \\" if i + 1 < len(rows) else ""))
    w("")
    for fam in FAMILIES:
        w(f'#include "ferrum_args_{fam}.h"')
    w("")
    w("/* ---- family tables: each starts with struct_size; slots only ever appended ------ */")
    w("typedef ferrum_status (*ferrum_op_fn)(ferrum_context* ctx, const void* args);")
    for fam in FAMILIES:
        fops = [op for op in ops if op.family == fam]
        w("")
        w(f"/* {FAMILY_TITLES[fam]} */")
        w(f"typedef struct ferrum_{fam}_table {{")
        w("  uint64_t struct_size;")
        cur = 0
        for op in fops:
            if op.since != cur:
                if cur == 0:
                    w("  /* ---- appended in later minors only, below this line ---- */")
                w(f"  /* since ABI 1.{op.since}: a table of an older plugin ends before these */")
                cur = op.since
            w(f"  ferrum_status (*{op.name})(ferrum_context* ctx, const ferrum_{op.name}_args* args);")
        if cur == 0:
            w("  /* ---- appended in later minors only, below this line ---- */")
        w(f"}} ferrum_{fam}_table;")
        for m in range(current_minor() + 1):
            if m == 0 or any(op.since == m for op in fops):
                w(f"#define FERRUM_{upper(fam)}_TABLE_SIZE_V1_{m} {table_size(ops, fam, m)}")
        w(f"#define FERRUM_{upper(fam)}_TABLE_SIZE {table_size(ops, fam, current_minor())}")
    w("")
    w("#ifdef __cplusplus")
    w('} /* extern "C" */')
    w("#endif")
    w("")
    w("#endif /* FERRUM_OPS_H */")
    return "\n".join(o) + "\n"


def gen_args_header(ops, fam):
    o = []
    w = o.append
    guard = f"FERRUM_ARGS_{upper(fam)}_H"
    w("/* GENERATED by tools/abigen/abigen.py from abi/registry/ops.txt — do not edit. */")
    w(f"/* ferrum — args structs of the {FAMILY_TITLES[fam]} family. Included by ferrum_ops.h.")
    w(f" * {DOCS_BANNER} */")
    w(f"#ifndef {guard}")
    w(f"#define {guard}")
    w("")
    w('#include "ferrum_base.h"')
    w("")
    w("#ifdef __cplusplus")
    w('extern "C" {')
    w("#endif")
    for op in [op for op in ops if op.family == fam]:
        items, size = layout(op.fields)
        flags = op.flags.replace(" ", "") if op.flags != "—" else "-"
        w("")
        w(f"/* {op.name} — {FAMILY_TITLES[op.family].split(' (')[0].lower()}; flags {flags};"
          f" tolerance {op.tol}; NULL slot: {op.null}{'; [no ctx]' if op.ctx == 'noctx' else ''} */")
        if op.since:
            w(f"/* since ABI 1.{op.since}: the slot is absent from the table of an older plugin. */")
        w(f"typedef struct ferrum_{op.name}_args {{")
        w("  uint64_t struct_size;")
        npad, cur = 0, op.since
        for f, off in items:
            if f is None:
                w(f"  uint32_t reserved_{npad}; /* padding, 0 */")
                npad += 1
                continue
            if f.since > cur:
                cur = f.since
                w(f"  /* ---- since ABI 1.{cur}: an older caller's struct_size ends before these;"
                  " read them with the accessors below ---- */")
            decl = f"{f.ctype} {f.name};"
            cm = f.comment
            if f.kind == "hostout" or (f.buf and f.buf[0] != "in"):
                cm += "  // out"
            if f.optional:
                cm += "; may be NULL"
            if f.added:
                cm += "; (ferrum addition)"
            if f.since > op.since:
                cm += f"; since 1.{f.since}, default {f.default if f.default is not None else ('NULL' if f.ctype.endswith('*') else '0')}"
            w(f"  {decl:<40} /* {cm} */")
        w(f"}} ferrum_{op.name}_args;")
        for m in range(op.since, current_minor() + 1):
            if m == op.since or any(f.since == m for f in op.fields):
                w(f"#define FERRUM_{upper(op.name)}_ARGS_SIZE_V1_{m} {op.size_at(m)}")
        w(f"#define FERRUM_{upper(op.name)}_ARGS_SIZE {size}")
        for f in op.grown():
            w(f"/* {f.name} of a struct from any caller: the registry default ({f.default_c()}) when the")
            w(f" * caller's struct_size (an ABI 1.{f.since - 1} caller) does not cover the field. */")
            w(f"static inline {f.ctype} ferrum_{op.name}_args_{f.name}(const ferrum_{op.name}_args* a) {{")
            w(f"  return a->struct_size >= offsetof(ferrum_{op.name}_args, {f.name}) + sizeof a->{f.name}")
            w(f"             ? a->{f.name}")
            w(f"             : {f.default_c()};")
            w("}")
    w("")
    w("")
    w("#ifdef __cplusplus")
    w('} /* extern "C" */')
    w("#endif")
    w("")
    w(f"#endif /* {guard} */")
    return "\n".join(o) + "\n"


# ------------------------------------------------------------------------------- layout freeze
def layout_json(ops, minor):
    """The layout a caller of ABI 1.<minor> sees: every op of that minor, its size and the
    offsets of the fields it knows, and every family table's slots."""
    d = {"ops": {}, "tables": {}}
    for op in ops:
        if op.since > minor:
            continue
        items, size = layout(op.fields, minor)
        d["ops"][op.name] = {"id": op.id, "size": size,
                             "fields": [[f.name, off] for f, off in items if f is not None]}
    for fam in FAMILIES:
        d["tables"][fam] = [op.name for op in ops if op.family == fam and op.since <= minor]
    return d


def frozen_minors():
    """The released minors: those with a committed abi/registry/layout_v1_<m>.json."""
    return sorted(int(p.stem.rsplit("_", 1)[1]) for p in ROOT.glob("abi/registry/layout_v1_*.json"))


def check_frozen(ops, minor, frozen):
    """Errors (a list of lines) when the registry's view of 1.<minor> differs from `frozen`."""
    cur = layout_json(ops, minor)
    errors = []
    for name, fo in frozen["ops"].items():
        co = cur["ops"].get(name)
        if co is None:
            errors.append(f"op {name} of ABI 1.{minor} was removed or moved to a later minor")
            continue
        if co["id"] != fo["id"]:
            errors.append(f"op {name}: id changed {fo['id']} -> {co['id']}")
        if co["fields"] != fo["fields"] or co["size"] != fo["size"]:
            errors.append(f"op {name}: its 1.{minor} fields changed (append new fields with "
                          f"since=1.<next minor> instead)")
    for name in cur["ops"]:
        if name not in frozen["ops"]:
            errors.append(f"op {name} is new but marked as part of released ABI 1.{minor} "
                          "(mark it since=1.<next minor>)")
    for fam, names in frozen["tables"].items():
        if cur["tables"][fam] != names:
            errors.append(f"table {fam}: 1.{minor} slots changed (only appending in a later minor is allowed)")
    return errors


def check_all_frozen(ops):
    errors = []
    for m in frozen_minors():
        errors += [f"1.{m}: {e}" for e in check_frozen(ops, m, json.loads(frozen_path(m).read_text()))]
    if errors:
        raise SystemExit("abigen: a frozen (released) ABI layout would change:\n  " + "\n  ".join(errors))


HAND_WRITTEN_V1_0 = [
    "FA(sizeof(void*) == 8);",
    # The host info grew in 1.1 (report_error): its 1.0 fields and size stay where they were.
    "FA(sizeof(ferrum_host_info) >= FERRUM_HOST_INFO_SIZE_V1_0);",
    "FA(FERRUM_HOST_INFO_SIZE_V1_0 == 40);",
    "FA(offsetof(ferrum_host_info, reserved0) + 4 == FERRUM_HOST_INFO_SIZE_V1_0);",
    "FA(offsetof(ferrum_host_info, log) == 16);",
    "FA(offsetof(ferrum_host_info, log_user_data) == 24);",
    "FA(offsetof(ferrum_host_info, log_min_level) == 32);",
    "FA(sizeof(ferrum_device_props) == FERRUM_DEVICE_PROPS_SIZE_V1_0);",
    "FA(sizeof(ferrum_kv_cache_quant) == FERRUM_KV_CACHE_QUANT_SIZE_V1_0);",
    # The API table grew in 1.1 (extensions): its 1.0 size is where its 1.0 fields end.
    "FA(FERRUM_PLUGIN_API_SIZE_V1_0 == 184);",
    "FA(sizeof(ferrum_plugin_api) >= FERRUM_PLUGIN_API_SIZE_V1_0);",
    "FA(offsetof(ferrum_plugin_api, collective) + 8 == FERRUM_PLUGIN_API_SIZE_V1_0);",
    "FA(offsetof(ferrum_plugin_api, build_info) + 8 == FERRUM_PLUGIN_API_FROZEN_PREFIX_SIZE);",
    "FA(offsetof(ferrum_plugin_api, probe) == 40);",
    "FA(offsetof(ferrum_plugin_api, memory) == 96);",
    "FA(offsetof(ferrum_plugin_api, collective) == 176);",
]


def size_const_minor(op, minor):
    """The minor whose FERRUM_<OP>_ARGS_SIZE_V1_<k> constant holds the op's size at 1.<minor>."""
    return max([op.since] + [f.since for f in op.fields if f.since <= minor])


def gen_layout_test(ops, frozen, minor):
    """Static asserts of a released minor's sizes, offsets and slot offsets. The 1.0 file is also
    compiled against the frozen copy of the 1.0 headers, so it names no later constant."""
    by_name = {op.name: op for op in ops}
    o = [f"/* GENERATED by tools/abigen/abigen.py from abi/registry/layout_v1_{minor}.json — do not edit.",
         f" * Static asserts of every ABI 1.{minor} struct size, field offset and table slot offset.",
         " * Compiled as C11; a failure means a released layout moved. */",
         "#include <stddef.h>",
         "#include <ferrum/ferrum_plugin.h>",
         "",
         "#define FA(cond) _Static_assert(cond, #cond)"]
    if minor == 0:
        o += HAND_WRITTEN_V1_0
    o.append("")
    for name, d in frozen["ops"].items():
        op = by_name[name]
        grew = op.size_at(current_minor()) != d["size"]
        if grew:  # appended fields of a later minor: the released prefix is asserted below
            o.append(f"FA(sizeof(ferrum_{name}_args) >= {d['size']}); /* grew in a later minor */")
        else:
            o.append(f"FA(sizeof(ferrum_{name}_args) == {d['size']});")
        o.append(f"FA(FERRUM_{upper(name)}_ARGS_SIZE_V1_{size_const_minor(op, minor)} == {d['size']});")
        o.append(f"FA(FERRUM_OP_{upper(name)} == {d['id']});")
        for fname, off in d["fields"]:
            o.append(f"FA(offsetof(ferrum_{name}_args, {fname}) == {off});")
    for fam, names in frozen["tables"].items():
        for i, n in enumerate(names):
            o.append(f"FA(offsetof(ferrum_{fam}_table, {n}) == {8 + 8 * i});")
        k = max([0] + [by_name[n].since for n in names])
        o.append(f"FA(FERRUM_{upper(fam)}_TABLE_SIZE_V1_{k} == {8 + 8 * len(names)});")
    o.append("")
    o.append(f"int ferrum_layout_v1_{minor}_checked(void) {{ return 1; }}")
    return "\n".join(o) + "\n"


# ------------------------------------------------------------------------------- C++ op info
def gen_op_info(ops):
    o = ["// GENERATED by tools/abigen/abigen.py from abi/registry/ops.txt — do not edit.",
         "// Op metadata shared by the facade, the loader, the tools and the plugins.",
         "#pragma once",
         "#include <cstddef>",
         "#include <cstdint>",
         "#include <string_view>",
         "#include <ferrum/ferrum_plugin.h>",
         "",
         "namespace ferrum::common {",
         "",
         "enum class NullSlot : uint8_t { required, unsupported, facade };",
         "",
         "struct OpInfo {",
         "  int32_t id;",
         "  std::string_view name;",
         "  std::string_view family;",
         "  std::string_view flags;      // docs/spec.md flags: A S G H",
         "  std::string_view tolerance;  // docs/spec.md tolerance class",
         "  NullSlot null_slot;          // what the facade does with a NULL slot",
         "  bool cpu_required;           // docs/spec.md §15 'req' for the CPU plugin",
         "  bool cuda_required;",
         "  bool takes_context;          // false for [no ctx] ops",
         "  uint64_t args_size_v1_0;      // the smallest struct_size accepted: the size at the op's first minor",
         "  uint32_t since_minor;         // the minor (1.<since_minor>) that added the op and its slot",
         "  size_t table_offset;         // offset of the family table pointer in ferrum_plugin_api",
         "  size_t slot_offset;          // offset of the slot in its family table",
         "  bool capturable() const { return flags.find('G') != std::string_view::npos; }",
         "};",
         "",
         f"inline constexpr int32_t kOpCount = {len(ops)};",
         "",
         "inline constexpr OpInfo kOps[kOpCount] = {"]
    for op in ops:
        size = op.size_at(op.since)
        null = {"required": "required", "unsupported": "unsupported", "facade": "facade"}[op.null]
        flags = op.flags.replace(" ", "") if op.flags != "—" else ""
        o.append(f'    {{{op.id}, "{op.name}", "{op.family}", "{flags}", "{op.tol}", NullSlot::{null}, '
                 f'{str(op.cpu == "req").lower()}, {str(op.cuda == "req").lower()}, '
                 f'{str(op.ctx == "ctx").lower()}, {size}, {op.since}, offsetof(ferrum_plugin_api, {op.family}), '
                 f'offsetof(ferrum_{op.family}_table, {op.name})}},')
    o += ["};",
          "",
          "// Op metadata by id (1-based); nullptr for an unknown id.",
          "inline const OpInfo* op_info(int32_t id) {",
          "  return (id >= 1 && id <= kOpCount) ? &kOps[id - 1] : nullptr;",
          "}",
          "",
          "// Op metadata by name; nullptr if unknown.",
          "inline const OpInfo* op_info(std::string_view name) {",
          "  for (const auto& op : kOps)",
          "    if (op.name == name) return &op;",
          "  return nullptr;",
          "}",
          "",
          "// The slot of `id` in `api`, or nullptr when the table, the family or the slot is absent,",
          "// lies beyond what the plugin's struct_size covers, or belongs to a minor newer than the",
          "// plugin's abi_minor (an older plugin has no such slot, whatever its table size says).",
          "inline ferrum_op_fn find_slot(const ferrum_plugin_api* api, int32_t id) {",
          "  const OpInfo* info = op_info(id);",
          "  if (!api || !info) return nullptr;",
          "  if (api->abi_minor < info->since_minor) return nullptr;",
          "  if (api->struct_size < info->table_offset + sizeof(void*)) return nullptr;",
          "  const void* table = nullptr;",
          "  __builtin_memcpy(&table, reinterpret_cast<const char*>(api) + info->table_offset, sizeof table);",
          "  if (!table) return nullptr;",
          "  uint64_t table_size = 0;",
          "  __builtin_memcpy(&table_size, table, sizeof table_size);",
          "  if (table_size < info->slot_offset + sizeof(void*)) return nullptr;",
          "  ferrum_op_fn fn = nullptr;",
          "  __builtin_memcpy(&fn, reinterpret_cast<const char*>(table) + info->slot_offset, sizeof fn);",
          "  return fn;",
          "}",
          "",
          "// Typed op ids for templates: OpId<ferrum_rms_norm_args>::value == FERRUM_OP_RMS_NORM.",
          "template <class Args> struct OpId;"]
    for op in ops:
        o.append(f"template <> struct OpId<ferrum_{op.name}_args> {{ static constexpr int32_t value = {op.id}; }};")
    o += ["",
          "// Growth of an args struct across minors, for a caller that talks to an older plugin:",
          "// size_at(m) is the struct_size a plugin of ABI 1.m understands; newer_field(a, m) names the",
          "// first field appended after 1.m that `a` sets to a value other than its registry default",
          "// (nullptr when every such field is at its default), and gives the minor that added it.",
          "template <class Args> struct ArgsGrowth {",
          "  static constexpr bool grown = false;",
          "  static constexpr uint64_t size_at(uint32_t) { return sizeof(Args); }",
          "  static const char* newer_field(const Args&, uint32_t, uint32_t&) { return nullptr; }",
          "};"]
    for op in ops:
        grown = op.grown()
        if not grown:
            continue
        o.append(f"template <> struct ArgsGrowth<ferrum_{op.name}_args> {{")
        o.append("  static constexpr bool grown = true;")
        o.append("  static constexpr uint64_t size_at(uint32_t minor) {")
        for m in sorted({f.since for f in grown}, reverse=True):
            o.append(f"    if (minor >= {m}) return {op.size_at(m)};")
        o.append(f"    return {op.size_at(op.since)};")
        o.append("  }")
        o.append(f"  static const char* newer_field(const ferrum_{op.name}_args& a, uint32_t minor, uint32_t& since) {{")
        for f in grown:
            dflt = "nullptr" if f.ctype.endswith("*") else f.default_c()
            o.append(f"    if (minor < {f.since} && a.{f.name} != {dflt}) {{")
            o.append(f"      since = {f.since};")
            o.append(f'      return "{f.name}";')
            o.append("    }")
        o.append("    return nullptr;")
        o.append("  }")
        o.append("};")
    o += ["",
          "// ArgsGrowth<Args>::newer_field for an op id and a pointer to its args struct (whose",
          "// struct_size covers the current headers' size): nullptr for an op that never grew.",
          "inline const char* newer_field(int32_t id, const void* args, uint32_t minor, uint32_t& since) {",
          "  if (!args) return nullptr;",
          "  switch (id) {"]
    for op in ops:
        if op.grown():
            o.append(f"    case {op.id}: {{")
            o.append(f"      const auto* a = static_cast<const ferrum_{op.name}_args*>(args);")
            o.append(f"      if (a->struct_size < sizeof *a) return nullptr;")
            o.append(f"      return ArgsGrowth<ferrum_{op.name}_args>::newer_field(*a, minor, since);")
            o.append("    }")
    o += ["    default:",
          "      return nullptr;",
          "  }",
          "}",
          "", "}  // namespace ferrum::common", ""]
    return "\n".join(o)


# ------------------------------------------------------------------------------- C++ checks
def shape_expr(dim, names):
    """A shape dimension as checked C++ (every field read as a `Size`, so `+`, `*`, `-` and `/`
    report a wrap instead of producing a smaller number); None when it reads a non-field."""
    e = dim.replace("·", "*")
    idents = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", e))
    if not idents <= names:
        return None
    return re.sub(r"([A-Za-z_][A-Za-z_0-9]*)", r"Size(a->\1)", e)


def given_list(dims):
    """The fields a shape reads, in order, as `{"name", a->name}` pairs for the wrap message."""
    seen = []
    for d in dims:
        for ident in re.findall(r"[A-Za-z_][A-Za-z_0-9]*", d):
            if ident not in seen:
                seen.append(ident)
    return "{" + ", ".join(f'{{"{n}", a->{n}}}' for n in seen) + "}"


def gen_checks_index():
    o = ["// GENERATED by tools/abigen/abigen.py from abi/registry/ops.txt — do not edit.",
         "// Generic argument checks of every op, one header per family (checks/<family>_gen.hpp).",
         "#pragma once"]
    o += [f"#include <ferrum/common/checks/{fam}_gen.hpp>" for fam in FAMILIES]
    return "\n".join(o) + "\n"


def gen_checks(ops):
    o = ["// GENERATED by tools/abigen/abigen.py from abi/registry/ops.txt — do not edit.",
         "// Generic argument checks of every op (docs/spec.md §0.12), shared by the facade (before it",
         "// calls a plugin) and by the project's plugins (before they enqueue anything).",
         "// Checked here: args/struct_size, flag fields, buffer presence, dtype classes, buffer",
         "// sizes for every shape expressible in the op's own fields, forbidden aliasing.",
         "// Op-specific rules (modes, eps, capacities, layouts) stay with each op.",
         "#pragma once",
         "#include <ferrum/common/check_support.hpp>",
         "#include <ferrum/ferrum_ops.h>",
         "",
         "namespace ferrum::common {",
         ""]
    for op in ops:
        names = {f.name for f in op.fields if f.kind in SCALARS}
        o.append("template <class Acc>")
        o.append(f"ferrum_status check_args(Acc& acc, const ferrum_{op.name}_args* a, CheckError& err) {{")
        o.append(f'  Checker<Acc> c(acc, err, "{op.name}");')
        start = len(o)
        since = "" if op.since == 0 else f', "1.{op.since}"'
        o.append(f"  if (!c.header(a, FERRUM_{upper(op.name)}_ARGS_SIZE_V1_{op.since}{since})) return c.status();")
        work = next((f for f in WORK_FIELDS if f in names), None)
        o.append(f"  const bool work = {('a->' + work + ' != 0') if work else 'true'};")
        o.append("  (void)work;")
        for f in op.fields:
            if f.kind == "flag":
                o.append(f'  c.flag("{f.name}", a->{f.name});')
        for f in op.fields:
            if not f.buf:
                continue
            direction, cls = f.buf
            shape = None
            if f.shape:
                parts = [shape_expr(d, names) for d in f.shape]
                if all(p is not None for p in parts):
                    shape = parts
            if cls in DTYPE_CONST:
                dcls = f"DtypeClass::exact, {DTYPE_CONST[cls]}"
            else:
                dcls = {"act": "DtypeClass::act", "idx": "DtypeClass::idx", "tab": "DtypeClass::tab",
                        "any": "DtypeClass::any", "X": "DtypeClass::x"}[cls] + ", 0"
            required = "false" if (f.optional or shape is None) else "work"
            shape_str = "{" + ", ".join(shape) + "}" if shape else "{}"
            dims_txt = ", ".join(f.shape) if f.shape else ""
            given = f", {given_list(f.shape)}" if shape else ""
            o.append(f'  c.buffer("{f.name}", a->{f.name}, {dcls}, {required}, {str(shape is not None).lower()}, '
                     f'{shape_str}, "[{dims_txt}]"{given});')
        for f in op.fields:
            if f.kind not in ("host", "hostout") or f.optional:
                continue
            sm = re.search(r"\[(.*)\]", f.comment)
            need, extra = "1", ""
            if f.comment.endswith("bytes"):  # raw bytes: the element count is the op's length field
                lf = next((n for n in ("data_len", "len", "byte_len", "raw_len") if n in names), None)
                need = f"Size(a->{lf})" if lf else "1"
            elif sm:
                dims = split_top(sm.group(1))
                parts = [shape_expr(d, names) for d in dims]
                if all(p is not None for p in parts):
                    need = "shape_size({" + ", ".join(parts) + "})"
                    extra = f', "[{sm.group(1)}]", {given_list(dims)}'
            o.append(f'  c.host_ptr("{f.name}", a->{f.name}, {need}, {str(f.kind == "hostout").lower()}{extra});')
        writes = [f for f in op.fields if f.buf and f.buf[0] != "in"]
        bufs = [f for f in op.fields if f.buf]
        ok = MAY_ALIAS.get(op.name, set())
        for wf in writes:
            for other in bufs:
                if other is wf or (other.buf[0] != "in" and bufs.index(other) < bufs.index(wf)):
                    continue
                if (wf.name, other.name) in ok or (other.name, wf.name) in ok:
                    continue
                o.append(f'  c.no_alias("{wf.name}", a->{wf.name}, "{other.name}", a->{other.name});')
        o.append("  return c.status();")
        o.append("}")
        o.append("")
        for f in op.grown():  # a field of a later minor than the caller's: read its default
            o[start:] = [re.sub(rf"\ba->{f.name}\b", f"ferrum_{op.name}_args_{f.name}(a)", line)
                         for line in o[start:]]
    o += ["}  // namespace ferrum::common", ""]
    return "\n".join(o)


def main():
    ops = load_registry()
    check_all_frozen(ops)
    top = max([op.since for op in ops] + [f.since for op in ops for f in op.fields])
    if top > current_minor():
        raise SystemExit(f"abigen: the registry has since=1.{top} but ferrum_base.h says "
                         f"FERRUM_ABI_VERSION_MINOR {current_minor()}: bump it")
    freeze = None
    if "--freeze" in sys.argv:  # --freeze 1.<m>: record the released layout of minor m
        freeze = parse_since(sys.argv[sys.argv.index("--freeze") + 1], "--freeze")
        if freeze > current_minor():
            raise SystemExit(f"abigen: cannot freeze 1.{freeze}, the headers are at 1.{current_minor()}")
        if not frozen_path(freeze).exists():
            frozen_path(freeze).write_text(json.dumps(layout_json(ops, freeze), indent=1) + "\n")
            print(f"abigen: froze {frozen_path(freeze).relative_to(ROOT)}")
    outputs = {
        ROOT / "abi/include/ferrum/ferrum_ops.h": gen_header(ops),
        **{ROOT / f"abi/include/ferrum/ferrum_args_{fam}.h": gen_args_header(ops, fam)
           for fam in FAMILIES},
        ROOT / "common/include/ferrum/common/op_info_gen.hpp": gen_op_info(ops),
        ROOT / "common/include/ferrum/common/checks_gen.hpp": gen_checks_index(),
        **{ROOT / f"common/include/ferrum/common/checks/{fam}_gen.hpp":
           gen_checks([op for op in ops if op.family == fam]) for fam in FAMILIES},
        **{layout_test_path(m): gen_layout_test(ops, json.loads(frozen_path(m).read_text()), m)
           for m in frozen_minors()},
    }
    import gendocs  # the op reference: validated against the registry, generated with it
    outputs.update(gendocs.generate(ops))
    check = "--check" in sys.argv
    stale = []
    for path in ROOT.glob("tests/abi/layout_v1_*_gen.c"):  # the asserts of a minor no longer frozen
        if path not in outputs:
            if check:
                stale.append(str(path.relative_to(ROOT)) + " (its layout_v1_<m>.json is gone)")
            else:
                path.unlink()
                print(f"abigen: removed {path.relative_to(ROOT)}")
    for path, text in outputs.items():
        if path.exists() and path.read_text() == text:
            continue
        if check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"abigen: wrote {path.relative_to(ROOT)}")
    if stale:
        print("abigen: stale generated files (run tools/abigen/abigen.py):\n  " + "\n  ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
