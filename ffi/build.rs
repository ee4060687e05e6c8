//! Bindings are generated at build time: `rte_mbuf`'s layout depends on the
//! DPDK build configuration (RTE_IOVA_AS_PA), so a checked-in file would lie
//! on another build.
//!
//! The cflags come from the `pkg-config` binary itself: they carry
//! `-include rte_config.h -march=corei7`, which `rte_memcpy.h` needs and which
//! the pkg-config crate drops.

// A build script reports failure by panicking: cargo prints the message and
// stops the build.
#![allow(clippy::panic, clippy::expect_used, reason = "a build script fails the build by panicking")]

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|e| panic!("dpdk-sys: cannot run pkg-config ({e}); install pkg-config and libdpdk-dev (scripts/setup.sh)"));
    if !out.status.success() {
        panic!(
            "dpdk-sys: `pkg-config {} libdpdk` failed: {}\ninstall libdpdk-dev (scripts/setup.sh)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    split_flags(&String::from_utf8_lossy(&out.stdout))
}

/// Splits pkg-config output, keeping `-include X` together.
fn split_flags(s: &str) -> Vec<String> {
    let mut flags = Vec::new();
    let mut it = s.split_whitespace();
    while let Some(f) = it.next() {
        if f == "-include" {
            if let Some(h) = it.next() {
                flags.push(format!("-include{h}"));
            }
        } else {
            flags.push(f.to_string());
        }
    }
    flags
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_LIBDIR");

    let static_link = env::var_os("CARGO_FEATURE_STATIC").is_some();
    let cflags = pkg_config(&["--cflags"]);
    let libs = pkg_config(if static_link { &["--static", "--libs"] } else { &["--libs"] });

    // The shim: static-inline fast-path functions turned into real symbols.
    let mut build = cc::Build::new();
    build.file("shim.c").opt_level(3).warnings(false);
    for f in &cflags {
        if let Some(h) = f.strip_prefix("-include") {
            build.flag("-include").flag(h);
        } else {
            build.flag(f);
        }
    }
    build.compile("furiwake_dpdk_shim");

    // Link flags. A library may be listed twice (pkg-config repeats them
    // for ordering); rustc refuses two modifiers for one name, so the first
    // mention wins.
    let mut whole = false;
    let mut seen = std::collections::HashSet::new();
    for f in &libs {
        let name = f.strip_prefix("-l:").map(|l| l.trim_start_matches("lib").trim_end_matches(".a")).or_else(|| f.strip_prefix("-l"));
        if let Some(name) = name {
            if !seen.insert(name.to_string()) {
                continue;
            }
        }
        if let Some(dir) = f.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = f.strip_prefix("-l:") {
            // -l:librte_x.a as pkg-config --static writes it
            let name = lib.trim_start_matches("lib").trim_end_matches(".a");
            let kind = if whole { "static:+whole-archive,-bundle" } else { "static:-bundle" };
            println!("cargo:rustc-link-lib={kind}={name}");
        } else if let Some(lib) = f.strip_prefix("-l") {
            if static_link && lib.starts_with("rte_") {
                let kind = if whole { "static:+whole-archive,-bundle" } else { "static:-bundle" };
                println!("cargo:rustc-link-lib={kind}={lib}");
            } else {
                println!("cargo:rustc-link-lib={lib}");
            }
        } else if f == "-Wl,--whole-archive" {
            whole = true;
        } else if f == "-Wl,--no-whole-archive" {
            whole = false;
        }
    }
    if !static_link {
        // rte_eth_from_rings(): the ring PMD is a plugin, not in `--libs`.
        println!("cargo:rustc-link-lib=rte_net_ring");
        println!("cargo:rustc-link-lib=rte_bus_vdev");
        // rte_eth_bond_*(): the bonding PMD is a plugin too.
        println!("cargo:rustc-link-lib=rte_net_bond");
    }

    let mut clang_args: Vec<String> = Vec::new();
    for f in &cflags {
        if let Some(h) = f.strip_prefix("-include") {
            clang_args.push("-include".into());
            clang_args.push(h.into());
        } else {
            clang_args.push(f.clone());
        }
    }
    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&clang_args)
        .allowlist_function("rte_.*")
        .allowlist_function("fw_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("ETH_.*")
        .allowlist_var("RING_F_.*")
        // RTE_BIT64(n) constants are macros over expressions.
        .clang_macro_fallback()
        // Its bitfields defeat derive(Debug).
        .no_debug("rte_flow_item_gtp_psc")
        // A packed struct holding an aligned one: not expressible in Rust.
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("dpdk-sys: bindgen failed over wrapper.h");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("bindings.rs");
    bindings.write_to_file(&out).expect("dpdk-sys: cannot write bindings");
}
