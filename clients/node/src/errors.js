/**
 * Errors of Forgeline calls: the gRPC status code plus the `google.rpc.BadRequest` field
 * violations the services put in `grpc-status-details-bin`.
 * @module
 */

import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

const BAD_REQUEST_URL = 'type.googleapis.com/google.rpc.BadRequest';

// The two googleapis files (vendored from googleapis-common-protos); protobufjs supplies
// the google/protobuf ones they import.
const rpcProtos = protobuf.loadSync(
  ['status.proto', 'error_details.proto'].map((name) =>
    fileURLToPath(new URL(`../protos/google/rpc/${name}`, import.meta.url)),
  ),
);
const Status = rpcProtos.lookupType('google.rpc.Status');

/**
 * One problem with one request field.
 * @typedef {object} FieldViolation
 * @property {string} field Path of the field as the contract spells it, e.g. `sampling.top_p`.
 * @property {string} description What is wrong and what would be accepted.
 */

/** A failed call: the status code, the server's message and any field violations. */
export class ForgelineError extends Error {
  /**
   * @param {grpc.status} code gRPC status code.
   * @param {string} message The server's message.
   * @param {FieldViolation[]} fieldViolations Problems with request fields (INVALID_ARGUMENT).
   * @param {unknown} [cause] The grpc-js error.
   */
  constructor(code, message, fieldViolations = [], cause = undefined) {
    super(message, { cause });
    this.name = 'ForgelineError';
    /** gRPC status code (`grpc.status.INVALID_ARGUMENT` is 3). */
    this.code = code;
    /** The code's name, e.g. `INVALID_ARGUMENT`. */
    this.codeName = grpc.status[code] ?? 'UNKNOWN';
    /** Problems with request fields, from `google.rpc.BadRequest`. */
    this.fieldViolations = fieldViolations;
  }

  /**
   * Builds the error from what grpc-js rejected a call with.
   * @param {Partial<grpc.ServiceError>} error
   * @returns {ForgelineError}
   */
  static fromServiceError(error) {
    const code = error.code ?? grpc.status.UNKNOWN;
    const message = error.details || error.message || (grpc.status[code] ?? 'UNKNOWN');
    return new ForgelineError(code, message, fieldViolations(error.metadata), error);
  }
}

/**
 * The field violations in a call's trailing metadata; none when it carries no details.
 * @param {grpc.Metadata | undefined} metadata
 * @returns {FieldViolation[]}
 */
export function fieldViolations(metadata) {
  const [bin] = metadata?.get('grpc-status-details-bin') ?? [];
  if (!(bin instanceof Buffer)) return [];
  // JSON form: each google.protobuf.Any is expanded into its message, tagged with `@type`.
  const { details = [] } = Status.toObject(Status.decode(bin), { json: true });
  return details
    .filter((/** @type {{'@type': string}} */ any) => any['@type'] === BAD_REQUEST_URL)
    .flatMap((/** @type {{fieldViolations?: FieldViolation[]}} */ bad) =>
      (bad.fieldViolations ?? []).map(({ field, description }) => ({ field, description })),
    );
}
