import { fireEvent, render, screen, waitFor, within } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import App from "../App.svelte";
import { backend, sample, send, service, status, T0, unreachable } from "../test/fixtures";

async function dashboard() {
  render(App);
  await screen.findByTestId("service-chat");
}

describe("dashboard", () => {
  it("renders a row per service with its state and details", async () => {
    const calls = backend();
    await dashboard();
    const chat = screen.getByTestId("service-chat");
    expect(chat).toHaveAttribute("data-state", "ready");
    expect(screen.getByTestId("service-embed")).toHaveAttribute("data-state", "stopped");
    expect(chat).toHaveTextContent("mlx-community/chat");
    expect(chat).toHaveTextContent("8091");
    expect(chat).toHaveTextContent("8081");
    expect(chat).toHaveTextContent("512 MB");
    // uptime: ready 60 s before T0, "now" is the newest sample (T0 + 2 s)
    expect(chat).toHaveTextContent("1m 2s");
    expect(screen.getByTestId("summary")).toHaveTextContent("1/2 ready");
    // fetched once, no polling
    expect(calls.filter((c) => c.cmd === "status")).toHaveLength(1);
    expect(calls.filter((c) => c.cmd === "monitor_history")).toHaveLength(1);
  });

  it("disables buttons by state", async () => {
    backend();
    await dashboard();
    expect(screen.getByTestId("start-chat")).toBeDisabled();
    expect(screen.getByTestId("stop-chat")).toBeEnabled();
    expect(screen.getByTestId("restart-chat")).toBeEnabled();
    expect(screen.getByTestId("start-embed")).toBeEnabled();
    expect(screen.getByTestId("stop-embed")).toBeDisabled();
  });

  it("the folded status from the app updates the rows", async () => {
    backend();
    await dashboard();
    const embed = service("embed", { kind: "embedding", state: "stopped", pid: null, ready_since_ms: null });
    await send("daemon-status", status({ services: [service("chat", { state: "stopping", ready_since_ms: null }), embed] }));
    await waitFor(() => expect(screen.getByTestId("service-chat")).toHaveAttribute("data-state", "stopping"));
    const failed = service("chat", { state: "failed", crash_loop: true, last_error: "exit status 1" });
    await send("daemon-status", status({ services: [failed, embed] }));
    await waitFor(() => expect(screen.getByTestId("service-chat")).toHaveAttribute("data-state", "failed"));
    expect(screen.getByTestId("last-error-chat")).toHaveTextContent("exit status 1");
    expect(screen.getByTestId("service-chat")).toHaveTextContent("crash loop");
    // a new service appears, a removed one goes
    await send("daemon-status", status({ services: [failed, embed, service("ocr", { kind: "ocr", state: "starting" })] }));
    await screen.findByTestId("service-ocr");
    await send("daemon-status", status({ services: [failed, service("ocr", { kind: "ocr", state: "starting" })] }));
    await waitFor(() => expect(screen.queryByTestId("service-embed")).toBeNull());
    // the windows fold no service events themselves
    await send("daemon-event", { type: "service", ...service("chat", { state: "ready" }) });
    expect(screen.getByTestId("service-chat")).toHaveAttribute("data-state", "failed");
  });

  it("stop sends the action request with the service and verb", async () => {
    let release!: () => void;
    const calls = backend({
      action: (a) => new Promise((r) => (release = () => r({ services: [a.target as string] }))),
    });
    await dashboard();
    await fireEvent.click(screen.getByTestId("stop-chat"));
    expect(calls.find((c) => c.cmd === "action")?.args).toEqual({ target: "chat", verb: "stop" });
    // in progress: the buttons wait
    await waitFor(() => expect(screen.getByTestId("stop-chat")).toHaveTextContent("Stopping…"));
    expect(screen.getByTestId("restart-chat")).toBeDisabled();
    release();
    await waitFor(() => expect(screen.getByTestId("stop-chat")).toHaveTextContent("Stop"));
  });

  it("an on-demand service: idle is loadable, a loaded one can be unloaded, the last request shows", async () => {
    const calls = backend();
    await dashboard();
    const embed = service("embed", { kind: "embedding", state: "stopped", pid: null, ready_since_ms: null });
    const idle = service("chat", { state: "idle", on_demand: true, pid: null, ready_since_ms: null, memory_bytes: null });
    await send("daemon-status", status({ services: [idle, embed] }));
    await waitFor(() => expect(screen.getByTestId("service-chat")).toHaveAttribute("data-state", "idle"));
    expect(screen.getByTestId("service-chat")).toHaveTextContent("on demand");
    expect(screen.getByTestId("start-chat")).toBeEnabled();
    expect(screen.getByTestId("unload-chat")).toBeDisabled();
    expect(screen.getByTestId("restart-chat")).toBeDisabled();
    await send("daemon-status", status({ services: [service("chat", { on_demand: true }), embed] }));
    await waitFor(() => expect(screen.getByTestId("unload-chat")).toBeEnabled());
    await fireEvent.click(screen.getByTestId("unload-chat"));
    expect(calls.find((c) => c.cmd === "action")?.args).toEqual({ target: "chat", verb: "unload" });
    // a pinned service has no Unload button
    expect(screen.queryByTestId("unload-embed")).toBeNull();
  });

  it("shows an action's error inline", async () => {
    backend({
      action: () => {
        throw { kind: "refused", message: "over budget: 70 GB > 64 GB", hint: null, preview: null };
      },
    });
    await dashboard();
    await fireEvent.click(screen.getByTestId("start-embed"));
    expect(await screen.findByTestId("action-error-embed")).toHaveTextContent("over budget");
  });

  it("start all sends name all", async () => {
    const calls = backend();
    await dashboard();
    await fireEvent.click(screen.getByTestId("start-all"));
    await waitFor(() =>
      expect(calls.find((c) => c.cmd === "action")?.args).toEqual({ target: "all", verb: "start" }),
    );
  });

  it("stop all and restart all say what they cut off and wait for a yes", async () => {
    const calls = backend({
      status: () => status({ services: [service("chat"), service("fast"), service("embed", { kind: "embedding", state: "stopped", pid: null })] }),
      proxy_stats: () => ({ chat: { in_flight: 2, waiting: 1 }, fast: { in_flight: 0, waiting: 0 } }),
    });
    await dashboard();
    await waitFor(() => expect(calls.some((c) => c.cmd === "proxy_stats")).toBe(true));
    await fireEvent.click(screen.getByTestId("stop-all"));
    expect(await screen.findByTestId("confirm-detail")).toHaveTextContent("2 services running, 3 requests in flight");
    expect(document.activeElement).toBe(screen.getByTestId("confirm-cancel"));
    await fireEvent.click(screen.getByTestId("confirm-cancel"));
    expect(screen.queryByTestId("confirm-sheet")).toBeNull();
    expect(calls.some((c) => c.cmd === "action")).toBe(false);
    await fireEvent.click(screen.getByTestId("restart-all"));
    await fireEvent.keyDown(window, { key: "Escape" });
    expect(screen.queryByTestId("confirm-sheet")).toBeNull();
    await fireEvent.click(screen.getByTestId("restart-all"));
    await fireEvent.click(await screen.findByTestId("confirm-ok"));
    await waitFor(() => expect(calls.find((c) => c.cmd === "action")?.args).toEqual({ target: "all", verb: "restart" }));
  });

  it("a single stop goes at once and can be undone for a few seconds", async () => {
    const calls = backend();
    await dashboard();
    await fireEvent.click(screen.getByTestId("stop-chat"));
    await fireEvent.click(await screen.findByTestId("undo-stop-chat"));
    await waitFor(() =>
      expect(calls.filter((c) => c.cmd === "action").map((c) => c.args.verb)).toEqual(["stop", "start"]),
    );
    await waitFor(() => expect(screen.queryByTestId("undo-chat")).toBeNull());
  });

  it("the tray's stop of one service asks here first (#dashboard?confirm=stop:chat)", async () => {
    window.location.hash = "#dashboard?confirm=stop:chat";
    const calls = backend();
    await dashboard();
    expect(await screen.findByTestId("confirm-sheet")).toHaveTextContent("Stop chat?");
    expect(screen.getByTestId("confirm-detail")).toHaveTextContent("1 service running, no request in flight");
    await fireEvent.click(screen.getByTestId("confirm-ok"));
    await waitFor(() => expect(calls.find((c) => c.cmd === "action")?.args).toEqual({ target: "chat", verb: "stop" }));
    window.location.hash = "";
  });

  it("says when it keeps the machine awake, and when it cannot", async () => {
    backend({ status: () => status({ awake: { mode: "serving", held: true, reason: "1 server loaded", error: null } }) });
    await dashboard();
    expect(await screen.findByTestId("awake")).toHaveTextContent("keeping the machine awake: 1 server loaded");
    await send("daemon-status", status({ awake: { mode: "serving", held: false, reason: "", error: "no logind" } }));
    await waitFor(() => expect(screen.getByTestId("awake")).toHaveTextContent("cannot keep the machine awake"));
  });

  it("shows service memory from the folded status", async () => {
    backend();
    await dashboard();
    await send("daemon-status", status({ services: [service("chat", { memory_bytes: 3 * 2 ** 30 })] }));
    await waitFor(() => expect(screen.getByTestId("service-chat")).toHaveTextContent("3.0 GB"));
  });

  it("an active alert is counted in the header and its card comes first", async () => {
    backend();
    await dashboard();
    expect(screen.queryByTestId("alert-count")).toBeNull();
    const alert = { id: "swap", severity: "warning" as const, title: "Swap in use", body: "Stop a model.", since: T0 - 5000, cleared: null, acknowledged: false, snoozed_until: null };
    await send("daemon-status", status({ alerts: [alert] }));
    expect(await screen.findByTestId("alert-count")).toHaveTextContent("1 alert");
    const cards = [...document.querySelectorAll('[data-testid="alerts"], [data-testid="service-chat"]')];
    expect(cards[0]).toBe(screen.getByTestId("alerts"));
  });

  it("an alert is acknowledged or snoozed through the daemon, and a quiet one is not counted", async () => {
    const calls = backend();
    await dashboard();
    const swap = { id: "swap", severity: "warning" as const, title: "Swap in use", body: "Stop a model.", since: T0 - 5000, cleared: null, acknowledged: false, snoozed_until: null };
    await send("daemon-status", status({ alerts: [swap] }));
    await fireEvent.click(await screen.findByTestId("alert-ack-swap"));
    expect(calls.find((c) => c.cmd === "alert_action")?.args).toEqual({ id: "swap", action: { action: "ack" } });
    await fireEvent.change(screen.getByTestId("alert-snooze-swap"), { target: { value: "480" } });
    expect(calls.filter((c) => c.cmd === "alert_action")[1]?.args).toEqual({ id: "swap", action: { action: "snooze", minutes: 480 } });
    // The daemon's answer comes back as the folded status: quiet, listed, not counted, after the services.
    await send("daemon-status", status({ alerts: [{ ...swap, acknowledged: true }] }));
    await waitFor(() => expect(screen.queryByTestId("alert-count")).toBeNull());
    expect(screen.getByTestId("alert-swap")).toHaveAttribute("data-quiet", "true");
    expect(screen.getByTestId("alert-quiet-swap")).toHaveTextContent("Acknowledged");
    const cards = [...document.querySelectorAll('[data-testid="alerts"], [data-testid="service-chat"]')];
    expect(cards[0]).toBe(screen.getByTestId("service-chat"));
    // Snoozed until later: quiet; a snooze that has ended counts again.
    await send("daemon-status", status({ alerts: [{ ...swap, snoozed_until: T0 + 3_600_000 }] }));
    await waitFor(() => expect(screen.getByTestId("alert-quiet-swap")).toHaveTextContent("Snoozed until"));
    await fireEvent.click(screen.getByTestId("alert-unmute-swap"));
    expect(calls.filter((c) => c.cmd === "alert_action")[2]?.args).toEqual({ id: "swap", action: { action: "unmute" } });
    await send("daemon-status", status({ alerts: [{ ...swap, snoozed_until: T0 - 1 }] }));
    expect(await screen.findByTestId("alert-count")).toHaveTextContent("1 alert");
  });

  it("each service's endpoint and the one endpoint are shown and copied", async () => {
    const written: string[] = [];
    Object.defineProperty(navigator, "clipboard", { value: { writeText: async (t: string) => void written.push(t) }, configurable: true });
    backend({
      listeners: () => ({
        listeners: [
          { name: "[server] port", address: "0.0.0.0:8080", tls: false },
          { name: "[services.chat] port", address: "127.0.0.1:8081", tls: false },
        ],
      }),
    });
    await dashboard();
    expect(await screen.findByTestId("one-endpoint-url")).toHaveTextContent("http://127.0.0.1:8080/v1");
    await fireEvent.click(screen.getByTestId("url-chat-copy"));
    await waitFor(() => expect(screen.getByTestId("url-chat-copy")).toHaveTextContent("Copied"));
    expect(written).toEqual(["http://127.0.0.1:8081/v1"]);
    // Not among the listeners (yet): the URL from its frontend port.
    expect(screen.getByTestId("url-embed-copy")).toHaveAttribute("title", "Copy http://127.0.0.1:8081/v1");
    await fireEvent.click(screen.getByTestId("one-endpoint-url-copy"));
    await waitFor(() => expect(written).toEqual(["http://127.0.0.1:8081/v1", "http://127.0.0.1:8080/v1"]));
  });

  it("the memory chart is scaled to the budget, drawn as a line", async () => {
    backend();
    await dashboard();
    expect(screen.getByTestId("memory-budget")).toHaveTextContent("of 48.0 GB budget");
    expect(screen.getByTestId("spark-memory-limit")).toBeInTheDocument();
  });

  it("renders alerts and highlights the focused one", async () => {
    backend({
      status: () =>
        status({
          alerts: [
            { id: "swap", severity: "warning", title: "Swap in use", body: "Stop a model.", since: T0 - 5000, cleared: null, acknowledged: false, snoozed_until: null },
            { id: "service-failed:chat", severity: "critical", title: "chat failed", body: "See its log.", since: T0, cleared: null, acknowledged: false, snoozed_until: null },
          ],
        }),
    });
    await dashboard();
    const list = screen.getByTestId("alerts");
    expect(within(list).getByTestId("alert-swap")).toHaveTextContent("Swap in use");
    expect(within(list).getByTestId("alert-service-failed:chat")).toHaveTextContent("critical");
    expect(screen.getByTestId("alert-swap")).not.toHaveAttribute("data-focused");
    await send("focus-alert", { id: "swap" });
    await waitFor(() => expect(screen.getByTestId("alert-swap")).toHaveAttribute("data-focused", "true"));
    expect(screen.getByTestId("alert-swap")).toHaveClass("focused");
    // a new alert in the folded status, then the swap alert cleared
    const hot = { id: "hot", severity: "info" as const, title: "Warm", body: "b", since: T0, cleared: null, acknowledged: false, snoozed_until: null };
    const failed = { id: "service-failed:chat", severity: "critical" as const, title: "chat failed", body: "See its log.", since: T0, cleared: null, acknowledged: false, snoozed_until: null };
    const swap = { id: "swap", severity: "warning" as const, title: "Swap in use", body: "Stop a model.", since: T0 - 5000, cleared: null, acknowledged: false, snoozed_until: null };
    await send("daemon-status", status({ alerts: [swap, failed, hot] }));
    await screen.findByTestId("alert-hot");
    await send("daemon-status", status({ alerts: [failed, hot] }));
    await waitFor(() => expect(screen.queryByTestId("alert-swap")).toBeNull());
  });

  it("sparklines render from history and move with monitor events", async () => {
    backend();
    await dashboard();
    const spark = screen.getByTestId("spark-memory");
    expect(spark).toHaveAttribute("data-points", "3");
    const before = spark.querySelector("polyline.line")!.getAttribute("points");
    await send("daemon-event", { type: "monitor", sample: sample(3, { swap_used_bytes: 2 ** 28, thermal: "serious" }), service_memory: null, live: {} });
    await waitFor(() => expect(screen.getByTestId("spark-memory")).toHaveAttribute("data-points", "4"));
    expect(screen.getByTestId("spark-memory").querySelector("polyline.line")!.getAttribute("points")).not.toBe(before);
    expect(screen.getByTestId("gauge-swap")).toHaveTextContent("256 MB");
    expect(screen.getByTestId("gauge-thermal")).toHaveTextContent("serious");
    expect(screen.getByTestId("spark-thermal")).toHaveAttribute("data-points", "4");
  });

  it("shows each service's last minute of TTFT and tok/s from the monitor tick", async () => {
    backend();
    await dashboard();
    expect(screen.queryByTestId("live-chat")).toBeNull();
    const live = { chat: { requests: 42, ttft_p50_ms: 48.25, ttft_p95_ms: 212.4, output_tok_s: 133.33, window_s: 60 } };
    await send("daemon-event", { type: "monitor", sample: sample(3), service_memory: null, live });
    const row = await screen.findByTestId("live-chat");
    expect(row).toHaveTextContent("TTFT p50 48 ms · p95 212 ms · 133.3 tok/s · 42 requests");
    // a quiet minute later the line goes away
    const quiet = { chat: { requests: 0, ttft_p50_ms: null, ttft_p95_ms: null, output_tok_s: 0, window_s: 60 } };
    await send("daemon-event", { type: "monitor", sample: sample(4), service_memory: null, live: quiet });
    await waitFor(() => expect(screen.queryByTestId("live-chat")).toBeNull());
  });

  it("switches to another host and shows its services, link and state", async () => {
    const remote = (name: string, reachable: boolean) => ({
      name,
      address: `198.18.0.2:9443`,
      reachable,
      since_ms: T0 - 65_000,
      rtt_p50_ms: reachable ? 0.42 : null,
      rtt_p99_ms: reachable ? 1.5 : null,
      error: reachable ? null : "no answer within 2 s",
      services: [service("big", { state: "starting", model: "org/big-model" }), service("fast")],
      alerts: [],
      memory: null,
      thermal: { state: "fair" as const },
      version: "0.1.0",
    });
    const calls = backend({
      status: () => status({ hosts: [remote("studio-2", true), remote("studio-3", false)] }),
      call: (a) => ((a.request as { request: string }).request === "host" ? { services: ["fast"] } : { listeners: [] }),
    });
    await dashboard();
    const tabs = screen.getByTestId("host-switcher");
    expect(within(tabs).getByTestId("host-tab-studio-2")).toHaveAttribute("data-reachable", "true");
    expect(within(tabs).getByTestId("host-tab-studio-3")).toHaveAttribute("data-reachable", "false");
    expect(screen.getByTestId("service-chat")).toBeInTheDocument();
    await fireEvent.click(screen.getByTestId("host-tab-studio-2"));
    const view = await screen.findByTestId("host-studio-2");
    expect(within(view).getByTestId("host-service-big")).toHaveAttribute("data-state", "starting");
    expect(within(view).getByTestId("host-link")).toHaveTextContent("p50 0.42 ms");
    expect(screen.queryByTestId("service-chat")).toBeNull();
    // Its services are toggled through this Mac's daemon, which forwards the request.
    await fireEvent.click(within(view).getByTestId("host-toggle-fast"));
    const forwarded = () => calls.find((c) => c.cmd === "action" && c.args.host !== undefined);
    await waitFor(() => expect(forwarded()).toBeDefined());
    expect(forwarded()!.args).toEqual({ target: "fast", verb: "stop", host: "studio-2" });
    await fireEvent.click(screen.getByTestId("host-tab-studio-3"));
    expect(await screen.findByTestId("host-unreachable")).toHaveTextContent("no answer within 2 s");
    expect(screen.getByTestId("host-toggle-fast")).toBeDisabled();
    await fireEvent.click(screen.getByTestId("host-tab-local"));
    expect(await screen.findByTestId("service-chat")).toBeInTheDocument();
  });

  it("shows each pool member's health, share and why it is out", async () => {
    const member = (name: string, health: "in" | "out" | "probation", requests: number, why: string | null = null) => ({
      member: name,
      weight: 1,
      health,
      why,
      requests,
      errors: health === "out" ? 3 : 0,
      affinity_hits: 2,
      in_flight: 1,
      output_tokens: 10,
      output_tok_s: 12.5,
    });
    backend({
      status: () =>
        status({
          pools: [
            {
              name: "everywhere",
              port: 8100,
              refused: 0,
              retries: 4,
              members: [member("chat", "in", 75), member("studio-2/chat", "out", 25, "host unreachable")],
            },
          ],
        }),
    });
    await dashboard();
    const pool = await screen.findByTestId("pool-everywhere");
    expect(pool).toHaveTextContent("4 retried");
    expect(within(pool).getByTestId("pool-member-chat")).toHaveTextContent("75 %");
    const out = within(pool).getByTestId("pool-member-studio-2/chat");
    expect(out).toHaveTextContent("out");
    expect(out).toHaveTextContent("host unreachable");
    expect(out).toHaveTextContent("25 %");
  });

  it("keeps at most 10 minutes of samples", async () => {
    backend({ monitor_history: () => ({ samples: Array.from({ length: 600 }, (_, i) => sample(i)) }) });
    await dashboard();
    expect(screen.getByTestId("spark-swap")).toHaveAttribute("data-points", "600");
    await send("daemon-event", { type: "monitor", sample: sample(600), service_memory: null, live: {} });
    await waitFor(() => expect(screen.getByTestId("gauge-memory")).toHaveTextContent("620 GB"));
    expect(screen.getByTestId("spark-swap")).toHaveAttribute("data-points", "600");
  });

  it("shows a banner when the config is invalid", async () => {
    backend();
    await dashboard();
    expect(screen.queryByTestId("config-invalid")).toBeNull();
    await send("daemon-status", status({ config: {
      valid: false,
      content_hash: "h2",
      diagnostics: [
        { path: "/cfg/settings.toml", line: 7, col: 9, severity: "error", message: "`port` = 0 in [services.chat] is not a TCP port", hint: "use a number from 1024 to 65535" },
      ],
    } }));
    const banner = await screen.findByTestId("config-invalid");
    expect(banner).toHaveTextContent(
      "/cfg/settings.toml:7:9: error: `port` = 0 in [services.chat] is not a TCP port (use a number from 1024 to 65535)",
    );
  });

  it("says where the daemon listens (the `listeners` request)", async () => {
    backend({
      listeners: () => ({
        listeners: [
          { name: "[server] port", address: "127.0.0.1:8080", tls: false },
          { name: "[control] listen", address: "0.0.0.0:9300", tls: true },
        ],
      }),
    });
    await dashboard();
    const line = await screen.findByTestId("listening");
    expect(line).toHaveTextContent("[server] port 127.0.0.1:8080");
    expect(line).toHaveTextContent("[control] listen 0.0.0.0:9300 (TLS)");
  });

  it("shows proxy stats when there are any", async () => {
    backend({
      proxy_stats: () => ({ chat: { requests: 12, errors: 1, unauthorized: 2, rejected_busy: 0, unavailable: 0, in_flight: 1 } }),
    });
    await dashboard();
    expect(await screen.findByTestId("proxy-chat")).toHaveTextContent("12 requests");
    expect(screen.queryByTestId("proxy-embed")).toBeNull();
  });
});

describe("unreachable daemon", () => {
  it("shows the state dir and error, and the button starts the daemon", async () => {
    let up = false;
    const calls = backend({
      get_connection: () => ({ connected: up, state_dir: "/state", error: up ? null : "no daemon answers on /state/control.sock" }),
      status: () => (up ? status() : unreachable()),
      start_daemon: () => {
        up = true;
        return { connected: true, state_dir: "/state", error: null };
      },
    });
    render(App);
    const view = await screen.findByTestId("daemon-unreachable");
    expect(view).toHaveTextContent("/state");
    expect(view).toHaveTextContent("no daemon answers on /state/control.sock");
    await fireEvent.click(screen.getByTestId("start-daemon"));
    expect(calls.some((c) => c.cmd === "start_daemon")).toBe(true);
    await screen.findByTestId("service-chat");
    expect(screen.queryByTestId("daemon-unreachable")).toBeNull();
  });

  it("appears on an unreachable error and on a connection event, and refetches on reconnect", async () => {
    const calls = backend();
    await dashboard();
    await send("connection", { connected: false, state_dir: "/state", error: "daemon went away" });
    expect(await screen.findByTestId("daemon-unreachable")).toHaveTextContent("daemon went away");
    await send("connection", { connected: true, state_dir: "/state", error: null });
    await screen.findByTestId("service-chat");
    expect(calls.filter((c) => c.cmd === "status")).toHaveLength(2);
  });

  it("an unreachable status shows the view", async () => {
    backend({ status: () => unreachable("connection refused") });
    render(App);
    expect(await screen.findByTestId("daemon-unreachable")).toHaveTextContent("connection refused");
  });
});

describe("routing", () => {
  it("#dashboard?alert=ID focuses that alert", async () => {
    window.location.hash = "#dashboard?alert=swap";
    backend({
      status: () =>
        status({ alerts: [{ id: "swap", severity: "warning", title: "Swap", body: "b", since: T0, cleared: null, acknowledged: false, snoozed_until: null }] }),
    });
    render(App);
    await waitFor(() => expect(screen.getByTestId("alert-swap")).toHaveAttribute("data-focused", "true"));
  });
});
