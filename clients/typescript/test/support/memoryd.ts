/**
 * A real `memoryd up` for the tests: embedded Postgres and Valkey on a fresh
 * data dir, the server and the embedding worker, on a free port.
 *
 * The Python comes from MEMORYD_PYTHON (default: the repository's .venv) and
 * runs from the repository root, so the server code is this checkout's.
 */
import { type ChildProcess, spawn } from "node:child_process";
import {
  chmodSync,
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { MemorydClient } from "../../src";

const REPO_ROOT = resolve(__dirname, "../../../..");
// Startup loads the embedding model and, on a fresh data dir, runs initdb: a
// minute on an idle machine, several on a busy one.
const START_TIMEOUT_MS = 300_000;
// SIGTERM to exit: the children's grace period, then the stores' shutdown.
const STOP_TIMEOUT_MS = 30_000;

export interface Memoryd {
  address: string;
  /** SIGTERM and wait for exit; rejects (after killing it) if it hangs or exits non-zero. */
  stop(): Promise<void>;
  log(): string;
}

/** `env`: MEMORYD_* settings for this memoryd, e.g. MEMORYD_AUTH_TOKEN. */
export async function startMemoryd(env: Record<string, string> = {}): Promise<Memoryd> {
  // As root, pgserver runs Postgres as another user, which must traverse the dir.
  const root = realpathSync(mkdtempSync(join(tmpdir(), "memoryd-ts-")));
  chmodSync(root, 0o755);
  const logPath = join(root, "up.log");
  const address = `127.0.0.1:${await freePort()}`;
  const python = process.env["MEMORYD_PYTHON"] ?? join(REPO_ROOT, ".venv/bin/python");
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("MEMORYD_")));
  const logFd = openSync(logPath, "w");
  const child = spawn(python, ["-m", "server.cli", "up"], {
    cwd: REPO_ROOT,
    env: { ...inherited, ...env, MEMORYD_DATA_DIR: join(root, "data"), MEMORYD_LISTEN: address },
    stdio: ["ignore", logFd, logFd],
  });
  closeSync(logFd);
  // The exit code; -1 when killed by a signal.
  const exited = new Promise<number | null>((done) =>
    child.once("exit", (code, signal) => done(code ?? (signal ? -1 : null))),
  );
  const log = () => readFileSync(logPath, "utf8");

  /** SIGTERM (memoryd up then stops its children and stores) and wait; the exit code, or "timeout". */
  const terminate = async (): Promise<number | null | "timeout"> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
    }
    const timer = new Promise<"timeout">((done) => setTimeout(() => done("timeout"), STOP_TIMEOUT_MS).unref());
    const code = await Promise.race([exited, timer]);
    if (code === "timeout") {
      killLeftovers(child, root);
      await exited;
    }
    return code;
  };

  try {
    await waitServing(address, child, log);
  } catch (error) {
    await terminate();
    rmSync(root, { recursive: true, force: true });
    throw error;
  }

  return {
    address,
    log,
    async stop() {
      const code = await terminate();
      const output = log();
      const left = processesUnder(root);
      killAll(left);
      rmSync(root, { recursive: true, force: true });
      if (code === "timeout") {
        throw new Error(`memoryd up did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM:\n${output}`);
      }
      if (code !== 0) {
        throw new Error(`memoryd up exited with ${code} after SIGTERM:\n${output}`);
      }
      if (left.length > 0) {
        throw new Error(`store processes left running after memoryd up exited: ${left.join(", ")}\n${output}`);
      }
    },
  };
}

/**
 * Last resort when SIGTERM did not stop it: kill `up`, its descendants and
 * the stores working under its data dir.
 */
function killLeftovers(child: ChildProcess, root: string): void {
  const table = processTable();
  const isDescendant = (pid: number): boolean => {
    for (let parent = table.get(pid)?.ppid; parent !== undefined && parent > 1; parent = table.get(parent)?.ppid) {
      if (parent === child.pid) return true;
    }
    return false;
  };
  child.kill("SIGKILL");
  killAll([...table.keys()].filter(isDescendant));
  killAll(processesUnder(root));
}

/**
 * Live processes whose working directory is under `root`: the embedded
 * Postgres and Valkey chdir into their data dirs and run in sessions of their
 * own, so they are found this way (Linux /proc), as the Python tests'
 * store_processes does. Zombies have no readable cwd and are left out.
 */
export function processesUnder(root: string): number[] {
  return [...processTable()]
    .filter(([, info]) => info.cwd === root || info.cwd?.startsWith(`${root}/`))
    .map(([pid]) => pid);
}

function processTable(): Map<number, { ppid: number; cwd: string | undefined }> {
  const table = new Map<number, { ppid: number; cwd: string | undefined }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    try {
      // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      let cwd: string | undefined;
      try {
        cwd = readlinkSync(`/proc/${pid}/cwd`);
      } catch {
        cwd = undefined; // a zombie, or not ours to read
      }
      table.set(pid, { ppid, cwd });
    } catch {
      // Exited while listing.
    }
  }
  return table;
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Exited meanwhile.
    }
  }
}

async function waitServing(address: string, child: ChildProcess, log: () => string): Promise<void> {
  // Short reconnect backoff: grpc-js would otherwise wait up to 2 minutes between attempts.
  const client = new MemorydClient(address, {
    deadlineMs: 1_000,
    maxAttempts: 1,
    channelOptions: { "grpc.initial_reconnect_backoff_ms": 200, "grpc.max_reconnect_backoff_ms": 1_000 },
  });
  try {
    const giveUpAt = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < giveUpAt) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`memoryd up exited (${child.exitCode ?? child.signalCode}) before serving:\n${log()}`);
      }
      try {
        if ((await client.health()) === "SERVING") {
          return;
        }
      } catch {
        // Not listening yet, or its stores are still starting.
      }
      await new Promise((done) => setTimeout(done, 250));
    }
    throw new Error(`memoryd up not SERVING on ${address} after ${START_TIMEOUT_MS} ms:\n${log()}`);
  } finally {
    client.close();
  }
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? done(address.port) : fail(new Error("no port"))));
    });
  });
}
