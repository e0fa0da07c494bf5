#!/usr/bin/env python3
"""raw_arith — fails when a check or glue file does raw arithmetic on caller values.

ferrum's arithmetic rule: every size, offset, product, end position and element count computed
from caller values goes through the checked helpers of <ferrum/common/checked.hpp>
(checked_add/mul/sub, sat_add/sat_mul, ceil_div, range_ok, the `Size` type), never through a raw
operator that can wrap past 2^64 (or below 0).

The rule this lint enforces, per scanned file (comments and string literals are ignored):

  * Caller values are
      - fields of an op's args: `a.f`, `a->f`, `args.f`, `args->f` (the names every glue, check
        and facade default gives its args),
      - integer parameters of the file's functions (`uint64_t x`, `int64_t x`, `uint32_t x`,
        `size_t x`): helpers such as make_pool(…, uint64_t bs, uint64_t nkv, …) receive caller
        values,
      - locals initialised from a caller value (`const uint64_t D = a.head_dim, W = …;`,
        `auto n = a.m;`), transitively within the file.
  * A binary `+`, `-` or `*` (and `+=`, `-=`, `*=`) is raw caller arithmetic when either operand
    — the whole postfix expression next to the operator: a name with its `.`/`->`/`::` chain,
    calls and subscripts, or a parenthesised group — mentions a caller value.
  * `Size(…)` is the checked type: an operand that is a `Size(…)` expression is not raw (its
    operators report the wrap). Division and `%` are not flagged (they cannot wrap).
  * A reviewed exception carries the marker `arith-ok:` and a reason in a comment on the same
    line, or in a comment line of its own just above it (e.g. pointer arithmetic with an offset
    validated just above, or int64 arithmetic on I32 device values). Use it sparingly.

Usage: raw_arith.py [--root DIR] [FILE...]   (no files: the project's default set)
Exit status 1 and one `file:line: ...` diagnostic per finding when anything is raw.
"""
import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The check and glue code the rule covers (globs relative to the root).
DEFAULT_GLOBS = [
    "common/include/ferrum/common/checks/*_gen.hpp",
    "common/include/ferrum/common/check_support.hpp",
    "common/include/ferrum/common/*_rules.hpp",
    "common/include/ferrum/common/plugin_support.hpp",
    "plugins/cpu/src/glue/*.cpp",
    "plugins/cpu/src/glue/*.hpp",
    "plugins/cpu/src/*.cpp",
    "plugins/cpu/src/*.hpp",
    "plugins/cuda/src/glue/*.cpp",
    "plugins/cuda/src/glue/*.hpp",
    "plugins/cuda/src/*.cpp",
    "core/src/defaults.cpp",
]
# Files of those globs left out, each with its reason.
EXCLUDE = {
    # a device self-test with its own fixed sizes: no caller values
    "plugins/cuda/src/selftest_main.cpp",
    # the CUDA memory layer: its byte sizes are element counts already bounded by a live buffer
    # (check_len / range_ok in the glue before it); it is being reworked for handle validation
    # and comes under the rule when that lands
    "plugins/cuda/src/glue/memory.cpp",
    "plugins/cuda/src/memory.cpp",
}

MARKER = "arith-ok:"
IDENT = r"[A-Za-z_][A-Za-z_0-9]*"
FIELD_RE = re.compile(r"\b(?:a|args)\s*(?:\.|->)\s*[A-Za-z_][A-Za-z_0-9]*\b(?!\s*\()")
INT_NAMES = r"(?:u?int(?:8|16|32|64)_t|size_t|unsigned\s+long\s+long|long\s+long)"
INT_TYPES = r"(?:" + INT_NAMES + r"|auto)"
PARAM_RE = re.compile(r"[(,]\s*(?:const\s+)?" + INT_NAMES + r"\s+(" + IDENT + r")\s*(?=[,)])")
DECL_RE = re.compile(r"(?:^|[;{(]\s*)(?:(?:static|constexpr|const)\s+)*" + INT_TYPES + r"\s+(" + IDENT + r"\s*=[^;]*);")


def strip_code(text):
    """Comments and string/char literals blanked out (newlines kept), plus the set of lines that
    carry the allow marker in a comment."""
    out, allowed = [], set()
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            if MARKER in text[i:j]:
                allowed.add(line)
                if text[text.rfind("\n", 0, i) + 1:i].strip() == "":  # a comment line of its own:
                    allowed.add(line + 1)                              # it covers the next line
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            chunk = text[i:j]
            if MARKER in chunk:
                allowed.add(line)
            out.append(re.sub(r"[^\n]", " ", chunk))
            line += chunk.count("\n")
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + " " * (j - i - 2) + c if j - i >= 2 else c)
            i = j
        else:
            if c == "\n":
                line += 1
            out.append(c)
            i += 1
    return "".join(out), allowed


def match_bracket(s, i, open_ch, close_ch, step):
    """Index of the bracket matching s[i]: forward (step 1) from an opening one, backward (step
    -1) from a closing one."""
    inc, dec = (open_ch, close_ch) if step > 0 else (close_ch, open_ch)
    depth = 0
    while 0 <= i < len(s):
        if s[i] == inc:
            depth += 1
        elif s[i] == dec:
            depth -= 1
            if depth == 0:
                return i
        i += step
    return 0 if step < 0 else len(s) - 1


def match_back(s, i, open_ch, close_ch):
    return match_bracket(s, i, open_ch, close_ch, -1)


def match_fwd(s, i, open_ch, close_ch):
    return match_bracket(s, i, open_ch, close_ch, 1)


def skip_ws_back(s, i):
    while i >= 0 and s[i] in " \t\n":
        i -= 1
    return i


def skip_ws_fwd(s, i):
    while i < len(s) and s[i] in " \t\n":
        i += 1
    return i


def ident_back(s, i):
    while i >= 0 and (s[i].isalnum() or s[i] == "_"):
        i -= 1
    return i


def left_operand(s, i):
    """The postfix expression ending just before s[i] (the operator); (start, end) or None."""
    end = skip_ws_back(s, i - 1)
    j = end
    if j < 0:
        return None
    while True:
        if s[j] in ")]":
            j = match_back(s, j, "(" if s[j] == ")" else "[", s[j]) - 1
            k = skip_ws_back(s, j)
            if k >= 0 and s[k] == ">":  # template arguments of a call: f<T>(…)
                k = match_back(s, k, "<", ">") - 1
            if k >= 0 and (s[k].isalnum() or s[k] == "_"):
                word = s[ident_back(s, k) + 1:k + 1]
                if word in ("if", "while", "for", "switch"):
                    return None  # `if (…) *p = …`: the operator is unary
                if word not in ("return", "case", "else", "do"):
                    j = ident_back(s, k)
            elif k >= 0 and s[k] in ")]":
                j = k
                continue
        elif s[j].isalnum() or s[j] == "_":
            j = ident_back(s, j)
        else:
            return None
        k = skip_ws_back(s, j)
        if k >= 1 and s[k - 1:k + 1] in ("->", "::"):
            j = skip_ws_back(s, k - 2)
            continue
        if k >= 0 and s[k] == "." and not (k >= 1 and s[k - 1].isdigit()):
            j = skip_ws_back(s, k - 1)
            continue
        return (j + 1, end + 1)


def right_operand(s, i):
    """The operand starting just after the operator ending at s[i - 1]; (start, end)."""
    start = skip_ws_fwd(s, i)
    j = start
    while j < len(s) and s[j] in "-+!~*&":  # unary prefixes
        j = skip_ws_fwd(s, j + 1)
    if j < len(s) and s[j] == "(":  # a parenthesised group or a C cast followed by its operand
        k = match_fwd(s, j, "(", ")")
        j = k + 1
        nxt = skip_ws_fwd(s, j)
        if re.fullmatch(r"\(\s*(?:const\s+)?" + INT_TYPES + r"\s*\)", s[start:j].lstrip("-+!~*& \t")) and nxt < len(s):
            return right_operand(s, nxt)
    while j < len(s):
        if s[j].isalnum() or s[j] == "_":
            while j < len(s) and (s[j].isalnum() or s[j] == "_"):
                j += 1
        k = skip_ws_fwd(s, j)
        if k < len(s) and s[k] == "<" and re.match(r"<\s*[A-Za-z_][\w:]*\s*>\s*\(", s[k:]):
            k = match_fwd(s, k, "<", ">") + 1
            k = skip_ws_fwd(s, k)
        if k < len(s) and s[k] in "([":
            j = match_fwd(s, k, s[k], ")" if s[k] == "(" else "]") + 1
            continue
        if s.startswith("->", k) or s.startswith("::", k):
            j = skip_ws_fwd(s, k + 2)
            continue
        if k < len(s) and s[k] == "." and not s[k + 1:k + 2].isdigit():
            j = skip_ws_fwd(s, k + 1)
            continue
        break
    return (start, j)


def neutralise_size(s):
    """Every `Size(...)` expression replaced by a same-length placeholder (checked arithmetic)."""
    out = list(s)
    for m in re.finditer(r"\bSize\s*\(", s):
        k = match_fwd(s, m.end() - 1, "(", ")")
        for p in range(m.start(), k + 1):
            if out[p] != "\n":
                out[p] = "S" if p == m.start() else " "
    return "".join(out)


def tainted_names(code):
    names = set(PARAM_RE.findall(code))
    decls = []
    for m in DECL_RE.finditer(code):
        for part in split_declarators(m.group(1)):
            if "=" in part:
                name, init = part.split("=", 1)
                decls.append((name.strip(), init))
    changed = True
    while changed:
        changed = False
        for name, init in decls:
            if name not in names and mentions(init, names):
                names.add(name)
                changed = True
    # Loop counters and obvious non-sizes are never caller values.
    return {n for n in names if n not in ("i", "j", "k") or False}


def split_declarators(text):
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def mentions(expr, names):
    if FIELD_RE.search(expr):
        return True
    for ident in re.findall(IDENT, expr):
        if ident in names:
            return True
    return False


STRINGY = re.compile(r"^(?:std::)?(?:to_string|string|str|dtype_name|format|plugin::format)\s*\(|^\"")


def operand_tainted(text, names):
    text = text.strip()
    if not text or text.startswith("S ") or text == "S":
        return False
    for m in re.finditer(IDENT, text):
        ident = m.group(0)
        if ident in names:
            before = text[:m.start()].rstrip()
            if before.endswith(".") or before.endswith("->") or before.endswith("::"):
                continue  # a member of some other object
            after = text[m.end():].lstrip()
            if after.startswith("("):
                continue  # a function named like a caller value
            return True
    return bool(FIELD_RE.search(text))


OP_RE = re.compile(r"(?<![+\-*/<>=!&|^%])([+\-*])(=?)(?![+\-=>*/])")


def scan(path, text):
    code, allowed = strip_code(text)
    code = neutralise_size(code)
    names = tainted_names(code)
    findings = []
    line_starts = [0]
    for m in re.finditer(r"\n", code):
        line_starts.append(m.end())

    def line_of(pos):
        lo, hi = 0, len(line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if line_starts[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    for m in OP_RE.finditer(code):
        pos = m.start(1)
        if code[pos:pos + 2] in ("++", "--", "->") or code[pos - 1:pos + 1] in ("++", "--"):
            continue
        prev = skip_ws_back(code, pos - 1)
        if prev < 0 or not (code[prev].isalnum() or code[prev] in "_)]"):
            continue  # unary (or a pointer declarator after a keyword)
        if code[prev].isalnum() or code[prev] == "_":
            word_start = ident_back(code, prev) + 1
            if code[word_start:prev + 1] in ("return", "case", "sizeof", "const", "operator"):
                continue
        if m.group(1) == "*":
            # `T* name` / `T* const*` declarators: a type name before, a declared name after.
            lhs = left_operand(code, pos)
            if lhs and re.fullmatch(r"(?:const\s+)?(?:[\w:]+::)?[A-Za-z_]\w*(?:<[^<>]*>)?", code[lhs[0]:lhs[1]].strip()):
                word = code[lhs[0]:lhs[1]].strip()
                if re.search(r"(_t|_args|_buffer|_context|_qweight|_timer|_info|_api|_table|char|void|float|double|int|bool|T|C|I|Code|Acc|Args)$", word) \
                        and word not in names:
                    continue
        lhs = left_operand(code, pos)
        if lhs is None:
            continue  # no left operand: a unary operator (a dereference after `if (…)`)
        rhs = right_operand(code, m.end())
        lt = code[lhs[0]:lhs[1]] if lhs else ""
        rt = code[rhs[0]:rhs[1]]
        if STRINGY.search(lt.strip()) or STRINGY.search(rt.strip()):
            continue  # string concatenation in a message
        if not (operand_tainted(lt, names) or operand_tainted(rt, names)):
            continue
        ln = line_of(pos)
        if ln in allowed:
            continue
        src_line = text.splitlines()[ln - 1].strip() if ln - 1 < len(text.splitlines()) else ""
        op = m.group(1) + m.group(2)
        findings.append(f"{path}:{ln}: raw '{op}' on a caller value ({lt.strip() or '?'} {op} {rt.strip() or '?'}); "
                        f"use <ferrum/common/checked.hpp> or mark a reviewed case 'arith-ok: <reason>'\n    {src_line}")
    return findings


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=str(ROOT))
    ap.add_argument("--stamp", help="touch this file when clean (build integration)")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    root = Path(args.root)
    if args.files:
        files = [Path(f) for f in args.files]
    else:
        files = sorted({p for g in DEFAULT_GLOBS for p in root.glob(g)
                        if str(p.relative_to(root)) not in EXCLUDE})
    findings = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except OSError as e:
            print(f"raw_arith: cannot read {f}: {e}", file=sys.stderr)
            return 2
        try:
            shown = f.relative_to(root)
        except ValueError:
            shown = f
        findings += scan(shown, text)
    for line in findings:
        print(line)
    if findings:
        if args.stamp and Path(args.stamp).exists():
            Path(args.stamp).unlink()  # the build must run the lint again
        print(f"raw_arith: {len(findings)} raw arithmetic expression(s) on caller values in {len(files)} file(s)")
        return 1
    if args.stamp:
        Path(args.stamp).write_text("ok\n")
    print(f"raw_arith: {len(files)} file(s) clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
