//! Builds the guest workspace (`plugins/`, with the SDK) for wasm32-wasip2, so a
//! plain `cargo build` or `cargo test` of the host also builds every plugin and the
//! binary can bundle them. This is wasmtime's `test-programs/artifacts` pattern.
//!
//! The plugins are a separate workspace with their own target directory: sharing
//! the host's would unify dependency features across host and guest and rebuild
//! wasmtime, and a nested cargo on the same target directory would deadlock on
//! its lock.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    // host/engine → the repository root.
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    for dir in ["plugins", "sdk", "wit"] {
        watch(&root.join(dir));
    }
    // The watched paths are absolute: rerun when this build is of another checkout
    // (set by the repository's .cargo/config.toml).
    println!("cargo:rerun-if-env-changed=WEIR_CHECKOUT");

    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out: put the guest target
    // directory beside the host's profiles, so it shares the host's target dir.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_root = out_dir.ancestors().nth(4).unwrap().to_path_buf();
    // One guest target directory per source tree: two checkouts sharing a host
    // target directory must not overwrite each other's plugins.
    let tree = {
        use std::hash::{Hash, Hasher};
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        root.hash(&mut h);
        format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
    };
    let guest_target = target_root.join("wasm-plugins").join(tree);

    ensure_guest_target();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root.join("plugins"))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&guest_target);
    // The outer build's flags and settings are for the host target, not the guest.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_PROFILE_") || key.starts_with("CARGO_FEATURE_") {
            cmd.env_remove(key);
        }
    }
    let output = cmd.output().expect("run cargo to build the plugins");
    if !output.status.success() {
        panic!(
            "building the plugins (plugins/, target wasm32-wasip2) failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wasm_dir = guest_target.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=WEIR_PLUGIN_DIR={}", wasm_dir.display());
}

const GUEST_TARGET: &str = "wasm32-wasip2";

/// Makes sure the guest target's standard library is installed, before anything is
/// built for it.
///
/// Why here: `rust-toolchain.toml` lists the target, but rustup installs listed targets
/// only when it installs the toolchain itself; a machine that already had Rust 1.95 (an
/// image, a laptop) lacks the target, and the nested build would then fail minutes later
/// under hundreds of lines. This script runs before wasmtime is compiled, so a newcomer
/// gets the target installed by rustup, or one line saying what to run, within seconds.
fn ensure_guest_target() {
    if guest_std_installed() {
        return;
    }
    // rustup's proxies set RUSTUP_TOOLCHAIN for the toolchain they chose (the pinned one).
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", GUEST_TARGET]);
    if let Some(toolchain) = &toolchain {
        rustup.args(["--toolchain", toolchain]);
    }
    println!(
        "cargo:warning=installing the {GUEST_TARGET} target with rustup (the plugins are built for it)"
    );
    let installed = rustup.status().map(|s| s.success()).unwrap_or(false);
    if !installed || !guest_std_installed() {
        eprintln!(
            "\nerror: the Rust target {GUEST_TARGET} is not installed and rustup could not add it; \
             run `rustup target add {GUEST_TARGET}` (or install your distribution's rust-std for it), then build again.\n"
        );
        std::process::exit(1);
    }
}

/// True when the compiler's sysroot holds the guest target's standard library.
fn guest_std_installed() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(GUEST_TARGET)
        .join("lib")
        .is_dir()
}

fn watch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') && path.is_dir() {
            continue;
        }
        if path.is_dir() {
            watch(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
