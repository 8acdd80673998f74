import { fireEvent, screen, waitFor } from "@testing-library/svelte";
import { afterEach, describe, expect, it } from "vitest";
import type { ChatSend } from "../bindings/ChatSend";
import { send, service, status } from "../test/fixtures";
import { openView } from "../test/view";

const demo = () =>
  status({
    services: [
      service("chat"),
      service("reader", { kind: "ocr" }),
      service("voice", { kind: "tts" }),
      service("ears", { kind: "stt" }),
      service("embed", { kind: "embedding" }),
    ],
  });

const sent = (calls: { cmd: string; args: Record<string, unknown> }[]) =>
  calls.filter((c) => c.cmd === "chat_send").map((c) => c.args.request as ChatSend);

async function type(text: string) {
  await fireEvent.input(screen.getByTestId("chat-input"), { target: { value: text } });
  await fireEvent.click(screen.getByTestId("chat-send"));
}

afterEach(() => localStorage.clear());

describe("chat window", () => {
  it("streams a reply with its thinking folded and its speed under it, and keeps the conversation", async () => {
    const calls = await openView("#chat?target=chat", "chat", { status: demo });
    const select = (await screen.findByTestId("chat-target")) as HTMLSelectElement;
    // Only what talks: no embedding service.
    expect([...select.options].map((o) => o.value)).toEqual(["chat", "reader", "voice", "ears"]);
    await waitFor(() => expect(select.value).toBe("chat"));
    await type("What is 17 × 23?");
    await waitFor(() => expect(sent(calls)).toHaveLength(1));
    const req = sent(calls)[0];
    expect(req.target).toBe("chat");
    expect(req.messages).toEqual([{ role: "user", content: "What is 17 × 23?", image: null }]);
    expect(screen.getByTestId("chat-stop")).toBeTruthy();

    await send("chat-event", { kind: "delta", id: req.id, content: "", reasoning: "17 × 20 = 340, " });
    await send("chat-event", { kind: "delta", id: req.id, content: "It is ", reasoning: "+ 51" });
    await send("chat-event", { kind: "delta", id: "someone-else", content: "not mine", reasoning: "" });
    await send("chat-event", { kind: "delta", id: req.id, content: "391.", reasoning: "" });
    await send("chat-event", { kind: "done", id: req.id, ttft_ms: 123.4, tok_s: 45.04, completion_tokens: 32, finish_reason: "stop" });

    const reply = await screen.findByTestId("turn-stats");
    expect(reply.textContent).toBe("TTFT 123 ms · 45.0 tok/s · 32 tokens");
    const contents = screen.getAllByTestId("turn-content").map((c) => c.textContent);
    expect(contents).toEqual(["What is 17 × 23?", "It is 391."]);
    const thinking = screen.getByTestId("thinking") as HTMLDetailsElement;
    expect(thinking.open).toBe(false);
    expect(thinking.textContent).toContain("17 × 20 = 340, + 51");
    expect(screen.getByTestId("chat-send")).toBeTruthy();

    // The next turn carries the conversation.
    await type("And 17 × 24?");
    await waitFor(() => expect(sent(calls)).toHaveLength(2));
    expect(sent(calls)[1].messages.map((m) => [m.role, m.content])).toEqual([
      ["user", "What is 17 × 23?"],
      ["assistant", "It is 391."],
      ["user", "And 17 × 24?"],
    ]);
    await send("chat-event", { kind: "failed", id: sent(calls)[1].id, message: "HTTP 503: chat is loading" });
    expect((await screen.findByTestId("turn-error")).textContent).toBe("HTTP 503: chat is loading");

    // Kept for the next time the window opens.
    const kept = JSON.parse(localStorage.getItem("mlxbox.chat.chat") ?? "[]");
    expect(kept.map((t: { content: string }) => t.content)).toEqual(["What is 17 × 23?", "It is 391.", "And 17 × 24?", ""]);
  });

  it("shows a kept conversation again, and a new one clears it", async () => {
    localStorage.setItem("mlxbox.chat.chat", JSON.stringify([{ role: "user", content: "kept turn" }]));
    await openView("#chat?target=chat", "chat", { status: demo });
    await waitFor(() => expect(screen.getAllByTestId("turn-content").map((c) => c.textContent)).toEqual(["kept turn"]));
    await fireEvent.click(screen.getByTestId("chat-clear"));
    await waitFor(() => expect(screen.queryAllByTestId("turn-content")).toHaveLength(0));
    expect(JSON.parse(localStorage.getItem("mlxbox.chat.chat") ?? "null")).toEqual([]);
  });

  it("stop cancels the reply being streamed", async () => {
    const calls = await openView("#chat?target=chat", "chat", { status: demo });
    await waitFor(async () => expect(((await screen.findByTestId("chat-target")) as HTMLSelectElement).value).toBe("chat"));
    await type("hi");
    await waitFor(() => expect(sent(calls)).toHaveLength(1));
    await fireEvent.click(screen.getByTestId("chat-stop"));
    await waitFor(() => expect(calls.find((c) => c.cmd === "chat_cancel")?.args).toEqual({ id: sent(calls)[0].id }));
  });

  it("a speech service reads the text aloud; a transcription service transcribes a file", async () => {
    const calls = await openView("#chat?target=voice", "chat", { status: demo });
    await waitFor(async () => expect(((await screen.findByTestId("chat-target")) as HTMLSelectElement).value).toBe("voice"));
    expect(screen.getByTestId("chat-send").textContent?.trim()).toBe("Speak");
    await type("Hello there");
    expect(await screen.findByTestId("turn-audio")).toBeTruthy();
    expect(calls.find((c) => c.cmd === "chat_speech")?.args).toEqual({ target: "voice", text: "Hello there" });

    await fireEvent.change(screen.getByTestId("chat-target"), { target: { value: "ears" } });
    const input = await screen.findByTestId("chat-audio");
    const file = new File([new Uint8Array([82, 73, 70, 70])], "note.wav", { type: "audio/wav" });
    await fireEvent.change(input, { target: { files: [file] } });
    await waitFor(() => expect(screen.getAllByTestId("turn-content").map((c) => c.textContent)).toContain("hello from the file"));
    const t = calls.find((c) => c.cmd === "chat_transcribe")?.args;
    expect(t?.target).toBe("ears");
    expect(t?.fileName).toBe("note.wav");
    expect(String(t?.audio)).toMatch(/^data:audio\/wav;base64,/);
  });

  it("a dashboard row opens the chat window on its service", async () => {
    const calls = await openView("#dashboard", "dashboard", { status: demo });
    await fireEvent.click(await screen.findByTestId("chat-reader"));
    await waitFor(() => expect(calls.find((c) => c.cmd === "open_view")?.args).toEqual({ view: "chat", query: "target=reader" }));
    expect(screen.queryByTestId("chat-embed")).toBeNull();
  });
});
