/**
 * The history checker of the chaos tests (DESIGN.md sections 2 and 9): replays a recorded history
 * (history.ts) after the harness let every device catch up, and verifies:
 *  - lost: every acked message reached every member device except its sender device (which holds
 *    it through the ack), with the acked message id;
 *  - duplicate: no device was handed the same seq or the same message id twice;
 *  - order / gap: every device was handed each conversation in increasing seq, and when it was handed
 *    seq s it held every seq below s (received, or sent by itself);
 *  - conflict: one (conversation, seq) never carries two message ids, and one message id never sits
 *    at two places (two writers, a fencing failure);
 *  - ack-inconsistent / stored-twice: one (device, cmid) is always answered with the same conv, seq
 *    and mid, and one submission is stored at one place only (idempotency);
 *  - unbacked-sent: the SDK reported nothing as sent that the server had not answered (`sent`
 *    frame) or shown stored (an own entry with that cmid) on that device beforehand;
 *  - phantom / corrupt: every received message is something a client submitted, from the right user
 *    and device, in the right conversation, with the submitted bytes;
 *  - failed-but-stored / unsettled: a send the SDK failed was never stored; every send was settled;
 *  - receipt-ahead / receipt-regress: a receipt never claims more than the named device (or some
 *    device of the named user; for a group's `*` receipt, every member) held at that moment, and
 *    never goes backwards; a group's membership events (device `~`) count like messages;
 *  - history-missed: a `history` page never leaves out a message of its range that had been acked
 *    before the request was sent (acked means durably stored, so the store must return it);
 *  - head-behind: a `synced` (the authoritative caught-up marker) never gives a conversation of the
 *    device's user a head below a message acked before that `sync` was sent.
 */
import { deviceKey, VIOLATION_KINDS, type AckInfo, type CheckResult, type DeviceKey, type Figures, type HistoryView, type Violation, type ViolationKind } from './history-events.js';

interface Submission {
  dev: DeviceKey;
  cmid: string;
  conv: string;
  body: string;
  t: number;
}

const subKey = (dev: DeviceKey, cmid: string): string => `${dev}\u0000${cmid}`;
/** The sender device of membership events (src/actors/conversation-ops.ts). */
const SYS_DEVICE = '~';

/** Per (device, conversation) state while replaying the events. */
class DeviceConv {
  /** seq -> mid handed to the app. */
  readonly delivered = new Map<number, string>();
  readonly mids = new Set<string>();
  lastDelivered = 0;
  /** Highest seq s with every seq <= s delivered or sent by this device (final knowledge). */
  contig = 0;
  /** Seqs this device held at the current point of the replay: delivered, or its own acked/seen. */
  readonly heldNow = new Set<number>();
  heldContig = 0;

  hold(seq: number): void {
    this.heldNow.add(seq);
    while (this.heldNow.has(this.heldContig + 1)) this.heldContig++;
  }
}

export function checkHistory(h: HistoryView): CheckResult {
  const violations: Violation[] = [];
  const add = (kind: ViolationKind, detail: string): void => {
    violations.push({ kind, detail });
  };

  // ---- pass 1: final knowledge: submissions, their outcomes, who sits at which (conv, seq) ----
  const subs = new Map<string, Submission>();
  const byBody = new Map<string, Submission>();
  const outcome = new Map<string, { ack?: AckInfo; failed?: string }>();
  /** conv -> seq -> mid, from every observation; the first one wins, later different ones conflict. */
  const atSeq = new Map<string, Map<number, { mid: string; where: string }>>();
  const placeOfMid = new Map<string, { conv: string; seq: number; where: string }>();
  /** conv -> seq -> sending device key (final knowledge, from acks and bodies). */
  const senderAt = new Map<string, Map<number, DeviceKey>>();
  /** conv -> seq -> when it was first acked (wire or reported). */
  const ackedAt = new Map<string, Map<number, number>>();
  /** submission -> every (conv, seq, mid) it was seen stored at. */
  const storedAt = new Map<string, Map<string, string>>();

  const observe = (conv: string, seq: number, mid: string, where: string): void => {
    let m = atSeq.get(conv);
    if (m === undefined) atSeq.set(conv, (m = new Map()));
    const had = m.get(seq);
    if (had === undefined) m.set(seq, { mid, where });
    else if (had.mid !== mid) add('conflict', `${conv}@${seq} is ${had.mid} (${had.where}) and ${mid} (${where})`);
    const place = placeOfMid.get(mid);
    if (place === undefined) placeOfMid.set(mid, { conv, seq, where });
    else if (place.conv !== conv || place.seq !== seq) add('conflict', `message ${mid} is at ${place.conv}@${place.seq} (${place.where}) and ${conv}@${seq} (${where})`);
  };
  const setSender = (conv: string, seq: number, dev: DeviceKey): void => {
    let m = senderAt.get(conv);
    if (m === undefined) senderAt.set(conv, (m = new Map()));
    m.set(seq, dev);
  };
  const stored = (key: string, conv: string, seq: number, mid: string): void => {
    let m = storedAt.get(key);
    if (m === undefined) storedAt.set(key, (m = new Map()));
    m.set(`${conv}@${seq}`, mid);
  };

  for (const e of h.events) {
    switch (e.k) {
      case 'submit': {
        const s: Submission = { dev: e.dev, cmid: e.cmid, conv: e.conv, body: e.body, t: e.t };
        subs.set(subKey(e.dev, e.cmid), s);
        byBody.set(e.body, s);
        break;
      }
      case 'wire-ack':
      case 'reported': {
        const key = subKey(e.dev, e.cmid);
        const where = `${e.k === 'reported' ? 'reported to' : 'sent frame on'} ${e.dev} for ${e.cmid}`;
        observe(e.ack.conv, e.ack.seq, e.ack.mid, where);
        setSender(e.ack.conv, e.ack.seq, e.dev);
        let at = ackedAt.get(e.ack.conv);
        if (at === undefined) ackedAt.set(e.ack.conv, (at = new Map()));
        if (!at.has(e.ack.seq)) at.set(e.ack.seq, e.t);
        stored(key, e.ack.conv, e.ack.seq, e.ack.mid);
        const sub = subs.get(key);
        if (sub !== undefined && sub.conv !== e.ack.conv) add('ack-inconsistent', `${where}: acked in ${e.ack.conv}, submitted to ${sub.conv}`);
        const o = outcome.get(key) ?? {};
        if (o.ack === undefined) o.ack = e.ack;
        else if (o.ack.conv !== e.ack.conv || o.ack.seq !== e.ack.seq || o.ack.mid !== e.ack.mid) {
          add('ack-inconsistent', `${e.dev} cmid ${e.cmid} acked as ${o.ack.conv}@${o.ack.seq}/${o.ack.mid} and as ${e.ack.conv}@${e.ack.seq}/${e.ack.mid} (${where})`);
        }
        outcome.set(key, o);
        break;
      }
      case 'failed': {
        const key = subKey(e.dev, e.cmid);
        const o = outcome.get(key) ?? {};
        o.failed = e.code;
        outcome.set(key, o);
        break;
      }
      case 'wire-entry':
      case 'deliver': {
        const conv = e.k === 'deliver' ? e.msg.conv : e.conv;
        const entry = e.k === 'deliver' ? e.msg : e.entry;
        observe(conv, entry.seq, entry.mid, `${e.k === 'deliver' ? 'handed to' : `${e.via} entry on`} ${e.dev}`);
        if (e.k === 'deliver') {
          const sub = byBody.get(e.msg.body);
          if (sub !== undefined) {
            setSender(conv, entry.seq, sub.dev);
            stored(subKey(sub.dev, sub.cmid), conv, entry.seq, entry.mid);
          }
        } else if (entry.cmid !== undefined) {
          const key = subKey(deviceKey(entry.from, entry.fdev), entry.cmid);
          if (subs.has(key)) {
            setSender(conv, entry.seq, deviceKey(entry.from, entry.fdev));
            stored(key, conv, entry.seq, entry.mid);
          }
        }
        break;
      }
      case 'receipt':
      case 'history-page':
      case 'synced':
        break;
    }
  }

  // ---- pass 2: replay per device, in recording order ----
  const state = new Map<string, DeviceConv>();
  const dc = (dev: DeviceKey, conv: string): DeviceConv => {
    const key = `${dev}\u0000${conv}`;
    let s = state.get(key);
    if (s === undefined) state.set(key, (s = new DeviceConv()));
    return s;
  };
  /** dev -> cmids the device saw stored on the wire so far (sent frames, own entries), with the place. */
  const evidence = new Map<string, AckInfo[]>();
  const lastReceipt = new Map<string, number>();
  const seenWire = new Set<string>();
  let wireEntries = 0;
  let redelivered = 0;
  let delivered = 0;
  let receipts = 0;

  for (const e of h.events) {
    switch (e.k) {
      case 'submit':
      case 'failed':
        break;
      case 'history-page': {
        const p = e.page;
        if (p.expired) break;
        const got = new Set(p.seqs);
        const at = ackedAt.get(p.conv);
        const missed: number[] = [];
        for (let q = Math.max(1, p.before - p.limit); q < p.before; q++) {
          const acked = at?.get(q);
          if (!got.has(q) && acked !== undefined && acked < p.requestedAt) missed.push(q);
        }
        if (missed.length > 0) {
          add('history-missed', `${e.dev}: history of ${p.conv} below ${p.before} (limit ${p.limit}) left out ${compactSeqs(missed)}, acked before the request (got ${compactSeqs(p.seqs)})`);
        }
        break;
      }
      case 'synced': {
        const user = e.dev.slice(0, e.dev.lastIndexOf('/'));
        for (const [conv, at] of ackedAt) {
          if (!h.members(conv).includes(user)) continue;
          let need = 0;
          for (const [seq, t] of at) if (t < e.requestedAt && seq > need) need = seq;
          const head = e.heads[conv];
          if (need > 0 && (head === undefined || head < need)) {
            add('head-behind', `${e.dev}: synced gave ${conv} head ${head ?? 'none'} though @${need} was acked before the sync was sent`);
          }
        }
        break;
      }
      case 'wire-ack': {
        const key = subKey(e.dev, e.cmid);
        evidence.set(key, [...(evidence.get(key) ?? []), e.ack]);
        dc(e.dev, e.ack.conv).hold(e.ack.seq);
        break;
      }
      case 'wire-entry': {
        wireEntries++;
        const wk = `${e.dev}\u0000${e.conv}\u0000${e.entry.seq}`;
        if (seenWire.has(wk)) redelivered++;
        seenWire.add(wk);
        if (e.entry.cmid !== undefined && deviceKey(e.entry.from, e.entry.fdev) === e.dev) {
          const key = subKey(e.dev, e.entry.cmid);
          evidence.set(key, [...(evidence.get(key) ?? []), { conv: e.conv, seq: e.entry.seq, mid: e.entry.mid, dup: true }]);
          dc(e.dev, e.conv).hold(e.entry.seq);
        }
        break;
      }
      case 'reported': {
        const backed = (evidence.get(subKey(e.dev, e.cmid)) ?? []).some((a) => a.conv === e.ack.conv && a.seq === e.ack.seq && a.mid === e.ack.mid);
        if (!backed) add('unbacked-sent', `${e.dev} was told ${e.cmid} is stored at ${e.ack.conv}@${e.ack.seq}/${e.ack.mid} without a sent frame or own entry saying so`);
        dc(e.dev, e.ack.conv).hold(e.ack.seq);
        break;
      }
      case 'deliver': {
        delivered++;
        const m = e.msg;
        const s = dc(e.dev, m.conv);
        const sub = m.sys === undefined ? byBody.get(m.body) : undefined;
        if (m.sys !== undefined) {
          // A group's membership event: written by the server under the reserved device `~`.
          if (m.fdev !== SYS_DEVICE || !h.members(m.conv).includes(m.from)) add('corrupt', `${e.dev} got event ${m.sys} ${m.conv}@${m.seq}/${m.mid} from ${deviceKey(m.from, m.fdev)}`);
        } else if (sub === undefined) add('phantom', `${e.dev} got ${m.conv}@${m.seq}/${m.mid} whose body nobody submitted`);
        else {
          const wrong: string[] = [];
          if (sub.conv !== m.conv) wrong.push(`conv ${m.conv} (submitted to ${sub.conv})`);
          if (deviceKey(m.from, m.fdev) !== sub.dev) wrong.push(`from ${deviceKey(m.from, m.fdev)} (submitted by ${sub.dev})`);
          if (m.cmid !== undefined && m.cmid !== sub.cmid) wrong.push(`cmid ${m.cmid} (submitted as ${sub.cmid})`);
          if (wrong.length > 0) add('corrupt', `${e.dev} got ${m.conv}@${m.seq}/${m.mid} with ${wrong.join(', ')}`);
        }
        if (s.delivered.has(m.seq)) {
          add('duplicate', `${e.dev} was handed ${m.conv}@${m.seq} twice (${s.delivered.get(m.seq)}, then ${m.mid})`);
          break;
        }
        if (s.mids.has(m.mid)) {
          add('duplicate', `${e.dev} was handed message ${m.mid} twice (now at ${m.conv}@${m.seq})`);
          break;
        }
        if (m.seq < s.lastDelivered) add('order', `${e.dev} was handed ${m.conv}@${m.seq} after @${s.lastDelivered}`);
        // Every seq below this one must be held already: received before, or sent by this device.
        const own = senderAt.get(m.conv);
        const missing: number[] = [];
        for (let q = s.contig + 1; q < m.seq; q++) {
          if (!s.delivered.has(q) && own?.get(q) !== e.dev) missing.push(q);
        }
        if (missing.length > 0) add('gap', `${e.dev} was handed ${m.conv}@${m.seq} without holding ${compactSeqs(missing)}`);
        s.contig = Math.max(s.contig, m.seq);
        s.delivered.set(m.seq, m.mid);
        s.mids.add(m.mid);
        s.lastDelivered = Math.max(s.lastDelivered, m.seq);
        s.hold(m.seq);
        break;
      }
      case 'receipt': {
        receipts++;
        const r = e.receipt;
        const rk = `${e.dev}\u0000${r.conv}\u0000${r.kind}\u0000${r.user}\u0000${r.device ?? ''}`;
        const before = lastReceipt.get(rk) ?? 0;
        if (r.seq < before) add('receipt-regress', `${e.dev} got ${r.kind} ${r.user}${r.device ? '/' + r.device : ''} ${r.conv}@${r.seq} after @${before}`);
        lastReceipt.set(rk, Math.max(before, r.seq));
        // `*`: a group's "every member" receipt (delivered to all / read by all): the member that
        // held the least bounds it.
        const heldBy = (user: string): number => Math.max(0, ...h.devicesOf(user).map((d) => dc(d, r.conv).heldContig));
        const held =
          r.user === '*'
            ? Math.min(...h.members(r.conv).map(heldBy))
            : r.device !== undefined
              ? dc(deviceKey(r.user, r.device), r.conv).heldContig
              : heldBy(r.user);
        if (r.seq > held) {
          add('receipt-ahead', `${e.dev} got ${r.kind} ${r.user}${r.device ? '/' + r.device : ''} ${r.conv}@${r.seq} (${r.source}) while ${r.device ? 'that device' : 'the best device of that user'} held only up to @${held}`);
        }
        break;
      }
    }
  }

  // ---- final: outcomes of submissions, and every acked message on every member device ----
  let acked = 0;
  let failed = 0;
  let unsettled = 0;
  let expectedDeliveries = 0;
  for (const [key, sub] of subs) {
    const o = outcome.get(key);
    const places = storedAt.get(key);
    if (places !== undefined && places.size > 1) {
      add('stored-twice', `${sub.dev} cmid ${sub.cmid} is stored at ${[...places].map(([p, mid]) => `${p}/${mid}`).join(' and ')}`);
    }
    if (o?.failed !== undefined && o.ack === undefined) {
      failed++;
      if (places !== undefined) add('failed-but-stored', `${sub.dev} was told ${sub.cmid} failed (${o.failed}) but it is stored at ${[...places.keys()].join(', ')}`);
      continue;
    }
    if (o?.ack === undefined) {
      unsettled++;
      add('unsettled', `${sub.dev} cmid ${sub.cmid} to ${sub.conv} was neither acked nor failed`);
      continue;
    }
    acked++;
    const ack = o.ack;
    for (const user of h.members(ack.conv)) {
      for (const dev of h.devicesOf(user)) {
        if (dev === sub.dev) continue;
        expectedDeliveries++;
        // The acked message itself (its id), wherever it landed: another message at its seq is a
        // conflict, and does not stand in for it.
        if (state.get(`${dev}\u0000${ack.conv}`)?.mids.has(ack.mid) !== true) {
          add('lost', `${dev} never got ${ack.conv}@${ack.seq}/${ack.mid} (acked to ${sub.dev} for ${sub.cmid})`);
        }
      }
    }
  }

  const countByKind = Object.fromEntries(VIOLATION_KINDS.map((k) => [k, 0])) as Record<ViolationKind, number>;
  for (const v of violations) countByKind[v.kind]++;
  const figures: Figures = {
    sent: subs.size,
    acked,
    failed,
    unsettled,
    delivered,
    expectedDeliveries,
    wireEntries,
    redelivered,
    receipts,
    lostAcked: countByKind.lost,
    duplicates: countByKind.duplicate + countByKind['stored-twice'],
    orderViolations: countByKind.order + countByKind.gap,
    gaps: countByKind.gap,
    conflicts: countByKind.conflict,
  };
  return { ok: violations.length === 0, figures, violations, countByKind };
}

/** `1-5,7,9-12` */
export function compactSeqs(seqs: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < seqs.length; ) {
    let j = i;
    while (j + 1 < seqs.length && seqs[j + 1] === seqs[j]! + 1) j++;
    parts.push(i === j ? `${seqs[i]}` : `${seqs[i]}-${seqs[j]}`);
    i = j + 1;
  }
  return parts.join(',') || 'none';
}

/** Violations for a failure message: the count of each kind, then up to `perKind` examples of each. */
export function describeViolations(result: CheckResult, perKind = 5): string {
  const lines: string[] = [];
  for (const kind of VIOLATION_KINDS) {
    const n = result.countByKind[kind];
    if (n === 0) continue;
    lines.push(`${kind}: ${n}`);
    for (const v of result.violations.filter((x) => x.kind === kind).slice(0, perKind)) lines.push(`  ${v.detail}`);
  }
  return lines.join('\n');
}
