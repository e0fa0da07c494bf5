#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz harnesses (fuzz/corpus/<harness>/).

  fuzz_config        valid configs, edge configs and malformed ones (one file each)
  fuzz_backend_spec  valid and malformed backend specs
  fuzz_facade_ops    one seed per op of the registry with sane arguments, encoded in the input
                     layout of fuzz/fuzz_facade_ops.cpp (field order of fuzz/gen_op_table.py)

Run it after adding an op to the registry; it rewrites the three directories.
"""
import shutil
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tools/abigen"))
import abigen  # noqa: E402

CONFIGS = {
    "empty_object": "{}",
    "backend_cpu": '{"backend": "cpu"}',
    "backend_auto": '{"backend": "auto"}',
    "backend_cuda1": '{"backend": "cuda:1"}',
    "backend_path": '{"backend": "/usr/lib/ferrum/libferrum-cpu.so"}',
    "backend_empty": '{"backend": ""}',
    "full": '{"backend": "cpu", "plugin_path": ["/opt/ferrum/plugins", "./plugins"], "log_level": "info"}',
    "plugin_path_empty": '{"plugin_path": []}',
    "plugin_path_many": '{"plugin_path": ["a", "b", "c", "d", "e", "f", "g", "h"]}',
    "log_trace": '{"log_level": "trace"}',
    "log_debug": '{"log_level": "debug"}',
    "log_warn": '{"log_level": "warn"}',
    "log_error": '{"log_level": "error"}',
    "log_off": '{"log_level": "off"}',
    "log_bad": '{"log_level": "verbose"}',
    "log_upper": '{"log_level": "INFO"}',
    "unknown_key": '{"backend": "cpu", "colour": "blue"}',
    "duplicate_key": '{"backend": "cpu", "backend": "cuda"}',
    "backend_number": '{"backend": 1}',
    "backend_null": '{"backend": null}',
    "backend_object": '{"backend": {"name": "cpu"}}',
    "plugin_path_string": '{"plugin_path": "/opt/ferrum"}',
    "plugin_path_mixed": '{"plugin_path": ["/opt", 3, null]}',
    "plugin_path_nested": '{"plugin_path": [["/opt"]]}',
    "top_array": '["backend", "cpu"]',
    "top_string": '"cpu"',
    "top_number": "1e309",
    "top_null": "null",
    "empty_file": "",
    "whitespace": " \t\r\n ",
    "trailing_comma": '{"backend": "cpu",}',
    "comment": '// ferrum\n{"backend": "cpu"}',
    "truncated": '{"backend": "cp',
    "bom": '\ufeff{"backend": "cpu"}',
    "escapes": '{"backend": "c\\u0000pu\\n\\t\\"\\\\\\/"}',
    "surrogate": '{"backend": "\\ud800"}',
    "deep": "[" * 600 + "]" * 600,
    "deep_object": '{"a":' * 300 + "1" + "}" * 300,
    "long_backend": '{"backend": "' + "x" * 3000 + '"}',
    "big_number": '{"backend": 123456789012345678901234567890}',
    "negative_zero": '{"log_level": -0.0e-0}',
}
CONFIG_BYTES = {
    "non_utf8": b'{"backend": "\xff\xfe\xc3\x28"}',
    "nul_inside": b'{"backend": "cpu"}\x00{"backend": "cuda"}',
    "latin1_key": b'{"b\xe4ckend": "cpu"}',
}

SPECS = ["cpu", "cpu:0", "cpu:1", "cpu:00", "cpu:18446744073709551615", "cpu:18446744073709551616",
         "cpu:99999999999999999999999", "cuda", "cuda:1", "auto", "auto:0", "", ":", ":0", "cpu:",
         "cpu:-1", "cpu:+1", "cpu: 1", "cpu:0x1", "cpu:0:0", "a:b:1", "CPU", "cpu\x00:1", "cpu\n",
         " cpu", "libferrum-cpu", "empty", "text", "missing", "./plugins/libferrum-cpu.so",
         "./plugins/libferrum-cpu.so:0", "./plugins/libferrum-cpu.so:1", "./plugins/libferrum-empty.so",
         "./plugins/libferrum-text.so", "./plugins/libferrum-missing.so", "./plugins", "./plugins/",
         "./", "x" * 300, "\xff\xfe"]

# fuzz_facade_ops: the buffer pool of fuzz_facade_ops.cpp (kPool), by index.
F32_BIG = [0, 1, 2, 3, 4, 5]
POOL = {"f32": F32_BIG, "I32": [8, 9, 10], "I8": [14, 15], "F8_E4M3": [16, 17], "U8": [18]}
INPUT_INDEX = {"f32": 5, "I32": 13, "I8": 14, "F8_E4M3": 16, "U8": 18, "idx": 11}
U64_ZERO = {"pos_offset", "cache_len", "cache_len_before", "sliding_window", "kv_seq_stride",
            "src_offset", "dst_offset", "in_row_offset", "out_row_offset", "qkv_byte_offset",
            "q_out_byte_offset", "slot", "key", "device_ordinal"}
U64_VALUE = {"head_dim": 8, "hd": 8, "dim": 8, "block_size": 4, "group_size": 32, "cache_capacity": 8,
             "capacity": 8, "num_experts": 2, "top_k": 1, "kv_lora_rank": 4, "qk_rope_head_dim": 2,
             "num_tiles": 1, "n_rows": 4, "n_cols": 32, "byte_len": 136, "bits": 4, "world_size": 1,
             "rank": 0, "src_rank": 0, "token": 0, "step": 0, "causal": 1, "norm_topk_prob": 1,
             "enable": 0, "raw_len": 8}
GPTQ = {"k": 32, "n": 8, "n_per_expert": 8}
I32_VALUE = {"dtype": 1, "src_dtype": 1, "dst_dtype": 1, "scales_dtype": 1, "op": 1, "quant_type": 8}
F32_INDEX = {"eps": 5, "scale": 7}  # kF32Bits: 1e-5, 0.125; anything else 1.0 (index 2)


def op_seed(op):
    out = bytearray([op.id - 1, 0, 0])  # op, struct_size = sizeof, no host tail
    writes = {}
    for f in op.fields:
        if f.kind in ("host", "hostout"):
            continue
        if f.kind in ("u64", "u32", "flag"):
            v = 0 if f.name in U64_ZERO else U64_VALUE.get(f.name, 2)
            if op.name.startswith("load_gptq"):
                v = GPTQ.get(f.name, v)
            if op.name == "mla_attention" and f.name == "num_kv_heads":
                v = 1
            out.append(v)
        elif f.kind == "i32":
            out.append(I32_VALUE.get(f.name, 0))
        elif f.kind in ("f32", "f64"):
            out.append(F32_INDEX.get(f.name, 2))
        elif f.kind == "buffer":
            direction, cls = f.buf
            group = cls if cls in POOL else ("idx" if cls == "idx" else "f32")
            if direction == "in":
                out.append(INPUT_INDEX[group] + 1)
            else:
                n = writes.get(group, 0)
                writes[group] = n + 1
                out.append(POOL["I32" if group == "idx" else group][n] + 1)
        elif f.kind == "qweight":
            out.append({"gguf_matmul": 1, "gguf_dequantize": 1, "marlin_gemm": 2}.get(op.name, 0))
        elif f.kind == "handle":
            out.append(1)
    for f in op.fields:
        if f.kind not in ("host", "hostout"):
            continue
        out.append(0 if f.optional else 1)  # optional host data (g_idx, qzeros): absent
        if "ferrum_buffer*[" in f.comment:
            out.append(0)  # the handle array's pattern: pool[i]
    return bytes(out)


def write_dir(name, files):
    d = HERE / "corpus" / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for fname, data in files.items():
        (d / fname).write_bytes(data)
    print(f"make_seeds: {len(files)} seeds in {d.relative_to(HERE.parent)}")


def main():
    configs = {k: v.encode() for k, v in CONFIGS.items()}
    configs.update(CONFIG_BYTES)
    write_dir("fuzz_config", configs)
    write_dir("fuzz_backend_spec", {f"spec_{i:02d}": s.encode("utf-8", "surrogateescape")
                                    for i, s in enumerate(SPECS)})
    write_dir("fuzz_facade_ops", {f"op_{op.id:03d}_{op.name}": op_seed(op)
                                  for op in abigen.load_registry()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
