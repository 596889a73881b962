/**
 * The suite's copy of spec §13.3 matches the table in spec/13-errors.md, and
 * the suite's own cloud closes a gRPC call with the mapped status, not a
 * WebSocket close code (issue 15: it ended with grpc-status 4020).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { closeCarries, closeCodeFor } from "./error-mapping.js";
import { openGrpc } from "./raw-client.js";
import { listen } from "./raw-server.js";

/** Rows of the §13.3 table: [PDD code, WebSocket close, gRPC status, WebTransport code]. */
function specRows(): [number, number, number, number][] {
  const text = readFileSync(join(import.meta.dirname, "..", "spec", "13-errors.md"), "utf8");
  const rows: [number, number, number, number][] = [];
  for (const line of text.split("\n")) {
    const m = /^\| `\w+` \((\d+)\) \| (\d+)[^|]*\| `\w+` \((\d+)\) \| (\d+) \|$/.exec(line);
    if (m) rows.push([Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])]);
  }
  return rows;
}

describe("spec §13.3 error mapping", () => {
  it("maps every code in the spec's table as the table says", () => {
    const rows = specRows();
    expect(rows.length).toBeGreaterThanOrEqual(11);
    for (const [code, ws, grpc, wt] of rows) {
      expect([code, closeCodeFor("websocket", code)]).toEqual([code, ws]);
      expect([code, closeCodeFor("grpc", code)]).toEqual([code, grpc]);
      expect([code, closeCodeFor("webtransport", code)]).toEqual([code, wt]);
    }
  });

  it("maps any other code to 4000 + c, UNKNOWN and c", () => {
    expect([closeCodeFor("websocket", 14), closeCodeFor("grpc", 14), closeCodeFor("webtransport", 14)]).toEqual([
      4014, 2, 14,
    ]);
    expect(closeCarries("websocket", 1009, 2)).toBe(true);
    expect(closeCarries("grpc", 4020, 20)).toBe(false);
  });

  it("the suite's own gRPC cloud ends a call for INTERNAL with status INTERNAL (PDD-GRPC-003)", async () => {
    const server = await listen({ url: "grpc://127.0.0.1:0" });
    try {
      const device = await openGrpc(server.url);
      device.send(new Uint8Array(0));
      const session = await server.accept(10_000);
      expect(session).toBeDefined();
      session!.close(closeCodeFor("grpc", 20), "the suite's cloud fails");
      let got = await device.next(10_000);
      while (got instanceof Uint8Array) got = await device.next(10_000);
      expect(got).toEqual({ code: 13, reason: "the suite's cloud fails" });
    } finally {
      await server.close();
    }
  });
});
