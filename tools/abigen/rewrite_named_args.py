#!/usr/bin/env python3
"""rewrite_named_args — rewrites positional facade calls to the named (designated) form.

    tools/abigen/rewrite_named_args.py [--check | --self-test] [FILE_OR_DIR ...]

Default paths: tests tools conformance examples core/src (C++ sources only; the generated
context_ops_gen.cpp is skipped). For every `.op(` / `->op(` call of an op that takes an
args::<Op> struct (gen_facade.is_named), the arguments are split with balanced brackets and
mapped to the field names of the op's former positional signature (from gen_facade.plan), the
argument count telling the overloads apart:
  - the raw form (all registry fields, cos/sin buffers and an int qk mode): the mode is wrapped
    in static_cast<ferrum::QkMode>(...) unless it already names a QkMode;
  - the RopeTables form (one `rope` argument in place of cos, sin): `.rope = &tables`.
A call whose count matches no form (already named, a C slot call, a template helper) is left
alone, so the script is idempotent and can be re-run on new call sites; so is a call on the line
after (or on the line of) a comment saying "positional on purpose". Whitespace, line breaks
and comments between arguments are kept; a leading /*name=*/ comment is dropped (the name says
it now). --check lists what would change and exits 1 if anything would (CTest runs it over
the tree, abi.named_args_call_sites); --self-test rewrites a few known calls.
"""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import abigen  # noqa: E402
import gen_facade as gf  # noqa: E402

ROOT = abigen.ROOT
DEFAULT_PATHS = ["tests", "tools", "conformance", "examples", "core/src", "fuzz"]
EXTS = {".cpp", ".hpp", ".cc", ".h", ".cu", ".cuh", ".inc"}
SKIP = {ROOT / "core/src/context_ops_gen.cpp", ROOT / "core/include/ferrum/context_ops_gen.inc"}


def forms():
    """op name -> {argument count: [(field name, kind)]}; kind is 'mode_int', 'rope' or ''."""
    out = {}
    for op in gf.generated_ops(abigen.load_registry()):
        if not gf.is_named(op):
            continue
        params = gf.plan(op)[0]
        names = [gf.param_name(p) for p in params]
        required = sum(1 for p in params if "=" not in p)
        mode = gf.rope_mode(op)
        by_count = {}
        raw = [(n, "mode_int" if n == mode else "") for n in names]
        for c in range(required, len(names) + 1):
            by_count[c] = raw[:c]
        if mode:
            typed = []
            for n in names:
                if n == "cos":
                    typed.append(("rope", "rope"))
                elif n != "sin":
                    typed.append((n, ""))
            by_count[len(typed)] = typed
        out[op.name] = by_count
    return out


def split_args(text, start):
    """Splits the call's arguments from text[start] (just after '('). Returns (list of
    (begin, end) spans, index of the closing ')'), or None if unbalanced."""
    depth, i, spans, begin = 0, start, [], start
    while i < len(text):
        c = text[i]
        if c in "\"'":
            q = c
            i += 1
            while i < len(text) and text[i] != q:
                i += 2 if text[i] == "\\" else 1
        elif text.startswith("//", i):
            i = text.find("\n", i)
            if i < 0:
                return None
            continue
        elif text.startswith("/*", i):
            i = text.find("*/", i) + 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                if c != ")":
                    return None
                spans.append((begin, i))
                return spans, i
            depth -= 1
        elif c == "," and depth == 0:
            spans.append((begin, i))
            begin = i + 1
        i += 1
    return None


QK_NAMES = {"COPY": "copy", "NORM_NEOX": "rms_norm_neox", "NEOX": "neox", "GPTJ": "gptj"}
QK_VALUES = {"0": "copy", "1": "rms_norm_neox", "2": "neox", "3": "gptj"}
CAST = "static_cast<ferrum::QkMode>"


def qk_mode(body):
    """A former int qk mode as a QkMode: a FERRUM_QK_MODE_* constant or its value by name,
    `static_cast<int32_t>(m)` as m, anything else (a variable, an invalid value) cast."""
    m = re.fullmatch(r"FERRUM_QK_MODE_([A-Z_]+)", body)
    if m and m.group(1) in QK_NAMES:
        return f"ferrum::QkMode::{QK_NAMES[m.group(1)]}"
    if body in QK_VALUES:
        return f"ferrum::QkMode::{QK_VALUES[body]}"
    m = re.fullmatch(r"static_cast<int32_t>\(([\w.]+)\)", body)
    if m:
        return m.group(1)
    return f"{CAST}({body})"


def tidy(text):
    """Earlier output of this script in the current form (casts of constants by name)."""
    return re.sub(re.escape(CAST) + r"\((FERRUM_QK_MODE_[A-Z_]+|[0-3]|static_cast<int32_t>\([\w.]+\))\)",
                  lambda m: qk_mode(m.group(1)), text)


def name_arg(field, kind, arg):
    lead = re.match(r"\s*", arg).group(0)
    body = arg[len(lead):]
    trail = re.search(r"\s*$", body).group(0)
    body = body[:len(body) - len(trail)] if trail else body
    body = re.sub(r"^/\*\s*[A-Za-z_]\w*\s*=?\s*\*/\s*", "", body)
    if kind == "mode_int" and not re.match(r"^(ferrum::)?QkMode::", body):
        body = qk_mode(body)
    elif kind == "rope":
        if body.startswith("*") and re.fullmatch(r"\*[A-Za-z_][\w.]*", body):
            body = body[1:]
        elif re.fullmatch(r"[A-Za-z_][\w.]*(\[[^\]]*\])?", body):
            body = "&" + body
        else:
            body = f"&({body})"
    return f"{lead}.{field} = {body}{trail}"


MARKER = "positional on purpose"  # a comment that keeps the call below it (compile-fail tests)


def rewrite(text, table):
    pat = re.compile(r"(?:\.|->)\s*(" + "|".join(sorted(table, key=len, reverse=True)) + r")\s*\(")
    out, pos, n = [], 0, 0
    for m in pat.finditer(text):
        if m.start() < pos:
            continue
        line_start = text.rfind("\n", 0, text.rfind("\n", 0, m.start())) + 1
        if MARKER in text[line_start:m.start()]:  # on this line or the one before
            continue
        parsed = split_args(text, m.end())
        if not parsed:
            continue
        spans, close = parsed
        args = [text[b:e] for b, e in spans]
        if len(args) == 1 and not args[0].strip():
            args = []
        form = table[m.group(1)].get(len(args))
        if form is None or (args and args[0].lstrip().startswith("{")):
            continue
        # A nested facade call in an argument is rewritten first.
        args = [rewrite(a, table)[0] for a in args]
        named = ",".join(name_arg(f, k, a) for (f, k), a in zip(form, args))
        out.append(text[pos:m.end()])
        out.append("{" + named + "}")
        pos = close
        n += 1
    out.append(text[pos:])
    new = "".join(out)
    tidied = tidy(new)
    return tidied, n + (tidied != new)


def files(paths):
    for p in paths:
        p = (ROOT / p) if not Path(p).is_absolute() else Path(p)
        items = [p] if p.is_file() else sorted(p.rglob("*"))
        for f in items:
            if f.is_file() and f.suffix in EXTS and f not in SKIP and "build" not in f.parts:
                yield f


SELF_TEST = [  # (positional source, named form)
    ("ctx.gemm(a, b, out, m, /*n=*/n, k);",
     "ctx.gemm({.a = a, .b = b, .out = out, .m = m, .n = n, .k = k});"),
    ("c->rms_norm(x, w, 1e-6f,\n    y, f(t, 2), dim);  // kept",
     "c->rms_norm({.x = x, .w = w, .eps = 1e-6f,\n    .out = y, .tokens = f(t, 2), .dim = dim});  // kept"),
    ("ctx.qk_norm_rope(in, nullptr, &cs, &sn, out, t, h, d, p, eps, FERRUM_QK_MODE_NEOX);",
     "ctx.qk_norm_rope({.input = in, .norm_w = nullptr, .cos = &cs, .sin = &sn, .output = out, "
     ".tokens = t, .heads = h, .head_dim = d, .pos_offset = p, .eps = eps, .mode = ferrum::QkMode::neox});"),
    ("ctx.qk_norm_rope(in, &w, rope, out, t, h, d, p, eps, QkMode::gptj);",
     "ctx.qk_norm_rope({.input = in, .norm_w = &w, .rope = &rope, .output = out, .tokens = t, "
     ".heads = h, .head_dim = d, .pos_offset = p, .eps = eps, .mode = QkMode::gptj});"),
    ("ctx.qk_norm_rope(in, nullptr, nullptr, nullptr, out, t, h, d, p, eps, 7);",
     "ctx.qk_norm_rope({.input = in, .norm_w = nullptr, .cos = nullptr, .sin = nullptr, .output = out, "
     ".tokens = t, .heads = h, .head_dim = d, .pos_offset = p, .eps = eps, "
     ".mode = static_cast<ferrum::QkMode>(7)});"),
    ("ctx.from_weight_bytes(raw, Dtype::f16);", "ctx.from_weight_bytes({.raw = raw, .src_dtype = Dtype::f16});"),
    # Left alone: plain ops, already named calls, C slot calls with another argument count.
    ("ctx.to_vec(buf, n); ctx.gemm({.a = a}); t->gemm(ctx, &args);",
     "ctx.to_vec(buf, n); ctx.gemm({.a = a}); t->gemm(ctx, &args);"),
    ("// positional on purpose\nctx.gemm(a, b, out, m, n, k);", "// positional on purpose\nctx.gemm(a, b, out, m, n, k);"),
]


def self_test(table):
    bad = 0
    for src, want in SELF_TEST:
        got = rewrite(src, table)[0]
        if got != want or rewrite(got, table)[0] != got:
            bad += 1
            print(f"rewrite_named_args: self-test failed\n  source: {src}\n  want:   {want}\n  got:    {got}")
    print(f"rewrite_named_args: self-test {len(SELF_TEST) - bad}/{len(SELF_TEST)} passed")
    return 1 if bad else 0


def main():
    if "--self-test" in sys.argv:
        return self_test(forms())
    check = "--check" in sys.argv
    paths = [a for a in sys.argv[1:] if a != "--check"] or DEFAULT_PATHS
    table = forms()
    total, changed = 0, []
    for f in files(paths):
        text = f.read_text()
        new, n = rewrite(text, table)
        if n:
            total += n
            changed.append(f"{f.relative_to(ROOT)}: {n}")
            if not check:
                f.write_text(new)
    print("\n".join(changed))
    print(f"rewrite_named_args: {total} call(s) or mode cast(s) in {len(changed)} file(s)"
          + (" would change" if check else " rewritten"))
    return 1 if check and total else 0


if __name__ == "__main__":
    sys.exit(main())
