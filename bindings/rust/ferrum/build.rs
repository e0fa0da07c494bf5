// Generates the raw op bindings from the registry (tools/abigen/gen_rust.py into OUT_DIR) and
// links libferrum.
//
// Environment:
//   FERRUM_LIB_DIR     the directory holding libferrum.so (CTest passes <build>/lib); default:
//                      <repo>/build/lib when it exists, else the system's library path. An rpath
//                      to it is added, so tests and examples run without LD_LIBRARY_PATH.
//   FERRUM_SOURCE_DIR  the ferrum source tree (default: three levels above this crate).
//   PYTHON             the Python 3 interpreter (default: python3).
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = env::var_os("FERRUM_SOURCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../.."));
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("sys_gen.rs");
    let gen = root.join("tools/abigen/gen_rust.py");
    let python = env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let status = Command::new(&python)
        .arg(&gen)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("ferrum build.rs: cannot run {} {}: {}", python, gen.display(), e));
    if !status.success() {
        panic!("ferrum build.rs: {} {} failed ({})", python, gen.display(), status);
    }
    for f in [
        "abi/registry/ops.txt",
        "abi/include/ferrum/ferrum_base.h",
        "tools/abigen/gen_rust.py",
        "tools/abigen/abigen.py",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    println!("cargo:rerun-if-env-changed=FERRUM_LIB_DIR");
    println!("cargo:rerun-if-env-changed=FERRUM_SOURCE_DIR");

    let lib_dir = env::var_os("FERRUM_LIB_DIR").map(PathBuf::from).or_else(|| {
        let d = root.join("build/lib");
        if d.join("libferrum.so").exists() {
            Some(d)
        } else {
            None
        }
    });
    if let Some(dir) = lib_dir {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
    println!("cargo:rustc-link-lib=dylib=ferrum");
}
