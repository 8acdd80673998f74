import { fireEvent, screen, waitFor, within } from "@testing-library/svelte";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { KeyInfo } from "../bindings/KeyInfo";
import { day } from "../lib/format";
import { configDoc, keyInfo, send, unreachable, type Handler } from "../test/fixtures";
import { openView } from "../test/view";

const KEYS: KeyInfo[] = [
  keyInfo("k1", { name: "laptop", created: 1_700_000_000, last4: "9f2c" }),
  keyInfo("k2", { name: null, created: 1_710_000_000, last4: "0b7e", services: ["chat"] }),
];

/** The Settings view with a keyring holding `keys` (add/remove change it, as the daemon would). */
async function settings(handlers: Record<string, Handler> = {}, keys: KeyInfo[] = KEYS) {
  let held = [...keys];
  // The keys pane, once the file (its services: the scopes) is read.
  return openView("#settings?pane=keys", "nav-service-chat", {
    list_keys: () => ({ keys: held, keyring_error: null }),
    add_key: (a) => {
      const req = a.key as { name: string | null; services: string[] };
      const key = keyInfo("k3", { name: req.name, services: req.services, last4: "wxyz" });
      held = [...held, key];
      return { key, secret: "sk-mlxbox-TOPSECRETwxyz" };
    },
    remove_key: (a) => {
      const k = held.find((x) => x.id === a.id)!;
      held = held.filter((x) => x.id !== a.id);
      return k;
    },
    ...handlers,
  });
}
const count = (calls: { cmd: string }[], cmd: string) => calls.filter((c) => c.cmd === cmd).length;

afterEach(() => {
  vi.unstubAllGlobals();
  Reflect.deleteProperty(navigator, "clipboard");
});

describe("keys section", () => {
  it("lists the keys: label, last 4, created, scope", async () => {
    const calls = await settings();
    const k1 = await screen.findByTestId("key-k1");
    expect(k1).toHaveTextContent("laptop");
    expect(k1).toHaveTextContent("…9f2c");
    expect(k1).toHaveTextContent(day(1_700_000_000));
    expect(k1).toHaveTextContent("all services");
    const k2 = screen.getByTestId("key-k2");
    expect(k2).toHaveTextContent("unnamed");
    expect(k2).toHaveTextContent("…0b7e");
    expect(screen.getByTestId("key-scope-k2")).toHaveTextContent(/^chat$/);
    expect(within(screen.getByTestId("keys")).getAllByRole("listitem")).toHaveLength(2);
    // fetched once on load, no polling; the old note is gone
    expect(count(calls, "list_keys")).toBe(1);
    expect(screen.queryByTestId("api-keys-note")).toBeNull();
    expect(screen.queryByTestId("plaintext-keys")).toBeNull();
    expect(screen.queryByTestId("keyring-error")).toBeNull();
    expect(screen.getByTestId("key-add")).toBeEnabled();
  });

  it("an empty keyring says so", async () => {
    await settings({}, []);
    expect(await screen.findByTestId("keys-empty")).toHaveTextContent("No keys");
  });

  it("add sends the label and the chosen services, shows the secret once, Done clears it", async () => {
    const calls = await settings();
    await waitFor(() => expect(screen.getByTestId("key-add")).toBeEnabled());
    // the scope choices are the services of the settings document
    expect(screen.getByTestId("key-service-chat")).toBeInTheDocument();
    expect(screen.getByTestId("key-service-embed")).toBeInTheDocument();
    await fireEvent.input(screen.getByTestId("key-name"), { target: { value: "  ci  " } });
    await fireEvent.click(screen.getByTestId("key-service-embed"));
    await fireEvent.click(screen.getByTestId("key-add"));

    const box = await screen.findByTestId("key-secret");
    expect(calls.filter((c) => c.cmd === "add_key").map((c) => c.args)).toEqual([{ key: { name: "ci", services: ["embed"] } }]);
    expect(box).toHaveTextContent("sk-mlxbox-TOPSECRETwxyz");
    expect(box).toHaveTextContent("Copy it now: it will not be shown again.");
    // the list is re-read and shows the new key without its secret
    const row = await screen.findByTestId("key-k3");
    expect(row).toHaveTextContent("ci");
    expect(row).toHaveTextContent("…wxyz");
    expect(row).not.toHaveTextContent("TOPSECRET");
    expect(count(calls, "list_keys")).toBe(2);
    // the form is reset
    expect((screen.getByTestId("key-name") as HTMLInputElement).value).toBe("");
    expect((screen.getByTestId("key-service-embed") as HTMLInputElement).checked).toBe(false);

    await fireEvent.click(screen.getByTestId("key-secret-done"));
    expect(screen.queryByTestId("key-secret")).toBeNull();
    expect(document.body).not.toHaveTextContent("TOPSECRET");
    expect(window.localStorage.length).toBe(0);
    expect(window.sessionStorage.length).toBe(0);
  });

  it("an unnamed, unscoped key sends null and no services", async () => {
    const calls = await settings();
    await waitFor(() => expect(screen.getByTestId("key-add")).toBeEnabled());
    await fireEvent.click(screen.getByTestId("key-add"));
    await screen.findByTestId("key-secret");
    expect(calls.find((c) => c.cmd === "add_key")?.args).toEqual({ key: { name: null, services: [] } });
  });

  it("Copy writes the secret to the clipboard", async () => {
    const writeText = vi.fn(() => Promise.resolve());
    Object.defineProperty(navigator, "clipboard", { value: { writeText }, configurable: true });
    await settings();
    await waitFor(() => expect(screen.getByTestId("key-add")).toBeEnabled());
    await fireEvent.click(screen.getByTestId("key-add"));
    await fireEvent.click(await screen.findByTestId("key-secret-copy"));
    expect(writeText).toHaveBeenCalledWith("sk-mlxbox-TOPSECRETwxyz");
    expect(await screen.findByTestId("key-secret-copied")).toHaveTextContent("Copied");
  });

  it("without a clipboard, Copy selects the key and says to copy it by hand", async () => {
    Object.defineProperty(navigator, "clipboard", { value: undefined, configurable: true });
    await settings();
    await waitFor(() => expect(screen.getByTestId("key-add")).toBeEnabled());
    await fireEvent.click(screen.getByTestId("key-add"));
    await fireEvent.click(await screen.findByTestId("key-secret-copy"));
    expect(await screen.findByTestId("key-secret-copied")).toHaveTextContent("copy it with");
    expect(window.getSelection()?.toString()).toBe("sk-mlxbox-TOPSECRETwxyz");
    expect(screen.getByTestId("key-secret")).toBeInTheDocument();
  });

  it("a failed add shows the error inline and no secret", async () => {
    await settings({
      add_key: () => {
        throw { kind: "refused", message: "keyring: locked", hint: null, preview: null };
      },
    });
    await waitFor(() => expect(screen.getByTestId("key-add")).toBeEnabled());
    await fireEvent.click(screen.getByTestId("key-add"));
    expect(await screen.findByTestId("keys-action-error")).toHaveTextContent("keyring: locked");
    expect(screen.queryByTestId("key-secret")).toBeNull();
  });

  it("remove asks to confirm, then sends remove_key with the id and re-reads the list", async () => {
    const calls = await settings();
    await fireEvent.click(await screen.findByTestId("key-remove-k1"));
    expect(count(calls, "remove_key")).toBe(0);
    const confirm = screen.getByTestId("key-remove-confirm-k1");
    // cancel backs out
    await fireEvent.click(screen.getByTestId("key-remove-cancel-k1"));
    expect(screen.queryByTestId("key-remove-confirm-k1")).toBeNull();
    expect(confirm).not.toBeInTheDocument();
    await fireEvent.click(screen.getByTestId("key-remove-k1"));
    await fireEvent.click(screen.getByTestId("key-remove-confirm-k1"));
    await waitFor(() => expect(screen.queryByTestId("key-k1")).toBeNull());
    expect(calls.filter((c) => c.cmd === "remove_key").map((c) => c.args)).toEqual([{ id: "k1" }]);
    expect(count(calls, "list_keys")).toBe(2);
    expect(screen.getByTestId("key-k2")).toBeInTheDocument();
  });

  it("the secret of a new key leaves the screen when that key is removed (another key's removal keeps it)", async () => {
    await settings();
    await waitFor(() => expect(screen.getByTestId("key-add")).toBeEnabled());
    await fireEvent.click(screen.getByTestId("key-add"));
    await screen.findByTestId("key-secret");
    await fireEvent.click(await screen.findByTestId("key-remove-k1"));
    await fireEvent.click(screen.getByTestId("key-remove-confirm-k1"));
    await waitFor(() => expect(screen.queryByTestId("key-k1")).toBeNull());
    expect(screen.getByTestId("key-secret")).toBeInTheDocument();
    await fireEvent.click(await screen.findByTestId("key-remove-k3"));
    await fireEvent.click(screen.getByTestId("key-remove-confirm-k3"));
    await waitFor(() => expect(screen.queryByTestId("key-secret")).toBeNull());
    expect(document.body).not.toHaveTextContent("TOPSECRET");
  });

  it("a failed remove shows the error inline", async () => {
    await settings({
      remove_key: () => {
        throw { kind: "not_found", message: "no key k1", hint: null, preview: null };
      },
    });
    await fireEvent.click(await screen.findByTestId("key-remove-k1"));
    await fireEvent.click(screen.getByTestId("key-remove-confirm-k1"));
    expect(await screen.findByTestId("keys-action-error")).toHaveTextContent("no key k1");
  });

  it("a key store error shows a banner and disables adding", async () => {
    await settings({ list_keys: () => ({ keys: [], keyring_error: "the key store /state/keys.json is damaged" }) });
    const banner = await screen.findByTestId("keyring-error");
    expect(banner).toHaveTextContent("the key store /state/keys.json is damaged");
    expect(screen.getByTestId("key-add")).toBeDisabled();
    expect(screen.getByTestId("key-name")).toBeDisabled();
  });

  it("an unreachable daemon shows inline, and Retry re-reads the list", async () => {
    let up = false;
    const calls = await settings({ list_keys: () => (up ? { keys: KEYS, keyring_error: null } : unreachable("no daemon on /state")) });
    expect(await screen.findByTestId("keys-error")).toHaveTextContent("no daemon on /state");
    expect(screen.getByTestId("key-add")).toBeDisabled();
    up = true;
    await fireEvent.click(screen.getByTestId("keys-retry"));
    expect(await screen.findByTestId("key-k1")).toBeInTheDocument();
    expect(screen.queryByTestId("keys-error")).toBeNull();
    expect(screen.getByTestId("key-add")).toBeEnabled();
    expect(count(calls, "list_keys")).toBe(2);
  });

  it("plaintext keys in [server] show the import note", async () => {
    const base = configDoc().document as Record<string, Record<string, unknown>>;
    await settings({ get_config: () => configDoc({ document: { ...base, server: { ...base.server, api_keys: ["sk-plain"] } } }) });
    const note = await screen.findByTestId("plaintext-keys");
    expect(note).toHaveTextContent("Plaintext keys in settings.toml — run mlx-box keys import to move them into the key store.");
    expect(note).toHaveTextContent("api_keys");
    expect(note).not.toHaveTextContent("sk-plain");
  });

  it("the window shown again re-reads the list; a secret left on screen when it was hidden is gone", async () => {
    const calls = await settings();
    await waitFor(() => expect(screen.getByTestId("key-add")).toBeEnabled());
    await fireEvent.click(screen.getByTestId("key-add"));
    await screen.findByTestId("key-secret");
    const n = count(calls, "list_keys");
    // shown again without having been hidden (Settings opened twice): the secret stays
    await send("window-shown", null);
    await waitFor(() => expect(count(calls, "list_keys")).toBe(n + 1));
    expect(screen.getByTestId("key-secret")).toBeInTheDocument();
    // hidden (closed), then shown again: cleared
    const vis = vi.spyOn(document, "visibilityState", "get").mockReturnValue("hidden");
    document.dispatchEvent(new Event("visibilitychange"));
    vis.mockRestore();
    await send("window-shown", null);
    await waitFor(() => expect(screen.queryByTestId("key-secret")).toBeNull());
    await waitFor(() => expect(count(calls, "list_keys")).toBe(n + 2));
  });
});
