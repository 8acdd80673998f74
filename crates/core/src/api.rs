//! The control API's types live in the `mlxbox-api` crate (the wire, shared with every client).

pub use mlxbox_api::now_ms;
pub use mlxbox_api::proxy::{MemberHealth, PoolMemberStatus, PoolStatus};
pub use mlxbox_api::status::*;
