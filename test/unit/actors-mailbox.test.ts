import t from 'tap';
import type { ActorKind } from '../../src/actors/address.js';
import { ManualClock } from '../../src/actors/clock.js';
import { Mailbox, type MailboxHooks } from '../../src/actors/mailbox.js';
import { actorMetrics } from '../../src/actors/metrics.js';

/** A scheduler the test runs by hand: each call of `turn()` runs one scheduled mailbox turn. */
function manualScheduler() {
  const queue: (() => void)[] = [];
  return {
    schedule: (fn: () => void) => void queue.push(fn),
    get scheduled() {
      return queue.length;
    },
    async turn(): Promise<void> {
      const fn = queue.shift();
      if (fn === undefined) throw new Error('nothing scheduled');
      fn();
      // A turn awaits handlers; let its microtasks settle.
      for (let i = 0; i < 10; i++) await Promise.resolve();
    },
  };
}

function setup(opts: { capacity?: number; turnBudget?: number; handle?: (m: string) => void | Promise<void> } = {}) {
  const clock = new ManualClock();
  const sched = manualScheduler();
  const seen: string[] = [];
  const errors: unknown[] = [];
  let idles = 0;
  const hooks: MailboxHooks<string> = {
    handle: opts.handle ?? ((m) => void seen.push(m)),
    error: (err) => void errors.push(err),
    idle: () => void idles++,
  };
  const mb = new Mailbox<string>({ kind: 'conv', capacity: opts.capacity ?? 4, turnBudget: opts.turnBudget ?? 64, clock, schedule: sched.schedule }, hooks);
  return { mb, clock, sched, seen, errors, idles: () => idles };
}

async function metricValue(metric: { get(): Promise<{ values: { labels: Record<string, unknown>; value: number; metricName?: string }[] }> }, kind: ActorKind, name?: string): Promise<number> {
  const { values } = await metric.get();
  return values.filter((v) => v.labels.kind === kind && (name === undefined || v.metricName === name)).reduce((a, v) => a + v.value, 0);
}

t.test('a full user lane rejects the message instead of dropping it silently', async (t) => {
  const { mb, sched, seen } = setup({ capacity: 2 });
  t.equal(mb.post('a'), true);
  t.equal(mb.post('b'), true);
  t.equal(mb.post('c'), false, 'third message refused');
  t.equal(mb.depth, 2);
  t.equal(mb.post('sys', 'system'), true, 'the system lane is not capped by capacity');
  await sched.turn();
  t.same(seen, ['sys', 'a', 'b'], 'the refused message was never queued');
  t.equal(mb.post('d'), true, 'room again after the turn');
});

t.test('system messages run before user messages', async (t) => {
  const { mb, sched, seen } = setup();
  mb.post('u1');
  mb.post('u2');
  mb.post('s1', 'system');
  mb.post('s2', 'system');
  await sched.turn();
  t.same(seen, ['s1', 's2', 'u1', 'u2']);
});

t.test('a turn processes at most turnBudget messages, then yields', async (t) => {
  const { mb, sched, seen, idles } = setup({ capacity: 100, turnBudget: 2 });
  for (let i = 0; i < 5; i++) mb.post(`m${i}`);
  t.equal(sched.scheduled, 1, 'one turn scheduled, not one per message');
  await sched.turn();
  t.same(seen, ['m0', 'm1']);
  t.equal(sched.scheduled, 1, 'the rest is scheduled for a later turn');
  await sched.turn();
  t.same(seen, ['m0', 'm1', 'm2', 'm3']);
  t.equal(idles(), 0);
  await sched.turn();
  t.same(seen, ['m0', 'm1', 'm2', 'm3', 'm4']);
  t.equal(idles(), 1, 'idle once the mailbox is empty');
  t.equal(sched.scheduled, 0);
});

t.test('an async handler is awaited: one message at a time', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const log: string[] = [];
  const { mb, sched } = setup({
    handle: async (m) => {
      log.push(`start ${m}`);
      if (m === 'a') await gate;
      log.push(`end ${m}`);
    },
  });
  mb.post('a');
  mb.post('b');
  await sched.turn();
  t.same(log, ['start a'], 'b waits while a is in progress');
  t.equal(mb.isRunning, true);
  release();
  for (let i = 0; i < 10; i++) await Promise.resolve();
  t.same(log, ['start a', 'end a', 'start b', 'end b']);
});

t.test('a throwing handler is reported and the mailbox goes on', async (t) => {
  const seen: string[] = [];
  const { mb, sched, errors } = setup({
    handle: (m) => {
      if (m === 'bad') throw new Error('boom');
      seen.push(m);
    },
  });
  mb.post('bad');
  mb.post('good');
  await sched.turn();
  t.equal(errors.length, 1);
  t.same(seen, ['good']);
});

t.test('a paused mailbox holds messages until resumed; stop hands back what is queued', async (t) => {
  const { mb, sched, seen } = setup();
  mb.pause();
  mb.post('a');
  mb.post('s', 'system', true);
  t.equal(sched.scheduled, 0, 'nothing runs while paused');
  mb.resume();
  await sched.turn();
  t.same(seen, ['s', 'a']);
  mb.pause();
  mb.post('x');
  mb.post('y', 'system', true);
  const rest = mb.stop();
  t.same(
    rest.map((e) => [e.msg, e.lane, e.self]),
    [
      ['y', 'system', true],
      ['x', 'user', false],
    ],
  );
  t.equal(mb.post('z'), false, 'a stopped mailbox takes nothing');
  t.equal(mb.depth, 0);
});

t.test('metrics: depth, messages and wait time by kind', async (t) => {
  const depth0 = await metricValue(actorMetrics.mailboxDepth, 'conv');
  const msgs0 = await metricValue(actorMetrics.messages, 'conv');
  const waitCount0 = await metricValue(actorMetrics.mailboxWait, 'conv', 'ticks_actor_mailbox_wait_seconds_count');
  const waitSum0 = await metricValue(actorMetrics.mailboxWait, 'conv', 'ticks_actor_mailbox_wait_seconds_sum');
  const { mb, sched, clock } = setup();
  mb.post('a');
  mb.post('b');
  t.equal((await metricValue(actorMetrics.mailboxDepth, 'conv')) - depth0, 2, 'depth counts queued messages');
  clock.advance(250);
  await sched.turn();
  t.equal((await metricValue(actorMetrics.mailboxDepth, 'conv')) - depth0, 0);
  t.equal((await metricValue(actorMetrics.messages, 'conv')) - msgs0, 2);
  t.equal((await metricValue(actorMetrics.mailboxWait, 'conv', 'ticks_actor_mailbox_wait_seconds_count')) - waitCount0, 2);
  t.equal(
    Math.round(((await metricValue(actorMetrics.mailboxWait, 'conv', 'ticks_actor_mailbox_wait_seconds_sum')) - waitSum0) * 1000),
    500,
    'each message waited 250 ms on the fake clock',
  );
});
