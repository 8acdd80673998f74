import { mount } from "svelte";
import "./app.css";
import App from "./App.svelte";
import { followSystemTheme } from "./lib/theme";

async function main() {
  followSystemTheme();
  // Look at the windows in a plain browser with a fake daemon: VITE_MOCK_IPC=1 npm run dev.
  if (import.meta.env.VITE_MOCK_IPC) (await import("./dev/mock")).installMock();
  mount(App, { target: document.getElementById("app")! });
}

void main();
