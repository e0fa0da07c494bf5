#!/usr/bin/env python3
"""ferrum-run against PyTorch/transformers on the same random weights (for docs/benchmarks.md).

    python3 tools/ferrum-run/bench/bench_vs_torch.py --ferrum-run build/bin/ferrum-run --dir DIR
        [--shape llama3-8b|qwen3-0.6b|tiny] [--backend cuda] [--dtype bf16|f16|f32] [--device cuda]
        [--prompt-len 2048] [--new-tokens 128] [--batch 64] [--batch-prompt-len 128]
        [--bandwidth-gbs 4800] [--ferrum-args '--graphs on'] [--skip-torch] [--out FILE]

Makes DIR (a random-init Hugging Face checkpoint of the shape, saved with save_pretrained in the
dtype; seeded) unless it has a config.json already, then measures, with ferrum-run and with
transformers (eager, its default dynamic cache) on the same directory:
  * decode tokens/s at batch 1 (a 16-token prompt, --new-tokens greedy tokens; the first token's
    time is excluded), and its share of the bandwidth roofline when --bandwidth-gbs is given
    (each decode token reads every weight once — the embedding table: one row — plus its KV);
  * time to first token of one --prompt-len prompt;
  * throughput of --batch requests of --batch-prompt-len tokens generating --new-tokens each
    (generated tokens / wall time, prefill included).
Prints one JSON object (also to --out) and markdown rows for docs/benchmarks.md. Needs torch and
transformers; CI does not run it (a tiny shape on the CPU checks the script itself:
--shape tiny --device cpu --backend cpu --dtype f32).
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import torch
import transformers

SHAPES = {
    "llama3-8b": dict(arch="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                      rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 8192}),
    "qwen3-0.6b": dict(arch="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=8192,
                       tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    "tiny": dict(arch="llama", vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
}
TORCH_DTYPE = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def make_checkpoint(args):
    if os.path.exists(os.path.join(args.dir, "config.json")):
        return
    shape = dict(SHAPES[args.shape])
    arch = shape.pop("arch")
    cls_cfg, cls_model = ((transformers.LlamaConfig, transformers.LlamaForCausalLM) if arch == "llama"
                          else (transformers.Qwen3Config, transformers.Qwen3ForCausalLM))
    cfg = cls_cfg(**shape, eos_token_id=None, bos_token_id=None)
    torch.manual_seed(0)
    print(f"making {args.dir} ({args.shape}, {args.dtype}) ...", file=sys.stderr)
    with torch.device(args.device):
        torch.set_default_dtype(TORCH_DTYPE[args.dtype])
        model = cls_model(cfg)
        torch.set_default_dtype(torch.float32)
    model.save_pretrained(args.dir, max_shard_size="5GB")
    del model


def ids(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(10, 1000, (n,), generator=g).tolist()


def run_ferrum(args, prompts, new_tokens):
    cmd = [args.ferrum_run, "--model", args.dir, "--backend", args.backend, "--dtype", args.dtype,
           "--max-new-tokens", str(new_tokens), "--ignore-eos", "--json", "--max-batch-tokens",
           str(max(sum(len(p) for p in prompts), 512)), "--max-seqs", str(max(len(prompts), 1))]
    cmd += shlex.split(args.ferrum_args)
    for p in prompts:
        cmd += ["--prompt-ids", ",".join(map(str, p))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def torch_generate(model, device, prompts, new_tokens):
    x = torch.tensor(prompts, device=device)
    sync(device)
    t0 = time.perf_counter()
    model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                   do_sample=False, pad_token_id=0)
    sync(device)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ferrum-run", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama3-8b")
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--dtype", choices=sorted(TORCH_DTYPE), default="bf16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--prompt-len", type=int, default=2048)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batch-prompt-len", type=int, default=128)
    ap.add_argument("--bandwidth-gbs", type=float, default=0.0)
    ap.add_argument("--ferrum-args", default="", help="extra ferrum-run arguments, e.g. '--graphs on'")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    make_checkpoint(args)
    cfg = json.load(open(os.path.join(args.dir, "config.json")))
    res = {"shape": args.shape, "dtype": args.dtype, "backend": args.backend, "new_tokens": args.new_tokens}

    # ferrum-run: each measurement in its own process (weights loaded each time, not timed)
    short = [ids(16, 1)]
    r = run_ferrum(args, short, args.new_tokens)
    res["device_name"] = r["device"]
    res["weight_bytes"] = r["weight_bytes"]
    res["ferrum_decode_tokens_per_s"] = r["requests"][0]["decode_tokens_per_s"]
    r = run_ferrum(args, [ids(args.prompt_len, 2)], 1)
    res["ferrum_ttft_s"] = r["requests"][0]["ttft_s"]
    batch = [ids(args.batch_prompt_len, 100 + i) for i in range(args.batch)]
    r = run_ferrum(args, batch, args.new_tokens)
    res["ferrum_batch_tokens_per_s"] = r["generated_tokens_per_s"]

    if args.bandwidth_gbs > 0:
        esz = 4 if args.dtype == "f32" else 2
        kv_per_token = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * \
            cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"]) * esz
        emb = cfg["vocab_size"] * cfg["hidden_size"] * esz
        per_token = res["weight_bytes"] - emb + cfg["hidden_size"] * esz + kv_per_token * (16 + args.new_tokens // 2)
        if cfg.get("tie_word_embeddings"):
            per_token += emb - cfg["hidden_size"] * esz  # the tied table is also the head: read whole
        roof = args.bandwidth_gbs * 1e9 / per_token
        res["roofline_tokens_per_s"] = roof
        res["ferrum_decode_roofline_pct"] = 100.0 * res["ferrum_decode_tokens_per_s"] / roof

    if not args.skip_torch:
        model = transformers.AutoModelForCausalLM.from_pretrained(args.dir, dtype=TORCH_DTYPE[args.dtype]).to(args.device)
        model.eval()
        with torch.no_grad():
            torch_generate(model, args.device, short, 4)  # warm-up
            t1 = torch_generate(model, args.device, short, 1)
            tn = torch_generate(model, args.device, short, args.new_tokens)
            res["torch_decode_tokens_per_s"] = (args.new_tokens - 1) / max(tn - t1, 1e-9)
            res["torch_ttft_s"] = torch_generate(model, args.device, [ids(args.prompt_len, 2)], 1)
            tb = torch_generate(model, args.device, batch, args.new_tokens)
            res["torch_batch_tokens_per_s"] = args.batch * args.new_tokens / tb
        if args.bandwidth_gbs > 0:
            res["torch_decode_roofline_pct"] = 100.0 * res["torch_decode_tokens_per_s"] / res["roofline_tokens_per_s"]

    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    t = lambda k: f"{res[k]:.1f}" if k in res else "-"
    ms = lambda k: f"{res[k] * 1e3:.1f} ms" if k in res else "-"
    print(f"| decode batch 1 tokens/s | {t('ferrum_decode_tokens_per_s')} | {t('torch_decode_tokens_per_s')} | "
          f"roofline {t('roofline_tokens_per_s')} ({t('ferrum_decode_roofline_pct')}% / {t('torch_decode_roofline_pct')}%) |")
    print(f"| time to first token, {args.prompt_len} tokens | {ms('ferrum_ttft_s')} | {ms('torch_ttft_s')} | |")
    print(f"| batch {args.batch} x {args.batch_prompt_len} + {args.new_tokens} tokens/s | "
          f"{t('ferrum_batch_tokens_per_s')} | {t('torch_batch_tokens_per_s')} | |")


if __name__ == "__main__":
    main()
