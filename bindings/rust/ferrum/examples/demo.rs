//! ferrum-demo's model through the Rust crate: the same small Qwen3-style decoder with the same
//! seeded weights (tools/ferrum-demo/demo_model.cpp, the documented splitmix64 scheme), the same
//! op sequence of its contiguous-KV eager path, greedy decoding; prints the generated token ids
//! in ferrum-demo's format ("generated: 1,2,3"), so the two can be compared on any backend.
//!
//!   cargo run --example demo -- [--backend SPEC] [--dtype f32|f16|bf16] [--prompt-len N]
//!       [--tokens N] [--hidden N] [--layers N] [--q-heads N] [--kv-heads N] [--head-dim N]
//!       [--ffn N] [--vocab N] [--seed N]
//!
//! Compare with `ferrum-demo --graphs off` and the same flags (CTest: rust.demo_matches_ferrum_demo).
//! Not here: ferrum-demo's paged / int8 / fp8 caches, graph decoding, timing and JSON output.
use ferrum::{sys, Backend, Buffer, Context, Dtype, Result};
use std::process::exit;

struct Config {
    hidden: u64,
    layers: u64,
    q_heads: u64,
    kv_heads: u64,
    head_dim: u64,
    ffn: u64,
    vocab: u64,
    rope_theta: f64,
    eps: f64,
    max_positions: u64,
    seed: u64,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The documented deterministic weight value (conformance/ref/qwen_ref.hpp).
fn weight_value(seed: u64, tensor_id: u64, index: u64, scale: f64) -> f64 {
    let h = splitmix64(splitmix64(splitmix64(seed) ^ tensor_id) ^ index);
    let u = (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    scale * (2.0 * u - 1.0)
}

// Tensor ids of the scheme.
const EMBEDDING: u64 = 1;
const FINAL_NORM: u64 = 2;
const LM_HEAD: u64 = 3;
const INPUT_NORM: u64 = 0;
const WQKV: u64 = 1;
const QNORM: u64 = 2;
const KNORM: u64 = 3;
const WO: u64 = 4;
const POST_NORM: u64 = 5;
const WGATE_UP: u64 = 6;
const WDOWN: u64 = 7;
fn layer_id(l: u64, t: u64) -> u64 {
    100 * (l + 1) + t
}

struct Layer {
    input_norm: Buffer,
    w_qkv: Buffer,
    q_norm: Buffer,
    k_norm: Buffer,
    w_o: Buffer,
    post_norm: Buffer,
    w_gate_up: Buffer,
    w_down: Buffer,
    cache_k: Buffer,
    cache_v: Buffer,
}

struct Model {
    c: Config,
    len: u64,
    embedding: Buffer,
    final_norm: Buffer,
    lm_head: Buffer,
    cos: Buffer,
    sin: Buffer,
    layers: Vec<Layer>,
    x: Buffer,
    a: Buffer,
    qkv: Buffer,
    q: Buffer,
    attn: Buffer,
    attn_t: Buffer,
    o: Buffer,
    gate_up: Buffer,
    act: Buffer,
    down: Buffer,
    last: Buffer,
    logits: Buffer,
}

fn matrix(ctx: &mut Context, c: &Config, id: u64, rows: u64, cols: u64, scale: f64) -> Result<Buffer> {
    let v: Vec<f32> = (0..rows * cols).map(|i| weight_value(c.seed, id, i, scale) as f32).collect();
    ctx.from_f32_to_activation(&v)
}

fn norm(ctx: &mut Context, c: &Config, id: u64, n: u64) -> Result<Buffer> {
    let v: Vec<f32> = (0..n).map(|i| (1.0 + weight_value(c.seed, id, i, 0.1)) as f32).collect();
    ctx.from_f32_to_activation(&v)
}

impl Model {
    fn new(ctx: &mut Context, c: Config, max_tokens: u64) -> Result<Model> {
        let (h, hd) = (c.hidden, c.head_dim);
        let qkv_rows = (c.q_heads + 2 * c.kv_heads) * hd;
        let inv_h = 1.0 / (h as f64).sqrt();
        let embedding = matrix(ctx, &c, EMBEDDING, c.vocab, h, 1.0)?;
        let mut layers = Vec::new();
        for l in 0..c.layers {
            layers.push(Layer {
                input_norm: norm(ctx, &c, layer_id(l, INPUT_NORM), h)?,
                w_qkv: matrix(ctx, &c, layer_id(l, WQKV), qkv_rows, h, inv_h)?,
                q_norm: norm(ctx, &c, layer_id(l, QNORM), hd)?,
                k_norm: norm(ctx, &c, layer_id(l, KNORM), hd)?,
                w_o: matrix(ctx, &c, layer_id(l, WO), h, c.q_heads * hd, 1.0 / ((c.q_heads * hd) as f64).sqrt())?,
                post_norm: norm(ctx, &c, layer_id(l, POST_NORM), h)?,
                w_gate_up: matrix(ctx, &c, layer_id(l, WGATE_UP), 2 * c.ffn, h, inv_h)?,
                w_down: matrix(ctx, &c, layer_id(l, WDOWN), h, c.ffn, 1.0 / (c.ffn as f64).sqrt())?,
                cache_k: ctx.alloc_activation(c.kv_heads * c.max_positions * hd)?,
                cache_v: ctx.alloc_activation(c.kv_heads * c.max_positions * hd)?,
            });
        }
        let final_norm = norm(ctx, &c, FINAL_NORM, h)?;
        let lm_head = matrix(ctx, &c, LM_HEAD, c.vocab, h, inv_h)?;
        // RoPE tables [max_positions, hd/2] in f32.
        let half = (hd / 2) as usize;
        let mut cs = vec![0f32; c.max_positions as usize * half];
        let mut sn = cs.clone();
        for p in 0..c.max_positions as usize {
            for i in 0..half {
                let ang = p as f64 * c.rope_theta.powf(-2.0 * i as f64 / hd as f64);
                cs[p * half + i] = ang.cos() as f32;
                sn[p * half + i] = ang.sin() as f32;
            }
        }
        let cos = ctx.upload(&cs)?;
        let sin = ctx.upload(&sn)?;
        let t = max_tokens;
        Ok(Model {
            x: ctx.alloc_activation(t * h)?,
            a: ctx.alloc_activation(t * h)?,
            qkv: ctx.alloc_activation(t * qkv_rows)?,
            q: ctx.alloc_activation(t * c.q_heads * hd)?,
            attn: ctx.alloc_activation(t * c.q_heads * hd)?,
            attn_t: ctx.alloc_activation(t * c.q_heads * hd)?,
            o: ctx.alloc_activation(t * h)?,
            gate_up: ctx.alloc_activation(t * 2 * c.ffn)?,
            act: ctx.alloc_activation(t * c.ffn)?,
            down: ctx.alloc_activation(t * h)?,
            last: ctx.alloc_activation(h)?,
            logits: ctx.alloc_activation(c.vocab)?,
            c,
            len: 0,
            embedding,
            final_norm,
            lm_head,
            cos,
            sin,
            layers,
        })
    }

    /// Runs `tokens` at positions len .. len + T - 1 and returns the argmax of the last
    /// token's logits (ferrum-demo's Model::forward, contiguous cache).
    fn forward(&mut self, ctx: &mut Context, tokens: &[u32]) -> Result<u32> {
        let c = &self.c;
        let (t, h, hd, p0) = (tokens.len() as u64, c.hidden, c.head_dim, self.len);
        let eps = c.eps as f32;
        let qkv_rows = (c.q_heads + 2 * c.kv_heads) * hd;
        // SAFETY: every buffer field holds a live Buffer of this context; the host pointers
        // (ids, the argmax result) cover the lengths the ops read and write.
        unsafe {
            ctx.call(&sys::ferrum_embedding_lookup_args {
                table: self.embedding.raw(),
                ids: tokens.as_ptr(),
                ids_len: t,
                out: self.x.raw(),
                dim: h,
                ..Default::default()
            })?;
            ctx.call(&sys::ferrum_rms_norm_args {
                x: self.x.raw(),
                w: self.layers[0].input_norm.raw(),
                eps,
                out: self.a.raw(),
                tokens: t,
                dim: h,
                ..Default::default()
            })?;
            for l in 0..self.layers.len() {
                let layer = &self.layers[l];
                gemm(ctx, &self.a, &layer.w_qkv, &self.qkv, t, qkv_rows, h)?;
                ctx.call(&sys::ferrum_split_qkv_norm_rope_into_cache_args {
                    qkv: self.qkv.raw(),
                    q_norm_w: layer.q_norm.raw(),
                    k_norm_w: layer.k_norm.raw(),
                    cos: self.cos.raw(),
                    sin: self.sin.raw(),
                    q_out: self.q.raw(),
                    cache_k: layer.cache_k.raw(),
                    cache_v: layer.cache_v.raw(),
                    tokens: t,
                    q_heads: c.q_heads,
                    kv_heads: c.kv_heads,
                    head_dim: hd,
                    pos_offset: p0,
                    eps,
                    qk_mode: sys::FERRUM_QK_MODE_NORM_NEOX,
                    cache_len: p0,
                    cache_capacity: c.max_positions,
                    ..Default::default()
                })?;
                ctx.call(&sys::ferrum_flash_attention_args {
                    q: self.q.raw(),
                    k: layer.cache_k.raw(),
                    v: layer.cache_v.raw(),
                    out: self.attn.raw(),
                    batch: 1,
                    q_len: t,
                    kv_len: p0 + t,
                    pos_offset: p0,
                    num_heads: c.q_heads,
                    num_kv_heads: c.kv_heads,
                    head_dim: hd,
                    causal: 1,
                    scale: 0.0,
                    kv_seq_stride: c.max_positions,
                    sliding_window: 0,
                    ..Default::default()
                })?;
                ctx.call(&sys::ferrum_transpose_head_to_token_args {
                    src: self.attn.raw(),
                    dst: self.attn_t.raw(),
                    tokens: t,
                    heads: c.q_heads,
                    dim: hd,
                    ..Default::default()
                })?;
                gemm(ctx, &self.attn_t, &layer.w_o, &self.o, t, h, c.q_heads * hd)?;
                add_norm(ctx, &self.x, &self.o, &layer.post_norm, &self.a, eps, t, h)?;
                gemm(ctx, &self.a, &layer.w_gate_up, &self.gate_up, t, 2 * c.ffn, h)?;
                ctx.call(&sys::ferrum_fused_silu_mul_split_args {
                    gate_up: self.gate_up.raw(),
                    out: self.act.raw(),
                    tokens: t,
                    im: c.ffn,
                    ..Default::default()
                })?;
                gemm(ctx, &self.act, &layer.w_down, &self.down, t, h, c.ffn)?;
                let next_norm = if l + 1 < self.layers.len() { &self.layers[l + 1].input_norm } else { &self.final_norm };
                add_norm(ctx, &self.x, &self.down, next_norm, &self.a, eps, t, h)?;
            }
            self.len = p0 + t;
            ctx.call(&sys::ferrum_copy_slice_args {
                src: self.a.raw(),
                src_offset: (t - 1) * h,
                dst: self.last.raw(),
                dst_offset: 0,
                len: h,
                ..Default::default()
            })?;
            gemm(ctx, &self.last, &self.lm_head, &self.logits, 1, c.vocab, h)?;
            let mut next = [0u32; 1];
            ctx.call(&sys::ferrum_argmax_rows_f16_args {
                logits: self.logits.raw(),
                m: 1,
                n: c.vocab,
                out: next.as_mut_ptr(),
                ..Default::default()
            })?;
            Ok(next[0])
        }
    }
}

fn gemm(ctx: &mut Context, a: &Buffer, b: &Buffer, out: &Buffer, m: u64, n: u64, k: u64) -> Result<()> {
    // SAFETY: buffer handles only, checked against the buffers by the library.
    unsafe { ctx.call(&sys::ferrum_gemm_args { a: a.raw(), b: b.raw(), out: out.raw(), m, n, k, ..Default::default() }) }
}

/// residual += x; out = rms_norm(residual) * w.
#[allow(clippy::too_many_arguments)]
fn add_norm(ctx: &mut Context, residual: &Buffer, x: &Buffer, w: &Buffer, out: &Buffer, eps: f32, tokens: u64, dim: u64) -> Result<()> {
    // SAFETY: buffer handles only.
    unsafe {
        ctx.call(&sys::ferrum_fused_add_rms_norm_args {
            residual: residual.raw(),
            x: x.raw(),
            w: w.raw(),
            eps,
            out: out.raw(),
            tokens,
            dim,
            ..Default::default()
        })
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("demo: {}", msg);
    exit(2)
}

fn main() {
    let mut c = Config {
        hidden: 1024,
        layers: 8,
        q_heads: 16,
        kv_heads: 8,
        head_dim: 128,
        ffn: 3072,
        vocab: 32000,
        rope_theta: 1e6,
        eps: 1e-6,
        max_positions: 4096,
        seed: 42,
    };
    let (mut backend_spec, mut dtype, mut prompt_len, mut n_tokens) = (String::new(), Dtype::Invalid, 16u64, 32u64);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if flag == "--graphs" || flag == "--kv" {
            // accepted for command-line parity with ferrum-demo; only eager + contiguous here
            let v = args.get(i + 1).map(String::as_str).unwrap_or("");
            if (flag == "--graphs" && v != "off") || (flag == "--kv" && v != "contiguous") {
                usage(&format!("{}: only '{}' is implemented by this example, given '{}'", flag, if flag == "--graphs" { "off" } else { "contiguous" }, v));
            }
            i += 2;
            continue;
        }
        let value = args.get(i + 1).unwrap_or_else(|| usage(&format!("{}: expected a value", flag)));
        let num = || value.parse::<u64>().unwrap_or_else(|_| usage(&format!("{}: expected a number, given '{}'", flag, value)));
        match flag {
            "--backend" => backend_spec = value.clone(),
            "--dtype" => {
                dtype = match value.as_str() {
                    "f32" => Dtype::F32,
                    "f16" => Dtype::F16,
                    "bf16" => Dtype::BF16,
                    _ => usage(&format!("--dtype: expected f32, f16 or bf16, given '{}'", value)),
                }
            }
            "--prompt-len" => prompt_len = num(),
            "--tokens" => n_tokens = num(),
            "--hidden" => c.hidden = num(),
            "--layers" => c.layers = num(),
            "--q-heads" => c.q_heads = num(),
            "--kv-heads" => c.kv_heads = num(),
            "--head-dim" => c.head_dim = num(),
            "--ffn" => c.ffn = num(),
            "--vocab" => c.vocab = num(),
            "--seed" => c.seed = num(),
            _ => usage(&format!("unknown flag '{}'", flag)),
        }
        i += 2;
    }
    if c.hidden == 0 || c.layers == 0 || c.q_heads == 0 || c.kv_heads == 0 || c.q_heads % c.kv_heads != 0 || c.head_dim % 2 != 0
        || c.head_dim == 0 || c.ffn == 0 || c.vocab == 0 || prompt_len == 0 || n_tokens == 0 || c.vocab > u32::MAX as u64
    {
        usage("expected positive sizes, --kv-heads dividing --q-heads, an even --head-dim, --prompt-len and --tokens >= 1");
    }
    // ferrum-demo's seeded prompt and position capacity.
    let prompt: Vec<u32> = (0..prompt_len)
        .map(|i| (((weight_value(c.seed, 9, i, 0.5) + 0.5) * c.vocab as f64) as u32) % c.vocab as u32)
        .collect();
    c.max_positions = (prompt_len + n_tokens + 1).max(64);

    let run = || -> Result<Vec<u32>> {
        let backend = Backend::load(&backend_spec)?;
        let mut ctx = backend.create_context(None, dtype)?;
        let info = backend.info()?;
        println!("backend:   {} {} (ABI {}), activation {:?}", info.name, info.version, info.abi_version, ctx.activation_dtype());
        let mut model = Model::new(&mut ctx, c, prompt_len)?;
        let mut ids = vec![model.forward(&mut ctx, &prompt)?];
        while (ids.len() as u64) < n_tokens {
            let next = model.forward(&mut ctx, &ids[ids.len() - 1..])?;
            ids.push(next);
        }
        ctx.sync()?;
        Ok(ids)
    };
    match run() {
        Ok(ids) => {
            let s: Vec<String> = ids.iter().map(|v| v.to_string()).collect();
            println!("generated: {}", s.join(","));
        }
        Err(e) => {
            eprintln!("demo: {}", e);
            exit(1);
        }
    }
}
