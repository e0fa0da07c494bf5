#!/usr/bin/env python3
"""Tests of abigen's versioned growth (tools/abigen/abigen.py): the 1.1 additions leave every 1.0
size constant, offset and abi/registry/layout_v1_0.json unchanged; per-minor constants appear only
for the structs and tables a minor changed; a registry edit that would move a released layout, or
that breaks append-only growth, is refused with a message naming the op or field."""
import hashlib
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools/abigen"))
import abigen  # noqa: E402

failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)


# The released 1.0 layout file, byte for byte as released (commit 448b604).
V1_0_SHA256 = "5b918d872e4d9bad4b6dc0e374a117a58cc260efd1fbcf5649bacc718003f6bf"
v1_0_text = abigen.frozen_path(0).read_text()
expect(hashlib.sha256(v1_0_text.encode()).hexdigest() == V1_0_SHA256,
       "abi/registry/layout_v1_0.json changed: a released layout must never be rewritten")
V1_0 = json.loads(v1_0_text)
# 1.1 is frozen too; while a minor is still being filled its file is absent (checks below skip it).
V1_1 = json.loads(abigen.frozen_path(1).read_text()) if abigen.frozen_path(1).exists() else None

OPS = abigen.load_registry()
BY_NAME = {op.name: op for op in OPS}

# 1. The registry's view of 1.0 is exactly the frozen one; the same for 1.1.
expect(abigen.layout_json(OPS, 0) == V1_0, "the registry's 1.0 layout differs from layout_v1_0.json")
expect(V1_1 is None or abigen.layout_json(OPS, 1) == V1_1,
       "the registry's 1.1 layout differs from layout_v1_1.json")
expect(abigen.check_frozen(OPS, 0, V1_0) == [], "check_frozen(1.0) reports errors on the registry")

# 2. The generated headers keep every 1.0 constant at its 1.0 value.
headers = "".join(p.read_text() for p in (ROOT / "abi/include/ferrum").glob("ferrum_*.h"))


def const(name):
    m = re.search(rf"#define {name} ([0-9]+)", headers)
    return int(m.group(1)) if m else None


for name, d in V1_0["ops"].items():
    expect(const(f"FERRUM_{name.upper()}_ARGS_SIZE_V1_0") == d["size"],
           f"FERRUM_{name.upper()}_ARGS_SIZE_V1_0 is not the 1.0 size {d['size']}")
for fam, names in V1_0["tables"].items():
    expect(const(f"FERRUM_{fam.upper()}_TABLE_SIZE_V1_0") == 8 + 8 * len(names),
           f"FERRUM_{fam.upper()}_TABLE_SIZE_V1_0 is not the 1.0 size")
expect(const("FERRUM_OP_COUNT_V1_0") == len(V1_0["ops"]), "FERRUM_OP_COUNT_V1_0 changed")

# 3. The 1.1 additions: the grown struct and table get a _V1_1 constant and the current-size
#    constant; an unchanged struct gets no _V1_1 constant; the new op has no _V1_0 constant.
expect(const("FERRUM_READ_TYPED_ARGS_SIZE_V1_0") == 40, "read_typed 1.0 size")
expect(const("FERRUM_READ_TYPED_ARGS_SIZE_V1_1") == 48, "read_typed 1.1 size")
expect(const("FERRUM_READ_TYPED_ARGS_SIZE") == 48, "read_typed current size")
for op in OPS:  # a _V1_<m> constant exactly where minor m added the op or a field of it
    for m in range(1, abigen.current_minor() + 1):
        changed = op.since == m or any(f.since == m for f in op.fields)
        expect((const(f"FERRUM_{op.name.upper()}_ARGS_SIZE_V1_{m}") is not None) == changed,
               f"FERRUM_{op.name.upper()}_ARGS_SIZE_V1_{m} present iff 1.{m} changed the struct")
for fam in abigen.FAMILIES:
    for m in range(1, abigen.current_minor() + 1):
        changed = any(op.family == fam and op.since == m for op in OPS)
        expect((const(f"FERRUM_{fam.upper()}_TABLE_SIZE_V1_{m}") is not None) == changed,
               f"FERRUM_{fam.upper()}_TABLE_SIZE_V1_{m} present iff 1.{m} appended a slot")
expect(const("FERRUM_GEMM_ARGS_SIZE") == V1_0["ops"]["gemm"]["size"], "gemm current size")
expect(const("FERRUM_QUERY_ATTRIBUTE_ARGS_SIZE_V1_0") is None, "query_attribute has a 1.0 constant")
expect(const("FERRUM_QUERY_ATTRIBUTE_ARGS_SIZE_V1_1") == 24, "query_attribute 1.1 size")
expect(const("FERRUM_CONTEXT_TABLE_SIZE_V1_1") == abigen.table_size(OPS, "context", 1), "context table 1.1 size")
expect(const("FERRUM_OP_COUNT_V1_1") == len([op for op in OPS if op.since <= 1]), "1.1 op count")
expect(const("FERRUM_OP_COUNT") == len(OPS), "current op count")
expect("static inline uint64_t ferrum_read_typed_args_src_offset(" in headers, "accessor missing")
expect(BY_NAME["read_typed"].size_at(0) == 40 and BY_NAME["query_attribute"].size_at(0) is None,
       "size_at")
# The 1.2 addition (the open minor): load_quant's act_precision, a 1.1 caller's struct unchanged.
expect(abigen.current_minor() >= 2, "FERRUM_ABI_VERSION_MINOR below 2")
expect(const("FERRUM_LOAD_QUANT_ARGS_SIZE_V1_0") == 56 and const("FERRUM_LOAD_QUANT_ARGS_SIZE_V1_2") == 64,
       "load_quant 1.0 / 1.2 sizes")
expect(BY_NAME["load_quant"].size_at(1) == 56 and BY_NAME["load_quant"].size_at(2) == 64, "load_quant size_at")
expect("static inline int32_t ferrum_load_quant_args_act_precision(" in headers, "act_precision accessor missing")

# 4. The generated checks accept any struct_size >= the op's first size and read appended fields
#    through the accessors only.
checks = (ROOT / "common/include/ferrum/common/checks/memory_gen.hpp").read_text()
body = checks[checks.index("const ferrum_read_typed_args* a"):]
body = body[: body.index("\n}\n")]
expect("c.header(a, FERRUM_READ_TYPED_ARGS_SIZE_V1_0)" in body, "read_typed checks: header size")
expect("a->src_offset" not in body and "ferrum_read_typed_args_src_offset(a)" in body,
       "read_typed checks read src_offset directly")

# 5. Registry edits that must be refused.
REG = abigen.REGISTRY.read_text()


def with_registry(text):
    """(ops, None) or (None, error text) for a registry `text`."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    saved = abigen.REGISTRY
    abigen.REGISTRY = Path(f.name)
    try:
        return abigen.load_registry(), None
    except SystemExit as e:
        return None, str(e)
    finally:
        abigen.REGISTRY = saved
        Path(f.name).unlink()


def frozen_errors(text):
    ops, err = with_registry(text)
    if err:
        return [err]
    return abigen.check_frozen(ops, 0, V1_0) + (abigen.check_frozen(ops, 1, V1_1) if V1_1 else [])


def expect_refused(label, text, needle):
    errs = frozen_errors(text)
    if not errs:
        failures.append(f"{label}: accepted, expected an error mentioning {needle!r}")
    elif not any(needle in e for e in errs):
        failures.append(f"{label}: errors do not mention {needle!r}: {errs}")


GEMM = "gemm(a: in act[m, k], b: in act[n, k], out: out act[m, n], m: u64, n: u64, k: u64)"
assert GEMM in REG, "fixture row moved; update the test"
expect_refused("a field appended to a 1.0 op without since",
               REG.replace(GEMM, GEMM[:-1] + ", beta: f32)"), "op gemm: its 1.0 fields changed")
expect_refused("a field inserted into a 1.0 op",
               REG.replace(GEMM, GEMM.replace("m: u64,", "beta: f32, m: u64,")), "op gemm")
expect_refused("a 1.0 field marked since=1.1",
               REG.replace(GEMM, GEMM.replace("k: u64)", "k: u64 since=1.1)")), "op gemm")
if V1_1:
    expect_refused("a field appended to a 1.0 op as part of 1.1 (frozen)",
                   REG.replace(GEMM, GEMM[:-1] + ", beta: f32 since=1.1)"), "op gemm: its 1.1 fields changed")
QA = REG[REG.index("context       query_attribute("):]
SILU = "dense  silu(x: in act[len], out: out act[len], len: u64)  | A G | F | unsupported | req | req | ctx\n"
expect_refused("a new op without since (before the 1.1 ops)", REG.replace(QA, SILU + QA),
               "op silu is new but marked as part of released ABI 1.0")
expect_refused("a new op without since (after the 1.1 ops)", REG + SILU, "new ops are appended")
if V1_1:
    expect_refused("an op inserted before a released one moves its id", REG.replace(QA, SILU + QA),
                   "op query_attribute: id changed 103 -> 104")
expect_refused("a field of 1.1 before a field of 1.0",
               REG.replace(GEMM, GEMM.replace("m: u64,", "beta: f32 since=1.2, m: u64,")),
               "new fields are appended")
expect_refused("a 1.0 op after a 1.1 op",
               REG + "dense  silu(x: in act[len], out: out act[len], len: u64)"
               "  | A G | F | unsupported | req | req | ctx\n"
               "dense  silu2(x: in act[len], out: out act[len], len: u64) since=1.2"
               "  | A G | F | unsupported | req | req | ctx\n"
               "dense  silu3(x: in act[len], len: u64)  | A G | F | unsupported | req | req | ctx\n",
               "new ops are appended")
expect_refused("a pointer field with a non-NULL default",
               REG.replace(GEMM, GEMM[:-1] + ", extra: in act since=1.2 default=3)"),
               "a pointer field defaults to NULL")

# 6. A legal 1.2 addition leaves both frozen layouts alone and grows only what it touches.
ops12, err = with_registry(REG.replace(GEMM, GEMM[:-1] + ", beta: f32 since=1.2 default=1.0f)"))
expect(err is None, f"a legal 1.2 field was refused: {err}")
if ops12:
    expect(abigen.check_frozen(ops12, 0, V1_0) == [] and (not V1_1 or abigen.check_frozen(ops12, 1, V1_1) == []),
           "a 1.2 field moved a frozen layout")
    g = next(op for op in ops12 if op.name == "gemm")
    expect(g.size_at(0) == g.size_at(1) == V1_0["ops"]["gemm"]["size"], "gemm's 1.0/1.1 size moved")
    expect(g.size_at(2) == V1_0["ops"]["gemm"]["size"] + 8, "gemm's 1.2 size")
    expect(g.fields[-1].default_c() == "(float)(1.0f)", "default as C")

if failures:
    print("test_abigen_growth: FAILED\n  " + "\n  ".join(failures))
    sys.exit(1)
print("test_abigen_growth: ok")
