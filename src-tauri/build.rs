fn main() {
    // generate_context! embeds ../ui/dist at compile time, but a proc macro cannot tell cargo to watch it:
    // watching it here re-runs this script, which recompiles the crate, so a new front-end build is picked up.
    println!("cargo:rerun-if-changed=../ui/dist");
    tauri_build::build()
}
