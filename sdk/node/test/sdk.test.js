'use strict';
// Tests of the Node.js SDK: node --test sdk/node/test/
const test = require('node:test');
const assert = require('node:assert');
const { PluginError, InvocationError, handler, invoke } = require('..');

test('plugin errors carry their type', async () => {
  const h = async () => {
    throw new PluginError('ValidationError', 'name is required');
  };
  await assert.rejects(invoke(h, {}), (e) => e instanceof InvocationError && e.type === 'ValidationError' && e.detail === 'name is required');
  assert.strictEqual(new PluginError('plain').type, 'PluginError');
  assert.throws(() => new PluginError('not ok', 'x'), TypeError);
});

test('events are checked before the handler runs', async () => {
  let calls = 0;
  const h = handler(async (e) => ({ hello: e.name, n: ++calls }), { required: ['name'], types: { name: 'string', tags: 'array' } });
  assert.deepStrictEqual(await invoke(h, { name: 'ada' }), { hello: 'ada', n: 1 });
  for (const [event, words] of [
    [[], 'must be an object, not array'],
    [null, 'not null'],
    [{}, 'missing required field name'],
    [Object.create({ name: 'inherited' }), 'missing required field name'],
    [{ name: 3 }, 'name: expected string, got number'],
    [{ name: 'a', tags: {} }, 'tags: expected array, got object'],
  ]) {
    await assert.rejects(invoke(h, event), (e) => e.type === 'InvalidEvent' && e.detail.includes(words), words);
  }
  assert.strictEqual(calls, 1, 'the handler ran only for the valid event');
});

test('results must be JSON; events pass through JSON', async () => {
  assert.strictEqual(await invoke(() => undefined, {}), null, 'undefined becomes null, as on the platform');
  await assert.rejects(invoke(() => ({ n: 1n }), {}), (e) => e.type === 'ResultNotSerializable');
  await assert.rejects(invoke(() => ({ n: NaN }), {}), (e) => e.type === 'ResultNotSerializable' && e.detail.includes('$.n'));
  await assert.rejects(invoke(() => ({ m: new Map() }), {}), (e) => e.detail.includes('Map'));
  const seen = [];
  await invoke((e) => {
    seen.push(e);
    return {};
  }, { d: new Date(0) });
  assert.deepStrictEqual(seen, [{ d: '1970-01-01T00:00:00.000Z' }]);
});

test('plain errors keep their own type', async () => {
  await assert.rejects(invoke(() => { throw new RangeError('out'); }, {}), (e) => e.type === 'RangeError');
});

test('request needs the network the version declared, and an absolute URL', async () => {
  const { request, PluginError } = require('../index');
  const saved = [process.env.HTTP_PROXY, process.env.http_proxy];
  delete process.env.HTTP_PROXY;
  delete process.env.http_proxy;
  try {
    await assert.rejects(request('http://example.com/'), (e) => e instanceof PluginError && e.name === 'NetworkUnavailable');
    process.env.HTTP_PROXY = 'http://127.0.0.1:9';
    await assert.rejects(request('ftp://example.com/'), (e) => e instanceof TypeError && /absolute http/.test(e.message));
    await assert.rejects(request('not a url'), TypeError);
  } finally {
    if (saved[0] === undefined) delete process.env.HTTP_PROXY;
    else process.env.HTTP_PROXY = saved[0];
    if (saved[1] !== undefined) process.env.http_proxy = saved[1];
  }
});
