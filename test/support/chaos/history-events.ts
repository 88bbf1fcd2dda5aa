/**
 * The events of a chaos history (history.ts records them, history-check.ts checks them) and the
 * shape of the check's result. Types only, plus the device naming.
 */

/** `user/device`: how the history names a device. */
export type DeviceKey = string;

export const deviceKey = (user: string, device: string): DeviceKey => `${user}/${device}`;

export interface AckInfo {
  conv: string;
  seq: number;
  mid: string;
  dup: boolean;
}

export interface EntryInfo {
  seq: number;
  mid: string;
  from: string;
  fdev: string;
  cmid?: string | undefined;
}

export interface DeliveryInfo extends EntryInfo {
  conv: string;
  body: string;
  source: string;
  /** A membership/metadata event of a group (its `sys.op`), not a client's message. */
  sys?: string;
}

export interface ReceiptInfo {
  conv: string;
  kind: 'delivered' | 'read';
  user: string;
  device?: string | undefined;
  seq: number;
  source: string;
}

export type HistoryEvent =
  | { k: 'submit'; t: number; dev: DeviceKey; cmid: string; conv: string; body: string }
  | { k: 'wire-ack'; t: number; dev: DeviceKey; cmid: string; ack: AckInfo }
  | { k: 'wire-entry'; t: number; dev: DeviceKey; conv: string; entry: EntryInfo; via: string }
  | { k: 'reported'; t: number; dev: DeviceKey; cmid: string; ack: AckInfo }
  | { k: 'failed'; t: number; dev: DeviceKey; cmid: string; code: string }
  | { k: 'deliver'; t: number; dev: DeviceKey; msg: DeliveryInfo }
  | { k: 'receipt'; t: number; dev: DeviceKey; receipt: ReceiptInfo }
  | { k: 'history-page'; t: number; dev: DeviceKey; page: HistoryPageInfo }
  | { k: 'synced'; t: number; dev: DeviceKey; requestedAt: number; heads: Record<string, number> };

/** A `history` request (sent at `requestedAt`) and what its `history.page` answer held. */
export interface HistoryPageInfo {
  conv: string;
  before: number;
  limit: number;
  requestedAt: number;
  seqs: number[];
  expired: boolean;
}

export const VIOLATION_KINDS = [
  'lost',
  'duplicate',
  'order',
  'gap',
  'conflict',
  'ack-inconsistent',
  'stored-twice',
  'unbacked-sent',
  'phantom',
  'corrupt',
  'failed-but-stored',
  'unsettled',
  'receipt-ahead',
  'receipt-regress',
  'history-missed',
  'head-behind',
] as const;
export type ViolationKind = (typeof VIOLATION_KINDS)[number];

export interface Violation {
  kind: ViolationKind;
  detail: string;
}

export interface Figures {
  /** Sends the apps submitted. */
  sent: number;
  /** Submissions the SDK reported stored (or the server answered `sent` for). */
  acked: number;
  /** Submissions the SDK failed for good. */
  failed: number;
  /** Submissions neither acked nor failed when the check ran. */
  unsettled: number;
  /** Messages handed to apps (after the SDK's dedupe). */
  delivered: number;
  /** Acked messages times member devices other than the sender's. */
  expectedDeliveries: number;
  /** Message entries that arrived on sockets (live, sync, history), before dedupe. */
  wireEntries: number;
  /** Entries that arrived again on a device that already had that (conv, seq): dropped by the SDK. */
  redelivered: number;
  receipts: number;
  lostAcked: number;
  duplicates: number;
  orderViolations: number;
  gaps: number;
  conflicts: number;
}

export interface CheckResult {
  ok: boolean;
  figures: Figures;
  /** Every violation found, in the order found. */
  violations: Violation[];
  countByKind: Record<ViolationKind, number>;
}

/** What the checker reads of a history. */
export interface HistoryView {
  readonly events: readonly HistoryEvent[];
  /** Member users of a conversation. */
  members(conv: string): string[];
  /** Every declared device of a user. */
  devicesOf(user: string): DeviceKey[];
}
