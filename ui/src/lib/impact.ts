// What an action that stops work will do, said before it is done: the confirmation sheets of Stop all,
// Restart all, a tray Stop and a benchmark on live servers.
import type { ProxyStats } from "../bindings/ProxyStats";
import type { ServiceStatus } from "../bindings/ServiceStatus";

export type Ask = { verb: "stop" | "restart" | "run"; target: string | null };

const LIVE = new Set(["starting", "ready", "unhealthy", "backoff"]);
const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** The sheet's title, its one line of what will happen, and the button that does it. */
export function impact(ask: Ask, services: ServiceStatus[], proxy: Record<string, ProxyStats | undefined>) {
  const hit = services.filter((s) => (ask.target === null || s.name === ask.target) && LIVE.has(s.state));
  const inFlight = hit.reduce((n, s) => n + (proxy[s.name]?.in_flight ?? 0) + (proxy[s.name]?.waiting ?? 0), 0);
  const requests = inFlight === 0 ? "no request in flight" : `${plural(inFlight, "request")} in flight`;
  const what = ask.target ?? (ask.verb === "run" ? "the benchmark" : "all");
  const running = `${plural(hit.length, "service")} running, ${requests}`;
  switch (ask.verb) {
    case "stop":
      return {
        title: ask.target ? `Stop ${what}?` : "Stop all services?",
        detail: `${running}: ${inFlight ? "they are cut off and " : ""}the servers stop until started again.`,
        confirm: ask.target ? "Stop" : "Stop all",
      };
    case "restart":
      return {
        title: ask.target ? `Restart ${what}?` : "Restart all services?",
        detail: `${running}: ${inFlight ? "they are cut off and " : ""}each server loads its model again.`,
        confirm: ask.target ? "Restart" : "Restart all",
      };
    case "run":
      return {
        title: "Run a benchmark on the live servers?",
        detail: `${running}: the benchmark puts a full load on them while it runs, and their users wait longer.`,
        confirm: "Run benchmark",
      };
  }
}

/** `confirm=stop`, `confirm=restart:chat`, `confirm=run` (what the tray asks a window to confirm). */
export function askOf(query: string): Ask | null {
  const c = new URLSearchParams(query).get("confirm");
  if (!c) return null;
  const [verb, target] = c.split(":", 2);
  if (verb !== "stop" && verb !== "restart" && verb !== "run") return null;
  return { verb, target: target || null };
}
