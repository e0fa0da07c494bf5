#!/usr/bin/env python3
"""make_tiny.py — regenerates the tiny checkpoints and reference outputs ferrum-run's tests use.

Needs torch, transformers (5.x), safetensors, gguf and sentencepiece (CPU is enough); it installs
nothing itself. The
committed outputs are the test inputs: CI never runs this script.

    python3 tests/models/make_tiny.py [--out tests/models]

For each model it builds a random-init transformers model (seeded), rounds its weights to the
dtype it is saved in, saves it with save_pretrained (safetensors), and writes reference.json:

    {"requests": [{"prompt_ids": [...], "logits": [...], "greedy": [...]}, ...],
     "max_new_tokens": N, "weights_dtype": "...", "note": "..."}

`logits` are the float64 logits at the last prompt position and `greedy` the greedy continuation,
both from the same transformers model run in float64 (with the saved, rounded weights), recomputed
from the full sequence at every step. The script checks that every greedy choice wins by a clear
margin, so a correct f32 run cannot pick a different token through rounding.

Models (each well under 1 MB):
  llama-llama3rope  LlamaForCausalLM, f32, untied, llama3 RoPE scaling, config.json rewritten in the
                    transformers 4.x spelling (rope_theta top level, rope_scaling, torch_dtype); also a
                    SentencePiece tokenizer.model and text_reference.json for the text path
  qwen3-yarn        Qwen3ForCausalLM (QK-norm), bf16, tied embeddings, head_dim != hidden/heads,
                    yarn RoPE scaling, transformers 5.x config (rope_parameters, dtype)
  qwen2-sharded     Qwen2ForCausalLM (q/k/v bias), f16, linear RoPE scaling, sharded safetensors
                    with model.safetensors.index.json
  qwen3-moe         Qwen3MoeForCausalLM, f32, 8 experts top-2 (norm_topk_prob), layer 1 dense
                    (mlp_only_layers), per-expert tensors as save_pretrained writes them
  qwen3-moe-stacked qwen3-moe with the experts as transformers 5.x's stacked tensors, the same
                    bytes and reference (stack_experts.py, standard library only)
  gguf/llama-q8q4.gguf    GGUF llama: q/k Q4_0, v Q8_0 (a mixed q|k|v), o and down Q8_0, gate/up
                          Q4_0, F16 embedding, Q8_0 output, llama3 RoPE as rope_freqs.weight;
                          q/k rows permuted as llama.cpp's converter does
  gguf/qwen3-kquant.gguf  GGUF qwen3 (QK-norm), hidden 256: Q4_K / Q5_K / Q6_K mix (v and down Q6_K,
                          layer 1 up Q5_K), tied Q6_K embedding (dequantised for the lookup, the head
                          through gguf_matmul)
  gguf/qwen2-bias.gguf    GGUF qwen2: Q8_0 weights and embedding, F32 q/k/v biases
                          The K-quant blocks are random valid blocks (gguf-py has no K-quant
                          quantiser); every GGUF reference is transformers in float64 run on the
                          weights gguf-py dequantises from the file (dequantise-then-reference).
  mistral-swa       MistralForCausalLM, f32, sliding_window 6 (the prompts are longer: the window
                    matters in prefill and decode)
  llama-gptq        LlamaForCausalLM as a GPTQ int4 checkpoint (AutoGPTQ v1 tensors: qweight, qzeros,
                    f16 scales, g_idx; group 32, asymmetric, layer 1 in act-order, zero o_proj biases)
                    quantised by this script; the reference runs on the decoded weights
  micro-llama       a 1-layer Llama (hidden 8, vocab 16) from which bad/ derives broken copies
"""
import argparse
import json
import os
import shutil
import struct

import stack_experts  # tests/models, next to this script

import numpy as np
import torch
import transformers

MAX_NEW = 8
TOKENIZER_CORPUS = ["the quick brown fox jumps over the lazy dog", "a tiny model for ferrum run",
                    "tokens in and tokens out", "paged attention with a block allocator",
                    "hello world from the test suite"]
TEXT_PROMPT = "the lazy fox says hello"
PROMPTS = [  # two requests of different lengths: the second crosses a 16-token KV block
    [1, 17, 42, 99, 5, 250, 3],
    [200, 7, 7, 13, 64, 128, 255, 0, 31, 77, 150, 9, 88, 41, 120, 66, 19, 230, 2, 101],
]


def rounded(model, dtype):
    """The model's weights rounded to `dtype` (kept in float32)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    return model


def reference(model, prompts):
    m = model.to(torch.float64).eval()
    out = []
    with torch.no_grad():
        for prompt in prompts:
            ids = list(prompt)
            first = None
            greedy = []
            for _ in range(MAX_NEW):
                logits = m(torch.tensor([ids])).logits[0, -1]
                if first is None:
                    first = logits.tolist()
                top2 = torch.topk(logits, 2).values
                margin = float(top2[0] - top2[1])
                assert margin > 1e-3 * max(1.0, float(logits.abs().max())), f"greedy near-tie ({margin})"
                nxt = int(torch.argmax(logits))
                greedy.append(nxt)
                ids.append(nxt)
            out.append({"prompt_ids": prompt, "logits": first, "greedy": greedy})
    model.to(torch.float32)
    return out


def scale_weights(model, seed):
    """Larger-than-default random weights, so the logits are far from uniform and greedy choices
    have clear margins; norms around 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.2 * (torch.rand(p.shape, generator=g) - 0.5))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p.shape[-1] ** 0.5))


def visible_biases(model, seed):
    """Bias vectors large enough to matter (transformers initialises them to zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("proj.bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))


def save(model, out_dir, dtype, refs, note, shard=None):
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    model.to(dtype).save_pretrained(out_dir, safe_serialization=True, **({"max_shard_size": shard} if shard else {}))
    model.to(torch.float32)
    for extra in ("generation_config.json",):
        p = os.path.join(out_dir, extra)
        if os.path.exists(p):
            os.remove(p)
    if refs is None:
        return
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump({"requests": refs, "max_new_tokens": MAX_NEW, "weights_dtype": str(dtype).replace("torch.", ""),
                   "note": note, "transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]},
                  f, indent=1)


def save_with_reference(model, out, name, dtype, note, shard=None):
    """reference() of the model on PROMPTS, then save() to out/name."""
    save(model, os.path.join(out, name), dtype, reference(model, PROMPTS), note, shard)


def to_4x_config(out_dir):
    """Rewrites config.json in the transformers 4.x spelling."""
    p = os.path.join(out_dir, "config.json")
    with open(p) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters")
    c["rope_theta"] = rp.pop("rope_theta")
    c["rope_scaling"] = rp
    c["torch_dtype"] = c.pop("dtype")
    c["transformers_version"] = "4.57.1"
    with open(p, "w") as f:
        json.dump(c, f, indent=2)


# The tiny Llama of llama-llama3rope and gguf/llama-q8q4: GQA 4/2, llama3 RoPE, untied.
LLAMA3 = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False,
              rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
              bos_token_id=1, eos_token_id=2)


def tiny(config_cls, model_cls, seed, weight_seed, **config):
    """A transformers model of `config`, built after torch.manual_seed(seed), its weights then
    set by scale_weights(weight_seed)."""
    torch.manual_seed(seed)
    model = model_cls(config_cls(**config))
    scale_weights(model, weight_seed)
    return model


def make_llama(out):
    model = tiny(transformers.LlamaConfig, transformers.LlamaForCausalLM, 1, 11, **LLAMA3)
    refs = reference(model, PROMPTS)
    d = os.path.join(out, "llama-llama3rope")
    save(model, d, torch.float32, refs, "LlamaForCausalLM f32, untied, llama3 RoPE, 4.x config spelling")
    to_4x_config(d)
    # A SentencePiece tokenizer.model for the text path (--prompt), and its reference: the ids the
    # Python SentencePiece gives (after BOS, as transformers' Llama tokenizer adds it), the greedy
    # continuation and its decoded text (ids past the tokenizer's 128 pieces are left out, as
    # ferrum-run's decode does).
    import io
    import sentencepiece as spm
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(TOKENIZER_CORPUS * 20), model_writer=buf, vocab_size=128,
                                   model_type="bpe", character_coverage=1.0, num_threads=1, hard_vocab_limit=False,
                                   minloglevel=2, normalization_rule_name="identity")
    with open(os.path.join(d, "tokenizer.model"), "wb") as f:
        f.write(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
    ids = [model.config.bos_token_id] + sp.encode(TEXT_PROMPT)
    ref = reference(model, [ids])[0]
    with open(os.path.join(d, "text_reference.json"), "w") as f:
        text = sp.decode([i for i in ref["greedy"] if i < sp.get_piece_size()])
        json.dump({"prompt": TEXT_PROMPT, "prompt_ids": ids, "greedy": ref["greedy"], "text": text,
                   "max_new_tokens": MAX_NEW}, f, indent=1)


def make_qwen3(out):
    model = tiny(transformers.Qwen3Config, transformers.Qwen3ForCausalLM, 2, 12,
                 vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=32, max_position_embeddings=64, rms_norm_eps=1e-6,
                 tie_word_embeddings=True,
                 rope_parameters={"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0,
                 "original_max_position_embeddings": 16},
                 eos_token_id=2)
    model.tie_weights()
    rounded(model, torch.bfloat16)
    save_with_reference(model, out, "qwen3-yarn", torch.bfloat16,
                        "Qwen3ForCausalLM bf16 weights, tied, head_dim 32 with hidden 64 / 4 heads, yarn RoPE")


def make_qwen2(out):
    model = tiny(transformers.Qwen2Config, transformers.Qwen2ForCausalLM, 3, 13,
                 vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=1, max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False,
                 rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}, eos_token_id=2)
    visible_biases(model, 14)
    rounded(model, torch.float16)
    save_with_reference(model, out, "qwen2-sharded", torch.float16,
                        "Qwen2ForCausalLM f16 weights, q/k/v bias, linear RoPE, sharded", shard="100KB")


def make_mistral(out):
    model = tiny(transformers.MistralConfig, transformers.MistralForCausalLM, 11, 20,
                 vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, max_position_embeddings=64, rms_norm_eps=1e-5, sliding_window=6,
                 tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                 eos_token_id=2)
    model.config._attn_implementation = "eager"
    save_with_reference(model, out, "mistral-swa", torch.float32,
                        "MistralForCausalLM f32, sliding_window 6 (shorter than the prompts)")


def make_qwen3_moe(out):
    model = tiny(transformers.Qwen3MoeConfig, transformers.Qwen3MoeForCausalLM, 5, 15,
                 vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=8, num_experts_per_tok=2,
                 norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[1], max_position_embeddings=64,
                 rms_norm_eps=1e-6, tie_word_embeddings=False, rope_parameters={"rope_type": "default",
                 "rope_theta": 10000.0},
                 eos_token_id=2)
    cfg = model.config
    model.config._experts_implementation = "eager"  # the grouped-mm path has no float64
    # Every routing choice must win clearly too: a near-tie between the K-th and the next expert
    # would let rounding pick another expert.
    margins = []

    def check_router(module, inputs, output):
        logits = torch.nn.functional.linear(inputs[0].reshape(-1, cfg.hidden_size), module.weight)
        top = torch.topk(torch.softmax(logits.double(), dim=-1), cfg.num_experts_per_tok + 1).values
        margins.append(float((top[:, -2] - top[:, -1]).min()))
    hooks = [layer.mlp.gate.register_forward_hook(check_router) for layer in model.model.layers
             if hasattr(layer.mlp, "gate")]
    refs = reference(model, PROMPTS)
    for h in hooks:
        h.remove()
    assert min(margins) > 1e-4, f"router near-tie ({min(margins)})"
    save(model, os.path.join(out, "qwen3-moe"), torch.float32, refs,
         "Qwen3MoeForCausalLM f32, 8 experts top-2 renormalised, layer 1 dense (mlp_only_layers)")


# ---- GPTQ ----------------------------------------------------------------------------------------

def gptq_quantize(w, g, rng, act_order):
    """AutoGPTQ v1 tensors of w [N, K] (4-bit, asymmetric, group size g, act-order g_idx when
    asked) and the weight they decode to (scales rounded to f16)."""
    n, k = w.shape
    groups = k // g
    g_idx = (rng.permutation(k) // g) if act_order else (np.arange(k) // g)
    scales = np.zeros((groups, n), dtype=np.float16)
    zeros = np.zeros((groups, n), dtype=np.int64)
    for j in range(groups):
        cols = w[:, g_idx == j]
        lo, hi = cols.min(axis=1), cols.max(axis=1)
        s = np.maximum((hi - lo) / 15.0, 1e-4).astype(np.float16)
        scales[j] = s
        zeros[j] = np.clip(np.round(-lo / s.astype(np.float64)), 1, 15)
    s_k = scales[g_idx].astype(np.float64).T  # [N, K]
    z_k = zeros[g_idx].T
    q = np.clip(np.round(w / s_k) + z_k, 0, 15).astype(np.int64)
    deq = (q - z_k) * s_k
    qt = q.T  # [K, N]
    qweight = np.zeros((k // 8, n), dtype=np.uint64)
    for i in range(8):
        qweight |= (qt[i::8].astype(np.uint64) << np.uint64(4 * i))
    qzeros = np.zeros((groups, n // 8), dtype=np.uint64)
    for i in range(8):
        qzeros |= ((zeros[:, i::8] - 1).astype(np.uint64) << np.uint64(4 * i))
    return {"qweight": qweight.astype(np.uint32).view(np.int32), "qzeros": qzeros.astype(np.uint32).view(np.int32),
            "scales": scales, "g_idx": g_idx.astype(np.int32)}, deq


def make_gptq(out):
    from safetensors.numpy import save_file as save_np
    model = tiny(transformers.LlamaConfig, transformers.LlamaForCausalLM, 10, 18,
                 vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, bos_token_id=1, eos_token_id=2)
    cfg = model.config
    rng = np.random.default_rng(19)
    tensors = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = name[: -len(".weight")]
            if "layers." in name and name.endswith("proj.weight"):
                # layer 1 in act-order (its q/k/v share one g_idx, as GPTQ quantises them on the same
                # inputs); layer 0 in plain group order
                layer = int(name.split(".")[2])
                if name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")):
                    act_rng = np.random.default_rng(100 + layer)
                elif name.endswith(("gate_proj.weight", "up_proj.weight")):
                    act_rng = np.random.default_rng(200 + layer)
                else:
                    act_rng = rng
                q, deq = gptq_quantize(p.detach().double().numpy(), 32, act_rng, act_order=layer == 1)
                for k, v in q.items():
                    tensors[f"{base}.{k}"] = v
                if name.endswith("o_proj.weight"):  # AutoGPTQ writes a (zero) bias per layer
                    tensors[f"{base}.bias"] = np.zeros(p.shape[0], dtype=np.float16)
                p.copy_(torch.from_numpy(deq))
            else:
                h = p.detach().to(torch.float16)
                tensors[name] = h.numpy()
                p.copy_(h.to(torch.float32))
    refs = reference(model, PROMPTS)
    d = os.path.join(out, "llama-gptq")
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    save_np(tensors, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    c = json.loads(cfg.to_json_string())
    c["dtype"] = "float16"
    c["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": True, "sym": False,
                                "checkpoint_format": "gptq"}
    c.pop("transformers_version", None)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"requests": refs, "max_new_tokens": MAX_NEW, "weights_dtype": "gptq int4 + float16",
                   "note": "GPTQ v1 int4, group 32, asymmetric, layer 1 act-order; reference on the decoded weights",
                   "transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]}, f, indent=1)


# ---- GGUF ----------------------------------------------------------------------------------------

Q = None  # gguf.GGMLQuantizationType, imported lazily


def f16_bytes(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8).reshape(len(values), 2)


def kquant_blocks(qtype, rows, cols, std, rng):
    """Random valid Q4_K / Q5_K / Q6_K blocks whose weights have mean ~0 and deviation ~std."""
    nb = rows * cols // 256
    jitter = rng.uniform(0.8, 1.2, nb)
    if qtype == Q.Q6_K:
        sc = rng.integers(20, 61, (nb, 16)) * rng.choice([-1, 1], (nb, 16))
        d = std / (40 * 18.5) * jitter
        parts = [rng.integers(0, 256, (nb, 128), dtype=np.uint8), rng.integers(0, 256, (nb, 64), dtype=np.uint8),
                 sc.astype(np.int8).view(np.uint8), f16_bytes(d)]
    else:
        qh = rng.integers(0, 256, (nb, 32), dtype=np.uint8) if qtype == Q.Q5_K else None
        levels, ratio = (16, 8) if qtype == Q.Q4_K else (32, 16)
        sc = rng.integers(32, 64, (nb, 8))
        mn = np.round(sc * (levels - 1) / 2 / ratio).astype(np.int64)  # dmin = ratio·d centres the codes
        d = std / (48 * levels * 0.29) * jitter
        s = np.zeros((nb, 12), dtype=np.int64)
        for j in range(4):
            s[:, j] = (sc[:, j] & 63) | ((sc[:, j + 4] >> 4) << 6)
            s[:, j + 4] = (mn[:, j] & 63) | ((mn[:, j + 4] >> 4) << 6)
            s[:, j + 8] = (sc[:, j + 4] & 15) | ((mn[:, j + 4] & 15) << 4)
        parts = [f16_bytes(d), f16_bytes(d * ratio), s.astype(np.uint8)]
        if qh is not None:
            parts.append(qh)
        parts.append(rng.integers(0, 256, (nb, 128), dtype=np.uint8))
    blocks = np.concatenate(parts, axis=1)
    return blocks.reshape(rows, -1)


def permute_qk(w, n_head):
    """llama.cpp's converter: q/k rows reordered for interleaved (GPT-J style) RoPE."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, arch, model, types, rng, extra_kv=None, extra_tensors=None, permute=False):
    """Writes `model` as GGUF (types: GGUF tensor name -> ggml type) and loads the weights the file
    really holds (dequantised by gguf-py) back into the model."""
    import gguf
    cfg = model.config
    hf = dict(model.named_parameters())
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
    if not cfg.tie_word_embeddings:
        names["output.weight"] = "lm_head.weight"
    per_layer = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                 "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
                 "attn_k_norm": "self_attn.k_norm", "ffn_norm": "post_attention_layernorm",
                 "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    for l in range(cfg.num_hidden_layers):
        for g, h in per_layer.items():
            for kind in ("weight", "bias"):
                if f"model.layers.{l}.{h}.{kind}" in hf:
                    names[f"blk.{l}.{g}.{kind}"] = f"model.layers.{l}.{h}.{kind}"
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_vocab_size(cfg.vocab_size)
    w.add_eos_token_id(2)
    for k, v in (extra_kv or {}).items():
        getattr(w, k)(v)
    with torch.no_grad():
        for g, h in names.items():
            a = hf[h].detach().to(torch.float32).numpy().copy()
            n_head = cfg.num_attention_heads if ".attn_q." in g else cfg.num_key_value_heads
            if permute and (".attn_q." in g or ".attn_k." in g):
                a = permute_qk(a, n_head)
            t = types.get(g, Q.F32) if a.ndim == 2 else Q.F32
            if t in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
                data = kquant_blocks(t, a.shape[0], a.shape[1], 1.0 / a.shape[1] ** 0.5, rng)
            elif t == Q.F16:
                data = a.astype(np.float16)
            elif t == Q.F32:
                data = a
            else:
                data = gguf.quants.quantize(a, t)
            if t in (Q.F16, Q.F32):
                w.add_tensor(g, data)
                back = data.astype(np.float32)
            else:
                w.add_tensor(g, data, raw_dtype=t)
                back = gguf.quants.dequantize(data, t).reshape(a.shape).astype(np.float32)
            if permute and (".attn_q." in g or ".attn_k." in g):
                back = unpermute_qk(back, n_head)
            hf[h].copy_(torch.from_numpy(back.copy()))
        for g, a in (extra_tensors or {}).items():
            w.add_tensor(g, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def save_gguf_reference(path, refs, note):
    with open(path, "w") as f:
        json.dump({"requests": refs, "max_new_tokens": MAX_NEW, "note": note, "transformers": transformers.__version__,
                   "torch": torch.__version__.split("+")[0]}, f, indent=1)


def make_gguf(out):
    global Q
    import gguf
    Q = gguf.GGMLQuantizationType
    d = os.path.join(out, "gguf")
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)

    model = tiny(transformers.LlamaConfig, transformers.LlamaForCausalLM, 6, 16, **LLAMA3)
    cfg = model.config
    # llama.cpp stores llama3 scaling as per-frequency divisors of the default frequencies.
    dim = cfg.head_dim
    base = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    scaled = model.model.rotary_emb.inv_freq.to(torch.float64)
    rope_freqs = (base / scaled).to(torch.float32).numpy()
    types = {"token_embd.weight": Q.F16, "output.weight": Q.Q8_0}
    for l in range(2):
        types.update({f"blk.{l}.attn_q.weight": Q.Q4_0, f"blk.{l}.attn_k.weight": Q.Q4_0,
                      f"blk.{l}.attn_v.weight": Q.Q8_0, f"blk.{l}.attn_output.weight": Q.Q8_0,
                      f"blk.{l}.ffn_gate.weight": Q.Q4_0, f"blk.{l}.ffn_up.weight": Q.Q4_0,
                      f"blk.{l}.ffn_down.weight": Q.Q8_0})
    write_gguf(os.path.join(d, "llama-q8q4.gguf"), "llama", model, types, np.random.default_rng(7),
               extra_tensors={"rope_freqs.weight": rope_freqs}, permute=True)
    save_gguf_reference(os.path.join(d, "llama-q8q4.reference.json"), reference(model, PROMPTS),
                        "GGUF llama Q4_0/Q8_0/F16, rope_freqs (llama3), permuted q/k")

    model = tiny(transformers.Qwen3Config, transformers.Qwen3ForCausalLM, 8, 17,
                 vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=64, max_position_embeddings=64, rms_norm_eps=1e-6,
                 tie_word_embeddings=True,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, eos_token_id=2)
    types = {"token_embd.weight": Q.Q6_K}
    for l in range(2):
        types.update({f"blk.{l}.attn_q.weight": Q.Q4_K, f"blk.{l}.attn_k.weight": Q.Q4_K,
                      f"blk.{l}.attn_v.weight": Q.Q6_K, f"blk.{l}.attn_output.weight": Q.Q4_K,
                      f"blk.{l}.ffn_gate.weight": Q.Q4_K, f"blk.{l}.ffn_up.weight": Q.Q4_K if l == 0 else Q.Q5_K,
                      f"blk.{l}.ffn_down.weight": Q.Q6_K})
    write_gguf(os.path.join(d, "qwen3-kquant.gguf"), "qwen3", model, types, np.random.default_rng(9))
    model.tie_weights()
    save_gguf_reference(os.path.join(d, "qwen3-kquant.reference.json"), reference(model, PROMPTS),
                        "GGUF qwen3 Q4_K/Q5_K/Q6_K, tied Q6_K embedding")

    model = tiny(transformers.Qwen2Config, transformers.Qwen2ForCausalLM, 12, 21,
                 vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, eos_token_id=2)
    visible_biases(model, 22)
    types = {"token_embd.weight": Q.Q8_0, "output.weight": Q.Q8_0}
    for l in range(2):
        for t in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
            types[f"blk.{l}.{t}.weight"] = Q.Q8_0
    write_gguf(os.path.join(d, "qwen2-bias.gguf"), "qwen2", model, types, np.random.default_rng(23))
    save_gguf_reference(os.path.join(d, "qwen2-bias.reference.json"), reference(model, PROMPTS),
                        "GGUF qwen2 Q8_0 with F32 q/k/v biases, Q8_0 embedding (dequantised for the lookup)")

    # broken copies
    blob = open(os.path.join(d, "llama-q8q4.gguf"), "rb").read()
    with open(os.path.join(out, "bad", "gguf-truncated.gguf"), "wb") as f:
        f.write(blob[: len(blob) * 3 // 4])
    with open(os.path.join(out, "bad", "gguf-string-length.gguf"), "wb") as f:  # first key's length: 2^62
        f.write(blob[:24] + struct.pack("<Q", 1 << 62) + blob[32:4096])
    with open(os.path.join(out, "bad", "gguf-magic.gguf"), "wb") as f:
        f.write(b"GGML" + blob[4:4096])


def make_micro_and_bad(out):
    torch.manual_seed(4)
    cfg = transformers.LlamaConfig(
        vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32, tie_word_embeddings=True, eos_token_id=2)
    model = transformers.LlamaForCausalLM(cfg)
    micro = os.path.join(out, "micro-llama")
    save(model, micro, torch.float32, None, "")
    bad = os.path.join(out, "bad")
    if os.path.isdir(bad):
        shutil.rmtree(bad)
    st = os.path.join(micro, "model.safetensors")
    blob = open(st, "rb").read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen])

    def variant(name, config_edit=None, blob_bytes=None, extra=None):
        d = os.path.join(bad, name)
        os.makedirs(d)
        with open(os.path.join(micro, "config.json")) as f:
            c = json.load(f)
        if config_edit:
            config_edit(c)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f, indent=2)
        if blob_bytes is not None:
            with open(os.path.join(d, "model.safetensors"), "wb") as f:
                f.write(blob_bytes)
        if extra:
            extra(d)

    def with_header(h):
        hb = json.dumps(h).encode()
        return struct.pack("<Q", len(hb)) + hb + blob[8 + hlen:]

    # the data section cut short: the last tensors' offsets end past the file
    variant("truncated", blob_bytes=blob[: 8 + hlen + (len(blob) - 8 - hlen) // 2])
    # a header length larger than the file
    variant("header-length", blob_bytes=struct.pack("<Q", 1 << 40) + blob[8:])
    # a header that is not JSON
    variant("header-json", blob_bytes=struct.pack("<Q", hlen) + b"{" * hlen + blob[8 + hlen:])
    # offsets that disagree with the shape (one element short)
    h = json.loads(json.dumps(header))
    b, e = h["model.norm.weight"]["data_offsets"]
    h["model.norm.weight"]["data_offsets"] = [b, e - 4]
    variant("offsets-shape", blob_bytes=with_header(h))
    # an unsupported dtype (I32 bytes of the same size)
    h = json.loads(json.dumps(header))
    h["model.layers.0.mlp.down_proj.weight"]["dtype"] = "I32"
    variant("dtype", blob_bytes=with_header(h))
    # config.json and the tensors disagree (intermediate_size 16 in the tensors)
    variant("wrong-shape", config_edit=lambda c: c.update(intermediate_size=24), blob_bytes=blob)
    # an architecture ferrum-run does not run
    variant("architecture", config_edit=lambda c: c.update(architectures=["GPT2LMHeadModel"], model_type="gpt2"),
            blob_bytes=blob)
    # an unsupported quantisation
    variant("quant-method", config_edit=lambda c: c.update(quantization_config={"quant_method": "awq", "bits": 4}),
            blob_bytes=blob)
    # an unsupported RoPE scaling
    variant("rope-type", config_edit=lambda c: c.update(rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                                                          "factor": 2.0}), blob_bytes=blob)

    # an index naming a shard that is not there
    def index_missing_shard(d):
        names = {k: ("model-00001-of-00002.safetensors" if i % 2 == 0 else "model-00002-of-00002.safetensors")
                 for i, k in enumerate(sorted(k for k in header if k != "__metadata__"))}
        shutil.copy(st, os.path.join(d, "model-00001-of-00002.safetensors"))
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": names}, f, indent=1)
    variant("missing-shard", extra=index_missing_shard)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    torch.set_num_threads(1)
    make_llama(args.out)
    make_qwen3(args.out)
    make_qwen2(args.out)
    make_qwen3_moe(args.out)
    stack_experts.stack(args.out)
    make_mistral(args.out)
    make_gptq(args.out)
    make_micro_and_bad(args.out)
    make_gguf(args.out)


if __name__ == "__main__":
    main()
