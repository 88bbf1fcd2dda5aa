import t from 'tap';
import { isTicksError, TicksError } from '../../src/lib/errors.js';

t.test('TicksError keeps code, retryable and cause', async (t) => {
  const cause = new Error('socket closed');
  const err = new TicksError('store_unavailable', 'store did not answer', { retryable: true, cause });
  t.equal(err.code, 'store_unavailable');
  t.equal(err.retryable, true);
  t.equal(err.cause, cause);
  t.equal(err.message, 'store did not answer');
  t.equal(err.name, 'TicksError');
  t.ok(err instanceof Error);
});

t.test('TicksError without a cause has no cause property', async (t) => {
  const err = new TicksError('bad_frame', 'frame too large', { retryable: false });
  t.equal(err.retryable, false);
  t.notOk('cause' in err);
});

t.test('isTicksError matches the class and, when given, the code', async (t) => {
  const err = new TicksError('conflict', 'epoch moved', { retryable: false });
  t.ok(isTicksError(err));
  t.ok(isTicksError(err, 'conflict'));
  t.notOk(isTicksError(err, 'other'));
  t.notOk(isTicksError(new Error('plain')));
  t.notOk(isTicksError({ code: 'conflict', retryable: false }));
  t.notOk(isTicksError(undefined));
});
