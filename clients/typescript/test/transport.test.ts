/**
 * What the client puts on the wire and how it handles transport failures,
 * observed from a grpc-js server built from the same generated service
 * definition: making a real memoryd answer UNAVAILABLE once or hang on
 * purpose is not something a caller can arrange; everything else, bearer
 * tokens included, is tested against a real server in client.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  type handleUnaryCall,
  Metadata,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";

import { DeadlineExceededError, MemorydClient, UnavailableError } from "../src";
import {
  type GetHistoryRequest,
  type GetHistoryResponse,
  SessionServiceService,
} from "../src/gen/memoryd/v1/session_service";

interface Seen {
  authorization: string[];
  deadline: Date | number;
  request: GetHistoryRequest;
}

/** The deadline the server saw, in ms since the epoch (grpc-js gives a Date or a number). */
const deadlineMs = (call: Seen | undefined): number =>
  call?.deadline instanceof Date ? call.deadline.getTime() : Number(call?.deadline);

let server: Server;
let address: string;
const seen: Seen[] = [];
// How the next calls are answered, in order; then OK.
const script: ("unavailable" | "hang")[] = [];

const getHistory: handleUnaryCall<GetHistoryRequest, GetHistoryResponse> = (
  call: ServerUnaryCall<GetHistoryRequest, GetHistoryResponse>,
  callback,
) => {
  seen.push({
    authorization: call.metadata.get("authorization").map(String),
    deadline: call.getDeadline(),
    request: call.request,
  });
  const next = script.shift();
  if (next === "unavailable") {
    callback({ code: status.UNAVAILABLE, details: "store down", metadata: new Metadata() });
  } else if (next !== "hang") {
    const message = { role: "user", content: "hi", name: "", runId: "", seq: 1, id: "m1", tokenCount: 1 };
    callback(null, { messages: [message] });
  }
};

before(async () => {
  server = new Server();
  const implementation: UntypedServiceImplementation = { getHistory };
  server.addService(SessionServiceService, implementation);
  const port = await new Promise<number>((done, fail) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) =>
      error ? fail(error) : done(bound),
    ),
  );
  address = `127.0.0.1:${port}`;
});

after(() => {
  server.forceShutdown();
});

describe("transport", () => {
  it("sends the bearer token and a deadline on every call", async () => {
    seen.length = 0;
    const client = new MemorydClient(address, { token: "s3cret", deadlineMs: 60_000 });
    try {
      const before = Date.now();
      const messages = await client.sessions.history("u1", "s1", { lastRuns: 2 });
      assert.equal(messages[0]?.id, "m1");
      assert.deepEqual(seen[0]?.authorization, ["Bearer s3cret"]);
      assert.equal(seen[0]?.request.lastRuns, 2);
      assert.equal(seen[0]?.request.lastMessages, undefined, "only the chosen bound is set");
      const remaining = deadlineMs(seen[0]) - before;
      assert.ok(remaining > 50_000 && remaining <= 61_000, `deadline ${remaining} ms away`);
    } finally {
      client.close();
    }
  });

  it("sends no authorization without a token, and no deadline when told so", async () => {
    seen.length = 0;
    const client = new MemorydClient(address, { deadlineMs: Infinity });
    try {
      await client.sessions.history("u1", "s1");
      assert.deepEqual(seen[0]?.authorization, []);
      assert.equal(deadlineMs(seen[0]), Infinity);
    } finally {
      client.close();
    }
  });

  it("fails with DeadlineExceededError when the server does not answer in time", async () => {
    script.push("hang");
    const client = new MemorydClient(address);
    try {
      await assert.rejects(client.sessions.history("u1", "s1", { deadlineMs: 300 }), DeadlineExceededError);
    } finally {
      script.length = 0;
      client.close();
    }
  });

  it("retries UNAVAILABLE, and reports it once the attempts run out", async () => {
    const client = new MemorydClient(address, { maxAttempts: 3 });
    try {
      seen.length = 0;
      script.push("unavailable", "unavailable");
      assert.equal((await client.sessions.history("u1", "s1")).length, 1);
      assert.equal(seen.length, 3, "two failed attempts, then the answer");

      seen.length = 0;
      script.push("unavailable", "unavailable", "unavailable");
      const error = await client.sessions.history("u1", "s1").catch((e: unknown) => e);
      assert.ok(error instanceof UnavailableError, String(error));
      assert.equal(error.details, "store down");
      assert.equal(seen.length, 3);
    } finally {
      script.length = 0;
      client.close();
    }
  });

  it("does not retry when maxAttempts is 1", async () => {
    const client = new MemorydClient(address, { maxAttempts: 1 });
    try {
      seen.length = 0;
      script.push("unavailable");
      await assert.rejects(client.sessions.history("u1", "s1"), UnavailableError);
      assert.equal(seen.length, 1);
    } finally {
      script.length = 0;
      client.close();
    }
  });
});
