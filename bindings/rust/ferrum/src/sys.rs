//! Raw bindings: the op registry's args structs and ids (generated from abi/registry/ops.txt by
//! tools/abigen/gen_rust.py at build time) and the host C API of `ferrum/ferrum_host.h`.
#![allow(non_camel_case_types, non_upper_case_globals, clippy::all)]

use std::os::raw::{c_char, c_void};

include!(concat!(env!("OUT_DIR"), "/sys_gen.rs"));

pub type ferrum_status = i32;

pub const FERRUM_STATUS_OK: ferrum_status = 0;
pub const FERRUM_STATUS_UNSUPPORTED: ferrum_status = 1;
pub const FERRUM_STATUS_INVALID_ARGUMENT: ferrum_status = 2;
pub const FERRUM_STATUS_OUT_OF_MEMORY: ferrum_status = 3;
pub const FERRUM_STATUS_DEVICE_ERROR: ferrum_status = 4;
pub const FERRUM_STATUS_ABI_MISMATCH: ferrum_status = 5;
pub const FERRUM_STATUS_INTERNAL: ferrum_status = 6;
pub const FERRUM_HOST_STATUS_LOAD_FAILED: ferrum_status = 100;
pub const FERRUM_HOST_STATUS_CONFIG_ERROR: ferrum_status = 101;
pub const FERRUM_HOST_DEFAULT_DEVICE: u64 = u64::MAX;

pub const FERRUM_QK_MODE_COPY: i32 = 0;
pub const FERRUM_QK_MODE_NORM_NEOX: i32 = 1;
pub const FERRUM_QK_MODE_NEOX: i32 = 2;
pub const FERRUM_QK_MODE_GPTJ: i32 = 3;

#[repr(C)]
pub struct ferrum_host_backend {
    _private: [u8; 0],
}
#[repr(C)]
pub struct ferrum_host_context {
    _private: [u8; 0],
}
#[repr(C)]
pub struct ferrum_host_buffer {
    _private: [u8; 0],
}
#[repr(C)]
pub struct ferrum_host_candidates {
    _private: [u8; 0],
}
/// The plugin's API table (opaque here).
#[repr(C)]
pub struct ferrum_plugin_api {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ferrum_host_backend_info {
    pub struct_size: u64,
    pub name: *const c_char,
    pub version: *const c_char,
    pub abi_version: *const c_char,
    pub build_info: *const c_char,
    pub path: *const c_char,
    pub device_count: u64,
    pub selected_device: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ferrum_host_candidate {
    pub struct_size: u64,
    pub name: *const c_char,
    pub path: *const c_char,
    pub stage: *const c_char,
    pub reason: *const c_char,
    pub version: *const c_char,
    pub usable: i32,
    pub score: i32,
    pub abi_major: u32,
    pub abi_minor: u32,
    pub device_count: u64,
}

extern "C" {
    pub fn ferrum_host_last_error_status() -> ferrum_status;
    pub fn ferrum_host_last_error_message() -> *const c_char;
    pub fn ferrum_host_status_name(status: ferrum_status) -> *const c_char;
    pub fn ferrum_host_op_count() -> i32;
    pub fn ferrum_host_op_name(op_id: i32) -> *const c_char;

    pub fn ferrum_host_backend_load(spec: *const c_char, out: *mut *mut ferrum_host_backend) -> ferrum_status;
    pub fn ferrum_host_backend_destroy(backend: *mut ferrum_host_backend);
    pub fn ferrum_host_backend_get_info(
        backend: *const ferrum_host_backend,
        info: *mut ferrum_host_backend_info,
    ) -> ferrum_status;
    pub fn ferrum_host_backend_supports(
        backend: *const ferrum_host_backend,
        op_id: i32,
        supported: *mut i32,
    ) -> ferrum_status;
    pub fn ferrum_host_backend_api(backend: *const ferrum_host_backend) -> *const ferrum_plugin_api;

    pub fn ferrum_host_discover(initialize: i32, out: *mut *mut ferrum_host_candidates) -> ferrum_status;
    pub fn ferrum_host_candidates_destroy(list: *mut ferrum_host_candidates);
    pub fn ferrum_host_candidates_count(list: *const ferrum_host_candidates) -> u64;
    pub fn ferrum_host_candidates_get(
        list: *const ferrum_host_candidates,
        index: u64,
        out: *mut ferrum_host_candidate,
    ) -> ferrum_status;

    pub fn ferrum_host_context_create(
        backend: *const ferrum_host_backend,
        device: u64,
        activation_dtype: i32,
        out: *mut *mut ferrum_host_context,
    ) -> ferrum_status;
    pub fn ferrum_host_context_destroy(ctx: *mut ferrum_host_context);
    pub fn ferrum_host_context_activation_dtype(ctx: *const ferrum_host_context) -> i32;
    pub fn ferrum_host_sync(ctx: *mut ferrum_host_context) -> ferrum_status;
    pub fn ferrum_host_call(ctx: *mut ferrum_host_context, op_id: i32, args: *const c_void) -> ferrum_status;
    pub fn ferrum_host_query_support(
        ctx: *mut ferrum_host_context,
        op_id: i32,
        args: *const c_void,
        supported: *mut i32,
        reason: *mut c_char,
        reason_cap: usize,
    ) -> ferrum_status;

    pub fn ferrum_host_buffer_alloc(
        ctx: *mut ferrum_host_context,
        dtype: i32,
        n: u64,
        out: *mut *mut ferrum_host_buffer,
    ) -> ferrum_status;
    pub fn ferrum_host_buffer_from_host(
        ctx: *mut ferrum_host_context,
        dtype: i32,
        data: *const c_void,
        n: u64,
        out: *mut *mut ferrum_host_buffer,
    ) -> ferrum_status;
    pub fn ferrum_host_buffer_write(
        ctx: *mut ferrum_host_context,
        buf: *mut ferrum_host_buffer,
        dtype: i32,
        data: *const c_void,
        n: u64,
    ) -> ferrum_status;
    pub fn ferrum_host_buffer_read(
        ctx: *mut ferrum_host_context,
        buf: *const ferrum_host_buffer,
        dtype: i32,
        data: *mut c_void,
        n: u64,
    ) -> ferrum_status;
    pub fn ferrum_host_buffer_adopt(
        ctx: *mut ferrum_host_context,
        raw: *mut ferrum_buffer,
        out: *mut *mut ferrum_host_buffer,
    ) -> ferrum_status;
    pub fn ferrum_host_buffer_destroy(buf: *mut ferrum_host_buffer);
    pub fn ferrum_host_buffer_raw(buf: *const ferrum_host_buffer) -> *mut ferrum_buffer;
    pub fn ferrum_host_buffer_info(buf: *const ferrum_host_buffer, dtype: *mut i32, count: *mut u64) -> ferrum_status;
}
