//! The state of a supervised service.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Stopped,
    Starting,
    Ready,
    Unhealthy,
    Backoff,
    Failed,
    Stopping,
    /// An on-demand service with no server running: the next request that names it loads it.
    Idle,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Ready => "ready",
            State::Unhealthy => "unhealthy",
            State::Backoff => "backoff",
            State::Failed => "failed",
            State::Stopping => "stopping",
            State::Idle => "idle",
        }
    }
    /// A process of ours is (supposed to be) running.
    pub fn is_running(self) -> bool {
        matches!(self, State::Starting | State::Ready | State::Unhealthy)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a client asks of a service (`POST /v1/services/{name}/{verb}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Start,
    Stop,
    Restart,
    /// Stop the server of an on-demand service and leave it idle (the next request loads it again).
    Unload,
}

impl Verb {
    pub const ALL: [Verb; 4] = [Verb::Start, Verb::Stop, Verb::Restart, Verb::Unload];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::Unload => "unload",
        }
    }

    pub fn parse(s: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
