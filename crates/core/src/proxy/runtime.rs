//! The proxy's threads.

use std::sync::OnceLock;

/// The threads the frontend listeners run on: each a single-threaded tokio runtime (like nginx's worker
/// processes), all accepting on the same sockets. `MLXBOX_PROXY_THREADS` overrides the count (default:
/// the number of CPUs, at most 4: a proxy in front of local LLMs is never the bottleneck beyond that).
pub(super) fn proxy_runtimes() -> &'static [tokio::runtime::Handle] {
    static RT: OnceLock<Vec<tokio::runtime::Handle>> = OnceLock::new();
    RT.get_or_init(|| {
        let n = std::env::var("MLXBOX_PROXY_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
                    .min(4)
            })
            .clamp(1, 64);
        (0..n)
            .map(|i| {
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::Builder::new()
                    .name(format!("mlx-box-proxy-{i}"))
                    .spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("proxy runtime");
                        let _ = tx.send(rt.handle().clone());
                        rt.block_on(super::backend::sweep_idle());
                    })
                    .expect("proxy thread");
                rx.recv().expect("proxy runtime handle")
            })
            .collect()
    })
}
