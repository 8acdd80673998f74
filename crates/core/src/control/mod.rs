//! The local control API: HTTP/JSON on a Unix socket (0600) in the state dir. The CLI and the menu-bar
//! app are its clients (`mlxbox-client`); a remote Mac will later speak the same API over TCP with a token.

pub mod server;
