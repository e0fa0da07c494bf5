//! Rust bindings of ferrum: load an LLM inference backend plugin and run its ops.
//!
//! A safe layer over the host C API of libferrum (`ferrum/ferrum_host.h`), which is itself a
//! layer over the C++ facade: the same loader (backend precedence FERRUM_BACKEND > config file >
//! auto, candidate diagnostics), the same argument checks, the same error messages.
//!
//! - [`Backend`], [`Context`] and [`Buffer`] own their C objects and free them on `Drop`; each
//!   keeps its plugin loaded on its own, so they may be dropped in any order.
//! - Every failure is an [`Error`] with the status code and libferrum's message, which names the
//!   function, the op, the plugin, the argument, what was expected and what was given.
//! - Any op of the registry runs through [`Context::call`] with its raw args struct from
//!   [`sys`] (generated from `abi/registry/ops.txt` at build time, so new ops come along).
//!   `call` is `unsafe`: the structs hold raw pointers (buffer handles and host memory) that
//!   the library checks for presence, dtype and size against the buffers, but host memory
//!   behind a pointer cannot be checked for its length.
//!
//! ```no_run
//! use ferrum::{sys, Backend, Dtype};
//! let backend = Backend::load("cpu")?;
//! let mut ctx = backend.create_context(None, Dtype::F32)?;
//! let x = ctx.upload(&[1.0f32, 2.0, 3.0, 4.0])?;
//! let w = ctx.upload(&[1.0f32, 1.0])?;
//! let out = ctx.alloc(Dtype::F32, 4)?;
//! let args = sys::ferrum_rms_norm_args {
//!     x: x.raw(), w: w.raw(), out: out.raw(), eps: 1e-6, tokens: 2, dim: 2,
//!     ..Default::default()
//! };
//! unsafe { ctx.call(&args)? };
//! let y: Vec<f32> = ctx.read(&out, 4)?;
//! # Ok::<(), ferrum::Error>(())
//! ```
pub mod sys;

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_void};
use std::ptr;

pub use sys::OpArgs;

/// A failed call: libferrum's status code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// `FERRUM_STATUS_*` (1 unsupported, 2 invalid argument, 3 out of memory, 4 device error,
    /// 5 ABI mismatch, 6 internal) or `FERRUM_HOST_STATUS_*` (100 load failed, 101 config error).
    pub status: i32,
    pub message: String,
}

impl Error {
    /// This thread's last error of the C API (right after a call returned `status`).
    fn last(status: i32) -> Error {
        Error { status, message: c_string(unsafe { sys::ferrum_host_last_error_message() }) }
    }
    /// "unsupported", "invalid_argument", ..., "load_failed", "config_error".
    pub fn status_name(&self) -> String {
        c_string(unsafe { sys::ferrum_host_status_name(self.status) })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.status_name(), self.status, self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn check(status: i32) -> Result<()> {
    if status == sys::FERRUM_STATUS_OK {
        Ok(())
    } else {
        Err(Error::last(status))
    }
}

fn c_string(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Element types (`FERRUM_DTYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Dtype {
    /// "the plugin's default" where a dtype is optional.
    Invalid = 0,
    F32 = 1,
    F16 = 2,
    BF16 = 3,
    I32 = 4,
    U32 = 5,
    I8 = 6,
    U8 = 7,
    F8E4M3 = 8,
}

impl Dtype {
    pub fn from_i32(v: i32) -> Option<Dtype> {
        Some(match v {
            0 => Dtype::Invalid,
            1 => Dtype::F32,
            2 => Dtype::F16,
            3 => Dtype::BF16,
            4 => Dtype::I32,
            5 => Dtype::U32,
            6 => Dtype::I8,
            7 => Dtype::U8,
            8 => Dtype::F8E4M3,
            _ => return None,
        })
    }
}

/// Host element types that move to and from buffers unchanged.
pub trait Element: Copy + Default {
    const DTYPE: Dtype;
}
impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
}
impl Element for i32 {
    const DTYPE: Dtype = Dtype::I32;
}
impl Element for u32 {
    const DTYPE: Dtype = Dtype::U32;
}
impl Element for i8 {
    const DTYPE: Dtype = Dtype::I8;
}
impl Element for u8 {
    const DTYPE: Dtype = Dtype::U8;
}

/// Number of ops libferrum knows (ids 1 ..= count).
pub fn op_count() -> i32 {
    unsafe { sys::ferrum_host_op_count() }
}

/// The registry name of an op id, or None.
pub fn op_name(op_id: i32) -> Option<String> {
    let p = unsafe { sys::ferrum_host_op_name(op_id) };
    if p.is_null() {
        None
    } else {
        Some(c_string(p))
    }
}

/// One plugin the loader found in the search path, as far as it went.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub name: String,
    pub path: String,
    /// The last stage passed: "found", "trusted", "elf", "opened", "entry", "prefix", "abi",
    /// "probed", "initialized".
    pub stage: String,
    /// Why it stopped ("" when usable).
    pub reason: String,
    pub version: String,
    pub usable: bool,
    pub score: i32,
    pub abi_major: u32,
    pub abi_minor: u32,
    pub device_count: u64,
}

/// Every `libferrum-*.so` in the plugin search path, taken up to "probed" (or "initialized"
/// with `initialize`).
pub fn discover(initialize: bool) -> Result<Vec<Candidate>> {
    let mut list = ptr::null_mut();
    check(unsafe { sys::ferrum_host_discover(initialize as i32, &mut list) })?;
    struct Guard(*mut sys::ferrum_host_candidates);
    impl Drop for Guard {
        fn drop(&mut self) {
            unsafe { sys::ferrum_host_candidates_destroy(self.0) }
        }
    }
    let guard = Guard(list);
    let n = unsafe { sys::ferrum_host_candidates_count(guard.0) };
    let mut out = Vec::new();
    for i in 0..n {
        let mut c = sys::ferrum_host_candidate {
            struct_size: std::mem::size_of::<sys::ferrum_host_candidate>() as u64,
            name: ptr::null(),
            path: ptr::null(),
            stage: ptr::null(),
            reason: ptr::null(),
            version: ptr::null(),
            usable: 0,
            score: 0,
            abi_major: 0,
            abi_minor: 0,
            device_count: 0,
        };
        check(unsafe { sys::ferrum_host_candidates_get(guard.0, i, &mut c) })?;
        out.push(Candidate {
            name: c_string(c.name),
            path: c_string(c.path),
            stage: c_string(c.stage),
            reason: c_string(c.reason),
            version: c_string(c.version),
            usable: c.usable != 0,
            score: c.score,
            abi_major: c.abi_major,
            abi_minor: c.abi_minor,
            device_count: c.device_count,
        });
    }
    Ok(out)
}

/// What a loaded backend is.
#[derive(Clone, Debug)]
pub struct BackendInfo {
    pub name: String,
    pub version: String,
    pub abi_version: String,
    pub build_info: String,
    pub path: String,
    pub device_count: u64,
    pub selected_device: u64,
}

/// One loaded plugin. Shareable between threads (the facade's const methods are thread-safe).
pub struct Backend {
    raw: *mut sys::ferrum_host_backend,
}

unsafe impl Send for Backend {}
unsafe impl Sync for Backend {}

impl Backend {
    /// Loads a backend: "" = FERRUM_BACKEND > config file > auto; "auto"; a name ("cpu",
    /// "cuda:1"); or a path to a plugin .so. A failure's message lists every candidate.
    pub fn load(spec: &str) -> Result<Backend> {
        let spec = CString::new(spec).map_err(|_| Error {
            status: sys::FERRUM_STATUS_INVALID_ARGUMENT,
            message: "Backend::load: argument 'spec': expected a string without NUL bytes".to_string(),
        })?;
        let mut raw = ptr::null_mut();
        check(unsafe { sys::ferrum_host_backend_load(spec.as_ptr(), &mut raw) })?;
        Ok(Backend { raw })
    }

    pub fn info(&self) -> Result<BackendInfo> {
        let mut i = sys::ferrum_host_backend_info {
            struct_size: std::mem::size_of::<sys::ferrum_host_backend_info>() as u64,
            name: ptr::null(),
            version: ptr::null(),
            abi_version: ptr::null(),
            build_info: ptr::null(),
            path: ptr::null(),
            device_count: 0,
            selected_device: 0,
        };
        check(unsafe { sys::ferrum_host_backend_get_info(self.raw, &mut i) })?;
        Ok(BackendInfo {
            name: c_string(i.name),
            version: c_string(i.version),
            abi_version: c_string(i.abi_version),
            build_info: c_string(i.build_info),
            path: c_string(i.path),
            device_count: i.device_count,
            selected_device: i.selected_device,
        })
    }

    /// Whether the plugin has a slot for the op or the facade composes it.
    pub fn supports(&self, op_id: i32) -> Result<bool> {
        let mut s = 0;
        check(unsafe { sys::ferrum_host_backend_supports(self.raw, op_id, &mut s) })?;
        Ok(s != 0)
    }

    /// A new context on `device` (None: the backend's selected device) with default activation
    /// dtype `activation` (Dtype::Invalid: the plugin's).
    pub fn create_context(&self, device: Option<u64>, activation: Dtype) -> Result<Context> {
        let mut raw = ptr::null_mut();
        let dev = device.unwrap_or(sys::FERRUM_HOST_DEFAULT_DEVICE);
        check(unsafe { sys::ferrum_host_context_create(self.raw, dev, activation as i32, &mut raw) })?;
        Ok(Context { raw })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        unsafe { sys::ferrum_host_backend_destroy(self.raw) }
    }
}

/// One stream on one device. Used by one thread at a time (Send, not Sync). Ops run
/// asynchronously until [`Context::sync`] or a read.
pub struct Context {
    raw: *mut sys::ferrum_host_context,
}

unsafe impl Send for Context {}

impl Context {
    /// The context's activation dtype.
    pub fn activation_dtype(&self) -> Dtype {
        Dtype::from_i32(unsafe { sys::ferrum_host_context_activation_dtype(self.raw) }).unwrap_or(Dtype::Invalid)
    }

    /// Waits for every op enqueued on the context.
    pub fn sync(&mut self) -> Result<()> {
        check(unsafe { sys::ferrum_host_sync(self.raw) })
    }

    /// Runs any op with its args struct: the facade's checks (struct_size, buffer handles,
    /// dtypes, sizes against the buffers, aliasing), then the plugin's slot or the facade
    /// default.
    ///
    /// # Safety
    /// Host pointers in `args` (inputs and outputs such as `data`, `ids`, `out` of host kind)
    /// must point to memory of the length the op reads or writes, valid for the call. Buffer
    /// fields must hold handles of live buffers (from [`Buffer::raw`]) or NULL.
    pub unsafe fn call<A: OpArgs>(&mut self, args: &A) -> Result<()> {
        check(sys::ferrum_host_call(self.raw, A::ID, args as *const A as *const c_void))
    }

    /// Would `call(args)` run? `Ok(None)`: yes; `Ok(Some(reason))`: no, and why.
    pub fn query_support<A: OpArgs>(&mut self, args: &A) -> Result<Option<String>> {
        let mut supported = 0;
        let mut reason = vec![0 as c_char; 1024];
        check(unsafe {
            sys::ferrum_host_query_support(
                self.raw,
                A::ID,
                args as *const A as *const c_void,
                &mut supported,
                reason.as_mut_ptr(),
                reason.len(),
            )
        })?;
        Ok(if supported != 0 { None } else { Some(c_string(reason.as_ptr())) })
    }

    /// A new buffer of `n` elements of `dtype` (contents unspecified).
    pub fn alloc(&mut self, dtype: Dtype, n: u64) -> Result<Buffer> {
        let mut raw = ptr::null_mut();
        check(unsafe { sys::ferrum_host_buffer_alloc(self.raw, dtype as i32, n, &mut raw) })?;
        Ok(Buffer { raw })
    }

    /// A new buffer holding a copy of `data` (dtype of `T`).
    pub fn upload<T: Element>(&mut self, data: &[T]) -> Result<Buffer> {
        let mut raw = ptr::null_mut();
        check(unsafe {
            sys::ferrum_host_buffer_from_host(
                self.raw,
                T::DTYPE as i32,
                data.as_ptr() as *const c_void,
                data.len() as u64,
                &mut raw,
            )
        })?;
        Ok(Buffer { raw })
    }

    /// Writes `data` into the buffer from element 0.
    pub fn write<T: Element>(&mut self, buf: &mut Buffer, data: &[T]) -> Result<()> {
        check(unsafe {
            sys::ferrum_host_buffer_write(self.raw, buf.raw, T::DTYPE as i32, data.as_ptr() as *const c_void, data.len() as u64)
        })
    }

    /// Reads the first `n` elements as `T` (the read_typed op's rules); waits for the context's
    /// work first.
    pub fn read<T: Element>(&mut self, buf: &Buffer, n: usize) -> Result<Vec<T>> {
        let mut out = vec![T::default(); n];
        check(unsafe {
            sys::ferrum_host_buffer_read(self.raw, buf.raw, T::DTYPE as i32, out.as_mut_ptr() as *mut c_void, n as u64)
        })?;
        Ok(out)
    }

    /// Takes ownership of a buffer handle an op returned on this context's plugin (alloc,
    /// from_slice, ...). On failure the handle is released.
    ///
    /// # Safety
    /// `raw` must be a handle the plugin returned and nobody else owns.
    pub unsafe fn adopt(&mut self, raw: *mut sys::ferrum_buffer) -> Result<Buffer> {
        let mut out = ptr::null_mut();
        check(sys::ferrum_host_buffer_adopt(self.raw, raw, &mut out))?;
        Ok(Buffer { raw: out })
    }

    /// `alloc(len)` of the registry: `len` elements of the context's activation dtype.
    pub fn alloc_activation(&mut self, len: u64) -> Result<Buffer> {
        let mut h: *mut sys::ferrum_buffer = ptr::null_mut();
        let a = sys::ferrum_alloc_args { len, buffer: &mut h, ..Default::default() };
        unsafe {
            self.call(&a)?;
            self.adopt(h)
        }
    }

    /// `from_slice` of the registry: f32 host values converted to the activation dtype.
    pub fn from_f32_to_activation(&mut self, data: &[f32]) -> Result<Buffer> {
        let mut h: *mut sys::ferrum_buffer = ptr::null_mut();
        let a = sys::ferrum_from_slice_args {
            data: data.as_ptr(),
            data_len: data.len() as u64,
            buffer: &mut h,
            ..Default::default()
        };
        unsafe {
            self.call(&a)?;
            self.adopt(h)
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        unsafe { sys::ferrum_host_context_destroy(self.raw) }
    }
}

/// Device memory of one plugin (dtype and element count fixed at creation).
pub struct Buffer {
    raw: *mut sys::ferrum_host_buffer,
}

unsafe impl Send for Buffer {}

impl Buffer {
    /// The plugin's handle, for the buffer fields of args structs (borrowed).
    pub fn raw(&self) -> *mut sys::ferrum_buffer {
        unsafe { sys::ferrum_host_buffer_raw(self.raw) }
    }
    pub fn dtype(&self) -> Dtype {
        self.info().0
    }
    /// Element count.
    pub fn len(&self) -> u64 {
        self.info().1
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn info(&self) -> (Dtype, u64) {
        let (mut d, mut n) = (0i32, 0u64);
        unsafe { sys::ferrum_host_buffer_info(self.raw, &mut d, &mut n) };
        (Dtype::from_i32(d).unwrap_or(Dtype::Invalid), n)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        unsafe { sys::ferrum_host_buffer_destroy(self.raw) }
    }
}

#[cfg(test)]
mod tests {
    use super::sys;

    #[test]
    fn args_struct_sizes_match_the_registry_layout() {
        for (name, rust, registry) in sys::args_sizes() {
            assert_eq!(rust as u64, registry, "{name}: size_of in Rust != the C header's size");
        }
    }

    #[test]
    fn defaults_set_struct_size() {
        let a = sys::ferrum_gemm_args::default();
        assert_eq!(a.struct_size, sys::FERRUM_GEMM_ARGS_SIZE);
        assert!(a.a.is_null() && a.out.is_null());
    }
}
