fn main() {
    // generate_context! embeds ../ui/dist at compile time, but a proc macro cannot tell cargo to watch it:
    // watching it here re-runs this script, which recompiles the crate, so a new front-end build is picked up.
    println!("cargo:rerun-if-changed=../ui/dist");
    // The bundle carries the daemon: tauri.conf.json names `mlx-box` as an external binary, which the
    // bundler (`tauri bundle`, `tauri build`) takes from binaries/mlx-box-<target triple> — a bundle without
    // it is refused — and puts beside the app (scripts/release.sh copies it there). A compile makes no
    // bundle, so it goes without: tauri-build would otherwise refuse every `cargo build`, `clippy` and
    // `test` of the app until a daemon was copied there, and copy that file over the workspace's own
    // target/<profile>/mlx-box. `TAURI_CONFIG` is the merge patch tauri-build applies to the config.
    let mut patch: serde_json::Value = match std::env::var("TAURI_CONFIG") {
        Ok(s) => serde_json::from_str(&s).expect("TAURI_CONFIG is not JSON"),
        Err(_) => serde_json::json!({}),
    };
    patch["bundle"]["externalBin"] = serde_json::Value::Null;
    std::env::set_var("TAURI_CONFIG", patch.to_string());
    tauri_build::build()
}
