import "@testing-library/jest-dom/vitest";
import { cleanup } from "@testing-library/svelte";
import { clearMocks } from "@tauri-apps/api/mocks";
import { afterEach } from "vitest";

// Unmount first (components unlisten through the mocked IPC), then drop the mocks.
afterEach(() => {
  cleanup();
  clearMocks();
  window.location.hash = "";
});
