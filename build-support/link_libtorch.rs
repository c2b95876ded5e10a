//! Build script shared by every Atelier crate (each names it as `build = ...`).
//!
//! torch-sys tells its direct dependents where libtorch lives (`DEP_TCH_LIBTORCH_LIB`). We use
//! it twice: an rpath, so binaries and test executables run without `LD_LIBRARY_PATH`; and an
//! explicit `--no-as-needed` link of `libtorch_cuda`, since no Rust symbol references it and
//! the linker would otherwise drop it, leaving `tch::Cuda::is_available()` always false.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    if Path::new(&lib_dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={lib_dir}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
