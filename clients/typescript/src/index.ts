export * from "./client";
export * from "./errors";
export type { ServingStatus } from "./health";
export {
  type Job,
  JobState,
  type Memory,
  type MemoryEvent,
  MemoryKind,
  MemoryOp,
  MemoryState,
  SearchMode,
} from "./gen/memoryd/v1/memory_service";
export type { Message, Session } from "./gen/memoryd/v1/session_service";
/** The generated messages and service clients, for calls the wrapper does not cover. */
export * as memoryService from "./gen/memoryd/v1/memory_service";
export * as sessionService from "./gen/memoryd/v1/session_service";
