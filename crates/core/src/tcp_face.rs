//! The daemon's TCP faces (`[metrics] listen`, `[control] listen`): each bound where the settings say,
//! rebound when they change, with one alert when it cannot be set up or bound.

use crate::services::Services;
use std::sync::Arc;

/// What a TCP face serves on a listener: made before the bind (blocking work such as the certificate
/// happens there), then started on the bound listener, through the gate.
type Starter = Box<dyn FnOnce(std::net::TcpListener) -> crate::gate::Listener + Send>;

/// A TCP face of the daemon, bound where the settings say and rebound when they change (the old port
/// closes first). Owns one alert: the face cannot be set up or its port bound.
pub struct TcpFace {
    services: Arc<Services>,
    alerts: crate::alerts::AlertSource,
    alert: &'static str,
    title: &'static str,
    setting: &'static str,
    addr_of: fn(&crate::config::Settings) -> Option<std::net::SocketAddr>,
    prepare: fn(&Arc<Services>, std::net::SocketAddr) -> Result<Starter, String>,
    serving: Option<(std::net::SocketAddr, crate::gate::Listener)>,
}

impl crate::services::Face for TcpFace {
    fn apply<'a>(
        &'a mut self,
        settings: &'a crate::config::Settings,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(self.apply_now(settings))
    }
}

impl TcpFace {
    /// `[metrics] listen`: `/metrics` for Prometheus (the control socket always has it), open on
    /// loopback and behind the API keys elsewhere.
    pub fn metrics(services: &Arc<Services>) -> Self {
        TcpFace {
            services: services.clone(),
            alerts: services.alerts.source("metrics"),
            alert: "metrics",
            title: "/metrics is not served on TCP",
            setting: "[metrics] listen",
            addr_of: |s| s.metrics.listen,
            prepare: |services, addr| {
                let face = crate::control::server::MetricsFace::new(
                    services.clone(),
                    addr.ip().is_loopback(),
                );
                Ok(Box::new(move |l| {
                    crate::gate::Listener::start(l, crate::gate::Spec::metrics(), face)
                }))
            },
            serving: None,
        }
    }

    /// `[control] listen`: the remote control API over TLS (`remote/`), with the daemon's identity
    /// (made at first start) and the key service's tokens.
    pub fn remote_control(services: &Arc<Services>) -> Self {
        TcpFace {
            services: services.clone(),
            alerts: services.alerts.source("remote-control"),
            alert: "remote-control",
            title: "The control API is not served to other hosts",
            setting: "[control] listen",
            addr_of: |s| s.control.listen,
            prepare: |services, _| {
                let id = crate::remote::identity::load_or_make(&services.state_dir)
                    .map_err(|e| e.to_string())?;
                let tls = crate::remote::identity::server_config(&id).map_err(|e| e.to_string())?;
                let face = crate::remote::listen::ControlFace::new(
                    crate::control::server::router(services.clone()),
                    services.keys.tokens(),
                );
                Ok(Box::new(move |l| {
                    crate::gate::Listener::start(l, crate::gate::Spec::control(Arc::new(tls)), face)
                }))
            },
            serving: None,
        }
    }

    /// Binds, rebinds or closes the face to match `settings`.
    async fn apply_now(&mut self, settings: &crate::config::Settings) {
        let want = (self.addr_of)(settings);
        if self.serving.as_ref().map(|s| s.0) == want {
            return;
        }
        if let Some((_, old)) = self.serving.take() {
            old.close().await; // the old port closes before the new one binds
        }
        let Some(addr) = want else {
            self.alerts.clear(self.alert);
            return;
        };
        let (services, prepare) = (self.services.clone(), self.prepare);
        let start = match tokio::task::spawn_blocking(move || prepare(&services, addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return self.raise(addr, e),
            Err(e) => return self.raise(addr, e.to_string()),
        };
        match crate::gate::bind(&addr.to_string()) {
            Ok(l) => {
                self.alerts.clear(self.alert);
                tracing::info!(%addr, setting = self.setting, "listening");
                self.serving = Some((addr, start(l)));
            }
            Err(e) => self.raise(
                addr,
                format!("cannot listen on it: {e}; is another program using it? change the port"),
            ),
        }
    }

    fn raise(&self, addr: std::net::SocketAddr, why: String) {
        self.alerts.raise(
            self.alert,
            crate::api::AlertSeverity::Warning,
            self.title,
            format!("{} = \"{addr}\": {why}", self.setting),
        );
    }
}
