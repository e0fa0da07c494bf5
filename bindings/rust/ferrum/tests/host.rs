//! The crate against the build tree's plugins (FERRUM_PLUGIN_PATH, set by CTest): ops through
//! the generic call against float64 references (seeded inputs, poisoned outputs), and errors
//! carrying libferrum's status and message.
use ferrum::{discover, op_count, op_name, sys, Backend, Dtype, OpArgs};

struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 52) as f64 - 1.0) as f32
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.unit()).collect()
    }
}

fn cpu() -> (Backend, ferrum::Context) {
    let b = Backend::load("cpu").expect("load cpu");
    let c = b.create_context(None, Dtype::F32).expect("context");
    (b, c)
}

#[test]
fn lists_candidates_and_loads_cpu() {
    let list = discover(false).unwrap();
    let found = list.iter().find(|c| c.name == "cpu").expect("the cpu plugin is a candidate");
    assert_eq!(found.stage, "probed");
    assert!(found.score > 0 && found.path.ends_with("libferrum-cpu.so"));
    let (b, ctx) = cpu();
    let info = b.info().unwrap();
    assert_eq!(info.name, "cpu");
    assert!(info.abi_version.starts_with("1."));
    assert!(b.supports(sys::FERRUM_OP_GEMM).unwrap());
    assert_eq!(ctx.activation_dtype(), Dtype::F32);
    // the bindings and the library agree on the registry
    assert_eq!(op_count(), sys::FERRUM_OP_COUNT);
    assert_eq!(op_name(sys::ferrum_gemm_args::ID).as_deref(), Some("gemm"));
    assert_eq!(op_name(sys::ferrum_flash_attention_args::ID).as_deref(), Some(sys::ferrum_flash_attention_args::NAME));
}

#[test]
fn gemm_then_rms_norm_match_a_float64_reference() {
    let (_b, mut ctx) = cpu();
    let (m, n, k) = (4usize, 6usize, 9usize);
    let mut rng = Rng(7);
    let (a, w, g) = (rng.vec(m * k), rng.vec(n * k), rng.vec(n));
    let ba = ctx.upload(&a).unwrap();
    let bw = ctx.upload(&w).unwrap();
    let bg = ctx.upload(&g).unwrap();
    let bo = ctx.upload(&vec![f32::NAN; m * n]).unwrap();
    let bn = ctx.upload(&vec![f32::NAN; m * n]).unwrap();
    let eps = 1e-5f32;
    unsafe {
        ctx.call(&sys::ferrum_gemm_args { a: ba.raw(), b: bw.raw(), out: bo.raw(), m: m as u64, n: n as u64, k: k as u64, ..Default::default() })
            .unwrap();
        ctx.call(&sys::ferrum_rms_norm_args { x: bo.raw(), w: bg.raw(), eps, out: bn.raw(), tokens: m as u64, dim: n as u64, ..Default::default() })
            .unwrap();
    }
    let got_gemm: Vec<f32> = ctx.read(&bo, m * n).unwrap();
    let got: Vec<f32> = ctx.read(&bn, m * n).unwrap();
    for i in 0..m {
        let row: Vec<f64> = (0..n).map(|j| (0..k).map(|p| a[i * k + p] as f64 * w[j * k + p] as f64).sum()).collect();
        let inv = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / n as f64 + eps as f64).sqrt();
        for j in 0..n {
            let scale: f64 = (0..k).map(|p| (a[i * k + p] as f64 * w[j * k + p] as f64).abs()).sum::<f64>().max(1.0);
            assert!((got_gemm[i * n + j] as f64 - row[j]).abs() <= 1e-5 * scale, "gemm [{i}, {j}]");
            let want = row[j] * g[j] as f64 * inv;
            assert!((got[i * n + j] as f64 - want).abs() <= 1e-4 * want.abs().max(1.0), "rms_norm [{i}, {j}]: {} vs {want}", got[i * n + j]);
        }
    }
}

#[test]
fn errors_carry_status_and_message() {
    let e = Backend::load("no_such_backend_xyz").err().expect("a bad spec fails");
    assert_eq!(e.status, sys::FERRUM_HOST_STATUS_LOAD_FAILED);
    assert!(e.message.contains("ferrum_host_backend_load") && e.message.contains("no_such_backend_xyz"), "{}", e.message);
    assert_eq!(e.status_name(), "load_failed");

    let (_b, mut ctx) = cpu();
    let a = ctx.upload(&[1.0f32; 6]).unwrap();
    let out = ctx.alloc(Dtype::F32, 4).unwrap();
    let mut args = sys::ferrum_gemm_args { a: a.raw(), b: a.raw(), out: out.raw(), m: 4, n: 1, k: 3, ..Default::default() };
    let e = unsafe { ctx.call(&args) }.err().expect("a shape the buffers cannot hold");
    assert_eq!(e.status, sys::FERRUM_STATUS_INVALID_ARGUMENT);
    assert!(e.message.contains("gemm") && e.message.contains("argument 'a'"), "{}", e.message);
    args.struct_size = 8;
    let e = unsafe { ctx.call(&args) }.err().expect("a short struct_size");
    assert!(e.message.contains("struct_size"), "{}", e.message);
    let e = ctx.read::<f32>(&out, 5).err().expect("reading past the end");
    assert!(e.message.contains("ferrum_host_buffer_read"), "{}", e.message);
}

#[test]
fn the_c_example_plugin_reports_unsupported_ops() {
    let b = Backend::load("cexample").unwrap();
    let mut ctx = b.create_context(None, Dtype::Invalid).unwrap();
    let x = ctx.upload(&[1.0f32, 2.0]).unwrap();
    let y = ctx.upload(&[0.5f32, -4.0]).unwrap();
    unsafe { ctx.call(&sys::ferrum_add_inplace_args { residual: x.raw(), x: y.raw(), len: 2, ..Default::default() }) }.unwrap();
    assert_eq!(ctx.read::<f32>(&x, 2).unwrap(), vec![1.5, -2.0]);
    let z = ctx.upload(&[0.0f32]).unwrap();
    let g = sys::ferrum_gemm_args { a: x.raw(), b: y.raw(), out: z.raw(), m: 1, n: 1, k: 2, ..Default::default() };
    let e = unsafe { ctx.call(&g) }.err().expect("cexample has no gemm");
    assert_eq!(e.status, sys::FERRUM_STATUS_UNSUPPORTED);
    assert!(e.message.contains("gemm") && e.message.contains("cexample"), "{}", e.message);
    assert!(ctx.query_support(&g).unwrap().is_some());
}

#[test]
fn objects_outlive_the_backend_that_made_them() {
    let (b, mut ctx) = cpu();
    let buf = ctx.upload(&[3.0f32, -1.0]).unwrap();
    drop(b); // the context and the buffer keep the plugin loaded on their own
    assert_eq!(ctx.read::<f32>(&buf, 2).unwrap(), vec![3.0, -1.0]);
    assert_eq!((buf.dtype(), buf.len()), (Dtype::F32, 2));
    drop(ctx); // the buffer outlives its context too
    drop(buf);
}

#[test]
fn ops_returning_handles_are_adopted() {
    let (_b, mut ctx) = cpu();
    let buf = ctx.alloc_activation(5).unwrap();
    assert_eq!((buf.dtype(), buf.len()), (Dtype::F32, 5));
    let from = ctx.from_f32_to_activation(&[0.25, 0.5]).unwrap();
    assert_eq!(ctx.read::<f32>(&from, 2).unwrap(), vec![0.25, 0.5]);
}
