// The URLs clients use, from where the daemon listens (`GET /v1/listeners`): what the dashboard shows
// and copies.
import type { Listening } from "../bindings/Listening";
import type { ServiceStatus } from "../bindings/ServiceStatus";

/** `http://127.0.0.1:8081/v1` for a listener's address; a wildcard bind is reached on loopback here. */
export function urlOf(address: string, tls: boolean): string {
  const hostPort = address.replace(/^0\.0\.0\.0:/, "127.0.0.1:").replace(/^\[::\]:/, "[::1]:");
  return `${tls ? "https" : "http"}://${hostPort}/v1`;
}

/** The OpenAI base URL of a service: its frontend (the proxy, with keys and limits) when it has one,
 *  else its server's own port. */
export function serviceUrl(svc: ServiceStatus, listening: Listening[]): string | null {
  const face = listening.find((l) => l.name === `[services.${svc.name}] port`);
  if (face) return urlOf(face.address, face.tls);
  const port = svc.frontend_port ?? svc.port;
  return port == null ? null : `http://127.0.0.1:${port}/v1`;
}

/** Copies `text`; the clipboard API where the web view grants it, else a selection copy. */
export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    const ok = typeof document.execCommand === "function" && document.execCommand("copy");
    area.remove();
    return ok;
  }
}
