//! Small task helpers shared by the daemon's parts.

/// Aborts its task when dropped: a helper task lives exactly as long as what owns this.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
