/**
 * MemorydClient: a Promise-based wrapper over the generated memoryd.v1 stubs.
 *
 *   const client = new MemorydClient("127.0.0.1:50051");
 *   await client.sessions.append("u1", "s1", [{ role: "user", content: "hi" }]);
 *   await client.memories.add("u1", "Prefers short answers");
 *   const hits = await client.memories.search("how to answer", { userId: "u1" });
 *   client.close();
 *
 * Failed calls reject with the MemorydError subclass of their status code
 * (./errors). The generated stubs stay reachable as `client.stubs` for
 * anything the wrapper does not cover.
 */
import {
  type CallOptions,
  ChannelCredentials,
  type ChannelOptions,
  type Client,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";

import { DeadlineExceededError, fromServiceError } from "./errors";
import { decodeHealthCheckResponse, encodeHealthCheckRequest, HEALTH_CHECK_METHOD, type ServingStatus } from "./health";
import {
  type Job,
  JobState,
  type Memory,
  type MemoryEvent,
  MemoryKind,
  MemoryServiceClient,
  SearchMode,
} from "./gen/memoryd/v1/memory_service";
import {
  type Message,
  type Session,
  SessionServiceClient,
} from "./gen/memoryd/v1/session_service";
import type { Duration } from "./gen/google/protobuf/duration";

export interface TlsOptions {
  /** PEM root certificates; the system's roots when omitted. */
  rootCerts?: Buffer;
  /** PEM client key and certificate, for mutual TLS. */
  privateKey?: Buffer;
  certChain?: Buffer;
}

export interface MemorydClientOptions {
  /** Sent as `authorization: Bearer <token>` on every call. */
  token?: string;
  /** true for TLS with the system's roots, or the certificates to use, or ready-made credentials. */
  tls?: boolean | TlsOptions | ChannelCredentials;
  /** Default deadline of each call in milliseconds, retries included (10 000); Infinity for none. */
  deadlineMs?: number;
  /**
   * Attempts per call when the answer is UNAVAILABLE, with exponential
   * backoff (5, gRPC's maximum); 1 turns retries off.
   */
  maxAttempts?: number;
  /** Extra grpc-js channel options. */
  channelOptions?: ChannelOptions;
}

/** Options every call takes. */
export interface CallOpts {
  /** This call's deadline in milliseconds, instead of the client's. */
  deadlineMs?: number;
}

/** A message to append; only role and content are required. */
export interface MessageInput {
  role: "user" | "assistant" | "system" | "tool" | "developer" | (string & {});
  content: string;
  name?: string;
  /** GetHistory's lastRuns groups consecutive messages by it. */
  runId?: string;
  /** Unique within the session; assigned by the server when omitted. */
  id?: string;
  createTime?: Date;
  metadata?: Record<string, unknown>;
}

/** At most one bound; none means the server's default (the last 20 messages). */
export type HistoryWindow =
  | { lastMessages: number; lastRuns?: never; maxTokens?: never }
  | { lastRuns: number; lastMessages?: never; maxTokens?: never }
  | { maxTokens: number; lastMessages?: never; lastRuns?: never }
  | { lastMessages?: never; lastRuns?: never; maxTokens?: never };

export interface AppendOptions extends CallOpts {
  /** Recorded when the session is created. */
  agentId?: string;
  /** Sliding TTL of the session's hot window. */
  ttlMs?: number;
}


export type Kind = "semantic" | "fact" | MemoryKind;

export interface AddOptions extends CallOpts {
  /** "fact" when a key is given, else "semantic". */
  kind?: Kind;
  /** Required for facts: one current value per user and key. */
  key?: string;
  topics?: string[];
  metadata?: Record<string, unknown>;
  agentId?: string;
  sessionId?: string;
  sourceMessageIds?: string[];
  /** The memory expires this long after the call; or give expireTime. */
  ttlMs?: number;
  expireTime?: Date;
  /** A retried add with the same requestId returns the memory of the first. */
  requestId?: string;
}

export interface MemoryFilterOptions {
  kinds?: Kind[];
  topics?: string[];
  agentId?: string;
  sessionId?: string;
  createdAfter?: Date;
  createdBefore?: Date;
}

export interface SearchOptions extends MemoryFilterOptions, CallOpts {
  userId: string;
  /** 1 to 100; the server's default is 10. */
  limit?: number;
  /** Wait (within the deadline) until the user's pending memories are embedded. */
  waitForIndex?: boolean;
  mode?: "hybrid" | "semantic" | "keyword" | SearchMode;
  minScore?: number;
  /** 0 to 1: how much newer memories are preferred. */
  recencyWeight?: number;
}

export interface SearchHit {
  memory: Memory;
  score: number;
}

/** The fields update() may change; only those given are sent (in the update mask). */
export interface MemoryChanges {
  /** Sets expireTime to now + ttlMs. */
  ttlMs?: number;
  content?: string;
  key?: string;
  topics?: string[];
  metadata?: Record<string, unknown>;
  /** null clears the expiry. */
  expireTime?: Date | null;
  agentId?: string;
  sessionId?: string;
  sourceMessageIds?: string[];
}

export interface ReasonOptions extends CallOpts {
  /** Recorded in the memory's history. */
  reason?: string;
}

export interface ListOptions extends CallOpts {
  /** Page size used while following pages (server default 50, at most 1000). */
  pageSize?: number;
}

export interface ExtractOptions extends CallOpts {
  /** Poll the job until it succeeds or fails (the default); false returns it at once, queued. */
  wait?: boolean;
  /** Polling interval while waiting (500 ms). */
  pollMs?: number;
  /** Wait at most this long (120 000 ms), then reject with DeadlineExceededError; the job goes on. */
  waitTimeoutMs?: number;
}

const DEFAULT_DEADLINE_MS = 10_000;
const DEFAULT_MAX_ATTEMPTS = 5;
const SERVICES = ["memoryd.v1.SessionService", "memoryd.v1.MemoryService"];

type Callback<Res> = (error: ServiceError | null, response: Res) => void;
type Unary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: Callback<Res>,
) => unknown;
/** Runs one unary call of a generated client as a Promise, with the client's metadata and deadline. */
type Caller = <Req, Res>(stub: Client, method: Unary<Req, Res>, request: Req, options: CallOpts) => Promise<Res>;

export class MemorydClient {
  readonly sessions: Sessions;
  readonly memories: Memories;
  /** The generated clients, sharing this client's channel. */
  readonly stubs: { sessions: SessionServiceClient; memories: MemoryServiceClient };
  private readonly token: string | undefined;
  private readonly deadlineMs: number;

  /** `address` is host:port, or unix:/path/to.sock. */
  constructor(address = "localhost:50051", options: MemorydClientOptions = {}) {
    this.token = options.token;
    this.deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    const channelOptions: ChannelOptions = {
      "grpc.service_config": JSON.stringify(serviceConfig(options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS)),
      ...options.channelOptions,
    };
    const sessions = new SessionServiceClient(address, channelCredentials(options.tls), channelOptions);
    const memories = new MemoryServiceClient(address, channelCredentials(options.tls), {
      ...channelOptions,
      channelOverride: sessions.getChannel(),
    });
    this.stubs = { sessions, memories };
    const caller: Caller = (stub, method, request, callOpts) => this.call(stub, method, request, callOpts);
    this.sessions = new Sessions(caller, sessions);
    this.memories = new Memories(caller, memories);
  }

  /** The server's health: "SERVING" once its stores answer. */
  health(options: CallOpts = {}): Promise<ServingStatus> {
    const client: Client = this.stubs.sessions;
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        HEALTH_CHECK_METHOD,
        (service: string) => encodeHealthCheckRequest(service),
        (bytes: Buffer) => decodeHealthCheckResponse(bytes),
        "",
        this.metadata(),
        this.callOptions(options),
        (error, response) => (error ? reject(fromServiceError(error)) : resolve(response ?? "UNKNOWN")),
      );
    });
  }

  /** Closes the channel; calls after this fail. */
  close(): void {
    this.stubs.sessions.close();
  }

  private call<Req, Res>(stub: Client, method: Unary<Req, Res>, request: Req, options: CallOpts): Promise<Res> {
    return new Promise((resolve, reject) => {
      method.call(stub, request, this.metadata(), this.callOptions(options), (error, response) =>
        error ? reject(fromServiceError(error)) : resolve(response),
      );
    });
  }

  private metadata(): Metadata {
    const metadata = new Metadata();
    if (this.token !== undefined) {
      metadata.set("authorization", `Bearer ${this.token}`);
    }
    return metadata;
  }

  private callOptions(options: CallOpts): Partial<CallOptions> {
    const ms = options.deadlineMs ?? this.deadlineMs;
    return Number.isFinite(ms) ? { deadline: new Date(Date.now() + ms) } : {};
  }
}

export class Sessions {
  /** @param call runs a call with the client's metadata and deadline */
  constructor(
    private readonly call: Caller,
    private readonly stub: SessionServiceClient,
  ) {}

  /** Appends messages to a session, creating it on first use; returns them as stored, with id, seq and tokenCount. */
  async append(
    userId: string,
    sessionId: string,
    messages: MessageInput[],
    options: AppendOptions = {},
  ): Promise<Message[]> {
    const response = await this.call(
      this.stub,
      this.stub.appendMessages,
      {
        userId,
        sessionId,
        agentId: options.agentId ?? "",
        messages: messages.map(toMessage),
        ttl: options.ttlMs === undefined ? undefined : toDuration(options.ttlMs),
      },
      options,
    );
    return response.messages;
  }

  /** The session's messages, oldest first; an unknown session reads as empty. */
  async history(userId: string, sessionId: string, options: HistoryWindow & CallOpts = {}): Promise<Message[]> {
    const response = await this.call(
      this.stub,
      this.stub.getHistory,
      {
        userId,
        sessionId,
        lastMessages: options.lastMessages,
        lastRuns: options.lastRuns,
        maxTokens: options.maxTokens,
      },
      options,
    );
    return response.messages;
  }

  /** Every session of the user, most recently updated first (pages followed). */
  async list(userId: string, options: ListOptions & { agentId?: string } = {}): Promise<Session[]> {
    const sessions: Session[] = [];
    let pageToken = "";
    do {
      const page = await this.call(
        this.stub,
        this.stub.listSessions,
        { userId, agentId: options.agentId ?? "", pageSize: options.pageSize ?? 0, pageToken },
        options,
      );
      sessions.push(...page.sessions);
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return sessions;
  }

  /** Deletes one session; NotFoundError when the user has no such session. */
  async delete(userId: string, sessionId: string, options: CallOpts = {}): Promise<void> {
    await this.call(this.stub, this.stub.deleteSession, { userId, sessionId }, options);
  }

  /** Deletes every session of the user; returns how many. */
  async clear(userId: string, options: CallOpts = {}): Promise<number> {
    const response = await this.call(this.stub, this.stub.deleteUserSessions, { userId }, options);
    return response.deletedCount;
  }

  /**
   * Deletes the sessions last updated before `cutoff`: one user's, or every
   * user's with `{ allUsers: true }` (never implied).
   */
  async clearBefore(
    cutoff: Date,
    scope: ({ userId: string; allUsers?: never } | { allUsers: true; userId?: never }) & CallOpts,
  ): Promise<number> {
    const response = await this.call(
      this.stub,
      this.stub.deleteSessionsBefore,
      { cutoff, userId: scope.userId ?? "", allUsers: scope.allUsers ?? false },
      scope,
    );
    return response.deletedCount;
  }
}

export class Memories {
  /** @param call runs a call with the client's metadata and deadline */
  constructor(
    private readonly call: Caller,
    private readonly stub: MemoryServiceClient,
  ) {}

  /**
   * Stores one memory. Identical content returns the existing memory; a fact
   * with an existing key updates that fact.
   */
  async add(userId: string, content: string, options: AddOptions = {}): Promise<Memory> {
    const request = createRequest(userId, content, options);
    const response = await this.call(this.stub, this.stub.createMemory, request, options);
    return required(response.memory);
  }

  /** Stores several memories for one user, all or none; in the order given. */
  async addMany(
    userId: string,
    items: ({ content: string } & Omit<AddOptions, "deadlineMs">)[],
    options: CallOpts = {},
  ): Promise<Memory[]> {
    const response = await this.call(
      this.stub,
      this.stub.batchCreateMemories,
      { userId, requests: items.map((item) => createRequest(userId, item.content, item)) },
      options,
    );
    return response.memories;
  }

  /** The user's memories by meaning and keyword, best first. */
  async search(query: string, options: SearchOptions): Promise<SearchHit[]> {
    const response = await this.call(
      this.stub,
      this.stub.searchMemories,
      {
        userId: options.userId,
        query,
        limit: options.limit ?? 0,
        ...filterFields(options),
        waitForIndex: options.waitForIndex ?? false,
        mode: toMode(options.mode),
        minScore: options.minScore ?? 0,
        recencyWeight: options.recencyWeight ?? 0,
      },
      options,
    );
    return response.results.map((result) => ({ memory: required(result.memory), score: result.score }));
  }

  /** One memory; NotFoundError when the user has no such memory. */
  async get(userId: string, id: string, options: CallOpts = {}): Promise<Memory> {
    const response = await this.call(this.stub, this.stub.getMemory, { userId, id }, options);
    return required(response.memory);
  }

  /** The user's current fact under `key`; NotFoundError when there is none. */
  async getFact(userId: string, key: string, options: CallOpts = {}): Promise<Memory> {
    const response = await this.call(this.stub, this.stub.getFact, { userId, key }, options);
    return required(response.memory);
  }

  /** Every memory of the user, newest first (pages followed), optionally filtered. */
  async getUserMemories(userId: string, options: ListOptions & MemoryFilterOptions = {}): Promise<Memory[]> {
    const memories: Memory[] = [];
    let pageToken = "";
    do {
      const page = await this.call(
        this.stub,
        this.stub.listMemories,
        { userId, filters: filterFields(options), pageSize: options.pageSize ?? 0, pageToken },
        options,
      );
      memories.push(...page.memories);
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return memories;
  }

  /**
   * Changes the given fields of one memory (the others are kept); a content
   * change re-embeds it.
   */
  async update(userId: string, id: string, changes: MemoryChanges & ReasonOptions): Promise<Memory> {
    if (changes.ttlMs !== undefined) {
      if (changes.expireTime !== undefined) {
        throw new TypeError("update(): give ttlMs or expireTime, not both");
      }
      changes = { ...changes, expireTime: new Date(Date.now() + changes.ttlMs) };
    }
    const paths = UPDATABLE.filter(([name]) => changes[name] !== undefined).map(([, path]) => path);
    const response = await this.call(
      this.stub,
      this.stub.updateMemory,
      {
        userId,
        memory: {
          ...emptyMemory(),
          id,
          content: changes.content ?? "",
          key: changes.key ?? "",
          topics: changes.topics ?? [],
          metadata: changes.metadata,
          expireTime: changes.expireTime ?? undefined,
          agentId: changes.agentId ?? "",
          sessionId: changes.sessionId ?? "",
          sourceMessageIds: changes.sourceMessageIds ?? [],
        },
        updateMask: paths,
        reason: changes.reason ?? "",
      },
      changes,
    );
    return required(response.memory);
  }

  /** Deletes one memory (its history is kept); NotFoundError when there is none. */
  async delete(userId: string, id: string, options: ReasonOptions = {}): Promise<void> {
    await this.call(this.stub, this.stub.deleteMemory, { userId, id, reason: options.reason ?? "" }, options);
  }

  /** Deletes every memory of the user; returns how many. */
  async clear(userId: string, options: CallOpts = {}): Promise<number> {
    const response = await this.call(this.stub, this.stub.deleteUserMemories, { userId }, options);
    return response.deletedCount;
  }

  /** Every add, update and delete of one memory, oldest first. */
  async history(userId: string, id: string, options: CallOpts = {}): Promise<MemoryEvent[]> {
    const response = await this.call(this.stub, this.stub.getMemoryHistory, { userId, id }, options);
    return response.events;
  }

  /**
   * Starts a job turning a session's new messages (or the given messages)
   * into memories and, unless `wait: false`, polls it until it succeeds or
   * fails. Returns the job: check its `state` (and `error`).
   */
  async extract(userId: string, source: string | MessageInput[], options: ExtractOptions = {}): Promise<Job> {
    const response = await this.call(
      this.stub,
      this.stub.extractMemories,
      typeof source === "string"
        ? { userId, sessionId: source, messages: [] }
        : { userId, sessionId: "", messages: source.map(toMessage) },
      options,
    );
    let job = required(response.job);
    if (options.wait === false) {
      return job;
    }
    const waitMs = options.waitTimeoutMs ?? 120_000;
    const giveUpAt = Date.now() + waitMs;
    while (job.state !== JobState.JOB_STATE_SUCCEEDED && job.state !== JobState.JOB_STATE_FAILED) {
      if (Date.now() >= giveUpAt) {
        const message = `extraction job ${job.id} not done after ${waitMs} ms`;
        throw new DeadlineExceededError(status.DEADLINE_EXCEEDED, message);
      }
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 500));
      job = await this.getJob(userId, job.id, options);
    }
    return job;
  }

  /** An extraction job's state and counts. */
  async getJob(userId: string, id: string, options: CallOpts = {}): Promise<Job> {
    const response = await this.call(this.stub, this.stub.getJob, { userId, id }, options);
    return required(response.job);
  }
}

// MemoryChanges field -> update_mask path.
const UPDATABLE: readonly (readonly [keyof MemoryChanges, string])[] = [
  ["content", "content"],
  ["key", "key"],
  ["topics", "topics"],
  ["metadata", "metadata"],
  ["expireTime", "expire_time"],
  ["agentId", "agent_id"],
  ["sessionId", "session_id"],
  ["sourceMessageIds", "source_message_ids"],
];

function channelCredentials(tls: MemorydClientOptions["tls"]): ChannelCredentials {
  if (tls === undefined || tls === false) {
    return credentials.createInsecure();
  }
  if (tls === true) {
    return credentials.createSsl();
  }
  if (tls instanceof ChannelCredentials) {
    return tls;
  }
  return credentials.createSsl(tls.rootCerts ?? null, tls.privateKey ?? null, tls.certChain ?? null);
}

/** Retries on UNAVAILABLE (a store or the server out of reach), as grpc-js service config. */
function serviceConfig(maxAttempts: number): object {
  if (maxAttempts < 2) {
    return { methodConfig: [] };
  }
  return {
    methodConfig: [
      {
        name: SERVICES.map((service) => ({ service })),
        retryPolicy: {
          maxAttempts,
          initialBackoff: "0.1s",
          maxBackoff: "2s",
          backoffMultiplier: 2,
          retryableStatusCodes: ["UNAVAILABLE"],
        },
      },
    ],
  };
}

function toMessage(input: MessageInput): Message {
  return {
    role: input.role,
    content: input.content,
    name: input.name ?? "",
    runId: input.runId ?? "",
    id: input.id ?? "",
    createTime: input.createTime,
    metadata: input.metadata,
    seq: 0,
    tokenCount: 0,
  };
}

function toDuration(ms: number): Duration {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

function toKind(kind: Kind): MemoryKind {
  if (kind === "semantic") return MemoryKind.MEMORY_KIND_SEMANTIC;
  if (kind === "fact") return MemoryKind.MEMORY_KIND_FACT;
  return kind;
}

function toMode(mode: SearchOptions["mode"]): SearchMode {
  switch (mode) {
    case undefined:
      return SearchMode.SEARCH_MODE_UNSPECIFIED;
    case "hybrid":
      return SearchMode.SEARCH_MODE_HYBRID;
    case "semantic":
      return SearchMode.SEARCH_MODE_SEMANTIC;
    case "keyword":
      return SearchMode.SEARCH_MODE_KEYWORD;
    default:
      return mode;
  }
}

function filterFields(options: MemoryFilterOptions) {
  return {
    kinds: (options.kinds ?? []).map(toKind),
    topics: options.topics ?? [],
    agentId: options.agentId ?? "",
    sessionId: options.sessionId ?? "",
    createdAfter: options.createdAfter,
    createdBefore: options.createdBefore,
  };
}

function emptyMemory(): Memory {
  return {
    id: "",
    userId: "",
    agentId: "",
    sessionId: "",
    kind: MemoryKind.MEMORY_KIND_UNSPECIFIED,
    key: "",
    content: "",
    topics: [],
    sourceMessageIds: [],
    state: 0,
  };
}

function createRequest(userId: string, content: string, options: Omit<AddOptions, "deadlineMs">) {
  const kind = options.kind ?? (options.key ? "fact" : "semantic");
  return {
    userId,
    memory: {
      ...emptyMemory(),
      kind: toKind(kind),
      key: options.key ?? "",
      content,
      topics: options.topics ?? [],
      metadata: options.metadata,
      agentId: options.agentId ?? "",
      sessionId: options.sessionId ?? "",
      sourceMessageIds: options.sourceMessageIds ?? [],
      expireTime: options.expireTime,
    },
    ttl: options.ttlMs === undefined ? undefined : toDuration(options.ttlMs),
    requestId: options.requestId ?? "",
  };
}

/** A response field the server always sets; its absence is a server bug. */
function required<T>(value: T | undefined): T {
  if (value === undefined) {
    throw new Error("memoryd answered without the expected field; is the server a compatible version?");
  }
  return value;
}
