import { describe, expect, it } from "vitest";
import { bytes, modelName } from "./format";

describe("modelName", () => {
  it("keeps a Hugging Face id and shortens a local path to its last two parts", () => {
    expect(modelName("mlx-community/Qwen3-30B-A3B-4bit")).toBe("mlx-community/Qwen3-30B-A3B-4bit");
    expect(modelName("/work/main/target/mlxbox-cache/demo-1/models/chat")).toBe("…/models/chat");
    expect(modelName("~/models/qwen")).toBe("~/models/qwen");
    expect(modelName("/models/qwen")).toBe("/models/qwen");
    expect(modelName(null)).toBe("—");
    expect(modelName("/Users/a/.cache/huggingface/hub/models--mlx-community--Qwen3-8B-4bit/snapshots/3f2a9c")).toBe(
      "mlx-community/Qwen3-8B-4bit",
    );
    expect(modelName("/h/hub/models--Qwen--Qwen3-Embedding-0.6B/snapshots/ab12/")).toBe("Qwen/Qwen3-Embedding-0.6B");
  });
});

describe("bytes", () => {
  it("reads as the daemon and the menu bar write sizes (mlxbox_api::units: the same cases)", () => {
    const cases: [number, string][] = [
      [0, "0 B"],
      [1023, "1023 B"],
      [1024, "1.0 KB"],
      [3 * 2 ** 20, "3.0 MB"],
      [150 * 2 ** 20, "150 MB"],
      [1_181_116_006, "1.1 GB"],
      [128 * 2 ** 30, "128 GB"],
    ];
    for (const [n, want] of cases) expect(bytes(n)).toBe(want);
  });
});
