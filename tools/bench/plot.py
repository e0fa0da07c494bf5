#!/usr/bin/env python3
"""Benchmark JSON to PNG plots: speed against the peer per op and shape, and a roofline per run.

    python3 tools/bench/plot.py [--out-dir DIR] [--manifest FILE] INPUT.json [INPUT.json ...]

Inputs, any mix (the format is recognised from the content, not the name):
  * ferrum-bench --json           ("tool": "ferrum-bench"; rows with op/shape/dtype, median_us,
                                   bytes, flops; ceilings copy_gbs and matmul_tflops of the run)
  * tools/bench/torch_bench.py    ("tool": "torch_bench"; rows keyed "op/shape/dtype" with
                                   median_us, impl, status) -- the peer of a ferrum-bench file
  * scripts/bench-vs-ggml --json  ({"threads", "rounds", "load1", "read_gbs", "rows": [{op, shape,
                                   dtype, ggml_us, ferrum_us, ratio, bytes, flops, rel_l2}]})

Pairing: a torch_bench file is the peer of the ferrum-bench file of the same dtype whose name is
its own with "torch-bench" in place of "ferrum-bench"; failing that, of the only ferrum-bench file
given with the same dtype. A torch_bench file with no ferrum-bench partner is an error.

Outputs (PNG, file names derived from the input names, so a rerun overwrites the same files):
  * <stem>-vs-torch.png / <stem>-vs-ggml.png -- one bar per op/shape: peer time / ferrum time,
    log scale, a line at 1.0 (above: ferrum faster), bars coloured by >= 1 / < 1, op groups
    labelled; rows either side did not run (status not "ok") are left out and counted; more
    than 48 bars go into panels stacked under each other;
  * <stem>-roofline.png -- x = arithmetic intensity (flops / bytes), y = achieved TFLOP/s
    (flops / median time); the ceilings measured in the same run (copy GB/s x intensity, and the
    matmul TFLOP/s) as lines; one filled point per ferrum row with flops and bytes > 0, the peer's
    point (hollow) on the same row's flops and bytes. For bench-vs-ggml the only ceiling is the
    read bandwidth it measures.
  <stem>: the input's file name without ".json", with "-ferrum-bench" (or a final "-vs-ggml")
  dropped: gpu-h200-2026-12-03-moe-ferrum-bench-bf16.json -> gpu-h200-2026-12-03-moe-bf16,
  cpu-epyc2-2026-12-03-quick-1t-vs-ggml.json -> cpu-epyc2-2026-12-03-quick-1t.

--manifest FILE: a Markdown table (docs/data/README.md) with the columns file | machine | date |
commit | what ran; where a row names an input file, its machine, date and commit go in the titles
in place of what the JSON says (the JSON may lack them, or carry a stale commit).

Needs matplotlib (scripts/plots installs it into a venv); tools/bench/test_plot.py checks it. Exit status: 0 plots written, 2 bad
arguments or input (the message names the file and what is wrong).
"""
import argparse
import json
import math
import os
import re
import sys


class InputError(Exception):
    pass


def die(msg):
    print(f"plot.py: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- inputs

def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file")
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a JSON file")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason})")
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})")
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})")


def need_rows(path, doc):
    rows = doc.get("rows")
    if not isinstance(rows, list):
        raise InputError(f"{path}: expected a list under \"rows\", got {type(rows).__name__}")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise InputError(f"{path}: rows[{i}] is {type(r).__name__} {r!r:.40}, expected an object")
    return rows


def row_key(path, i, r):
    if "key" in r and isinstance(r["key"], str):
        return r["key"]
    parts = [r.get(k) for k in ("op", "shape", "dtype")]
    if not all(isinstance(p, str) for p in parts):
        raise InputError(f"{path}: rows[{i}] has no \"key\" and no string op/shape/dtype")
    return "/".join(parts)


def split_key(key):
    op, _, rest = key.partition("/")
    shape = rest.rsplit("/", 1)[0] if "/" in rest else rest
    return op, shape


class Run:
    """One input file, normalised: rows {key: {op, shape, us, bytes, flops, ok}}."""

    def __init__(self, path, kind):
        self.path = path
        self.kind = kind  # "ferrum", "torch", "ggml"
        self.name = os.path.basename(path)
        self.device = ""
        self.dtype = ""
        self.date = ""
        self.commit = ""
        self.machine = ""
        self.ceilings = {}
        self.extra = ""
        self.rows = {}  # key -> dict
        self.peer_rows = {}  # ggml only: key -> dict (the peer side of the same file)


def parse(path, manifest):
    doc = load_json(path)
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object at the top, got {type(doc).__name__}")
    tool = doc.get("tool")
    if tool == "ferrum-bench":
        run = parse_ferrum(path, doc)
    elif tool == "torch_bench":
        run = parse_torch(path, doc)
    elif "tool" not in doc and "threads" in doc and "read_gbs" in doc:
        run = parse_ggml(path, doc)
    else:
        raise InputError(f"{path}: not a ferrum-bench, torch_bench or bench-vs-ggml JSON "
                         f"(\"tool\" is {tool!r}; bench-vs-ggml files have \"threads\" and \"read_gbs\")")
    m = manifest.get(run.name)
    if m:
        run.machine = m.get("machine", "") or run.machine
        run.date = m.get("date", "") or run.date
        run.commit = m.get("commit", "") or run.commit
    return run


def parse_ferrum(path, doc):
    run = Run(path, "ferrum")
    dev = doc.get("device")
    run.device = dev.get("name", "") if isinstance(dev, dict) else str(dev or "")
    run.dtype = str(doc.get("dtype", ""))
    run.date = str(doc.get("date", ""))[:10]
    plugin = doc.get("plugin")
    if isinstance(plugin, dict):
        m = re.search(r"commit=(\S+)", str(plugin.get("build_info", "")))
        if m:
            run.commit = m.group(1)
        if plugin.get("name"):
            run.extra = f"plugin {plugin['name']}"
    ceil = doc.get("ceilings")
    if isinstance(ceil, dict):
        for k in ("copy_gbs", "matmul_tflops"):
            if _num(ceil.get(k)) and ceil[k] > 0:
                run.ceilings[k] = float(ceil[k])
        if isinstance(ceil.get("matmul_source"), str):
            run.ceilings["matmul_source"] = ceil["matmul_source"]
    for i, r in enumerate(need_rows(path, doc)):
        key = row_key(path, i, r)
        op, shape = split_key(key)
        us = r.get("median_us")
        run.rows[key] = dict(op=str(r.get("op", op)), shape=str(r.get("shape", shape)),
                             us=float(us) if _num(us) else 0.0,
                             bytes=float(r["bytes"]) if _num(r.get("bytes")) else 0.0,
                             flops=float(r["flops"]) if _num(r.get("flops")) else 0.0,
                             ok=r.get("status") == "ok" and _num(us) and us > 0)
    return run


def parse_torch(path, doc):
    run = Run(path, "torch")
    run.device = str(doc.get("device", ""))
    run.dtype = str(doc.get("dtype", ""))
    run.extra = f"PyTorch {doc.get('torch', '?')}"
    for i, r in enumerate(need_rows(path, doc)):
        key = row_key(path, i, r)
        op, shape = split_key(key)
        us = r.get("median_us")
        run.rows[key] = dict(op=str(r.get("op", op)), shape=str(r.get("shape", shape)),
                             us=float(us) if _num(us) else 0.0, impl=str(r.get("impl", "")),
                             ok=r.get("status", "ok") == "ok" and _num(us) and us > 0)
    return run


def parse_ggml(path, doc):
    run = Run(path, "ggml")
    run.device = "CPU"
    threads = doc.get("threads")
    run.extra = f"{threads} thread{'s' if threads != 1 else ''}"
    if _num(doc.get("load1")) and doc["load1"] >= 0:
        run.extra += f", load {doc['load1']:.1f}"
    if _num(doc.get("read_gbs")) and doc["read_gbs"] > 0:
        run.ceilings["copy_gbs"] = float(doc["read_gbs"])
        run.ceilings["copy_label"] = "read bandwidth"
    dtypes = set()
    for i, r in enumerate(need_rows(path, doc)):
        key = row_key(path, i, r)
        op, shape = split_key(key)
        dtypes.add(str(r.get("dtype", "")))
        b = float(r["bytes"]) if _num(r.get("bytes")) else 0.0
        fl = float(r["flops"]) if _num(r.get("flops")) else 0.0
        for side, field in ((run.rows, "ferrum_us"), (run.peer_rows, "ggml_us")):
            us = r.get(field)
            side[key] = dict(op=str(r.get("op", op)), shape=str(r.get("shape", shape)),
                             us=float(us) if _num(us) else 0.0, bytes=b, flops=fl,
                             ok=_num(us) and us > 0)
    run.dtype = "+".join(sorted(d for d in dtypes if d)) or "?"
    return run


def read_manifest(path):
    """{file name: {machine, date, commit, ran}} from the Markdown table of FILE."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InputError(f"--manifest {path}: cannot read ({e.strerror})")
    out, cols = {}, None
    for line in lines:
        s = line.strip()
        if not s.startswith("|"):
            cols = None
            continue
        cells = [c.strip() for c in s.strip("|").split("|")]
        if cols is None:
            cols = [c.lower() for c in cells]
            continue
        if all(set(c) <= set("-: ") for c in cells) or "file" not in cols:
            continue
        row = dict(zip(cols, cells))
        name = row.get("file", "").strip("`")
        if name:
            out[name] = {k: row.get(k, "").strip("`") for k in ("machine", "date", "commit")}
    return out


# ---------------------------------------------------------------- pairing and names

def stem_of(run):
    base = run.name[:-5] if run.name.endswith(".json") else run.name
    if run.kind == "ggml" and base.endswith("-vs-ggml"):
        base = base[:-len("-vs-ggml")]
    return base.replace("-ferrum-bench", "").replace("-torch-bench", "")


def pair_up(runs):
    ferrum = [r for r in runs if r.kind == "ferrum"]
    pairs = {id(f): None for f in ferrum}
    for t in (r for r in runs if r.kind == "torch"):
        by_name = [f for f in ferrum if f.name == t.name.replace("torch-bench", "ferrum-bench")]
        same_dt = [f for f in ferrum if f.dtype == t.dtype]
        cand = by_name or (same_dt if len(same_dt) == 1 else [])
        if not cand:
            raise InputError(f"{t.path}: torch_bench ({t.dtype}) has no ferrum-bench partner among the "
                             f"inputs (expected {t.name.replace('torch-bench', 'ferrum-bench')} or exactly one "
                             f"ferrum-bench file of dtype {t.dtype}; found {len(same_dt)})")
        f = cand[0]
        if pairs[id(f)] is not None:
            raise InputError(f"{t.path}: {f.name} already has a torch_bench partner ({pairs[id(f)].name})")
        pairs[id(f)] = t
    return [(f, pairs[id(f)]) for f in ferrum] + [(g, None) for g in runs if g.kind == "ggml"]


def title_bits(run, peer=None):
    bits = [run.machine or run.device or "?", run.dtype]
    if run.date:
        bits.append(run.date)
    if run.commit:
        bits.append(f"commit {run.commit}")
    if run.extra:
        bits.append(run.extra)
    if peer is not None and peer.extra:
        bits.append(peer.extra)
    return " · ".join(b for b in bits if b)


# ---------------------------------------------------------------- plots

GREEN, RED = "#2a9d4b", "#d0483c"


def wrap(text, fig_width_in):
    """Title lines broken at ' · ' so they fit a figure of that width (about 13 characters an inch)."""
    width = max(40, int(fig_width_in * 13))
    out = []
    for line in text.split("\n"):
        cur = ""
        for part in line.split(" · "):
            if cur and len(cur) + 3 + len(part) > width:
                out.append(cur)
                cur = part
            else:
                cur = f"{cur} · {part}" if cur else part
        out.append(cur)
    return "\n".join(out)


def short_shape(shape, op_shapes):
    """The shape with the prefix every shape of its op group shares dropped (at a '.' or '_')."""
    if len(op_shapes) < 2:
        return shape
    pre = os.path.commonprefix(op_shapes)
    cut = max(pre.rfind("."), pre.rfind("_"))
    s = shape[cut + 1:] if cut >= 0 else shape
    return s or shape


def speed_bars(ferrum_rows, peer_rows):
    """[(op, shape, peer time / ferrum time, dtype)] in ferrum's row order, and how many rows both sides
    list but at least one did not run."""
    bars, skipped = [], 0
    for key, fr in ferrum_rows.items():
        pr = peer_rows.get(key)
        if pr is None:
            continue
        if not (fr["ok"] and pr["ok"]):
            skipped += 1
            continue
        bars.append((fr["op"], fr["shape"], pr["us"] / fr["us"], key.rsplit("/", 1)[-1]))
    return bars, skipped


def roof_points(run, peer_rows):
    """[(op, shape, flops/byte, ferrum TFLOP/s, peer TFLOP/s or None)] and the count of rows left out."""
    pts = []
    for key, r in run.rows.items():
        if r["ok"] and r["bytes"] > 0 and r["flops"] > 0:
            ai = r["flops"] / r["bytes"]
            tf = r["flops"] / (r["us"] * 1e-6) / 1e12
            pr = peer_rows.get(key) if peer_rows else None
            # the peer did the same work: the ferrum row's flops (torch rows carry none)
            peer_tf = r["flops"] / (pr["us"] * 1e-6) / 1e12 if pr and pr["ok"] else None
            pts.append((r["op"], r["shape"], ai, tf, peer_tf))
    left_out = len(run.rows) - len(pts)
    return pts, left_out


def save_png(fig, out_path):
    """The figure as a PNG with a 256-colour palette (about a third of the size of full colour; the
    charts have few colours), no metadata that changes between runs."""
    import io
    buf = io.BytesIO()
    fig.savefig(buf, dpi=90, format="png", metadata={"Software": None})
    try:
        from PIL import Image
    except ImportError:  # matplotlib needs Pillow, but keep the full-colour file if it is missing
        with open(out_path, "wb") as f:
            f.write(buf.getvalue())
        return
    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                  dither=Image.Dither.NONE)
    img.save(out_path, format="PNG", optimize=True)


PANEL_BARS = 48  # bars per panel; a longer run gets panels stacked under each other


def wrap_name(name, limit):
    """Lines of at most about `limit` characters, broken after '.' or '_' (at most 3 lines)."""
    if len(name) <= limit:
        return [name]
    parts = re.findall(r"[^._]+[._]?", name)
    lines, cur = [], ""
    for part in parts:
        if cur and len(cur) + len(part) > limit:
            lines.append(cur)
            cur = part
        else:
            cur += part
    lines.append(cur)
    if len(lines) > 3:
        lines = lines[:2] + ["".join(lines[2:])]
    return lines


def panels_of(order, groups):
    """Op groups split into panels of at most PANEL_BARS bars: a panel ends at a group boundary,
    a group longer than a panel is cut into pieces that keep the op's name."""
    panels, cur, n = [], [], 0
    for op in order:
        items = groups[op]
        while items:
            room = PANEL_BARS - n
            if len(items) > room and n > 0 and len(items) <= PANEL_BARS:
                panels.append(cur)
                cur, n = [], 0
                continue
            take = items[:max(room, 1)]
            cur.append((op, take))
            n += len(take)
            items = items[len(take):]
            if n >= PANEL_BARS:
                panels.append(cur)
                cur, n = [], 0
    if cur:
        panels.append(cur)
    return panels


def speed_chart(plt, FuncFormatter, Patch, ferrum_rows, peer_rows, peer_name, title, subtitle, out_path):
    bars, skipped = speed_bars(ferrum_rows, peer_rows)
    if not bars:
        return None, skipped
    # group by op, keeping the order of first appearance
    order, groups = [], {}
    mixed = len({b[3] for b in bars}) > 1  # name the dtype under each bar only when it varies
    for op, shape, ratio, dtype in bars:
        if op not in groups:
            order.append(op)
            groups[op] = []
        groups[op].append((shape + (f" {dtype}" if mixed else ""), ratio))
    short = {op: [short_shape(s, [t for t, _ in groups[op]]) for s, _ in groups[op]] for op in order}
    for op in order:
        groups[op] = [(lab, r) for lab, (_, r) in zip(short[op], groups[op])]
    panels = panels_of(order, groups)
    all_ratios = [b[2] for b in bars]
    y_lim = (min(min(all_ratios) / 1.6, 0.5), max(max(all_ratios) * 1.6, 2.0))
    widest = max(sum(len(items) for _, items in panel) + 0.6 * (len(panel) - 1) for panel in panels)
    width = min(max(6.0, 0.3 * widest + 2.0), 18.0)
    label_len = max(len(lab) for op in order for lab, _ in groups[op])
    panel_h = 3.0 + 0.065 * label_len  # room for the vertical shape names under the bars
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, panel_h * len(panels) + 0.9), squeeze=False)
    for pi, (ax, panel) in enumerate(zip(axes[:, 0], panels)):
        xs, labels, ratios, spans = [], [], [], []
        x = 0
        for op, items in panel:
            start = x
            for lab, ratio in items:
                xs.append(x)
                labels.append(lab)
                ratios.append(ratio)
                x += 1
            spans.append((op, start, x - 1))
            x += 0.6  # gap between op groups
        n = len(xs)
        colors = [GREEN if r >= 1.0 else RED for r in ratios]
        # bars grow from the 1.0 line: up where ferrum is faster, down where the peer is
        ax.bar(xs, [r - 1.0 for r in ratios], width=0.8, color=colors, bottom=1.0)
        ax.set_yscale("log")
        ax.set_ylim(*y_lim)
        ax.axhline(1.0, color="black", linewidth=1.0)
        ax.set_ylabel(f"{peer_name} time / ferrum time\n(log scale)", fontsize=9)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        if pi == 0:
            ax.legend(handles=[Patch(color=GREEN, label="ferrum faster"),
                               Patch(color=RED, label=f"{peer_name} faster")],
                      fontsize=7, loc="best", framealpha=0.8)
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=90 if len(bars) > 12 else 45,
                           ha="center" if len(bars) > 12 else "right", fontsize=7 if n > 30 else 8)
        ax.set_xlim(-0.8, max(xs[-1], widest - 1) + 0.8)
        for xi, r in zip(xs, ratios):
            ax.annotate(f"{r:.2f}" if n <= 30 else f"{r:.1f}", (xi, r), textcoords="offset points",
                        xytext=(0, 2 if r >= 1 else -8), ha="center", fontsize=7 if n <= 30 else 5.5)
        # op group labels above the bars on alternating shading; about 5 characters fit over a bar,
        # longer names break after '.' or '_'
        for i, (op, a, b) in enumerate(spans):
            if i % 2:
                ax.axvspan(a - 0.5, b + 0.5, color="#eeeeee", zorder=0)
            lines = wrap_name(op, max(5 * (b - a + 1) + 1, 6))
            ax.text((a + b) / 2, 1.015, "\n".join(lines), transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=8 if len(lines) == 1 else 6.5, linespacing=1.0)
        ax.grid(axis="y", which="both", alpha=0.3)
    head = f"{title}\n{subtitle}" + (f" · {skipped} row(s) not run on one side, left out" if skipped else "")
    fig.suptitle(wrap(head, width), fontsize=10)
    fig.tight_layout()
    save_png(fig, out_path)
    plt.close(fig)
    return out_path, skipped


def roofline(plt, run, peer_rows, peer_name, title, out_path):
    pts, left_out = roof_points(run, peer_rows)
    if not pts:
        return None
    copy = run.ceilings.get("copy_gbs")
    mm = run.ceilings.get("matmul_tflops")
    ais = [p[2] for p in pts]
    ys = [p[3] for p in pts] + [p[4] for p in pts if p[4]]
    x_lo, x_hi = min(ais) / 3, max(ais) * 3
    if mm and copy:
        ridge = mm * 1e12 / (copy * 1e9)
        x_lo, x_hi = min(x_lo, ridge / 10), max(x_hi, ridge * 3)
    fig, ax = plt.subplots(figsize=(9.5, 6.2))
    ax.set_xscale("log")
    ax.set_yscale("log")
    xs = [x_lo * (x_hi / x_lo) ** (i / 200) for i in range(201)]
    if copy:
        label = run.ceilings.get("copy_label", "copy")
        mem = [copy * 1e9 * x / 1e12 for x in xs]
        roof = [min(m, mm) for m in mem] if mm else mem
        ax.plot(xs, roof, color="black", linewidth=1.6,
                label=f"roofline: {label} {copy:,.0f} GB/s" + (f", matmul {mm:,.1f} TFLOP/s" if mm else ""))
        if mm:
            ax.plot(xs, mem, color="black", linewidth=0.7, linestyle=":")
    if mm:
        ax.axhline(mm, color="black", linewidth=0.7, linestyle=":")
        ax.annotate(f"matmul {mm:,.1f} TFLOP/s ({run.ceilings.get('matmul_source', 'same run')})", (x_lo, mm),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ops = []
    for p in pts:
        if p[0] not in ops:
            ops.append(p[0])
    ncolors = 10 if len(ops) <= 10 else 20
    cmap = plt.get_cmap("tab10" if ncolors == 10 else "tab20")
    color = {op: cmap(i % ncolors) for i, op in enumerate(ops)}
    markers = "osD^v"
    marker = {op: ("o" if ncolors == 10 else markers[i % len(markers)]) for i, op in enumerate(ops)}
    for op in ops:
        mine = [p for p in pts if p[0] == op]
        ax.scatter([p[2] for p in mine], [p[3] for p in mine], s=26, color=color[op], marker=marker[op],
                   label=op, zorder=3, edgecolors="none")
        peer = [p for p in mine if p[4]]
        if peer:
            ax.scatter([p[2] for p in peer], [p[4] for p in peer], s=30, facecolors="none",
                       edgecolors=color[op], marker=marker[op], zorder=3, linewidths=1.0)
            for p in peer:
                ax.plot([p[2], p[2]], [p[3], p[4]], color=color[op], linewidth=0.6, alpha=0.6, zorder=2)
    # sparse labels: each op at most once, at its fastest point, fastest ops first, and only where
    # its text box (estimated in data units from the axes' size) overlaps no label placed already;
    # the legend names every op
    y_lo = min(ys) / 3
    y_hi = max(max(ys), mm or 0) * 3
    px_x = 0.62 * 9.5 * 90 / math.log10(x_hi / x_lo)  # pixels per decade across
    px_y = 0.80 * 6.2 * 90 / math.log10(y_hi / y_lo)  # pixels per decade up
    placed = []
    for op in sorted(ops, key=lambda o: -max(p[3] for p in pts if p[0] == o)):
        best = max((p for p in pts if p[0] == op), key=lambda p: p[3])
        width = len(op) * 4.6 / px_x
        right = math.log10(best[2]) + 5 / px_x + width < math.log10(x_hi)  # else to the left of the point
        x0 = math.log10(best[2]) + 5 / px_x if right else math.log10(best[2]) - 5 / px_x - width
        x1 = x0 + width
        yc = math.log10(best[3])
        y0, y1 = yc - 6 / px_y, yc + 4 / px_y
        if any(x0 < b[1] and b[0] < x1 and y0 < b[3] and b[2] < y1 for b in placed):
            continue
        placed.append((x0, x1, y0, y1))
        ax.annotate(op, (best[2], best[3]), textcoords="offset points", xytext=(4 if right else -4, -3),
                    ha="left" if right else "right", fontsize=6.5, color="#333333")
    if any(p[4] for p in pts):
        ax.scatter([], [], s=30, facecolors="none", edgecolors="gray", label=f"{peer_name} (hollow)")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("arithmetic intensity (flop / byte)")
    ax.set_ylabel("achieved TFLOP/s (flops / median time)")
    note = f" · {left_out} row(s) without flops, bytes or a time not shown" if left_out else ""
    if not copy and not mm:
        note += " · the run measured no ceilings"
    ax.set_title(wrap(f"Roofline — {title}\nfilled: ferrum, one point per op/shape{note}", 9.5), fontsize=10)
    ax.grid(which="both", alpha=0.25)
    ncol = 1 if len(ops) <= 24 else 2
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=ncol, frameon=False)
    fig.tight_layout()
    save_png(fig, out_path)
    plt.close(fig)
    return out_path


# ---------------------------------------------------------------- main

def main(argv):
    ap = argparse.ArgumentParser(
        prog="plot.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Plots from ferrum-bench / torch_bench / bench-vs-ggml JSON: speed against the peer "
                    "(bar per op/shape, peer time / ferrum time) and a roofline per run.",
        epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("inputs", nargs="+", metavar="INPUT.json")
    ap.add_argument("--out-dir", default=None,
                    help="where the PNGs go (default: docs/img of this repository)")
    ap.add_argument("--manifest", default=None,
                    help="Markdown table with file | machine | date | commit columns (docs/data/README.md)")
    args = ap.parse_args(argv)

    out_dir = args.out_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "img")
    out_dir = os.path.normpath(out_dir)
    try:
        manifest = read_manifest(args.manifest)
        runs = [parse(p, manifest) for p in args.inputs]
        names = [r.name for r in runs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise InputError(f"the same file name given twice: {sorted(dup)}")
        pairs = pair_up(runs)
        stems = {}
        for run, _ in pairs:
            other = stems.setdefault(stem_of(run), run.name)
            if other != run.name:
                raise InputError(f"{run.name} and {other} would write the same PNGs ({stem_of(run)}-*.png); rename one")
    except InputError as e:
        die(str(e))
    if not os.path.isdir(out_dir):
        die(f"--out-dir {out_dir}: not a directory")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
        from matplotlib.patches import Patch
    except ImportError:
        die("matplotlib is not installed for this python (scripts/plots makes a venv with it)")

    written = []
    for run, peer in pairs:
        stem = stem_of(run)
        if run.kind == "ggml":
            peer_rows, peer_name = run.peer_rows, "ggml"
        else:
            peer_rows, peer_name = (peer.rows if peer else {}), "torch"
        title = title_bits(run, peer)
        if peer_rows:
            p, _ = speed_chart(plt, FuncFormatter, Patch, run.rows, peer_rows, peer_name,
                               f"ferrum vs {peer_name} — {title}",
                               f"bar = {peer_name} median time / ferrum median time, per op/shape",
                               os.path.join(out_dir, f"{stem}-vs-{peer_name}.png"))
            if p:
                written.append(p)
            else:
                print(f"plot.py: {run.name}: no op/shape ran on both sides; no speed chart", file=sys.stderr)
        p = roofline(plt, run, peer_rows, peer_name, title, os.path.join(out_dir, f"{stem}-roofline.png"))
        if p:
            written.append(p)
        else:
            print(f"plot.py: {run.name}: no row with flops, bytes and a time; no roofline", file=sys.stderr)
    for p in written:
        print(p)
    if not written:
        die("nothing to plot in the inputs given")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
