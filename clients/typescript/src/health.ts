/**
 * grpc.health.v1.Health/Check, which memoryd serves for probes. Its two
 * one-field messages are encoded by hand rather than generated from a proto
 * that is not in this repository.
 */
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";

export const HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check";

export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

const STATUS_NAMES: readonly ServingStatus[] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/** HealthCheckRequest { string service = 1; } */
export function encodeHealthCheckRequest(service: string): Buffer {
  const writer = new BinaryWriter();
  if (service !== "") {
    writer.uint32(10).string(service);
  }
  return Buffer.from(writer.finish());
}

/** HealthCheckResponse { ServingStatus status = 1; } */
export function decodeHealthCheckResponse(bytes: Uint8Array): ServingStatus {
  const reader = new BinaryReader(bytes);
  let value = 0;
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (fieldNo === 1) {
      value = reader.int32();
    } else {
      reader.skip(wireType, fieldNo);
    }
  }
  return STATUS_NAMES[value] ?? "UNKNOWN";
}
