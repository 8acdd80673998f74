//! Multi-host test kit: network namespaces joined by veth pairs (198.18.0.0/15 only), and a delaying TCP
//! relay (this kernel has no netem).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A network namespace joined to this one by a veth pair, addressed in 198.18.0.0/15; removed (with the
/// pair) when dropped.
pub struct Netns {
    pub name: String,
    /// (this side, the namespace's side)
    pub addrs: (String, String),
}

impl Netns {
    pub fn new() -> Netns {
        let id = std::process::id() % 60_000;
        let name = format!("mlxbox-t{id}");
        let (host, peer) = (format!("mbh{id}"), format!("mbp{id}"));
        let net = format!("198.18.{}.", 1 + id % 250);
        let (a, b) = (format!("{net}1"), format!("{net}2"));
        // A namespace of the same name left by an earlier run that was killed.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let n = Netns {
            name: name.clone(),
            addrs: (a.clone(), b.clone()),
        };
        let run = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().unwrap();
            assert!(
                o.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        run(&["netns", "add", &name]);
        run(&["link", "add", &host, "type", "veth", "peer", "name", &peer]);
        run(&["link", "set", &peer, "netns", &name]);
        run(&["addr", "add", &format!("{a}/24"), "dev", &host]);
        run(&["link", "set", &host, "up"]);
        for args in [
            vec!["addr", "add", &format!("{b}/24"), "dev", &peer],
            vec!["link", "set", &peer, "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["netns", "exec", &name, "ip"];
            full.extend(args.iter().copied());
            run(&full);
        }
        n
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and so the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A TCP relay that holds every chunk for `delay_ms` before passing it on, each way: the latency this
/// kernel cannot add by itself (no netem).
pub struct Relay {
    pub port: u16,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    pub fn start(to: String) -> Relay {
        Relay::start_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), to)
    }

    /// A relay on a listener the caller bound (a port of its choosing).
    pub fn start_on(l: std::net::TcpListener, to: String) -> Relay {
        use std::sync::atomic::Ordering;
        let port = l.local_addr().unwrap().port();
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let d = delay_ms.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let Ok(up) = std::net::TcpStream::connect(&to) else {
                    continue;
                };
                let _ = (c.set_nodelay(true), up.set_nodelay(true));
                for (mut from, mut into) in
                    [(c.try_clone().unwrap(), up.try_clone().unwrap()), (up, c)]
                {
                    let d = d.clone();
                    std::thread::spawn(move || {
                        use std::io::Read;
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            let ms = d.load(Ordering::Relaxed);
                            if ms > 0 {
                                std::thread::sleep(Duration::from_millis(ms));
                            }
                            if into.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, delay_ms }
    }

    pub fn set_delay(&self, ms: u64) {
        self.delay_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}
