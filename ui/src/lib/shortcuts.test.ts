import { fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import App from "../App.svelte";
import { backend } from "../test/fixtures";
import { shortcutOf } from "./shortcuts";

const key = (k: string, over: Partial<KeyboardEvent> = {}) => ({ key: k, metaKey: false, ctrlKey: false, altKey: false, shiftKey: false, ...over });

describe("shortcuts", () => {
  it("⌘ on a Mac, Ctrl elsewhere, nothing else held", () => {
    expect(shortcutOf(key(",", { metaKey: true }), true)).toBe("settings");
    expect(shortcutOf(key(",", { ctrlKey: true }), true)).toBeNull();
    expect(shortcutOf(key("1", { ctrlKey: true }), false)).toBe("dashboard");
    expect(shortcutOf(key("R", { ctrlKey: true }), false)).toBe("restart");
    expect(shortcutOf(key("r", { ctrlKey: true, shiftKey: true }), false)).toBeNull();
    expect(shortcutOf(key("x", { ctrlKey: true }), false)).toBeNull();
    expect(shortcutOf(key("w"), false)).toBeNull();
  });

  it("open the windows, close this one, find in the log, restart the selected service", async () => {
    const calls = backend();
    render(App);
    await screen.findByTestId("service-chat");
    const press = (k: string) => fireEvent.keyDown(window, { key: k, ctrlKey: true });
    await press(",");
    await press("2");
    await press("3");
    await press("1");
    expect(calls.filter((c) => c.cmd === "open_view").map((c) => c.args.view)).toEqual(["settings", "bench", "chat", "dashboard"]);
    await press("w");
    expect(calls.some((c) => c.cmd === "close_window")).toBe(true);
    await press("f");
    expect(document.activeElement).toBe(screen.getByTestId("log-search"));
    // ⌘R with no service selected does nothing (and never reloads the page).
    await press("r");
    expect(calls.some((c) => c.cmd === "action")).toBe(false);
    await fireEvent.click(screen.getByTestId("service-chat"));
    expect(screen.getByTestId("service-chat")).toHaveAttribute("aria-selected", "true");
    await press("r");
    await waitFor(() => expect(calls.find((c) => c.cmd === "action")?.args).toEqual({ target: "chat", verb: "restart" }));
  });
});
