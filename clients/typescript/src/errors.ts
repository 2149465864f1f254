/**
 * Typed errors for failed calls.
 *
 * Every failed call rejects with a MemorydError (or the subclass for its
 * status code) carrying the gRPC code, the server's message and, when the
 * server attached one, the google.rpc.ErrorInfo detail: a machine-readable
 * `reason` and the request `field` that was wrong.
 */
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { type Metadata, type ServiceError, status } from "@grpc/grpc-js";

export { status as Status } from "@grpc/grpc-js";

const STATUS_DETAILS_KEY = "grpc-status-details-bin";
const ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo";

/** The google.rpc.ErrorInfo the server attaches to its errors. */
export interface ErrorInfo {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

export class MemorydError extends Error {
  /** The gRPC status code (grpc-js `status` enum, re-exported as `Status`). */
  readonly code: status;
  /** The name of the code, e.g. "INVALID_ARGUMENT". */
  readonly codeName: string;
  /** The server's message, without the "3 INVALID_ARGUMENT:" prefix. */
  readonly details: string;
  /** Machine-readable reason from ErrorInfo, e.g. "INVALID_ARGUMENT". */
  readonly reason: string | undefined;
  /** The request field the error is about, e.g. "user_id" or "memory.kind". */
  readonly field: string | undefined;
  readonly errorInfo: ErrorInfo | undefined;
  /** The trailing metadata of the failed call. */
  readonly metadata: Metadata | undefined;

  constructor(code: status, details: string, metadata?: Metadata, options?: ErrorOptions) {
    const codeName = status[code] ?? `CODE_${code}`;
    super(`${codeName}: ${details}`, options);
    this.name = new.target.name;
    this.code = code;
    this.codeName = codeName;
    this.details = details;
    this.metadata = metadata;
    this.errorInfo = metadata === undefined ? undefined : errorInfoFrom(metadata);
    this.reason = this.errorInfo?.reason;
    this.field = this.errorInfo?.metadata["field"];
  }
}

export class CancelledError extends MemorydError {}
export class UnknownError extends MemorydError {}
export class InvalidArgumentError extends MemorydError {}
export class DeadlineExceededError extends MemorydError {}
export class NotFoundError extends MemorydError {}
export class AlreadyExistsError extends MemorydError {}
export class PermissionDeniedError extends MemorydError {}
export class ResourceExhaustedError extends MemorydError {}
export class FailedPreconditionError extends MemorydError {}
export class AbortedError extends MemorydError {}
export class OutOfRangeError extends MemorydError {}
export class UnimplementedError extends MemorydError {}
export class InternalError extends MemorydError {}
/** A store or the server is out of reach; the call may be retried. */
export class UnavailableError extends MemorydError {}
export class DataLossError extends MemorydError {}
export class UnauthenticatedError extends MemorydError {}

type ErrorClass = new (code: status, details: string, metadata?: Metadata, options?: ErrorOptions) => MemorydError;

const ERROR_BY_CODE: Partial<Record<status, ErrorClass>> = {
  [status.CANCELLED]: CancelledError,
  [status.UNKNOWN]: UnknownError,
  [status.INVALID_ARGUMENT]: InvalidArgumentError,
  [status.DEADLINE_EXCEEDED]: DeadlineExceededError,
  [status.NOT_FOUND]: NotFoundError,
  [status.ALREADY_EXISTS]: AlreadyExistsError,
  [status.PERMISSION_DENIED]: PermissionDeniedError,
  [status.RESOURCE_EXHAUSTED]: ResourceExhaustedError,
  [status.FAILED_PRECONDITION]: FailedPreconditionError,
  [status.ABORTED]: AbortedError,
  [status.OUT_OF_RANGE]: OutOfRangeError,
  [status.UNIMPLEMENTED]: UnimplementedError,
  [status.INTERNAL]: InternalError,
  [status.UNAVAILABLE]: UnavailableError,
  [status.DATA_LOSS]: DataLossError,
  [status.UNAUTHENTICATED]: UnauthenticatedError,
};

/** The typed error for a grpc-js ServiceError. */
export function fromServiceError(error: ServiceError): MemorydError {
  const ErrorType = ERROR_BY_CODE[error.code] ?? MemorydError;
  return new ErrorType(error.code, error.details, error.metadata, { cause: error });
}

/**
 * The ErrorInfo inside the grpc-status-details-bin trailer, a serialized
 * google.rpc.Status. Decoded by hand from its three small messages rather than
 * generating googleapis' protos into the package; anything unreadable is
 * ignored (the code and message still stand).
 */
export function errorInfoFrom(metadata: Metadata): ErrorInfo | undefined {
  const [raw] = metadata.get(STATUS_DETAILS_KEY);
  if (!(raw instanceof Uint8Array)) {
    return undefined;
  }
  try {
    for (const any of fieldsOf(raw, 3)) {
      // google.protobuf.Any: type_url = 1, value = 2.
      const fields = readFields(any);
      const typeUrl = decodeString(fields.get(1)?.[0]);
      const value = fields.get(2)?.[0];
      if (typeUrl === ERROR_INFO_TYPE && value !== undefined) {
        return decodeErrorInfo(value);
      }
    }
  } catch {
    return undefined;
  }
  return undefined;
}

function decodeErrorInfo(bytes: Uint8Array): ErrorInfo {
  // google.rpc.ErrorInfo: reason = 1, domain = 2, map<string, string> metadata = 3.
  const fields = readFields(bytes);
  const metadata: Record<string, string> = {};
  for (const entry of fields.get(3) ?? []) {
    const kv = readFields(entry);
    metadata[decodeString(kv.get(1)?.[0])] = decodeString(kv.get(2)?.[0]);
  }
  return {
    reason: decodeString(fields.get(1)?.[0]),
    domain: decodeString(fields.get(2)?.[0]),
    metadata,
  };
}

function fieldsOf(bytes: Uint8Array, fieldNo: number): Uint8Array[] {
  return readFields(bytes).get(fieldNo) ?? [];
}

/** The length-delimited fields of a message by number; other wire types are skipped. */
function readFields(bytes: Uint8Array): Map<number, Uint8Array[]> {
  const reader = new BinaryReader(bytes);
  const fields = new Map<number, Uint8Array[]>();
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (wireType !== WireType.LengthDelimited) {
      reader.skip(wireType, fieldNo);
      continue;
    }
    const values = fields.get(fieldNo) ?? [];
    values.push(reader.bytes());
    fields.set(fieldNo, values);
  }
  return fields;
}

function decodeString(bytes: Uint8Array | undefined): string {
  return bytes === undefined ? "" : new TextDecoder().decode(bytes);
}
