//! The clients' side of mlx-box, free of the daemon: the control client (HTTP/JSON over the daemon's Unix
//! socket, or over TLS to another host's daemon with its certificate pinned: `pin`), the menu-bar app's commands (`app`) and the fold of daemon events into what the menu bar shows
//! (`menubar`). The CLI and the Tauri app link this, not the daemon: `src-tauri` carries no server.

pub mod app;
pub mod chat;
pub mod control;
pub mod menubar;
pub mod pin;
