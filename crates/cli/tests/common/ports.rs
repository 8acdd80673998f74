//! Ports for the servers a test or bench starts. Chosen below the kernel's ephemeral range (Linux
//! 32768–60999, macOS 49152–65535) so that no outgoing connection's local port can take one between
//! choosing it and the server binding it, and never the same port twice in one process: `bind(":0")`
//! gives neither guarantee (CI once saw a bench's nginx port never open).

use std::sync::atomic::{AtomicU32, Ordering};

const LOW: u32 = 20_000;
const SPAN: u32 = 12_000; // up to 31999

static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

pub fn free_port() -> u16 {
    // Each process starts at its own offset, so test binaries run one after another do not reuse a port
    // that a previous one's server may still hold in TIME_WAIT.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}
