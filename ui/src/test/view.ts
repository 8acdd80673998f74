// Opening a window of the app in a test (apart from fixtures.ts, which the dev mock imports too).
import { render, screen } from "@testing-library/svelte";
import App from "../App.svelte";
import { backend, type Call, type Handler } from "./fixtures";

/** The app at `hash` against the fake backend (`handlers` on top); resolves once `testid` is on screen. */
export async function openView(hash: string, testid: string, handlers: Record<string, Handler> = {}): Promise<Call[]> {
  window.location.hash = hash;
  const calls = backend(handlers);
  render(App);
  await screen.findByTestId(testid);
  return calls;
}
