// Refusals carry a gRPC status code, a short machine-readable reason (metrics label) and a human message.
import { status, type ServiceError, Metadata } from '@grpc/grpc-js';

export class FedError extends Error {
  override name = 'FedError';
  constructor(readonly code: status, readonly reason: string, message: string) {
    super(message);
  }

  toServiceError(): Partial<ServiceError> {
    return { code: this.code, details: this.message, message: this.message, metadata: new Metadata() };
  }
}

export const unauthenticated = (reason: string, msg: string) => new FedError(status.UNAUTHENTICATED, reason, msg);
export const permissionDenied = (reason: string, msg: string) => new FedError(status.PERMISSION_DENIED, reason, msg);
export const invalidArgument = (reason: string, msg: string) => new FedError(status.INVALID_ARGUMENT, reason, msg);
export const failedPrecondition = (reason: string, msg: string) => new FedError(status.FAILED_PRECONDITION, reason, msg);

/** Any thrown value -> FedError (unexpected errors become INTERNAL). */
export function asFedError(e: unknown): FedError {
  if (e instanceof FedError) return e;
  return new FedError(status.INTERNAL, 'internal', `internal error: ${(e as Error)?.message ?? String(e)}`);
}
