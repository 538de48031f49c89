'use strict';
// Say hello: a Warden plugin in Node.js (CommonJS; `export async function
// handler` works as well in an .mjs file).

exports.handler = async (event) => {
  const name = event.name.trim() || 'stranger';
  return { message: `Hello, ${name}!` };
};
