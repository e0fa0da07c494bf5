#!/usr/bin/env python3
"""stack_experts.py — derives qwen3-moe-stacked/ from qwen3-moe/ (standard library only).

    python3 tests/models/stack_experts.py [--out tests/models]

The same model with each sparse layer's per-expert tensors
    model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight   ([I, H], [I, H], [H, I])
replaced by the stacked form transformers 5.x holds in memory
    model.layers.L.mlp.experts.gate_up_proj   [E, 2I, H]  (expert E: its gate rows, then its up rows)
    model.layers.L.mlp.experts.down_proj      [E, H, I]
byte for byte, so qwen3-moe's reference.json is the reference of this checkpoint too (copied).
ferrum-run's tests load it (the stacked path) and check that --tp refuses it by name.
make_tiny.py calls this after writing qwen3-moe.
"""
import argparse
import json
import os
import re
import shutil
import struct


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    tensors = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        tensors[name] = (t["dtype"], t["shape"], data[a:b])
    return meta, tensors


def write_safetensors(path, meta, tensors):
    header, blobs, off = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)


def stack(out):
    src, dst = os.path.join(out, "qwen3-moe"), os.path.join(out, "qwen3-moe-stacked")
    meta, tensors = read_safetensors(os.path.join(src, "model.safetensors"))
    pat = re.compile(r"^(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight$")
    per = {}
    for name in list(tensors):
        m = pat.match(name)
        if m:
            per.setdefault(m.group(1), {})[(int(m.group(2)), m.group(3))] = tensors.pop(name)
    for prefix, parts in per.items():
        experts = sorted({e for e, _ in parts})
        assert experts == list(range(len(experts))), f"{prefix}: experts {experts}"
        dtype, (i, h), _ = parts[(0, "gate")]
        gate_up = b"".join(parts[(e, "gate")][2] + parts[(e, "up")][2] for e in experts)
        down = b"".join(parts[(e, "down")][2] for e in experts)
        tensors[prefix + ".gate_up_proj"] = (dtype, [len(experts), 2 * i, h], gate_up)
        tensors[prefix + ".down_proj"] = (dtype, [len(experts), h, i], down)
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    os.makedirs(dst)
    write_safetensors(os.path.join(dst, "model.safetensors"), meta, tensors)
    for f in ("config.json", "reference.json"):
        shutil.copy(os.path.join(src, f), os.path.join(dst, f))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    stack(ap.parse_args().out)
