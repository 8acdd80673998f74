import { fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import { backend, send } from "../test/fixtures";
import LogViewer from "./LogViewer.svelte";

const text = () => [...screen.getByTestId("log-lines").querySelectorAll(".line")].map((l) => l.textContent);

describe("log viewer", () => {
  it("tails the first service, follows it and appends its lines", async () => {
    const calls = backend();
    render(LogViewer, { services: ["chat", "embed"] });
    await waitFor(() => expect(text()).toEqual(["line one", "error: two", "line three"]));
    expect(calls.find((c) => c.cmd === "logs")?.args).toEqual({ name: "chat", lines: 500 });
    await waitFor(() => expect(calls.find((c) => c.cmd === "follow_logs")?.args).toEqual({ name: "chat" }));
    await send("log-line", { name: "chat", line: "fresh line" });
    await send("log-line", { name: "embed", line: "not mine" });
    await waitFor(() => expect(text()).toContain("fresh line"));
    expect(text()).not.toContain("not mine");
  });

  it("filters by the search box", async () => {
    backend();
    render(LogViewer, { services: ["chat"] });
    await waitFor(() => expect(text()).toHaveLength(3));
    await fireEvent.input(screen.getByTestId("log-search"), { target: { value: "ERROR" } });
    await waitFor(() => expect(text()).toEqual(["error: two"]));
    await send("log-line", { name: "chat", line: "another error" });
    await send("log-line", { name: "chat", line: "fine" });
    await waitFor(() => expect(text()).toEqual(["error: two", "another error"]));
  });

  it("unfollow stops appending; switching service unfollows the old one", async () => {
    const calls = backend({ logs: (a) => ({ lines: [`${a.name} tail`] }) });
    render(LogViewer, { services: ["chat", "embed"] });
    await waitFor(() => expect(calls.some((c) => c.cmd === "follow_logs")).toBe(true));
    await fireEvent.click(screen.getByTestId("log-follow"));
    await waitFor(() => expect(calls.find((c) => c.cmd === "unfollow_logs")?.args).toEqual({ name: "chat" }));
    await send("log-line", { name: "chat", line: "ignored" });
    expect(text()).not.toContain("ignored");
    await fireEvent.click(screen.getByTestId("log-follow"));
    await waitFor(() => expect(calls.filter((c) => c.cmd === "follow_logs")).toHaveLength(2));
    await fireEvent.change(screen.getByTestId("log-service"), { target: { value: "embed" } });
    await waitFor(() => expect(text()).toEqual(["embed tail"]));
    expect(calls.filter((c) => c.cmd === "unfollow_logs").map((c) => c.args.name)).toEqual(["chat", "chat"]);
    await waitFor(() => expect(calls.filter((c) => c.cmd === "follow_logs").at(-1)?.args).toEqual({ name: "embed" }));
  });
});
