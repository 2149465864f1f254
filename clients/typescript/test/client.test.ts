/**
 * MemorydClient against a real `memoryd up` (embedded Postgres and Valkey,
 * the gRPC server and the embedding worker), started once for this file.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import {
  AlreadyExistsError,
  InvalidArgumentError,
  JobState,
  MemoryKind,
  MemoryOp,
  MemoryState,
  MemorydClient,
  MemorydError,
  NotFoundError,
  PermissionDeniedError,
  Status,
  UnauthenticatedError,
  UnimplementedError,
} from "../src";
import { type Memoryd, startMemoryd } from "./support/memoryd";

let memoryd: Memoryd;
let client: MemorydClient;

// The server checks bearer tokens: TOKEN reaches every user, TENANT_TOKEN
// (from the token file) only user ids starting with TENANT.
const TOKEN = randomBytes(16).toString("hex");
const TENANT_TOKEN = randomBytes(16).toString("hex");
const TENANT = `tenant-${randomUUID()}-`;
const tokenDir = mkdtempSync(join(tmpdir(), "memoryd-ts-tokens-"));

before(async () => {
  const tokenFile = join(tokenDir, "tokens");
  writeFileSync(tokenFile, `# the tests' tenant\n${TENANT_TOKEN} prefix=${TENANT}\n`);
  memoryd = await startMemoryd({ MEMORYD_AUTH_TOKEN: TOKEN, MEMORYD_AUTH_TOKEN_FILE: tokenFile });
  client = new MemorydClient(memoryd.address, { token: TOKEN, deadlineMs: 60_000 });
});

after(async () => {
  client?.close();
  await memoryd?.stop();
  rmSync(tokenDir, { recursive: true, force: true });
});

/** A user of its own for each test: nothing one test writes is seen by another. */
const newUser = () => `user-${randomUUID()}`;

describe("health", () => {
  it("reports SERVING", async () => {
    assert.equal(await client.health(), "SERVING");
  });
});

describe("sessions", () => {
  it("appends messages and reads them back by messages, runs and tokens", async () => {
    const user = newUser();
    const appended = await client.sessions.append(
      user,
      "s1",
      [
        { role: "user", content: "I am learning Rust.", runId: "r1", metadata: { lang: "en" } },
        { role: "assistant", content: "Great choice.", runId: "r1" },
        { role: "user", content: "What is ownership?", runId: "r2", id: "m3" },
      ],
      { agentId: "coach" },
    );
    assert.deepEqual(
      appended.map((m) => m.seq),
      [1, 2, 3],
    );
    assert.equal(appended[2]?.id, "m3");
    assert.notEqual(appended[0]?.id, "", "the server assigns ids not given");
    const duplicate = client.sessions.append(user, "s1", [{ role: "user", content: "again", id: "m3" }]);
    await assert.rejects(duplicate, AlreadyExistsError, "a message id already in the session");
    const [session] = await client.sessions.list(user);
    assert.equal(session?.agentId, "coach");
    assert.equal(session?.messageCount, 3);

    const all = await client.sessions.history(user, "s1");
    assert.deepEqual(
      all.map((m) => [m.role, m.content]),
      [
        ["user", "I am learning Rust."],
        ["assistant", "Great choice."],
        ["user", "What is ownership?"],
      ],
    );
    assert.deepEqual(all[0]?.metadata, { lang: "en" });
    assert.ok(all[0]?.createTime instanceof Date);
    assert.ok((all[0]?.tokenCount ?? 0) > 0);

    const lastTwo = await client.sessions.history(user, "s1", { lastMessages: 2 });
    assert.deepEqual(
      lastTwo.map((m) => m.seq),
      [2, 3],
    );
    const lastRun = await client.sessions.history(user, "s1", { lastRuns: 1 });
    assert.deepEqual(
      lastRun.map((m) => m.id),
      ["m3"],
    );
    const budget = all[2]?.tokenCount ?? 0;
    const withinBudget = await client.sessions.history(user, "s1", { maxTokens: budget });
    assert.deepEqual(
      withinBudget.map((m) => m.seq),
      [3],
    );

    assert.deepEqual(await client.sessions.history(newUser(), "s1"), [], "another user's session reads as empty");
  });

  it("lists, deletes and clears a user's sessions", async () => {
    const user = newUser();
    for (const session of ["a", "b", "c"]) {
      await client.sessions.append(user, session, [{ role: "user", content: `hello from ${session}` }]);
    }
    const listed = await client.sessions.list(user, { pageSize: 2 });
    assert.deepEqual(listed.map((s) => s.sessionId).sort(), ["a", "b", "c"], "pages are followed");

    await client.sessions.delete(user, "a");
    await assert.rejects(client.sessions.delete(user, "a"), NotFoundError);
    assert.equal(await client.sessions.clear(user), 2);
    assert.deepEqual(await client.sessions.list(user), []);
  });

  it("clears a user's sessions last updated before a cutoff", async () => {
    const user = newUser();
    await client.sessions.append(user, "old", [{ role: "user", content: "hi" }]);
    assert.equal(await client.sessions.clearBefore(new Date(Date.now() - 3_600_000), { userId: user }), 0);
    assert.equal(await client.sessions.clearBefore(new Date(Date.now() + 60_000), { userId: user }), 1);
    assert.deepEqual(await client.sessions.list(user), []);
  });
});

describe("memories", () => {
  it("adds memories and finds them by meaning once indexed", async () => {
    const user = newUser();
    const added = await client.memories.add(user, "Prefers to study with visual diagrams and mind maps", {
      topics: ["learning-style"],
      metadata: { source: "onboarding" },
    });
    assert.equal(added.kind, MemoryKind.MEMORY_KIND_SEMANTIC);
    assert.equal(added.userId, user);
    assert.deepEqual(added.topics, ["learning-style"]);
    assert.deepEqual(added.metadata, { source: "onboarding" });
    await client.memories.add(user, "Has a job interview at a bank next Tuesday");
    await client.memories.add(user, "Allergic to peanuts");

    const hits = await client.memories.search("how does this person like to learn?", {
      userId: user,
      limit: 3,
      waitForIndex: true,
    });
    assert.equal(hits.length, 3);
    assert.equal(hits[0]?.memory.id, added.id, "the learning-style memory ranks first");
    assert.equal(hits[0]?.memory.state, MemoryState.MEMORY_STATE_READY);
    assert.ok(hits[0]!.score >= hits[1]!.score && hits[1]!.score >= hits[2]!.score, "best first");

    const filtered = await client.memories.search("diagrams", {
      userId: user,
      topics: ["learning-style"],
      mode: "keyword",
    });
    assert.deepEqual(
      filtered.map((hit) => hit.memory.id),
      [added.id],
    );
    assert.deepEqual(await client.memories.search("learn", { userId: newUser(), waitForIndex: true }), []);
  });

  it("keeps one fact per key, updates it and records its history", async () => {
    const user = newUser();
    const fact = await client.memories.add(user, "Lives in Lisbon", { key: "home_city" });
    assert.equal(fact.kind, MemoryKind.MEMORY_KIND_FACT);
    assert.equal((await client.memories.getFact(user, "home_city")).id, fact.id);

    const moved = await client.memories.add(user, "Lives in Porto", { key: "home_city" });
    assert.equal(moved.id, fact.id, "a fact with an existing key updates that fact");

    const updated = await client.memories.update(user, fact.id, {
      content: "Lives in Berlin",
      topics: ["location"],
      reason: "moved again",
    });
    assert.equal(updated.content, "Lives in Berlin");
    assert.deepEqual(updated.topics, ["location"]);
    assert.equal(updated.key, "home_city", "fields not named in the changes are kept");
    assert.equal((await client.memories.getFact(user, "home_city")).content, "Lives in Berlin");
    assert.equal((await client.memories.get(user, fact.id)).content, "Lives in Berlin");

    const events = await client.memories.history(user, fact.id);
    assert.deepEqual(
      events.map((e) => e.op),
      [MemoryOp.MEMORY_OP_ADD, MemoryOp.MEMORY_OP_UPDATE, MemoryOp.MEMORY_OP_UPDATE],
    );
    assert.equal(events.at(-1)?.newContent, "Lives in Berlin");
    assert.equal(events.at(-1)?.reason, "moved again");

    await client.memories.delete(user, fact.id);
    await assert.rejects(client.memories.get(user, fact.id), NotFoundError);
    await assert.rejects(client.memories.getFact(user, "home_city"), NotFoundError);
    assert.equal((await client.memories.history(user, fact.id)).at(-1)?.op, MemoryOp.MEMORY_OP_DELETE);
  });

  it("lists every memory of a user and clears them, returning the count", async () => {
    const user = newUser();
    const added = await client.memories.addMany(
      user,
      Array.from({ length: 5 }, (_, i) => ({ content: `note number ${i}`, topics: i % 2 ? ["odd"] : [] })),
    );
    assert.equal(added.length, 5);
    await client.memories.add(user, "Name is Ada", { key: "name" });

    const all = await client.memories.getUserMemories(user, { pageSize: 2 });
    assert.equal(all.length, 6, "pages are followed");
    const facts = await client.memories.getUserMemories(user, { kinds: ["fact"] });
    assert.deepEqual(
      facts.map((m) => m.key),
      ["name"],
    );
    assert.equal((await client.memories.getUserMemories(user, { topics: ["odd"] })).length, 2);

    assert.equal(await client.memories.clear(user), 6);
    assert.deepEqual(await client.memories.getUserMemories(user), []);
  });

  it("sets an expiry from a ttl", async () => {
    const user = newUser();
    const before = Date.now();
    const memory = await client.memories.add(user, "Is on holiday this week", { ttlMs: 7 * 24 * 3_600_000 });
    const expiresIn = (memory.expireTime?.getTime() ?? 0) - before;
    assert.ok(expiresIn > 6 * 24 * 3_600_000 && expiresIn <= 8 * 24 * 3_600_000, `expires in ${expiresIn} ms`);
  });
});

describe("errors", () => {
  it("maps INVALID_ARGUMENT to InvalidArgumentError naming the field", async () => {
    const error = await client.memories.add("", "content without a user").catch((e: unknown) => e);
    assert.ok(error instanceof InvalidArgumentError, String(error));
    assert.ok(error instanceof MemorydError);
    assert.equal(error.code, Status.INVALID_ARGUMENT);
    assert.equal(error.codeName, "INVALID_ARGUMENT");
    assert.equal(error.field, "user_id");
    assert.equal(error.errorInfo?.domain, "memoryd");
    assert.match(error.details, /user_id/);
    assert.match(error.message, /^INVALID_ARGUMENT: /);

    const badHistory = await client.sessions.history("u", "s", { lastMessages: -1 }).catch((e: unknown) => e);
    assert.ok(badHistory instanceof InvalidArgumentError);
    assert.equal(badHistory.field, "last_messages");
  });

  it("maps NOT_FOUND to NotFoundError", async () => {
    const error = await client.memories.getFact(newUser(), "no_such_key").catch((e: unknown) => e);
    assert.ok(error instanceof NotFoundError, String(error));
    assert.equal(error.code, Status.NOT_FOUND);
    assert.equal(error.reason, "NOT_FOUND");
  });

  it("fails a write as a whole: a bad batch stores nothing", async () => {
    const user = newUser();
    const error = await client.memories
      .addMany(user, [{ content: "fine" }, { content: "a fact needs a key", kind: "fact" }])
      .catch((e: unknown) => e);
    assert.ok(error instanceof InvalidArgumentError, String(error));
    assert.match(error.field ?? "", /^requests\[1\]/);
    assert.deepEqual(await client.memories.getUserMemories(user), []);
  });
});

describe("auth", () => {
  it("asks for no token on health", async () => {
    const anonymous = new MemorydClient(memoryd.address);
    try {
      assert.equal(await anonymous.health(), "SERVING");
    } finally {
      anonymous.close();
    }
  });

  it("rejects a call without a token, or with a wrong one, as UnauthenticatedError", async () => {
    for (const token of [undefined, randomBytes(16).toString("hex")]) {
      const caller = new MemorydClient(memoryd.address, { token, maxAttempts: 1 });
      try {
        const error = await caller.sessions.history(newUser(), "s1").catch((e: unknown) => e);
        assert.ok(error instanceof UnauthenticatedError, String(error));
        assert.equal(error.code, Status.UNAUTHENTICATED);
        assert.match(error.details, /authorization: Bearer <token>/);
      } finally {
        caller.close();
      }
    }
  });

  it("lets a tenant-bound token reach its users only", async () => {
    const tenant = new MemorydClient(memoryd.address, { token: TENANT_TOKEN, maxAttempts: 1 });
    try {
      const own = `${TENANT}${randomUUID()}`;
      await tenant.sessions.append(own, "s1", [{ role: "user", content: "inside the tenant" }]);
      assert.equal((await tenant.sessions.history(own, "s1")).length, 1);

      const other = newUser();
      const error = await tenant.sessions
        .append(other, "s1", [{ role: "user", content: "outside" }])
        .catch((e: unknown) => e);
      assert.ok(error instanceof PermissionDeniedError, String(error));
      assert.equal(error.reason, "PERMISSION_DENIED");
      assert.match(error.details, new RegExp(`'${other}'.*bound`));
      assert.deepEqual(await client.sessions.list(other), [], "a denied call writes nothing");
    } finally {
      tenant.close();
    }
  });
});

describe("extraction", () => {
  it("starts a job from a session and reads it back", async (t) => {
    const user = newUser();
    await client.sessions.append(user, "s1", [{ role: "user", content: "My favourite language is Python." }]);
    let job;
    try {
      job = await client.memories.extract(user, "s1", { wait: false });
    } catch (error) {
      if (error instanceof UnimplementedError) {
        t.skip("this server does not implement ExtractMemories yet");
        return;
      }
      throw error;
    }
    assert.notEqual(job.id, "");
    const states = [JobState.JOB_STATE_QUEUED, JobState.JOB_STATE_RUNNING, JobState.JOB_STATE_SUCCEEDED];
    assert.ok([...states, JobState.JOB_STATE_FAILED].includes(job.state), `state ${job.state}`);
    assert.equal((await client.memories.getJob(user, job.id)).id, job.id);
  });
});

describe("close", () => {
  it("makes later calls fail", async () => {
    const closing = new MemorydClient(memoryd.address);
    assert.equal(await closing.health(), "SERVING");
    closing.close();
    await assert.rejects(closing.health());
  });
});
