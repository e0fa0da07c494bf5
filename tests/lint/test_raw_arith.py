#!/usr/bin/env python3
"""Tests of tools/lint/raw_arith.py: it must fail on planted raw arithmetic over caller values
(every form its rule names) and pass the checked, reviewed and non-arithmetic forms."""
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = ROOT / "tools/lint/raw_arith.py"
sys.path.insert(0, str(LINT.parent))
import raw_arith  # noqa: E402


def findings(code):
    return raw_arith.scan("planted.cpp", code)


class Planted(unittest.TestCase):
    """Each snippet holds exactly the raw expressions listed; the lint must name each one."""

    def assert_raw(self, code, ops):
        got = findings(code)
        self.assertEqual(len(got), len(ops), "\n".join(got))
        for f, op in zip(got, ops):
            self.assertIn(f"raw '{op}' on a caller value", f)
            self.assertTrue(f.startswith("planted.cpp:"), f)

    def test_sum_of_fields(self):
        self.assert_raw("bool f(const A& a) {\n  return a.cache_len + a.tokens > a.cache_capacity;\n}\n", ["+"])

    def test_arrow_product(self):
        self.assert_raw("uint64_t g(const A* a) { return a->m * a->k; }\n", ["*"])

    def test_generated_style_shape(self):
        self.assert_raw("c.buffer(\"qkv\", {(uint64_t)((a->q_heads + 2*a->kv_heads)*a->head_dim)});\n",
                        ["+", "*", "*"])

    def test_parameter_taint(self):
        self.assert_raw("Status make_pool(uint64_t bs, uint64_t nkv, uint64_t D) {\n"
                        "  const uint64_t per_block = bs * nkv * D;\n  return ok();\n}\n", ["*", "*"])

    def test_local_taint(self):
        self.assert_raw("void h(const A& a) {\n  const uint64_t D = a.head_dim;\n  use(D * 2);\n}\n", ["*"])

    def test_parenthesised_operand(self):
        self.assert_raw("uint64_t e(const A& a) { return (a.pos_offset) + 1; }\n", ["+"])

    def test_compound_and_subtraction(self):
        self.assert_raw("void k(const A& a, uint64_t n) {\n  n += a.len;\n  use(a.count - a.off);\n}\n",
                        ["+=", "-"])

    def test_cli_fails_and_names_the_line(self):
        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "glue.cpp"
            f.write_text("// glue\nStatus s(const A& a) {\n  if (a.cache_len + a.new_tokens > a.cap) return bad();\n}\n")
            r = subprocess.run([sys.executable, str(LINT), "--root", d, str(f)], capture_output=True, text=True)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("glue.cpp:3: raw '+' on a caller value (a.cache_len + a.new_tokens)", r.stdout)
            self.assertIn("raw_arith: 1 raw arithmetic expression(s)", r.stdout)

    def test_stamp_removed_on_failure(self):
        with tempfile.TemporaryDirectory() as d:
            f, stamp = Path(d) / "glue.cpp", Path(d) / "ok.stamp"
            f.write_text("uint64_t g(const A* a) { return a->m * a->k; }\n")
            stamp.write_text("ok\n")
            r = subprocess.run([sys.executable, str(LINT), "--stamp", str(stamp), str(f)], capture_output=True)
            self.assertEqual(r.returncode, 1)
            self.assertFalse(stamp.exists())


class Clean(unittest.TestCase):
    """Forms the rule allows: checked helpers, Size expressions, reviewed lines, non-arithmetic."""

    def assert_clean(self, code):
        self.assertEqual(findings(code), [])

    def test_checked_helpers_and_size(self):
        self.assert_clean("void f(const A& a) {\n  uint64_t n = sat_mul(a.m, a.k);\n"
                          "  c.buffer(\"qkv\", {(Size(a->q_heads) + 2*Size(a->kv_heads))*Size(a->head_dim)});\n"
                          "  use(ceil_div(a.len, a.block_size), a.len / 2, a.len % 3);\n}\n")

    def test_marker_same_line_and_line_above(self):
        self.assert_clean("void f(const A& a) {\n  use(a.slot * kItems);  // arith-ok: slot < kSlots (checked)\n"
                          "  // arith-ok: l < num_layers <= 64\n  use(a.k_caches[l * a.m + i]);\n}\n")

    def test_marker_does_not_cover_two_lines_below(self):
        self.assertEqual(len(findings("// arith-ok: only the next line\nint x;\nuse(a.m * 2);\n")), 1)

    def test_messages_dereferences_and_declarators(self):
        self.assert_clean("void f(const A& a, bool dry) {\n"
                          "  fail(\"expected \" + std::to_string(a.len) + \" elements\");\n"
                          "  if (!dry) *a.result = 1;\n"
                          "  const ferrum_buffer* b = a.buf;\n"
                          "  use(\"a.len + a.m\");  /* a.len * a.m in a comment */\n}\n")


class Tree(unittest.TestCase):
    def test_project_is_clean(self):
        r = subprocess.run([sys.executable, str(LINT), "--root", str(ROOT)], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("clean", r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
