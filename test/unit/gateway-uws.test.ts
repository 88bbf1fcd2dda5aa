import { createRequire } from 'node:module';
import t from 'tap';
import { assertNativeUws, isNativeUws, loadUws, UwsFallbackError } from '../../src/gateway/uws.js';

const fakeNative = { App: () => ({}), SSLApp: () => ({}) };
const fakeFallback = { App: () => ({}), SSLApp: () => ({}) };
const cache = {
  '/x/node_modules/uWebSockets.js/src/uws.js': { exports: fakeNative },
  '/x/node_modules/uWebSockets.js/binaries/uws_linux_x64_115.node': { exports: fakeNative },
};
const fallbackCache = {
  '/x/node_modules/uWebSockets.js/src/uws.js': { exports: fakeFallback },
  '/x/node_modules/uWebSockets.js/dist/index.js': { exports: fakeFallback },
};

t.test('the native addon is recognised by its .node entry in the require cache', async (t) => {
  t.ok(isNativeUws(fakeNative, cache));
  t.doesNotThrow(() => assertNativeUws(fakeNative, cache));
});

t.test('the pure-JS fallback is refused with an error that says so', async (t) => {
  t.notOk(isNativeUws(fakeFallback, fallbackCache));
  t.notOk(isNativeUws(fakeFallback, cache), 'a .node module that is not this module does not count');
  t.notOk(isNativeUws({ App: () => ({}) }, { 'a.node': { exports: { App: () => ({}) } } }), 'SSLApp missing');
  t.notOk(isNativeUws(null, cache));
  t.throws(() => assertNativeUws(fakeFallback, fallbackCache), UwsFallbackError);
  try {
    assertNativeUws(fakeFallback, fallbackCache);
  } catch (err) {
    t.match((err as Error).message, /pure-JS fallback.*refuses to start/);
    t.equal((err as UwsFallbackError).code, 'gateway.uws_fallback');
  }
});

t.test('on this machine the real module loads natively', async (t) => {
  const uws = loadUws();
  t.ok(isNativeUws(uws, createRequire(import.meta.url).cache));
});
