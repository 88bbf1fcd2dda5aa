/**
 * The history recorder of the chaos tests (DESIGN.md sections 2 and 9). Pure: no I/O,
 * no clock of its own (every event carries the time the harness saw it), so the unit tests can feed
 * it synthetic histories that contain each kind of violation.
 *
 * The harness records, in the order it observed them (one Node process, so recording order is real
 * time order):
 *  - `submit`: the app asked its SDK to send (device, conversation, cmid, body);
 *  - `wireAck`: a `sent` frame answering that send arrived on the device's socket;
 *  - `wireEntry`: a message entry arrived on the socket (`msg`, `sync.batch`, `history.page`),
 *    before the SDK's dedupe: redeliveries are counted from these;
 *  - `reported`: the SDK told the app the send is stored (its `sent` event / resolved promise);
 *  - `failed`: the SDK told the app the send failed for good;
 *  - `deliver`: the SDK handed a received message to the app (after its dedupe and ordering);
 *  - `receipt`: the SDK reported a delivered/read receipt;
 *  - `historyPage` / `synced`: what a `history` page or a `synced` marker held, with the time its
 *    request was sent.
 *
 * `check()` runs the checker (history-check.ts) over what was recorded.
 */
import { checkHistory } from './history-check.js';
import { deviceKey, type AckInfo, type CheckResult, type DeliveryInfo, type DeviceKey, type EntryInfo, type HistoryEvent, type HistoryPageInfo, type HistoryView, type ReceiptInfo } from './history-events.js';

export * from './history-events.js';
export { compactSeqs, describeViolations } from './history-check.js';

const subKey = (dev: DeviceKey, cmid: string): string => `${dev}\u0000${cmid}`;

export class History implements HistoryView {
  readonly events: HistoryEvent[] = [];
  /** user -> its devices (device ids, not keys). */
  readonly #devices = new Map<string, Set<string>>();
  /** conversation -> member users. */
  readonly #members = new Map<string, string[]>();
  readonly #bodies = new Map<string, string>();

  /** Declares a device of a user; every device that records events must be declared. */
  device(user: string, device: string): DeviceKey {
    let set = this.#devices.get(user);
    if (set === undefined) this.#devices.set(user, (set = new Set()));
    set.add(device);
    return deviceKey(user, device);
  }

  /** Declares a conversation and its members (every device of every member must receive its messages). */
  conversation(conv: string, users: string[]): void {
    this.#members.set(conv, [...users]);
  }

  members(conv: string): string[] {
    return this.#members.get(conv) ?? [];
  }

  devicesOf(user: string): DeviceKey[] {
    return [...(this.#devices.get(user) ?? [])].map((d) => deviceKey(user, d));
  }

  /** Bodies identify submissions in received messages, so each must be unique. */
  submit(t: number, dev: DeviceKey, conv: string, cmid: string, body: string): void {
    const had = this.#bodies.get(body);
    if (had !== undefined) throw new Error(`history: body ${JSON.stringify(body)} submitted twice (${had} and ${subKey(dev, cmid)}); the harness must make bodies unique`);
    this.#bodies.set(body, subKey(dev, cmid));
    this.events.push({ k: 'submit', t, dev, cmid, conv, body });
  }

  wireAck(t: number, dev: DeviceKey, cmid: string, ack: AckInfo): void {
    this.events.push({ k: 'wire-ack', t, dev, cmid, ack: { ...ack } });
  }

  wireEntry(t: number, dev: DeviceKey, conv: string, entry: EntryInfo, via: string): void {
    const e: EntryInfo = { seq: entry.seq, mid: entry.mid, from: entry.from, fdev: entry.fdev };
    if (entry.cmid !== undefined) e.cmid = entry.cmid;
    this.events.push({ k: 'wire-entry', t, dev, conv, entry: e, via });
  }

  reported(t: number, dev: DeviceKey, cmid: string, ack: AckInfo): void {
    this.events.push({ k: 'reported', t, dev, cmid, ack: { ...ack } });
  }

  failed(t: number, dev: DeviceKey, cmid: string, code: string): void {
    this.events.push({ k: 'failed', t, dev, cmid, code });
  }

  deliver(t: number, dev: DeviceKey, msg: DeliveryInfo): void {
    this.events.push({ k: 'deliver', t, dev, msg: { ...msg } });
  }

  receipt(t: number, dev: DeviceKey, receipt: ReceiptInfo): void {
    this.events.push({ k: 'receipt', t, dev, receipt: { ...receipt } });
  }

  historyPage(t: number, dev: DeviceKey, page: HistoryPageInfo): void {
    this.events.push({ k: 'history-page', t, dev, page: { ...page, seqs: [...page.seqs] } });
  }

  /** A `synced` answer to a `sync` sent at `requestedAt`, with the heads it gave. */
  synced(t: number, dev: DeviceKey, requestedAt: number, heads: Record<string, number>): void {
    this.events.push({ k: 'synced', t, dev, requestedAt, heads: { ...heads } });
  }

  /** Time of the first ack (SDK report) at or after `t`, or undefined. */
  firstAckAfter(t: number): number | undefined {
    for (const e of this.events) if (e.k === 'reported' && e.t >= t) return e.t;
    return undefined;
  }

  /** The highest acked seq of every conversation (what every device must reach). */
  ackedHeads(): Map<string, number> {
    const heads = new Map<string, number>();
    for (const e of this.events) {
      if (e.k === 'reported' || e.k === 'wire-ack') heads.set(e.ack.conv, Math.max(heads.get(e.ack.conv) ?? 0, e.ack.seq));
    }
    return heads;
  }

  check(): CheckResult {
    return checkHistory(this);
  }
}
