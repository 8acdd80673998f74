//! The daemon's side of `[control] listen`: binds (and rebinds when the setting changes) the TLS
//! listener with the daemon's identity and the key service's tokens. Owns the `remote-control` alert
//! (the port cannot be bound, or the certificate cannot be made or read).

use crate::alerts::AlertSource;
use crate::api::AlertSeverity;
use crate::services::Services;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct RemoteControl {
    services: Arc<Services>,
    alerts: AlertSource,
    serving: Option<(SocketAddr, crate::task::AbortOnDrop)>,
}

impl RemoteControl {
    pub fn new(services: &Arc<Services>) -> Self {
        RemoteControl {
            alerts: services.alerts.source("remote-control"),
            services: services.clone(),
            serving: None,
        }
    }

    /// Follows the applied settings' `[control] listen`.
    pub async fn apply(&mut self) {
        let want = match self.services.supervisor.settings().await {
            Some(s) => s.control.listen,
            None => return,
        };
        if self.serving.as_ref().map(|s| s.0) == want {
            return;
        }
        self.serving = None; // the old port closes before the new one binds
        let Some(addr) = want else {
            self.alerts.clear("remote-control");
            return;
        };
        let dir = self.services.state_dir.clone();
        let tls = tokio::task::spawn_blocking(move || {
            let id = super::identity::load_or_make(&dir)?;
            super::identity::server_config(&id)
        })
        .await
        .map_err(|e| super::RemoteError::Tls(e.to_string()))
        .and_then(|r| r);
        let tls = match tls {
            Ok(t) => Arc::new(t),
            Err(e) => return self.alert(addr, e.to_string()),
        };
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                self.alerts.clear("remote-control");
                let app = crate::control::server::router(self.services.clone());
                let tokens = self.services.keys.tokens();
                let task = tokio::spawn(super::listen::serve(l, tls, app, tokens));
                tracing::info!(%addr, "remote control API listening (TLS)");
                self.serving = Some((addr, crate::task::AbortOnDrop(task)));
            }
            Err(e) => self.alert(
                addr,
                format!("cannot listen on {addr}: {e}; is another program using it? change [control] listen"),
            ),
        }
    }

    fn alert(&self, addr: SocketAddr, why: String) {
        self.alerts.raise(
            "remote-control",
            AlertSeverity::Warning,
            "The control API is not served to other hosts",
            format!("[control] listen = \"{addr}\": {why}"),
        );
    }
}
