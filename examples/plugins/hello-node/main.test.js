'use strict';
// node --test examples/plugins/hello-node/
const test = require('node:test');
const assert = require('node:assert');
const { handler } = require('./main.js');

test('greets by name', async () => {
  assert.deepStrictEqual(await handler({ name: 'Ada' }), { message: 'Hello, Ada!' });
  assert.deepStrictEqual(await handler({ name: '  ' }), { message: 'Hello, stranger!' });
});
