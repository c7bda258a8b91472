/**
 * A typed Node.js client of Forgeline's registry and inference services.
 *
 * The contracts are loaded from the repository's `protos/` at run time; their types come
 * from the same files (`npm ci` generates them into `generated/`). Every RPC of a service
 * is a method named in camelCase: unary RPCs return a promise, server streams an async
 * iterable; both reject with {@link ForgelineError}.
 * @module
 */

import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { ForgelineError } from './errors.js';

export { ForgelineError, fieldViolations } from './errors.js';

/** The contracts: `forgeline/v1/*.proto` under the repository's `protos/`. */
export const PROTOS_DIR = fileURLToPath(new URL('../../../protos', import.meta.url));

// Must match the options `npm run prepare` generates the types with.
const LOADER_OPTIONS = {
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTOS_DIR],
};

const v1 = /** @type {{v1: Record<string, grpc.ServiceClientConstructor>}} */ (
  grpc.loadPackageDefinition(
    protoLoader.loadSync(
      ['forgeline/v1/registry.proto', 'forgeline/v1/inference.proto'],
      LOADER_OPTIONS,
    ),
  ).forgeline
).v1;

/** @typedef {import('../generated/forgeline/v1/RegistryService').RegistryServiceClient} RegistryStub */
/** @typedef {import('../generated/forgeline/v1/InferenceService').InferenceServiceClient} InferenceStub */

/**
 * A generated stub's unary RPCs as promises and its server streams as async generators,
 * by their camelCase names; client-streaming RPCs (artifact uploads) are left out.
 * @template S
 * @typedef {{[K in keyof S as K extends Uncapitalize<K & string> ? RpcName<K, S[K]> : never]: Call<S[K]>}} Calls
 */
/**
 * `K` when `F` is a unary or server-streaming RPC (a client stream also fits `Unary`).
 * @template K, F
 * @typedef {F extends ClientStream ? never : F extends Unary | ServerStream ? K : never} RpcName
 */
/**
 * The promise form of a unary stub method, the async generator form of a server stream.
 * @template F
 * @typedef {F extends (request: infer Req, callback: grpc.requestCallback<infer Res>) => any
 *   ? (request: Req, options?: grpc.CallOptions) => Promise<Res>
 *   : F extends (request: infer Req, options?: grpc.CallOptions) => grpc.ClientReadableStream<infer Res>
 *     ? (request: Req, options?: grpc.CallOptions) => AsyncGenerator<Res, void, undefined>
 *     : never} Call
 */
/** @typedef {(...args: any[]) => grpc.ClientWritableStream<any>} ClientStream */
/** @typedef {(request: any, callback: grpc.requestCallback<any>) => grpc.ClientUnaryCall} Unary */
/** @typedef {(request: any, options?: grpc.CallOptions) => grpc.ClientReadableStream<any>} ServerStream */

/** @typedef {Calls<RegistryStub>} RegistryClient */
/** @typedef {Calls<InferenceStub>} InferenceClient */

/**
 * Where the services are and how to reach them.
 * @typedef {object} ConnectOptions
 * @property {string} [registry] Registry address, `host:port` (default `127.0.0.1:50051`).
 * @property {string} [inference] Inference address, `host:port` (default `127.0.0.1:50055`).
 * @property {string} [token] Bearer token the services require (`FORGELINE_TOKEN`); empty sends none.
 * @property {boolean | {ca: Buffer}} [tls] Use TLS: `true` trusts the system roots, `{ca}` a PEM bundle.
 */

/**
 * Clients of one Forgeline deployment.
 * @typedef {object} Forgeline
 * @property {RegistryClient} registry Models, versions, aliases, lineage, evaluations.
 * @property {InferenceClient} inference Served models and streamed generation.
 * @property {() => void} close Closes both channels.
 */

/**
 * Connects to Forgeline's registry and inference services (channels open on first call).
 * @param {ConnectOptions} [options]
 * @returns {Forgeline}
 */
export function connect({
  registry = '127.0.0.1:50051',
  inference = '127.0.0.1:50055',
  token = '',
  tls = false,
} = {}) {
  const credentials = tls
    ? grpc.credentials.createSsl(tls === true ? null : tls.ca)
    : grpc.credentials.createInsecure();
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  const registryStub = new v1.RegistryService(registry, credentials);
  const inferenceStub = new v1.InferenceService(inference, credentials);
  return {
    registry: /** @type {RegistryClient} */ (wrap(registryStub, metadata)),
    inference: /** @type {InferenceClient} */ (wrap(inferenceStub, metadata)),
    close() {
      registryStub.close();
      inferenceStub.close();
    },
  };
}

/**
 * The unary and server-streaming RPCs of `stub`, by their camelCase names.
 * @param {grpc.Client & Record<string, Function>} stub
 * @param {grpc.Metadata} metadata Sent with every call.
 * @returns {Record<string, Function>}
 */
function wrap(stub, metadata) {
  const service = /** @type {grpc.ServiceClientConstructor} */ (stub.constructor).service;
  /** @type {Record<string, Function>} */
  const calls = {};
  for (const method of Object.values(service)) {
    if (method.requestStream) continue;
    const name = /** @type {string} */ (method.originalName);
    const rpc = stub[name].bind(stub);
    calls[name] = method.responseStream
      ? (/** @type {object} */ request, /** @type {grpc.CallOptions} */ options = {}) =>
          stream(rpc(request, metadata.clone(), options))
      : (/** @type {object} */ request, /** @type {grpc.CallOptions} */ options = {}) =>
          new Promise((resolve, reject) =>
            rpc(
              request,
              metadata.clone(),
              options,
              (/** @type {grpc.ServiceError | null} */ error, /** @type {unknown} */ response) =>
                error ? reject(ForgelineError.fromServiceError(error)) : resolve(response),
            ),
          );
  }
  return calls;
}

/**
 * The messages of a server stream; leaving the loop early cancels the call.
 * @template T
 * @param {grpc.ClientReadableStream<T>} call
 * @returns {AsyncGenerator<T, void, undefined>}
 */
async function* stream(call) {
  try {
    yield* call;
  } catch (error) {
    throw ForgelineError.fromServiceError(/** @type {grpc.ServiceError} */ (error));
  } finally {
    call.cancel();
  }
}
