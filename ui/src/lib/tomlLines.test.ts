import { describe, expect, it } from "vitest";
import { keyLines, splitKey } from "./tomlLines";

describe("keyLines", () => {
  it("maps headers, keys, dotted/quoted keys and multi-line values", () => {
    const text = [
      "# comment", // 1
      "[server]", // 2
      'host = "127.0.0.1" # x = 1', // 3
      "", // 4
      '[services."my-chat"]', // 5
      "port = 8081", // 6
      "command = [", // 7
      '  "{python}", "a]b",', // 8
      "]", // 9
      "env.HF_HOME = '/m'", // 10
      'notes = """', // 11
      "free [ text", // 12
      '"""', // 13
      "max_tokens = 10", // 14
    ].join("\n");
    const m = keyLines(text);
    expect(m.get(1)).toBeUndefined();
    expect(m.get(2)).toEqual(["server"]);
    expect(m.get(3)).toEqual(["server", "host"]);
    expect(m.get(5)).toEqual(["services", "my-chat"]);
    expect(m.get(6)).toEqual(["services", "my-chat", "port"]);
    expect(m.get(8)).toEqual(["services", "my-chat", "command"]);
    expect(m.get(9)).toEqual(["services", "my-chat", "command"]);
    expect(m.get(10)).toEqual(["services", "my-chat", "env", "HF_HOME"]);
    expect(m.get(12)).toEqual(["services", "my-chat", "notes"]);
    expect(m.get(14)).toEqual(["services", "my-chat", "max_tokens"]);
  });

  it("splits keys", () => {
    expect(splitKey('a . "b.c" . d')).toEqual(["a", "b.c", "d"]);
  });
});
