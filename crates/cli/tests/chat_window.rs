//! The Chat window's side (`mlxbox_client::chat`) against a real daemon: it streams through the
//! service's frontend like any client, and when the frontend asks for a key (one exists) it makes the
//! app's own key once, keeps it in `<state>/app-key.json` (0600), and is let through; a daemon with no
//! key at all is not given one (that would close the open loopback frontends to every other client).

mod common;
use common::*;
use mlxbox_client::app::AppCore;
use mlxbox_client::chat::{ChatEvent, ChatMessage, ChatSend};
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

fn proxied(front: u16, back: u16) -> String {
    format!(
        "[services.chat]\nkind = \"command\"\nport = {front}\nbackend_port = {back}\nprobe = \"chat\"\ncommand = [\"python3\", \"{}\", \"--mode\", \"ok\", \"--think\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\"]\n",
        fault_server()
    )
}

fn send(core: &AppCore, id: &str) -> Vec<ChatEvent> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut events = vec![];
    let request = ChatSend {
        id: id.into(),
        target: "chat".into(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "hi".into(),
            image: None,
        }],
        max_tokens: Some(16),
    };
    rt.block_on(async {
        tokio::time::timeout(60 * S, core.chat_stream(request, |e| events.push(e))).await
    })
    .expect("the reply ends");
    events
}

fn reply(events: &[ChatEvent]) -> (String, String) {
    let (mut content, mut reasoning) = (String::new(), String::new());
    for e in events {
        if let ChatEvent::Delta {
            content: c,
            reasoning: r,
            ..
        } = e
        {
            content.push_str(c);
            reasoning.push_str(r);
        }
    }
    (content, reasoning)
}

#[test]
fn the_chat_window_streams_through_the_gate_with_a_key_of_its_own() {
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start_without_dbus(&proxied(front, back));
    d.wait_state("chat", "ready", 30 * S);
    let core = AppCore::new(d.state.clone());
    let key_file = d.state.join("app-key.json");

    // Open frontends (no key at all): the window gets its reply and makes no key.
    let events = send(&core, "r1");
    assert!(
        matches!(events.last(), Some(ChatEvent::Done { .. })),
        "{events:?}"
    );
    let (content, reasoning) = reply(&events);
    assert!(
        !content.is_empty() && !content.contains("<think>"),
        "{events:?}"
    );
    assert!(
        !reasoning.is_empty(),
        "the reasoning comes apart: {events:?}"
    );
    assert!(
        !key_file.exists(),
        "no key made while the frontends are open"
    );

    // Someone adds a key: the frontend now wants one, and the window makes its own once.
    let out = d.cli(&["keys", "add", "--name", "laptop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = send(&core, "r2");
    assert!(
        matches!(events.last(), Some(ChatEvent::Done { .. })),
        "{events:?}"
    );
    assert!(key_file.exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let list = String::from_utf8_lossy(&d.cli(&["keys", "list"]).stdout).to_string();
    assert!(list.contains("mlx-box app"), "{list}");
    // The next send reuses it: still two keys.
    send(&core, "r3");
    let list = String::from_utf8_lossy(&d.cli(&["keys", "list"]).stdout).to_string();
    assert_eq!(list.matches("mlx-box app").count(), 1, "{list}");

    // A target with no frontend and no server port is refused with what to do.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt.block_on(core.chat_route("nosuch")).unwrap_err();
    assert!(e.message.contains("no frontend port"), "{}", e.message);
}
