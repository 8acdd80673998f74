// No console window on Windows release builds (the app is macOS-first; harmless elsewhere).
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    mlx_box_app::run()
}
