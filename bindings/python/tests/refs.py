"""Independent float64 references of the ops the tests run (docs/spec.md §0.7, §0.8, docs/ops.md)."""
import numpy as np


def gemm(a, b):
    """out[m, n] = sum_k a[m, k] * b[n, k]."""
    return a.astype(np.float64) @ b.astype(np.float64).T


def rms_norm(x, w, eps):
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * w.astype(np.float64)


def rope_tables(positions, head_dim, base=10000.0):
    half = head_dim // 2
    inv = base ** (-np.arange(half, dtype=np.float64) * 2.0 / head_dim)
    ang = np.arange(positions, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def qk_norm_rope(x, cos, sin, pos_offset, mode, w=None, eps=0.0):
    """x [tokens, heads, D] -> [heads, tokens, D] (head-major), mode "neox" or "rms_norm_neox"."""
    x = x.astype(np.float64)
    tokens, heads, d = x.shape
    h = d // 2
    if mode == "rms_norm_neox":
        x = x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * w.astype(np.float64)
    c = cos.astype(np.float64)[pos_offset:pos_offset + tokens][:, None, :]
    s = sin.astype(np.float64)[pos_offset:pos_offset + tokens][:, None, :]
    y = np.empty_like(x)
    y[..., :h] = x[..., :h] * c - x[..., h:] * s
    y[..., h:] = x[..., h:] * c + x[..., :h] * s
    return y.transpose(1, 0, 2)


def attention(q, k, v, kv_len, pos_offset, causal, scale=0.0, window=0):
    """q [B, H, Q, D], k/v [B, KVH, S, D] -> [B, H, Q, D] over the first kv_len keys."""
    q, k, v = (t.astype(np.float64) for t in (q, k, v))
    b, heads, q_len, d = q.shape
    group = heads // k.shape[1]
    sigma = scale if scale else 1.0 / np.sqrt(d)
    out = np.zeros_like(q)
    for bi in range(b):
        for h in range(heads):
            kh = h // group
            for i in range(q_len):
                p = pos_offset + i
                j = np.arange(kv_len)
                vis = np.ones(kv_len, bool)
                if causal:
                    vis &= j <= p
                if window:
                    vis &= j >= p - window + 1
                if not vis.any():
                    continue
                s = sigma * (k[bi, kh, :kv_len] @ q[bi, h, i])
                s = np.where(vis, s, -np.inf)
                e = np.exp(s - s.max())
                out[bi, h, i] = (e[:, None] * v[bi, kh, :kv_len]).sum(0) / e.sum()
    return out
