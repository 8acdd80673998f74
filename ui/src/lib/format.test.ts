import { describe, expect, it } from "vitest";
import { modelName } from "./format";

describe("modelName", () => {
  it("keeps a Hugging Face id and shortens a local path to its last two parts", () => {
    expect(modelName("mlx-community/Qwen3-30B-A3B-4bit")).toBe("mlx-community/Qwen3-30B-A3B-4bit");
    expect(modelName("/work/main/target/mlxbox-cache/demo-1/models/chat")).toBe("…/models/chat");
    expect(modelName("~/models/qwen")).toBe("~/models/qwen");
    expect(modelName("/models/qwen")).toBe("/models/qwen");
    expect(modelName(null)).toBe("—");
  });
});
