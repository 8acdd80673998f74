import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import { SETTINGS_SCHEMA } from "../lib/settingsSchema.generated";
import App from "../App.svelte";
import type { ConfigEdit } from "../bindings/ConfigEdit";
import type { JsonValue } from "../bindings/serde_json/JsonValue";
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

const lastEdits = (calls: { cmd: string; args: Record<string, unknown> }[]) => edits(calls, "preview_config").at(-1);
const helpOf = (section: string, key: string) => SETTINGS_SCHEMA.find((k) => k.section === section && k.key === key)!.help;
/** The fixture's document with `services` changed (and more tables). */
const docWith = (services: Record<string, JsonValue>, more: Record<string, JsonValue> = {}) => {
  const d = configDoc().document as Record<string, Record<string, JsonValue>>;
  return configDoc({ document: { ...d, ...more, services: { ...d.services, ...services } } });
};

describe("settings panes", () => {
  it("a field has its name in words, the TOML key beside it and the schema's help under it", async () => {
    await settings();
    await show("server");
    const input = screen.getByLabelText("Request timeout (s)");
    expect(input).toBe(field("server.request_timeout_s"));
    expect(input.closest(".field")).toHaveTextContent("request_timeout_s");
    expect(input).toHaveAccessibleDescription(helpOf("server", "request_timeout_s"));
    expect(screen.getByText(helpOf("server", "request_timeout_s"))).toBeVisible();
    await show("memory");
    expect(screen.getByLabelText("Memory budget (GB)")).toBe(field("app.memory_budget_gb"));
    expect(screen.getByLabelText("Warn at swap (MB)")).toBe(field("alerts.swap_warn_mb"));
  });

  it("a service shows the keys of its kind, and a key set in the file that its kind does not use, with a note", async () => {
    await settings({ get_config: () => docWith({ embed: { port: 8084, model: "Qwen/Qwen3-Embedding-0.6B", expect_gen_tok_s: 50 } }) });
    // chat has a `command` and no `kind`: the daemon takes it for a command service, and so does the form.
    expect(screen.getByTestId("service-kind")).toHaveTextContent("Your own command — kind inferred from the name");
    expect(screen.getByTestId("field-services.chat.expect_gen_tok_s")).toBeInTheDocument();
    for (const k of ["expect_inputs_s", "expect_rtf", "hosts", "backend", "pipeline"]) expect(screen.queryByTestId(`field-services.chat.${k}`)).toBeNull();
    expect(screen.getByTestId("nav-service-embed")).toHaveTextContent("embedding");
    await show("service-embed");
    expect(screen.getByTestId("field-services.embed.expect_inputs_s")).toBeInTheDocument();
    expect(screen.queryByTestId("field-services.embed.expect_ttft_ms")).toBeNull();
    expect(field("services.embed.expect_gen_tok_s").value).toBe("50");
    expect(screen.getByTestId("note-services.embed.expect_gen_tok_s")).toHaveTextContent("Not used by kind embedding");
    // Another kind, set in the form, changes which keys show.
    await fireEvent.change(screen.getByTestId("field-services.embed.kind"), { target: { value: "distributed" } });
    expect(await screen.findByTestId("field-services.embed.hosts")).toBeInTheDocument();
    expect(screen.queryByTestId("field-services.embed.expect_inputs_s")).toBeNull();
  });

  it("Other Macs, Pools, and Other keys (only when the file has tables mlx-box does not use)", async () => {
    await settings();
    expect(screen.queryByTestId("nav-other")).toBeNull();
    cleanup();
    await settings({
      get_config: () =>
        docWith(
          {},
          {
            control: { listen: "0.0.0.0:9443" },
            hosts: { "studio-2": { address: "198.18.0.2:9443", fingerprint: "ab:cd" } },
            pools: { fast: { members: ["chat", "studio-2/chat"] } },
            extra: { a: 1 },
          },
        ),
    });
    await show("hosts");
    expect(field("control.listen").value).toBe("0.0.0.0:9443");
    expect(field("hosts.studio-2.address").value).toBe("198.18.0.2:9443");
    await show("pools");
    expect(field("pools.fast.members").value).toBe("chat\nstudio-2/chat");
    await show("other");
    expect(screen.getByTestId("raw-extra")).toHaveTextContent('extra = {"a":1}');
  });

  it("the model field offers the models the services use", async () => {
    await settings();
    const list = document.getElementById(field("services.chat.model").getAttribute("list")!)!;
    expect([...list.querySelectorAll("option")].map((o) => o.value)).toEqual(["mlx-community/Qwen3-0.6B-4bit", "Qwen/Qwen3-Embedding-0.6B"]);
  });

  it("Add service… checks the name, adds the kind's table on a free port, and its fields edit that table", async () => {
    // 8080 is embed's backend_port, 8081 chat's, 8082 the one endpoint's: the first free one is 8083.
    const calls = await settings({
      get_config: () => docWith({ embed: { port: 8084, backend_port: 8080, model: "Qwen/Qwen3-Embedding-0.6B" } }, { server: { host: "127.0.0.1", port: 8082 } }),
    });
    await fireEvent.click(screen.getByTestId("add-service"));
    const name = screen.getByTestId("service-name");
    expect(document.activeElement).toBe(name);
    await fireEvent.input(name, { target: { value: "chat" } });
    expect(screen.getByTestId("service-name-error")).toHaveTextContent("There is a service chat already.");
    expect(screen.getByTestId("service-ok")).toBeDisabled();
    await fireEvent.input(name, { target: { value: "my vision" } });
    expect(screen.getByTestId("service-name-error")).toHaveTextContent("Only letters, digits, - and _");
    await fireEvent.input(name, { target: { value: "vision" } });
    await fireEvent.change(screen.getByTestId("service-kind-pick"), { target: { value: "ocr" } });
    expect(screen.getByTestId("service-sheet-detail")).toHaveTextContent("It gets port 8083 and an example model");
    await fireEvent.click(screen.getByTestId("service-ok"));
    expect(screen.queryByTestId("service-sheet")).toBeNull();
    expect(screen.getByTestId("settings-service-vision")).toBeInTheDocument();
    expect(screen.getByTestId("nav-service-vision")).toHaveAttribute("aria-current", "page");
    expect(field("services.vision.port").value).toBe("8083");
    const table = { kind: "ocr", model: "mlx-community/olmOCR-2-7B-1025-mlx-8bit", port: 8083 };
    await waitFor(() => expect(lastEdits(calls)).toEqual([{ path: ["services", "vision"], value: table }]));
    // A field of the new service: part of its table's edit.
    await fireEvent.input(field("services.vision.max_tokens"), { target: { value: "512" } });
    await waitFor(() => expect(lastEdits(calls)).toEqual([{ path: ["services", "vision"], value: { ...table, max_tokens: 512 } }]));
    expect(screen.getByTestId("pending-count")).toHaveTextContent("1 unsaved change");
  });

  it("Rename… replaces the table by one of the new name with the same keys; renaming back leaves no edit", async () => {
    const calls = await settings();
    await show("service-embed");
    await fireEvent.click(screen.getByTestId("service-rename"));
    const name = screen.getByTestId("service-name") as HTMLInputElement;
    expect(name.value).toBe("embed");
    expect(screen.getByTestId("service-ok")).toBeDisabled();
    await fireEvent.input(name, { target: { value: "vectors" } });
    await fireEvent.click(screen.getByTestId("service-ok"));
    expect(screen.getByTestId("settings-service-vectors")).toBeInTheDocument();
    expect(screen.queryByTestId("nav-service-embed")).toBeNull();
    await waitFor(() =>
      expect(lastEdits(calls)).toEqual([
        { path: ["services", "embed"], value: null },
        { path: ["services", "vectors"], value: { port: 8084, model: "Qwen/Qwen3-Embedding-0.6B" } },
      ]),
    );
    expect(screen.getByTestId("pending-count")).toHaveTextContent("2 unsaved changes");
    await fireEvent.click(screen.getByTestId("service-rename"));
    await fireEvent.input(screen.getByTestId("service-name"), { target: { value: "embed" } });
    await fireEvent.click(screen.getByTestId("service-ok"));
    expect(screen.getByTestId("settings-service-embed")).toBeInTheDocument();
    await waitFor(() => expect(screen.getByTestId("pending-count")).toHaveTextContent(/^$/));
    expect(screen.getByTestId("settings-save")).toBeDisabled();
  });

  it("Remove… asks first, then removes the table (pending until saved; Discard brings it back)", async () => {
    const calls = await settings();
    await show("service-embed");
    await fireEvent.click(screen.getByTestId("service-remove"));
    expect(screen.getByTestId("confirm-sheet")).toHaveTextContent("Remove service embed?");
    expect(screen.getByTestId("confirm-detail")).toHaveTextContent("Its server is stopped when you save.");
    await fireEvent.click(screen.getByTestId("confirm-cancel"));
    expect(screen.getByTestId("settings-service-embed")).toBeInTheDocument();
    await fireEvent.click(screen.getByTestId("service-remove"));
    await fireEvent.click(screen.getByTestId("confirm-ok"));
    expect(screen.queryByTestId("nav-service-embed")).toBeNull();
    await waitFor(() => expect(lastEdits(calls)).toEqual([{ path: ["services", "embed"], value: null }]));
    await fireEvent.click(screen.getByTestId("settings-discard"));
    expect(await screen.findByTestId("nav-service-embed")).toBeInTheDocument();
  });

  it("Choose… puts the chosen folder in a path field", async () => {
    const calls = await settings({ "plugin:dialog|open": () => "/Users/me/server" });
    await fireEvent.click(screen.getByTestId("choose-services.chat.cwd"));
    await waitFor(() => expect(field("services.chat.cwd").value).toBe("/Users/me/server"));
    expect(calls.find((c) => c.cmd === "plugin:dialog|open")?.args).toEqual({ options: { directory: true, multiple: false } });
    await waitFor(() => expect(lastEdits(calls)).toEqual([{ path: ["services", "chat", "cwd"], value: "/Users/me/server" }]));
    await show("app");
    await fireEvent.click(screen.getByTestId("choose-app.python"));
    await waitFor(() => expect(calls.filter((c) => c.cmd === "plugin:dialog|open").at(-1)?.args).toEqual({ options: { directory: false, multiple: false } }));
  });

  it("⌘S (Ctrl-S off the Mac) saves when there is something to save, and is never the WebView's", async () => {
    const calls = await settings();
    const press = () => {
      const ev = new KeyboardEvent("keydown", { key: "s", ctrlKey: true, cancelable: true });
      window.dispatchEvent(ev);
      return ev.defaultPrevented;
    };
    expect(press()).toBe(true);
    expect(calls.some((c) => c.cmd === "edit_config")).toBe(false);
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "4096" } });
    expect(press()).toBe(true);
    await waitFor(() => expect(calls.filter((c) => c.cmd === "edit_config")).toHaveLength(1));
    expect(await screen.findByTestId("settings-notice")).toHaveTextContent("Saved");
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "8192" } });
    await waitFor(() => expect(screen.getByTestId("settings-save")).toBeEnabled());
    press();
    await waitFor(() => expect(calls.filter((c) => c.cmd === "edit_config")).toHaveLength(2));
  });

  it("a diagnostic in a hidden pane badges its sidebar entry; clicking it in the banner shows the field", async () => {
    await openView("#settings?pane=server", "nav-service-chat", {
      get_config: () =>
        configDoc({ status: { valid: false, content_hash: "h1", diagnostics: [{ ...badDiag, message: "`max_tokens` in [services.chat] must be an integer, found a string" }] } }),
    });
    expect(screen.getByTestId("pane-server")).toBeInTheDocument();
    expect(screen.getByTestId("nav-badge-service-chat")).toHaveTextContent("1");
    expect(screen.getByTestId("nav-badge-service-chat")).toHaveClass("error");
    expect(screen.queryByTestId("nav-badge-server")).toBeNull();
    await fireEvent.click(screen.getByTestId("diag-link-0"));
    expect(screen.getByTestId("settings-service-chat")).toBeInTheDocument();
    await waitFor(() => expect(document.activeElement).toBe(field("services.chat.max_tokens")));
    expect(window.location.hash).toBe("#settings?pane=service-chat");
  });
});

describe("closing with unsaved changes", () => {
  const cmds = (calls: { cmd: string; args: Record<string, unknown> }[], cmd: string) => calls.filter((c) => c.cmd === cmd);

  it("with nothing unsaved, a close request just hides the window", async () => {
    const calls = await settings();
    await send("close-asked", null);
    await waitFor(() => expect(cmds(calls, "hide_window")).toHaveLength(1));
    expect(screen.queryByTestId("confirm-sheet")).toBeNull();
  });

  it("the app is told about unsaved edits; Cancel keeps them, Don't Save drops them and hides", async () => {
    const calls = await settings();
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "4096" } });
    await waitFor(() => expect(cmds(calls, "set_unsaved").map((c) => c.args)).toEqual([{ unsaved: true }]));
    await send("close-asked", null);
    expect(await screen.findByTestId("confirm-sheet")).toHaveTextContent("You have 1 unsaved change");
    await fireEvent.click(screen.getByTestId("confirm-cancel"));
    expect(screen.queryByTestId("confirm-sheet")).toBeNull();
    expect(field("services.chat.max_tokens").value).toBe("4096");
    await send("close-asked", null);
    await fireEvent.click(await screen.findByTestId("confirm-alternative"));
    await waitFor(() => expect(cmds(calls, "hide_window")).toHaveLength(1));
    expect(field("services.chat.max_tokens").value).toBe("2048");
    await waitFor(() => expect(cmds(calls, "set_unsaved").map((c) => c.args)).toEqual([{ unsaved: true }, { unsaved: false }]));
  });

  it("Save saves, then hides; a failed save keeps the window open", async () => {
    let fail = true;
    const calls = await settings({
      edit_config: () => {
        if (fail) throw { kind: "failed", message: "disk full", hint: null, preview: null };
        return { text: SETTINGS_TEXT, document: null, diagnostics: [], valid: true };
      },
    });
    await fireEvent.input(field("services.chat.max_tokens"), { target: { value: "4096" } });
    await send("close-asked", null);
    await fireEvent.click(await screen.findByTestId("confirm-ok"));
    expect(await screen.findByTestId("settings-notice")).toHaveTextContent("disk full");
    expect(cmds(calls, "hide_window")).toHaveLength(0);
    fail = false;
    await send("close-asked", null);
    await fireEvent.click(await screen.findByTestId("confirm-ok"));
    await waitFor(() => expect(cmds(calls, "hide_window")).toHaveLength(1));
    expect(cmds(calls, "edit_config")).toHaveLength(2);
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
