import { fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import App from "../App.svelte";
import type { ConfigEdit } from "../bindings/ConfigEdit";
import { backend, configDoc, send, service, SETTINGS_TEXT, status, type Handler } from "../test/fixtures";
import { openView } from "../test/view";

// Opens on the chat service's pane; `show` selects another pane in the sidebar.
const settings = (handlers: Record<string, Handler> = {}) => openView("#settings?pane=service-chat", "field-services.chat.max_tokens", handlers);
const show = (pane: string) => fireEvent.click(screen.getByTestId(`nav-${pane}`));
const field = (k: string) => screen.getByTestId(`field-${k}`) as HTMLInputElement;
const edits = (calls: { cmd: string; args: Record<string, unknown> }[], cmd: string) =>
  calls.filter((c) => c.cmd === cmd).map((c) => (c.args.edit as { edits: ConfigEdit[] }).edits);

// The preview text with max_tokens = -5 on line 16 (as the daemon would return it).
const BAD_TEXT = SETTINGS_TEXT.replace("max_tokens = 2048", "max_tokens = -5");
const badDiag = {
  path: "/cfg/settings.toml",
  line: 16,
  col: 14,
  severity: "error" as const,
  message: "`max_tokens` = -5 in [services.chat] is out of range 1..=10000000",
  hint: "for example `max_tokens = 4096`",
};

describe("settings", () => {
  it("populates fields from the document and shows unknown keys read-only", async () => {
    await settings();
    expect(field("services.chat.max_tokens").value).toBe("2048");
    expect(field("services.chat.temperature").value).toBe("0.6");
    expect(field("services.chat.command").value).toBe("{python}\n-m\nx");
    expect(field("services.chat.env").value).toBe("HF_HOME=/models");
    expect(screen.getByTestId("raw-services.chat.mystery")).toHaveTextContent('mystery = "kept"');
    await show("server");
    expect(field("server.host").value).toBe("127.0.0.1");
    await show("app");
    expect(field("app.log_tail_lines").value).toBe("1000");
    expect((screen.getByTestId("field-app.notify_min_severity") as unknown as HTMLSelectElement).value).toBe("warning");
    // absent keys show their default as a placeholder
    expect(field("app.log_files").placeholder).toContain("3");
    await show("memory");
    expect(field("alerts.enabled").checked).toBe(true);
    expect(field("alerts.swap_warn_mb").value).toBe("100");
    await show("service-embed");
    expect(field("services.embed.port").value).toBe("8084");
    expect(field("services.embed.max_tokens").value).toBe("");
    expect(field("services.embed.restart").value).toBe("");
    expect(screen.getByTestId("settings-save")).toBeDisabled();
  });

  it("an edit becomes a ConfigEdit and is previewed (debounced)", async () => {
    const calls = await settings();
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "40" } });
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "4096" } });
    await waitFor(() => expect(edits(calls, "preview_config")).toHaveLength(1));
    expect(edits(calls, "preview_config")[0]).toEqual([{ path: ["services", "chat", "max_tokens"], value: 4096 }]);
    expect(screen.getByTestId("settings-save")).toBeEnabled();
    expect(screen.getByTestId("pending-count")).toHaveTextContent("1 unsaved change");
  });

  it("each kind of field makes the right edit", async () => {
    const calls = await settings();
    await show("memory");
    await fireEvent.click(field("alerts.enabled"));
    await show("app");
    await fireEvent.change(screen.getByTestId("field-app.notify_min_severity"), { target: { value: "critical" } });
    await show("service-embed");
    await fireEvent.change(screen.getByTestId("field-services.embed.restart"), { target: { value: "never" } });
    await show("service-chat");
    await fireEvent.input(field("services.chat.temperature"), { target: { value: "0.7" } });
    await fireEvent.input(field("services.chat.model"), { target: { value: "" } });
    await fireEvent.input(field("services.chat.env"), { target: { value: "HF_HOME=/x\nA=b=c" } });
    await fireEvent.input(field("services.chat.command"), { target: { value: "{python}\n\n-m\nmy server" } });
    await show("service-embed");
    await fireEvent.input(field("services.embed.quantization"), { target: { value: "true" } });
    await waitFor(() => expect(edits(calls, "preview_config").length).toBeGreaterThan(0));
    await waitFor(() =>
      expect(edits(calls, "preview_config").at(-1)).toEqual([
        { path: ["alerts", "enabled"], value: false },
        { path: ["app", "notify_min_severity"], value: "critical" },
        { path: ["services", "embed", "restart"], value: "never" },
        { path: ["services", "chat", "temperature"], value: 0.7 },
        { path: ["services", "chat", "model"], value: null },
        { path: ["services", "chat", "env"], value: { HF_HOME: "/x", A: "b=c" } },
        { path: ["services", "chat", "command"], value: ["{python}", "-m", "my server"] },
        { path: ["services", "embed", "quantization"], value: true },
      ]),
    );
  });

  it("an edit back to the file's value is no edit", async () => {
    const calls = await settings();
    await show("memory");
    await fireEvent.input(field("alerts.swap_warn_mb"), { target: { value: "200" } });
    await fireEvent.input(field("alerts.swap_warn_mb"), { target: { value: "100" } });
    await new Promise((r) => setTimeout(r, 300));
    expect(edits(calls, "preview_config")).toHaveLength(0);
    expect(screen.getByTestId("settings-save")).toBeDisabled();
  });

  it("preview diagnostics appear next to the field and in the list, and disable save", async () => {
    await settings({
      preview_config: () => ({ text: BAD_TEXT, document: null, diagnostics: [badDiag], valid: false }),
    });
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "-5" } });
    const next = await screen.findByTestId("diag-services.chat.max_tokens");
    expect(next).toHaveTextContent("error: `max_tokens` = -5 in [services.chat] is out of range 1..=10000000 (for example `max_tokens = 4096`)");
    expect(screen.getByTestId("diagnostics")).toHaveTextContent(
      "/cfg/settings.toml:16:14: error: `max_tokens` = -5 in [services.chat] is out of range 1..=10000000 (for example `max_tokens = 4096`)",
    );
    expect(screen.getByTestId("settings-save")).toBeDisabled();
    expect(screen.queryByTestId("diag-services.embed.max_tokens")).toBeNull();
  });

  it("a text that is not a number is sent as typed, for the daemon to judge", async () => {
    const calls = await settings();
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "lots" } });
    await waitFor(() => expect(edits(calls, "preview_config").at(-1)).toEqual([{ path: ["services", "chat", "max_tokens"], value: "lots" }]));
  });

  it("a header-line diagnostic goes to the field it names", async () => {
    const text = SETTINGS_TEXT.replace('model = "mlx-community/Qwen3-0.6B-4bit"\n', "");
    await settings({
      preview_config: () => ({
        text,
        document: null,
        valid: false,
        diagnostics: [{ path: "/cfg/settings.toml", line: 13, col: 2, severity: "error", message: "[services.chat] has no `model`", hint: null }],
      }),
    });
    await fireEvent.input(field("services.chat.model"), { target: { value: "" } });
    expect(await screen.findByTestId("diag-services.chat.model")).toHaveTextContent("has no `model`");
  });

  it("edits another host's settings.toml through this Mac's daemon", async () => {
    const host = {
      name: "studio-2",
      address: "198.18.0.2:9443",
      reachable: true,
      since_ms: 0,
      rtt_p50_ms: 0.4,
      rtt_p99_ms: 0.9,
      error: null,
      services: [service("chat")],
      alerts: [],
      memory: null,
      thermal: null,
      version: "0.1.0",
    };
    const remoteDoc = configDoc({ path: "/studio-2/settings.toml", content_hash: "r1" });
    const calls = await settings({
      status: () => status({ hosts: [host] }),
      get_config: (a) => (a.host === "studio-2" ? remoteDoc : configDoc()),
      edit_config: () => ({ text: SETTINGS_TEXT, document: null, diagnostics: [], valid: true }),
    });
    expect(screen.getByTestId("keys-section")).toBeInTheDocument();
    await fireEvent.change(await screen.findByTestId("settings-host"), { target: { value: "studio-2" } });
    await waitFor(() => expect(calls.some((c) => c.cmd === "get_config" && c.args.host === "studio-2")).toBe(true));
    await waitFor(() => expect(screen.getByText("/studio-2/settings.toml")).toBeInTheDocument());
    // Keys are per machine: this Mac's keys section is not shown for another host.
    expect(screen.queryByTestId("keys-section")).toBeNull();
    expect(screen.getByTestId("remote-keys-note")).toHaveTextContent("mlx-box --host studio-2 keys list");
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "4096" } });
    await waitFor(() => expect(calls.some((c) => c.cmd === "preview_config" && c.args.host === "studio-2")).toBe(true));
    await fireEvent.click(screen.getByTestId("settings-save"));
    await waitFor(() => expect(calls.some((c) => c.cmd === "edit_config")).toBe(true));
    expect(calls.find((c) => c.cmd === "edit_config")?.args).toEqual({
      edit: { edits: [{ path: ["services", "chat", "max_tokens"], value: 4096 }], base_hash: "r1" },
      host: "studio-2",
    });
  });

  it("save sends the edits and the base hash, then says what restarts", async () => {
    let saved = false;
    const calls = await settings({
      edit_config: () => {
        saved = true;
        return { text: SETTINGS_TEXT, document: null, diagnostics: [], valid: true };
      },
      get_config: () => (saved ? configDoc({ content_hash: "h2" }) : configDoc()),
    });
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "4096" } });
    await show("app");
    await fireEvent.input(field("app.log_files"), { target: { value: "5" } });
    await fireEvent.click(screen.getByTestId("settings-save"));
    await waitFor(() => expect(calls.some((c) => c.cmd === "edit_config")).toBe(true));
    expect(calls.find((c) => c.cmd === "edit_config")?.args).toEqual({
      edit: {
        edits: [
          { path: ["services", "chat", "max_tokens"], value: 4096 },
          { path: ["app", "log_files"], value: 5 },
        ],
        base_hash: "h1",
      },
    });
    const notice = await screen.findByTestId("settings-notice");
    expect(notice).toHaveTextContent("Restarting only the changed service: chat");
    expect(screen.getByTestId("settings-save")).toBeDisabled();
    // our own write's config event (the new hash) is not an external change
    await send("daemon-event", { type: "config", valid: true, diagnostics: [], content_hash: "h2" });
    expect(screen.queryByTestId("external-change")).toBeNull();
  });

  it("a conflict reloads the file and keeps the edits on top", async () => {
    let version = 1;
    const calls = await settings({
      edit_config: () => {
        version = 2;
        throw { kind: "conflict", message: "settings.toml changed since it was read", hint: null, preview: null };
      },
      get_config: () =>
        version === 1
          ? configDoc()
          : configDoc({ content_hash: "h2", document: { ...(configDoc().document as object), alerts: { enabled: true, swap_warn_mb: 300 } } }),
    });
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "4096" } });
    await fireEvent.click(screen.getByTestId("settings-save"));
    expect(await screen.findByTestId("settings-notice")).toHaveTextContent("changed on disk");
    expect(calls.filter((c) => c.cmd === "get_config")).toHaveLength(2);
    expect(field("services.chat.max_tokens").value).toBe("4096");
    await show("memory");
    await waitFor(() => expect(field("alerts.swap_warn_mb").value).toBe("300"));
    // saving again uses the new hash
    await waitFor(() => expect(screen.getByTestId("settings-save")).toBeEnabled());
    await fireEvent.click(screen.getByTestId("settings-save"));
    await waitFor(() => expect(calls.filter((c) => c.cmd === "edit_config").at(-1)?.args.edit).toMatchObject({ base_hash: "h2" }));
  });

  it("an invalid save shows the daemon's diagnostics", async () => {
    await settings({
      edit_config: () => {
        throw { kind: "invalid", message: "the edit does not validate", hint: null, preview: { text: BAD_TEXT, document: null, diagnostics: [badDiag], valid: false } };
      },
    });
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "-5" } });
    await fireEvent.click(screen.getByTestId("settings-save"));
    expect(await screen.findByTestId("diag-services.chat.max_tokens")).toHaveTextContent("out of range");
    expect(screen.getByTestId("settings-save")).toBeDisabled();
  });

  it("an external edit reloads the form when nothing is pending", async () => {
    let hash = "h1";
    const calls = await settings({
      get_config: () => (hash === "h1" ? configDoc() : configDoc({ content_hash: hash, document: { ...(configDoc().document as object), app: { log_tail_lines: 50 } } })),
    });
    await show("app");
    hash = "h3";
    await send("daemon-event", { type: "config", valid: true, diagnostics: [], content_hash: "h3" });
    await waitFor(() => expect(field("app.log_tail_lines").value).toBe("50"));
    expect(calls.filter((c) => c.cmd === "get_config")).toHaveLength(2);
    expect(screen.queryByTestId("external-change")).toBeNull();
  });

  it("an external edit with pending changes shows a banner; reload discards them", async () => {
    let hash = "h1";
    await settings({
      get_config: () => (hash === "h1" ? configDoc() : configDoc({ content_hash: hash, document: { ...(configDoc().document as object), app: { log_tail_lines: 50 } } })),
    });
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "4096" } });
    hash = "h3";
    await send("daemon-event", { type: "config", valid: true, diagnostics: [], content_hash: "h3" });
    const banner = await screen.findByTestId("external-change");
    expect(banner).toHaveTextContent(/the file changed on disk — reload/i);
    expect(banner).toHaveTextContent("your 1 unsaved change will be lost");
    expect(field("services.chat.max_tokens").value).toBe("4096");
    await fireEvent.click(screen.getByTestId("external-reload"));
    await waitFor(() => expect(field("services.chat.max_tokens").value).toBe("2048"));
    await show("app");
    expect(field("app.log_tail_lines").value).toBe("50");
    expect(screen.queryByTestId("external-change")).toBeNull();
  });

  it("view file shows the preview text", async () => {
    await settings({ preview_config: () => ({ text: "PREVIEWED", document: null, diagnostics: [], valid: true }) });
    await fireEvent.click(screen.getByTestId("view-file"));
    expect(screen.getByTestId("config-text")).toHaveTextContent("# my settings");
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "4096" } });
    await waitFor(() => expect(screen.getByTestId("config-text")).toHaveTextContent("PREVIEWED"));
  });

  it("shows an invalid file's diagnostics on load", async () => {
    await settings({
      get_config: () =>
        configDoc({ status: { valid: false, content_hash: "h1", diagnostics: [{ ...badDiag, line: 16, message: "`max_tokens` in [services.chat] must be an integer, found a string" }] } }),
    });
    expect(screen.getByTestId("diagnostics")).toHaveTextContent("must be an integer");
    expect(screen.getByTestId("diag-services.chat.max_tokens")).toHaveTextContent("must be an integer");
  });
});

describe("routing", () => {
  it("#bench shows the placeholder", async () => {
    window.location.hash = "#bench";
    backend();
    render(App);
    expect(await screen.findByTestId("bench")).toBeInTheDocument();
  });
});
