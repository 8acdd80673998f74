import { describe, expect, it } from "vitest";
import { backend, configDoc, SETTINGS_TEXT } from "../test/fixtures";
import { SettingsForm } from "./settings.svelte";

/** A form on the fixture's settings.toml (services chat and embed). */
async function form(handlers: Parameters<typeof backend>[0] = {}): Promise<SettingsForm> {
  backend(handlers);
  const f = new SettingsForm();
  await f.load();
  return f;
}

describe("table edits", () => {
  it("a key set on a just-added table goes into that table's edit", async () => {
    const f = await form();
    f.setTable(["services", "tts"], { kind: "tts", port: 8080 });
    f.set(["services", "tts", "default_voice"], "serena");
    f.set(["services", "tts", "port"], null);
    expect(f.editList).toEqual([{ path: ["services", "tts"], value: { kind: "tts", default_voice: "serena" } }]);
    expect(f.value(["services", "tts", "default_voice"])).toBe("serena");
    expect(f.changed(["services", "tts", "kind"])).toBe(true);
    expect(f.tables(["services"])).toEqual(["chat", "embed", "tts"]);
    f.dispose();
  });

  it("add then remove leaves nothing", async () => {
    const f = await form();
    f.setTable(["services", "x"], { port: 8080 });
    f.set(["services", "x", "model"], "m");
    f.setTable(["services", "x"], null);
    expect(f.editList).toEqual([]);
    f.dispose();
  });

  it("rename removes the old table and adds the new one with its keys, pending ones too; renaming back undoes it", async () => {
    const f = await form();
    f.set(["services", "embed", "batch_size"], 64);
    f.renameTable(["services", "embed"], "vectors");
    expect(f.editList).toEqual([
      { path: ["services", "embed"], value: null },
      { path: ["services", "vectors"], value: { port: 8084, model: "Qwen/Qwen3-Embedding-0.6B", batch_size: 64 } },
    ]);
    expect(f.tables(["services"])).toEqual(["chat", "vectors"]);
    f.renameTable(["services", "vectors"], "embed");
    // Back where it was: only the key edit made before the renames.
    expect(f.editList).toEqual([{ path: ["services", "embed", "batch_size"], value: 64 }]);
    f.dispose();
  });

  it("a table of the file set anew is changed key by key (its comments stay)", async () => {
    const f = await form();
    f.setTable(["services", "embed"], null);
    f.setTable(["services", "embed"], { kind: "embedding", port: 8084 });
    expect(f.editList).toEqual([
      { path: ["services", "embed", "model"], value: null },
      { path: ["services", "embed", "kind"], value: "embedding" },
    ]);
    f.dispose();
  });
});

describe("save", () => {
  it("an edit made while the save is on its way stays pending (only what was sent is done)", async () => {
    let f: SettingsForm | null = null;
    f = await form({
      edit_config: () => {
        // The user types on while the daemon writes the file.
        f!.set(["services", "chat", "max_tokens"], 8192);
        f!.set(["app", "log_files"], 5);
        return { text: SETTINGS_TEXT, document: null, diagnostics: [], valid: true };
      },
      get_config: () => configDoc({ content_hash: "h2" }),
    });
    f.set(["services", "chat", "max_tokens"], 4096);
    await f.save();
    expect(f.editList).toEqual([
      { path: ["services", "chat", "max_tokens"], value: 8192 },
      { path: ["app", "log_files"], value: 5 },
    ]);
    f.dispose();
  });
});
