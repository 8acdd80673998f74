import { fireEvent, render, screen, waitFor, within } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import App from "../App.svelte";
import { benchResult, comparison, doctorReport, speechService, summary } from "../test/benchFixtures";
import { backend, notFound, send, type Call, type Handler } from "../test/fixtures";
import { openView } from "../test/view";

/** The Benchmark view against the fake backend; resolves once the form is there. */
const bench = (handlers: Record<string, Handler> = {}) => openView("#bench", "bench-run", handlers);
const of = (calls: Call[], cmd: string) => calls.filter((c) => c.cmd === cmd);
const progress = (id: string, done: number, total: number, service = "chat", phase = "level", message = `${service}: concurrency 2`) =>
  send("daemon-event", { type: "bench_progress", id, service, phase, done, total, message });

describe("benchmark window", () => {
  it("Run with nothing set sends empty opts (the daemon's defaults)", async () => {
    const calls = await bench({ bench_start: () => ({ id: "r1" }) });
    // the services to pick are the chat / ocr / embedding ones of the live store
    await screen.findByTestId("bench-service-chat-pick");
    expect(screen.getByTestId("bench-service-embed-pick")).toBeInTheDocument();
    await fireEvent.click(screen.getByTestId("bench-run"));
    await waitFor(() => expect(of(calls, "bench_start")).toHaveLength(1));
    expect(of(calls, "bench_start")[0].args).toEqual({ options: {} });
    // following it now: progress shown, Run disabled, Cancel offered
    expect(await screen.findByTestId("bench-progress")).toHaveTextContent("r1");
    expect(screen.getByTestId("bench-run")).toBeDisabled();
    expect(screen.getByTestId("bench-cancel")).toBeEnabled();
  });

  it("a run on servers that are serving requests asks first; the tray's Run benchmark… always does", async () => {
    const calls = await bench({ bench_start: () => ({ id: "r1" }), proxy_stats: () => ({ chat: { in_flight: 1, waiting: 0 } }) });
    await waitFor(() => expect(of(calls, "proxy_stats").length).toBeGreaterThan(0));
    await fireEvent.click(await screen.findByTestId("bench-run"));
    expect(await screen.findByTestId("confirm-detail")).toHaveTextContent("1 service running, 1 request in flight");
    expect(of(calls, "bench_start")).toHaveLength(0);
    await fireEvent.click(screen.getByTestId("confirm-ok"));
    await waitFor(() => expect(of(calls, "bench_start")).toHaveLength(1));
  });

  it("#bench?confirm=run (the tray) shows the sheet before anything runs", async () => {
    const calls = await openView("#bench?confirm=run", "bench-run", { bench_start: () => ({ id: "r1" }) });
    expect(await screen.findByTestId("confirm-sheet")).toHaveTextContent("Run a benchmark on the live servers?");
    await fireEvent.click(screen.getByTestId("confirm-cancel"));
    expect(of(calls, "bench_start")).toHaveLength(0);
    window.location.hash = "";
  });

  it("Run sends only what the user set", async () => {
    const calls = await bench({ bench_start: () => ({ id: "r1" }) });
    await fireEvent.click(await screen.findByTestId("bench-service-chat-pick"));
    await fireEvent.input(screen.getByTestId("bench-levels"), { target: { value: "1, 4 16" } });
    await fireEvent.input(screen.getByTestId("bench-requests"), { target: { value: "32" } });
    await fireEvent.input(screen.getByTestId("bench-max-tokens"), { target: { value: "256" } });
    await fireEvent.input(screen.getByTestId("bench-rate"), { target: { value: "2.5" } });
    await fireEvent.click(screen.getByTestId("bench-long-context"));
    await fireEvent.input(await screen.findByTestId("bench-long-context-tokens"), { target: { value: "8000" } });
    await fireEvent.click(screen.getByTestId("bench-thinking"));
    await fireEvent.click(screen.getByTestId("bench-run"));
    await waitFor(() => expect(of(calls, "bench_start")).toHaveLength(1));
    expect(of(calls, "bench_start")[0].args).toEqual({
      options: {
        services: ["chat"],
        concurrency: [1, 4, 16],
        requests: 32,
        max_tokens: 256,
        rate: 2.5,
        long_context: true,
        long_context_tokens: 8000,
        thinking_check: false,
      },
    });
  });

  it("the load fields: exact lengths, a dataset, a seed and an SLO", async () => {
    const calls = await bench({ bench_start: () => ({ id: "r1" }) });
    await fireEvent.input(screen.getByTestId("bench-prompt-tokens"), { target: { value: "512±64" } });
    await fireEvent.input(screen.getByTestId("bench-output-tokens"), { target: { value: "128" } });
    await fireEvent.input(screen.getByTestId("bench-dataset"), { target: { value: " /data/chats.jsonl " } });
    await fireEvent.input(screen.getByTestId("bench-seed"), { target: { value: "7" } });
    await fireEvent.input(screen.getByTestId("bench-slo-ttft"), { target: { value: "500" } });
    await fireEvent.input(screen.getByTestId("bench-slo-tpot"), { target: { value: "50" } });
    await fireEvent.click(screen.getByTestId("bench-run"));
    await waitFor(() => expect(of(calls, "bench_start")).toHaveLength(1));
    expect(of(calls, "bench_start")[0].args).toEqual({
      options: {
        prompt_tokens: 512,
        prompt_tokens_spread: 64,
        output_tokens: 128,
        dataset: "/data/chats.jsonl",
        seed: 7,
        slo_ttft_ms: 500,
        slo_tpot_ms: 50,
      },
    });
  });

  it("a bad load field says why", async () => {
    await bench();
    await fireEvent.input(screen.getByTestId("bench-prompt-tokens"), { target: { value: "64±64" } });
    expect(await screen.findByTestId("bench-form-error")).toHaveTextContent("Prompt tokens");
    await fireEvent.input(screen.getByTestId("bench-prompt-tokens"), { target: { value: "64" } });
    await fireEvent.input(screen.getByTestId("bench-slo-tpot"), { target: { value: "0" } });
    expect(await screen.findByTestId("bench-form-error")).toHaveTextContent("SLO TPOT");
  });

  it("a bad field says why and disables Run", async () => {
    const calls = await bench();
    await fireEvent.input(screen.getByTestId("bench-levels"), { target: { value: "1,two" } });
    expect(await screen.findByTestId("bench-form-error")).toHaveTextContent("Concurrency");
    expect(screen.getByTestId("bench-run")).toBeDisabled();
    await fireEvent.input(screen.getByTestId("bench-levels"), { target: { value: "1,2" } });
    await fireEvent.input(screen.getByTestId("bench-rate"), { target: { value: "-1" } });
    expect(await screen.findByTestId("bench-form-error")).toHaveTextContent("Rate");
    await fireEvent.input(screen.getByTestId("bench-rate"), { target: { value: "" } });
    await waitFor(() => expect(screen.queryByTestId("bench-form-error")).toBeNull());
    expect(screen.getByTestId("bench-run")).toBeEnabled();
    expect(of(calls, "bench_start")).toHaveLength(0);
  });

  it("progress events move the bar and show the status line per service and phase", async () => {
    await bench({ bench_start: () => ({ id: "r1" }) });
    await fireEvent.click(screen.getByTestId("bench-run"));
    await screen.findByTestId("bench-progress");
    await progress("r1", 1, 40, "chat", "warmup", "chat: warm-up");
    await progress("r1", 5, 40, "chat", "level", "chat: concurrency 4");
    await waitFor(() => expect(screen.getByTestId("bench-progress-count")).toHaveTextContent("5/40"));
    const box = screen.getByTestId("bench-progress");
    expect(box).toHaveAttribute("data-done", "5");
    expect(box).toHaveAttribute("data-total", "40");
    expect(screen.getByTestId("bench-progress-message")).toHaveTextContent("chat: concurrency 4");
    expect(screen.getByTestId("bench-progress-bar")).toHaveAttribute("aria-valuenow", "5");
    expect((screen.getByTestId("bench-progress-bar").firstElementChild as HTMLElement).style.width).toBe("12.5%");
    expect(screen.getByTestId("bench-phase-0")).toHaveTextContent("chat · warmup · 1 request");
    expect(screen.getByTestId("bench-phase-1")).toHaveTextContent("chat · level · 1 request");
    await progress("r1", 6, 40, "chat", "level", "chat: concurrency 8");
    await waitFor(() => expect(screen.getByTestId("bench-phase-1")).toHaveTextContent("2 requests"));
    expect(screen.getByTestId("bench-phase-1")).toHaveTextContent("concurrency 8");
  });

  it("bench_done loads the result: verdict, machine, level tables, checks and charts", async () => {
    let runs: ReturnType<typeof summary>[] = [];
    const calls = await bench({
      bench_start: () => ({ id: "r1" }),
      bench_result: (a) => benchResult(a.id as string),
      bench_history: () => ({ runs }),
    });
    await fireEvent.click(screen.getByTestId("bench-run"));
    await screen.findByTestId("bench-progress");
    runs = [summary("r1", 0)];
    await send("daemon-event", { type: "bench_done", id: "r1", verdict: "pass", error: null });

    const res = await screen.findByTestId("bench-results");
    expect(of(calls, "bench_result").map((c) => c.args)).toEqual([{ id: "r1" }]);
    expect(screen.queryByTestId("bench-progress")).toBeNull();
    expect(screen.queryByTestId("bench-cancel")).toBeNull();
    expect(screen.getByTestId("bench-run")).toBeEnabled();
    expect(res).toHaveAttribute("data-id", "r1");
    expect(screen.getByTestId("bench-verdict")).toHaveAttribute("data-verdict", "pass");
    expect(screen.getByTestId("bench-machine")).toHaveTextContent("Apple M2 Ultra");
    expect(screen.getByTestId("bench-machine")).toHaveTextContent("192 GB RAM");
    expect(screen.getByTestId("bench-machine")).toHaveTextContent("macOS 15.2");

    // one row per level, with units and definitions in the headers
    const table = screen.getByTestId("bench-levels-chat");
    expect(within(table).getAllByRole("row")).toHaveLength(5);
    const c4 = screen.getByTestId("bench-level-chat-2");
    expect(c4.children[0]).toHaveTextContent("4"); // concurrency
    expect(c4.children[2]).toHaveTextContent("400"); // TTFT p50
    expect(c4.children[3]).toHaveTextContent("600"); // p90
    expect(c4.children[5]).toHaveTextContent("25.0"); // TPOT p50
    const ttftHead = within(table).getByText(/TTFT p50/);
    expect(ttftHead).toHaveAttribute("title", expect.stringContaining("content or reasoning"));
    expect(within(table).getByText(/TPOT p50/)).toHaveAttribute("title", expect.stringContaining("(E2E − TTFT) / (N − 1)"));
    expect(table).toHaveTextContent("ms");
    expect(table).toHaveTextContent("tok/s");
    expect(screen.getByTestId("bench-embedding-embed")).toHaveTextContent("300"); // inputs/s at c=1
    expect(screen.getByTestId("bench-thinking-chat")).toHaveAttribute("data-status", "pass");
    expect(screen.getByTestId("bench-thinking-chat")).toHaveTextContent("Let me think step by step");
    expect(screen.getByTestId("bench-threshold-chat-expect_gen_tok_s")).toHaveTextContent("PASS");
    expect(screen.getByTestId("bench-legend")).toHaveTextContent("TTFT");

    // charts: one line per chat service, a point per level
    const toks = screen.getByTestId("chart-toks");
    expect(toks).toHaveAttribute("data-series", "2");
    expect(toks.querySelectorAll("polyline")).toHaveLength(2);
    expect(toks.querySelector('polyline[data-service="chat"]')).toHaveAttribute("data-points", "4");
    const ttft = screen.getByTestId("chart-ttft");
    expect(ttft.querySelectorAll("polyline")).toHaveLength(2);
    expect(ttft).toHaveTextContent("8"); // x ticks: the levels
    expect(screen.getByTestId("chart-inputs").querySelectorAll("polyline")).toHaveLength(1);
    // the history is re-read with the new run
    expect(await screen.findByTestId("history-r1")).toBeInTheDocument();
  });

  it("shows a speech service: latency, real-time factor and an answer", async () => {
    const calls = await bench({
      bench_start: () => ({ id: "r1" }),
      bench_result: () => benchResult("r1", { services: [speechService("tts")] }),
    });
    await fireEvent.input(screen.getByTestId("bench-audio-file"), { target: { value: "speech.mp3" } });
    expect(screen.getByTestId("bench-run")).toBeDisabled();
    await fireEvent.input(screen.getByTestId("bench-audio-file"), { target: { value: "/tmp/speech.wav" } });
    await fireEvent.click(screen.getByTestId("bench-run"));
    expect(of(calls, "bench_start")[0].args).toMatchObject({ options: { audio_file: "/tmp/speech.wav" } });
    await send("daemon-event", { type: "bench_done", id: "r1", verdict: "pass", error: null });
    const table = await screen.findByTestId("bench-audio-tts");
    const c1 = within(table).getByTestId("bench-audio-tts-0");
    expect(c1.children[5]).toHaveTextContent("4.2"); // audio s
    expect(c1.children[6]).toHaveTextContent("0.210"); // RTF p50
    expect(within(table).getByText("RTF p50")).toHaveAttribute("title", expect.stringContaining("faster than real time"));
    expect(screen.getByTestId("bench-audio-sample-tts")).toHaveTextContent("4.20 s of audio");
    expect(screen.getByTestId("bench-threshold-tts-expect_rtf")).toHaveTextContent("PASS");
  });

  it("shows a pool run: efficiency and each member's share", async () => {
    await bench({
      bench_start: () => ({ id: "r1" }),
      bench_result: () =>
        benchResult("r1", {
          pool: {
            name: "p",
            combined_output_tok_s: 717.8,
            solo_member: "a",
            solo_output_tok_s: 852.5,
            parallel_efficiency: 0.42,
            members: [
              { member: "a", requests: 25, share: 0.51, errors: 0, affinity_hits: 0 },
              { member: "studio-2/a", requests: 24, share: 0.49, errors: 1, affinity_hits: 3 },
            ],
          },
        }),
    });
    await fireEvent.click(screen.getByTestId("bench-run"));
    await send("daemon-event", { type: "bench_done", id: "r1", verdict: "pass", error: null });
    const pool = await screen.findByTestId("bench-pool");
    expect(within(pool).getByTestId("bench-pool-efficiency")).toHaveTextContent("0.42");
    expect(pool).toHaveTextContent("0.84× one member");
    expect(within(pool).getByTestId("bench-pool-member-studio-2/a")).toHaveTextContent("49.0 %");
  });

  it("shows a failed service, throttling, long context and a run's error", async () => {
    await bench({
      bench_start: () => ({ id: "r1" }),
      bench_result: () =>
        benchResult("r1", {
          verdict: "fail",
          services: [
            {
              ...benchResult("r1").services[0],
              verdict: "fail",
              throttling_suspected: true,
              long_context: { target_tokens: 20000, status: "skip", reason: "context 8192 < 20000", prompt_tokens: null, completion_tokens: null, ttft_ms: null, prompt_tok_s: null, e2e_ms: null },
              thresholds: [{ key: "expect_ttft_ms", expected: 200, measured: 450, status: "fail", detail: "450 > 200" }],
            },
          ],
        }),
    });
    await fireEvent.click(screen.getByTestId("bench-run"));
    await send("daemon-event", { type: "bench_done", id: "r1", verdict: "fail", error: null });
    await screen.findByTestId("bench-results");
    expect(screen.getByTestId("bench-verdict")).toHaveAttribute("data-verdict", "fail");
    expect(screen.getByTestId("bench-throttling-chat")).toHaveTextContent("throttling suspected");
    expect(screen.getByTestId("bench-long-context-chat")).toHaveAttribute("data-status", "skip");
    expect(screen.getByTestId("bench-long-context-chat")).toHaveTextContent("context 8192 < 20000");
    expect(screen.getByTestId("bench-threshold-chat-expect_ttft_ms")).toHaveAttribute("data-status", "fail");

    // a run that ends in error: said inline, no result fetched for it
    await fireEvent.click(screen.getByTestId("bench-run"));
    await send("daemon-event", { type: "bench_done", id: "r1b", verdict: null, error: "no service to measure" });
    expect(await screen.findByTestId("bench-run-error")).toHaveTextContent("no service to measure");
  });

  it("shows the newest saved run on open; a history click shows that run", async () => {
    const calls = await bench({
      bench_history: () => ({ runs: [summary("r1", 0), summary("r2", 1), summary("r3", 2, { verdict: "fail" })] }),
      bench_result: (a) => benchResult(a.id as string, { started_ms: a.id === "r1" ? 1 : 2 }),
    });
    const hist = screen.getByTestId("bench-history");
    await waitFor(() => expect(screen.getByTestId("bench-results")).toHaveAttribute("data-id", "r3"));
    // newest first, with the headline figure and verdict
    const rows = within(hist).getAllByRole("row").slice(1);
    expect(rows.map((r) => r.dataset.testid)).toEqual(["history-r3", "history-r2", "history-r1"]);
    expect(screen.getByTestId("history-r1")).toHaveTextContent("chat 40.0 tok/s");
    expect(screen.getByTestId("history-r1")).toHaveTextContent("embed 800 inputs/s");
    expect(screen.getByTestId("history-r3")).toHaveTextContent("FAIL");
    // the chart over time: one line per service, a point per run
    const chart = screen.getByTestId("chart-history");
    expect(chart.querySelector('polyline[data-service="chat"]')).toHaveAttribute("data-points", "3");
    await fireEvent.change(screen.getByTestId("history-metric"), { target: { value: "output_tok_s" } });
    await waitFor(() => expect(chart.querySelector('polyline[data-service="embed"]')).toHaveAttribute("data-points", "3"));

    await fireEvent.click(screen.getByTestId("history-r1"));
    await waitFor(() => expect(screen.getByTestId("bench-results")).toHaveAttribute("data-id", "r1"));
    expect(of(calls, "bench_result").map((c) => c.args.id)).toEqual(["r3", "r1"]);
    expect(screen.getByTestId("history-r1")).toHaveClass("shown");
  });

  it("compare sends the two picked runs and colors the deltas", async () => {
    const calls = await bench({
      bench_history: () => ({ runs: [summary("r1", 0), summary("r2", 1), summary("r3", 2)] }),
      bench_result: (a) => benchResult(a.id as string),
      bench_compare: (a) => comparison(a.a as string, a.b as string),
    });
    // A = the run before the newest, B = the newest
    await waitFor(() => expect((screen.getByTestId("compare-a") as HTMLSelectElement).value).toBe("r2"));
    expect((screen.getByTestId("compare-b") as HTMLSelectElement).value).toBe("r3");
    await fireEvent.change(screen.getByTestId("compare-a"), { target: { value: "r1" } });
    await fireEvent.click(screen.getByTestId("compare-run"));
    const table = await screen.findByTestId("bench-compare");
    expect(of(calls, "bench_compare").map((c) => c.args)).toEqual([{ a: "r1", b: "r3" }]);
    expect(table).toHaveAttribute("data-a", "r1");
    const [r0, r1, r2] = [0, 1, 2].map((i) => screen.getByTestId(`compare-row-${i}`));
    expect(r0).toHaveTextContent("gen tok/s");
    expect(r0).toHaveTextContent("+4.00");
    expect(r0).toHaveTextContent("+10.0 %");
    expect(r0).toHaveClass("better");
    expect(r0).toHaveAttribute("data-better", "true");
    expect(r1).toHaveTextContent("+30.0 %");
    expect(r1).toHaveClass("worse");
    expect(r2).not.toHaveClass("better");
    expect(r2).not.toHaveClass("worse");
    expect(r2).toHaveAttribute("data-better", "");
    // the same run twice cannot be compared
    await fireEvent.change(screen.getByTestId("compare-a"), { target: { value: "r3" } });
    expect(screen.getByTestId("compare-run")).toBeDisabled();
  });

  it("a level shows its real lengths, outputs that ended early and its goodput", async () => {
    await bench({
      bench_history: () => ({ runs: [summary("r1", 0)] }),
      bench_result: (a) => {
        const r = benchResult(a.id as string);
        r.services[0].levels[0] = { ...r.services[0].levels[0], ended_early: 3, goodput: { share: 0.75, request_s: 1.5 } };
        return r;
      },
    });
    const lens = await screen.findByTestId("bench-lengths-chat-0");
    expect(lens).toHaveTextContent("62.5/128");
    expect(lens).toHaveTextContent("3 short");
    expect(screen.getByTestId("bench-goodput-chat-0")).toHaveTextContent("75 %");
  });

  it("compare warns when the two runs sent different loads", async () => {
    await bench({
      bench_history: () => ({ runs: [summary("r1", 0), summary("r2", 1)] }),
      bench_result: (a) => benchResult(a.id as string, { load: "prompts of 512 tokens, 128 output tokens" }),
      bench_compare: (a) => ({
        ...comparison(a.a as string, a.b as string),
        load_differs: "the runs sent different loads: A built-in prompts; B prompts of 512 tokens",
      }),
    });
    expect(await screen.findByTestId("bench-load")).toHaveTextContent("prompts of 512 tokens, 128 output tokens");
    await waitFor(() => expect(screen.getByTestId("compare-run")).toBeEnabled());
    await fireEvent.click(screen.getByTestId("compare-run"));
    expect(await screen.findByTestId("compare-load-differs")).toHaveTextContent("different loads");
  });

  it("a compare error shows inline", async () => {
    await bench({
      bench_history: () => ({ runs: [summary("r1", 0), summary("r2", 1)] }),
      bench_result: (a) => benchResult(a.id as string),
      bench_compare: () => {
        throw { kind: "not_found", message: "no run r1", hint: null, preview: null };
      },
    });
    await waitFor(() => expect(screen.getByTestId("compare-run")).toBeEnabled());
    await fireEvent.click(screen.getByTestId("compare-run"));
    expect(await screen.findByTestId("compare-error")).toHaveTextContent("no run r1");
  });

  it("doctor renders every check with its status and reason", async () => {
    let release!: () => void;
    const calls = await bench({ doctor: () => new Promise((r) => (release = () => r(doctorReport()))) });
    expect(screen.queryByTestId("doctor-report")).toBeNull();
    await fireEvent.click(screen.getByTestId("doctor-run"));
    await waitFor(() => expect(screen.getByTestId("doctor-run")).toBeDisabled());
    expect(of(calls, "doctor").map((c) => c.args)).toEqual([{ options: {} }]);
    release();
    const report = await screen.findByTestId("doctor-report");
    expect(report).toHaveAttribute("data-ok", "false");
    expect(screen.getByTestId("doctor-check-0")).toHaveAttribute("data-status", "pass");
    expect(screen.getByTestId("doctor-check-0")).toHaveTextContent("✓ ready · chat: ready for 12m");
    expect(screen.getByTestId("doctor-check-1")).toHaveAttribute("data-status", "fail");
    expect(screen.getByTestId("doctor-check-1")).toHaveTextContent("✗ swap: swap 310 MB");
    expect(screen.getByTestId("doctor-check-2")).toHaveAttribute("data-status", "skip");
    expect(screen.getByTestId("doctor-check-2")).toHaveTextContent("– long_context · chat: context 8192 < 20000 tokens");
    expect(screen.getByTestId("doctor-run")).toBeEnabled();
  });

  it("a refused doctor shows the error inline; it waits while a benchmark runs", async () => {
    await bench({
      doctor: () => {
        throw { kind: "conflict", message: "a benchmark is running", hint: null, preview: null };
      },
    });
    await fireEvent.click(screen.getByTestId("doctor-run"));
    expect(await screen.findByTestId("doctor-error")).toHaveTextContent("a benchmark is running");
    await progress("r9", 1, 10);
    await waitFor(() => expect(screen.getByTestId("doctor-run")).toBeDisabled());
  });

  it("the dashboard's Doctor button opens the Benchmark window, which runs the doctor", async () => {
    const calls = backend({ doctor: () => doctorReport() });
    render(App);
    await screen.findByTestId("service-chat");
    await fireEvent.click(screen.getByTestId("dashboard-doctor"));
    // The dashboard stays the dashboard: the Benchmark window is its own.
    await waitFor(() => expect(of(calls, "open_view")[0]?.args).toEqual({ view: "bench", query: "doctor" }));
    expect(screen.getByTestId("dashboard")).toBeInTheDocument();
    // The window the app makes for it opens at #bench?doctor.
    window.location.hash = "#bench?doctor";
    expect(await screen.findByTestId("doctor-report")).toBeInTheDocument();
    expect(screen.getByTestId("bench")).toBeInTheDocument();
    expect(of(calls, "doctor")).toHaveLength(1);
    expect(window.location.hash).toBe("#bench");
  });

  it("a window opened mid-run follows bench_current; Cancel sends bench_cancel", async () => {
    const calls = await bench({ bench_current: () => ({ id: "r7" }), bench_cancel: () => ({ id: "r7" }), bench_result: (a) => benchResult(a.id as string, { cancelled: true }) });
    const box = await screen.findByTestId("bench-progress");
    expect(box).toHaveTextContent("r7");
    expect(screen.getByTestId("bench-progress-message")).toHaveTextContent("waiting");
    // no result fetched while it runs
    expect(of(calls, "bench_result")).toHaveLength(0);
    await progress("r7", 30, 40);
    await waitFor(() => expect(screen.getByTestId("bench-progress-count")).toHaveTextContent("30/40"));
    await fireEvent.click(screen.getByTestId("bench-cancel"));
    await waitFor(() => expect(of(calls, "bench_cancel")).toHaveLength(1));
    expect(await screen.findByTestId("bench-cancel")).toHaveTextContent("Cancelling…");
    await send("daemon-event", { type: "bench_done", id: "r7", verdict: "skip", error: null });
    expect(await screen.findByTestId("bench-cancelled")).toBeInTheDocument();
    expect(screen.queryByTestId("bench-cancel")).toBeNull();
  });

  it("a run started elsewhere (the tray menu) is followed from its first progress event", async () => {
    await bench();
    expect(screen.queryByTestId("bench-progress")).toBeNull();
    await progress("tray1", 2, 20);
    expect(await screen.findByTestId("bench-progress")).toHaveTextContent("tray1");
    expect(screen.getByTestId("bench-run")).toBeDisabled();
  });

  it("Run refused while one runs follows the running one", async () => {
    let current: { id: string } | null = null;
    await bench({
      bench_current: () => current ?? notFound(),
      bench_start: () => {
        current = { id: "r5" };
        throw { kind: "conflict", message: "a benchmark is already running (r5)", hint: null, preview: null };
      },
    });
    await fireEvent.click(screen.getByTestId("bench-run"));
    expect(await screen.findByTestId("bench-error")).toHaveTextContent("already running");
    expect(await screen.findByTestId("bench-progress")).toHaveTextContent("r5");
  });

  it("shown again: re-checks the run and the history; a run that ended meanwhile shows its result", async () => {
    let current: { id: string } | null = { id: "r8" };
    let runs = [summary("r1", 0)];
    const calls = await bench({
      bench_current: () => current ?? notFound(),
      bench_history: () => ({ runs }),
      bench_result: (a) => benchResult(a.id as string),
    });
    await screen.findByTestId("bench-progress");
    current = null;
    runs = [summary("r1", 0), summary("r8", 1)];
    await send("window-shown", null);
    await waitFor(() => expect(screen.getByTestId("bench-results")).toHaveAttribute("data-id", "r8"));
    expect(screen.queryByTestId("bench-progress")).toBeNull();
    expect(screen.getByTestId("history-r8")).toBeInTheDocument();
    expect(of(calls, "bench_current")).toHaveLength(2);
    expect(of(calls, "bench_history")).toHaveLength(2);
  });

  it("a run that ends before bench_start answers is not followed again", async () => {
    await bench({
      bench_start: async () => {
        await progress("quick", 1, 1);
        await send("daemon-event", { type: "bench_done", id: "quick", verdict: "pass", error: null });
        return { id: "quick" };
      },
      bench_result: (a) => benchResult(a.id as string),
    });
    await fireEvent.click(screen.getByTestId("bench-run"));
    await waitFor(() => expect(screen.getByTestId("bench-results")).toHaveAttribute("data-id", "quick"));
    await waitFor(() => expect(screen.getByTestId("bench-run")).toBeEnabled());
    expect(screen.queryByTestId("bench-progress")).toBeNull();
  });
});
