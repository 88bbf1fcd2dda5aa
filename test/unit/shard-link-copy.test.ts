import { MessageChannel } from 'node:worker_threads';
import t from 'tap';
import { Packr } from 'msgpackr';
import { exactCopy } from '../../src/lib/bytes.js';

t.test('exactCopy owns its memory: transferring it leaves the encoder buffer intact', async (t) => {
  const packr = new Packr({ useRecords: false });
  const first = packr.pack({ t: 'first', n: 1 });
  const framed = packr.pack({ t: 'msg', body: new Uint8Array([1, 2, 3]) });
  t.ok(Buffer.isBuffer(framed), 'msgpackr hands out Node Buffers (views of a shared buffer)');
  const copy = exactCopy(framed);
  t.equal(copy.buffer.byteLength, framed.byteLength, 'an exact-size buffer of its own');
  t.not(copy.buffer, framed.buffer);
  const { port1, port2 } = new MessageChannel();
  const got = new Promise<Uint8Array>((resolve) => port2.once('message', resolve));
  port1.postMessage(copy, [copy.buffer]);
  t.same([...(await got)], [...framed], 'the receiver got the bytes');
  t.equal(framed.buffer.byteLength > 0, true, 'the encoder buffer is not detached');
  t.same(packr.unpack(first), { t: 'first', n: 1 }, 'views handed out before still decode');
  t.same(packr.unpack(packr.pack({ t: 'after' })), { t: 'after' }, 'the encoder still works');
  port1.close();
  port2.close();
});

t.test('Buffer.slice() would have shared the encoder memory (why exactCopy exists)', async (t) => {
  const framed = new Packr({ useRecords: false }).pack({ t: 'x' });
  t.equal(framed.slice().buffer, framed.buffer, 'slice() of a Buffer is a view of the same ArrayBuffer');
});
