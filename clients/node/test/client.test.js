/**
 * The Node client against a running registry and inference service.
 *
 * Driven by tests/clients/test_node.py, which starts both and passes where they are:
 * FORGELINE_REGISTRY_ADDRESS, FORGELINE_INFERENCE_ADDRESS, FORGELINE_TOKEN, the registry
 * model (FORGELINE_TEST_MODEL), its served name (FORGELINE_TEST_SERVED) and the greedy
 * answer the Python SDK got for QUESTION (FORGELINE_TEST_EXPECTED).
 */

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import grpc from '@grpc/grpc-js';
import { connect, ForgelineError } from '../src/index.js';

const env = process.env;
const NEEDED = [
  'FORGELINE_REGISTRY_ADDRESS',
  'FORGELINE_INFERENCE_ADDRESS',
  'FORGELINE_TOKEN',
  'FORGELINE_TEST_MODEL',
  'FORGELINE_TEST_SERVED',
  'FORGELINE_TEST_EXPECTED',
];
const missing = NEEDED.filter((name) => !env[name]);
const skip = missing.length > 0 && `needs a running suite: set ${missing.join(', ')}`;

const QUESTION = 'What is the capital of France?';
const MODEL = env.FORGELINE_TEST_MODEL ?? '';
const SERVED = env.FORGELINE_TEST_SERVED ?? '';

/** @param {string} [token] */
const suite = (token = env.FORGELINE_TOKEN) =>
  connect({
    registry: env.FORGELINE_REGISTRY_ADDRESS,
    inference: env.FORGELINE_INFERENCE_ADDRESS,
    token,
  });

/**
 * The ForgelineError a call rejects with.
 * @param {() => Promise<unknown>} call
 * @returns {Promise<ForgelineError>}
 */
async function failure(call) {
  try {
    await call();
  } catch (error) {
    assert.ok(error instanceof ForgelineError, `not a ForgelineError: ${error}`);
    return error;
  }
  assert.fail('the call succeeded');
}

/**
 * Every message of a stream.
 * @template T
 * @param {AsyncIterable<T>} stream
 */
async function collect(stream) {
  const messages = [];
  for await (const message of stream) messages.push(message);
  return messages;
}

describe('Forgeline from Node', { skip }, () => {
  const forgeline = suite();
  after(() => forgeline.close());

  test('lists the registry versions with a bearer token', async () => {
    const { versions } = await forgeline.registry.listVersions({ model: MODEL });
    assert.deepEqual(
      versions.map((v) => [v.model, v.number, v.kind, v.state]),
      [[MODEL, 1, 'VERSION_KIND_BASE', 'VERSION_STATE_READY']],
    );
    assert.match(versions[0].manifestDigest, /^[0-9a-f]{64}$/);
  });

  test('streams a greedy generation token by token', async () => {
    const messages = await collect(
      forgeline.inference.generate({
        model: SERVED,
        messages: { messages: [{ role: 'user', content: QUESTION }] },
        sampling: { temperature: 0, maxTokens: 8 },
      }),
    );
    const chunks = messages.flatMap((m) => m.chunks);
    const texts = chunks.map((c) => c.text).filter(Boolean);
    assert.ok(texts.length > 1, `one piece of text, not a stream: ${JSON.stringify(texts)}`);
    assert.equal(texts.join(''), env.FORGELINE_TEST_EXPECTED);
    assert.equal(messages[0].modelVersion, `${MODEL}:1`);
    const last = messages.at(-1);
    assert.ok(last);
    const finish = last.chunks.at(-1)?.finishReason;
    assert.ok(finish === 'FINISH_REASON_STOP' || finish === 'FINISH_REASON_LENGTH', finish);
    const tokens = chunks.flatMap((c) => c.tokenIds).length;
    assert.equal(last.usage?.completionTokens, tokens);
    assert.ok(tokens <= 8);
  });

  test('leaving a stream early cancels the generation', async () => {
    const stream = forgeline.inference.generate({
      model: SERVED,
      prompt: 'Once upon a time',
      sampling: { temperature: 0, maxTokens: 512, ignoreEos: true },
    });
    for await (const message of stream) {
      assert.ok(message.chunks.length > 0);
      break;
    }
    // 512 tokens take several seconds here; an aborted request is gone at once.
    const deadline = Date.now() + 3000;
    let running = -1;
    while (Date.now() < deadline) {
      const { models } = await forgeline.inference.listServedModels({});
      running = models.find((m) => m.name === SERVED)?.runningRequests ?? -1;
      if (running === 0) break;
      await sleep(100);
    }
    assert.equal(running, 0);
  });

  test('a bad field is named in the error of a unary call', async () => {
    const error = await failure(() => forgeline.registry.listVersions({ model: 'Not A Name!' }));
    assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(error.codeName, 'INVALID_ARGUMENT');
    assert.deepEqual(
      error.fieldViolations.map((v) => v.field),
      ['model'],
    );
    assert.match(error.fieldViolations[0].description, /Not A Name!/);
  });

  test('bad fields are named in the error of a stream', async () => {
    const error = await failure(() =>
      collect(
        forgeline.inference.generate({
          model: SERVED,
          prompt: 'Hi',
          sampling: { topP: 2, maxTokens: 0 },
        }),
      ),
    );
    assert.equal(error.codeName, 'INVALID_ARGUMENT');
    assert.deepEqual(error.fieldViolations.map((v) => v.field).sort(), [
      'sampling.max_tokens',
      'sampling.top_p',
    ]);
    assert.ok(error.fieldViolations.every((v) => v.description.length > 0));
  });

  test('a missing or wrong token is UNAUTHENTICATED', async () => {
    for (const token of ['', 'not-the-token']) {
      const stranger = suite(token);
      try {
        const listing = await failure(() => stranger.registry.listVersions({}));
        const stream = await failure(() =>
          collect(stranger.inference.generate({ model: SERVED, prompt: 'Hi' })),
        );
        for (const error of [listing, stream]) {
          assert.equal(error.code, grpc.status.UNAUTHENTICATED);
          assert.match(error.message, token ? /invalid bearer token/ : /missing bearer token/);
          assert.deepEqual(error.fieldViolations, []);
        }
      } finally {
        stranger.close();
      }
    }
  });
});
