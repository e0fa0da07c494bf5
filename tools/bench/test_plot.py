#!/usr/bin/env python3
"""Checks of tools/bench/plot.py on hand-made inputs:  python3 tools/bench/test_plot.py

The ratios and roofline points are compared with values worked out by hand from the inputs below;
bad inputs must exit 2 with a message naming the file and no traceback. With matplotlib installed
(scripts/plots' venv: .cache/plot-venv/bin/python) the PNGs are drawn twice and must be PNGs,
under 300 KB and byte-identical; without it that part says SKIPPED.
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PLOT = os.path.join(HERE, "plot.py")
spec = importlib.util.spec_from_file_location("plot", PLOT)
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def close(a, b, rel=1e-9):
    return a is not None and b is not None and abs(a - b) <= rel * max(abs(a), abs(b))


FERRUM = {
    "tool": "ferrum-bench", "date": "2026-12-03T05:33:34Z", "dtype": "bf16",
    "device": {"name": "Test GPU", "kind": "gpu"},
    "plugin": {"name": "cuda", "build_info": "commit=aaaaaaa sm=90"},
    "ceilings": {"copy_gbs": 1000.0, "matmul_tflops": 100.0, "matmul_source": "test"},
    "rows": [
        {"key": "gemm/a.m1/bf16", "op": "gemm", "shape": "a.m1", "dtype": "bf16", "status": "ok",
         "median_us": 50.0, "bytes": 2.0e6, "flops": 4.0e6},
        {"key": "gemm/a.m16/bf16", "op": "gemm", "shape": "a.m16", "dtype": "bf16", "status": "ok",
         "median_us": 200.0, "bytes": 4.0e6, "flops": 6.4e7},
        {"key": "rms_norm/b/bf16", "op": "rms_norm", "shape": "b", "dtype": "bf16", "status": "unsupported",
         "median_us": 0.0, "bytes": 1.0e6, "flops": 1.0e6},
        {"key": "copy/c/bf16", "op": "copy", "shape": "c", "dtype": "bf16", "status": "ok",
         "median_us": 10.0, "bytes": 1.0e6, "flops": 0.0},
    ],
}
TORCH = {
    "tool": "torch_bench", "device": "Test GPU", "dtype": "bf16", "torch": "9.9",
    "rows": [
        {"key": "gemm/a.m1/bf16", "op": "gemm", "shape": "a.m1", "dtype": "bf16", "impl": "mm",
         "status": "ok", "median_us": 25.0},
        {"key": "gemm/a.m16/bf16", "op": "gemm", "shape": "a.m16", "dtype": "bf16", "impl": "mm",
         "status": "ok", "median_us": 800.0},
        {"key": "rms_norm/b/bf16", "op": "rms_norm", "shape": "b", "dtype": "bf16", "impl": "rms_norm",
         "status": "ok", "median_us": 3.0},
        {"key": "copy/c/bf16", "op": "copy", "shape": "c", "dtype": "bf16", "impl": "copy_",
         "status": "ok", "median_us": 5.0},
    ],
}
GGML = {
    "threads": 1, "rounds": 3, "load1": 0.5, "read_gbs": 20.0, "rows": [
        {"op": "gguf_matmul.q4_0", "shape": "m1", "dtype": "f32", "ggml_us": 300.0, "ferrum_us": 100.0,
         "ratio": 3.0, "bytes": 1.0e6, "flops": 8.0e6, "rel_l2": 1e-3},
        {"op": "gguf_matmul.q4_0", "shape": "m16", "dtype": "f32", "ggml_us": 100.0, "ferrum_us": 400.0,
         "ratio": 0.25, "bytes": 2.0e6, "flops": 1.28e8, "rel_l2": 1e-3},
        {"op": "rms_norm", "shape": "x", "dtype": "f32", "ggml_us": 0.0, "ferrum_us": 4.0,
         "ratio": 0.0, "bytes": 1.0e5, "flops": 1.0e5, "rel_l2": 0.0},
    ],
}


def write(d, name, doc):
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def run_plot(*args):
    r = subprocess.run([sys.executable, PLOT, *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


with tempfile.TemporaryDirectory() as d:
    fpath = write(d, "t-x-2026-12-03-s-ferrum-bench-bf16.json", FERRUM)
    tpath = write(d, "t-x-2026-12-03-s-torch-bench-bf16.json", TORCH)
    gpath = write(d, "t-x-2026-12-03-s-vs-ggml.json", GGML)
    man = write(d, "README.md", "| file | machine | date | commit | what ran |\n|---|---|---|---|---|\n"
                                "| `t-x-2026-12-03-s-ferrum-bench-bf16.json` | Box 9 | 2026-12-01 | 1234567 | test |\n")

    manifest = plot.read_manifest(man)
    fr, tr, gr = (plot.parse(p, manifest) for p in (fpath, tpath, gpath))
    check((fr.kind, tr.kind, gr.kind) == ("ferrum", "torch", "ggml"), "formats recognised from content")
    check((fr.machine, fr.date, fr.commit) == ("Box 9", "2026-12-01", "1234567"),
          "manifest row replaces machine, date and the stale build_info commit")
    pairs = plot.pair_up([gr, tr, fr])
    check(len(pairs) == 2 and pairs[0][0] is fr and pairs[0][1] is tr and pairs[1] == (gr, None),
          "ferrum-bench paired with the torch-bench of the same name; ggml alone")
    check(plot.stem_of(fr) == "t-x-2026-12-03-s-bf16" and plot.stem_of(gr) == "t-x-2026-12-03-s",
          "output stems derived from the input names")

    bars, skipped = plot.speed_bars(fr.rows, tr.rows)
    # by hand: 25/50 = 0.5, 800/200 = 4, copy 5/10 = 0.5; rms_norm did not run on the ferrum side
    want = [("gemm", "a.m1", 0.5), ("gemm", "a.m16", 4.0), ("copy", "c", 0.5)]
    check(len(bars) == 3 and all(b[:2] == w[:2] and close(b[2], w[2]) for b, w in zip(bars, want)) and skipped == 1,
          f"torch / ferrum ratios {[(b[1], round(b[2], 4)) for b in bars]}, {skipped} skipped")
    gbars, gskipped = plot.speed_bars(gr.rows, gr.peer_rows)
    check([round(b[2], 6) for b in gbars] == [3.0, 0.25] and gskipped == 1,
          f"ggml / ferrum ratios {[round(b[2], 6) for b in gbars]}, {gskipped} skipped (ggml_us 0)")

    pts, left = plot.roof_points(fr, tr.rows)
    # gemm a.m1: 4e6 flop / 2e6 B = 2 flop/B; 4e6 / 50e-6 s = 0.08 TFLOP/s; torch 4e6 / 25e-6 = 0.16
    # gemm a.m16: 16 flop/B; 6.4e7 / 200e-6 = 0.32; torch 6.4e7 / 800e-6 = 0.08
    check(len(pts) == 2 and left == 2, f"roofline: 2 points, 2 rows left out (got {len(pts)}, {left})")
    check(len(pts) == 2 and close(pts[0][2], 2.0) and close(pts[0][3], 0.08) and close(pts[0][4], 0.16)
          and close(pts[1][2], 16.0) and close(pts[1][3], 0.32) and close(pts[1][4], 0.08),
          f"roofline points {[tuple(round(v, 6) for v in p[2:]) for p in pts]}")
    check(fr.ceilings["copy_gbs"] == 1000.0 and fr.ceilings["matmul_tflops"] == 100.0
          and gr.ceilings["copy_gbs"] == 20.0, "ceilings read (ggml: its read bandwidth)")

    # bad inputs: exit 2, the file named, no traceback
    bad = {
        "notjson.json": "{nope",
        "list.json": "[1, 2]",
        "unknown.json": {"tool": "something"},
        "rows-int.json": {"tool": "ferrum-bench", "rows": 5},
        "row-str.json": {"tool": "torch_bench", "rows": ["x"]},
        "no-key.json": {"tool": "ferrum-bench", "rows": [{"op": 1}]},
        "lonely-torch-bench-f32.json": {"tool": "torch_bench", "dtype": "f32", "rows": []},
    }
    for name, doc in bad.items():
        p = write(d, name, doc)
        rc, out, err = run_plot("--out-dir", d, p)
        check(rc == 2 and name in err and "Traceback" not in err, f"bad input {name}: rc {rc}, {err.strip()[:90]}")
    twin = write(d, "t-x-2026-12-03-s-ferrum-bench.json", dict(FERRUM, dtype="f16"))
    rc, out, err = run_plot("--out-dir", d, twin, gpath)
    check(rc == 2 and "same PNGs" in err and "Traceback" not in err, f"two inputs with one output stem: rc {rc}")
    rc, out, err = run_plot("--out-dir", d, os.path.join(d, "missing.json"))
    check(rc == 2 and "no such file" in err and "Traceback" not in err, f"missing file: rc {rc}")
    rc, out, err = run_plot("--out-dir", os.path.join(d, "nodir"), gpath)
    check(rc == 2 and "--out-dir" in err and "Traceback" not in err, f"missing out dir: rc {rc}")
    rc, out, err = run_plot()
    check(rc == 2 and "Traceback" not in err, f"no arguments: rc {rc}")
    rc, out, err = run_plot("--help")
    check(rc == 0 and "roofline" in out and "bench-vs-ggml" in out, "--help explains the inputs and outputs")

    try:
        import matplotlib  # noqa: F401
        have_mpl = True
    except ImportError:
        have_mpl = False
    if not have_mpl:
        print("SKIPPED drawing: matplotlib not installed for this python "
              "(run with .cache/plot-venv/bin/python after scripts/plots)")
    else:
        outs = {}
        for attempt in (1, 2):
            od = os.path.join(d, f"img{attempt}")
            os.mkdir(od)
            rc, out, err = run_plot("--out-dir", od, "--manifest", man, fpath, tpath, gpath)
            outs[attempt] = {n: open(os.path.join(od, n), "rb").read() for n in sorted(os.listdir(od))}
        names = sorted(outs[1])
        check(rc == 0 and names == ["t-x-2026-12-03-s-bf16-roofline.png", "t-x-2026-12-03-s-bf16-vs-torch.png",
                                    "t-x-2026-12-03-s-roofline.png", "t-x-2026-12-03-s-vs-ggml.png"],
              f"four PNGs named after the inputs: {names}")
        check(all(b.startswith(b"\x89PNG\r\n\x1a\n") and 1000 < len(b) < 300_000 for b in outs[1].values()),
              "each a PNG between 1 KB and 300 KB")
        check(outs[1] == outs[2], "a second run gives byte-identical files")

print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
