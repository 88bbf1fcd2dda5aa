import { clearLine, createInterface, cursorTo } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { resolveHs256Secret } from '../auth/dev-secret.js';
import { mintHs256Token } from '../auth/mint.js';
import { settingsOf } from '../auth/verify.js';
import { TicksClient, type TokenSource } from '../client/index.js';
import { loadConfig } from '../config/load.js';
import { directConversationId, isDeviceId, isUserId } from '../protocol/ids.js';
import { parseArgs, UsageError, type CliIO, type Command } from './command.js';

const DEFAULT_URL = 'ws://127.0.0.1:8080/ws';
const TOKEN_TTL_S = 24 * 3600;

export interface ChatOptions {
  user: string;
  to: string;
  device: string;
  url: string;
  token: TokenSource;
}

export interface ChatStreams {
  input: Readable;
  output: Writable & { isTTY?: boolean };
}

/** `ticks chat --user alice --to bob`: a terminal chat over the client SDK. */
export const chatCommand: Command = {
  name: 'chat',
  summary: 'chat with another user from the terminal (a client of a running node)',
  usage: [
    'usage: ticks chat --user <user> --to <user> [--device cli] [--url ws://127.0.0.1:8080/ws] [--token <jwt>]',
    '',
    'Connects to a running node as <user> on <device> and chats with --to in your direct',
    'conversation. Without --token it mints one the way `ticks token` does (same configuration:',
    'auth.hs256Secret, or the dev secret when auth.devTokens is on), again on every reconnect.',
    '',
    'Incoming messages print as `[seq] bob: text`; your own get ✓ when stored, then',
    '✓✓ delivered and read as receipts arrive. Messages typed while offline wait in the outbox.',
    '',
    'commands:  /history [n]   show the last n messages (default 20)',
    '           /quit          leave (or Ctrl-D)',
  ].join('\n'),
  async run(args, io) {
    const { positional, options } = parseArgs(args, ['user', 'to', 'device', 'url', 'token']);
    if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])}`);
    const get = (name: string): string | undefined => {
      const v = options.get(name);
      return typeof v === 'string' ? v : undefined;
    };
    const user = get('user');
    const to = get('to');
    const device = get('device') ?? 'cli';
    if (user === undefined || to === undefined) throw new UsageError('--user and --to are required');
    if (!isUserId(user) || !isUserId(to)) throw new UsageError('user ids are letters, digits and _ . @ -, 1 to 64');
    if (!isDeviceId(device)) throw new UsageError('--device: letters, digits and _ . @ -, 1 to 64');
    const token = get('token') ?? devTokenProvider(user, device, io);
    return runChat({ user, to, device, url: get('url') ?? DEFAULT_URL, token }, { input: process.stdin, output: process.stdout });
  },
};

/** Mints a fresh token per connection attempt, so a long session survives token expiry (4501). */
function devTokenProvider(user: string, device: string, io: CliIO): () => Promise<string> {
  const cfg = loadConfig({ env: io.env, warn: io.err });
  const secret = resolveHs256Secret(cfg, { create: true });
  if (secret === undefined) {
    throw new UsageError('no --token, and no HS256 secret to mint one: set TICKS_AUTH_HS256_SECRET or TICKS_AUTH_DEV_TOKENS=true');
  }
  return () => mintHs256Token({ secret: secret.secret, user, device, ttlS: Math.min(TOKEN_TTL_S, cfg.auth.maxTokenLifetimeS), settings: settingsOf(cfg.auth) });
}

/** Runs the chat until /quit, end of input (0) or a terminal close (1). */
export function runChat(o: ChatOptions, s: ChatStreams): Promise<number> {
  const conv = directConversationId(o.user, o.to);
  const client = new TicksClient({ url: o.url, token: o.token });
  const rl = createInterface({ input: s.input, output: s.output, prompt: `${o.user}> `, terminal: s.output.isTTY === true });
  const decoder = new TextDecoder();
  const pendingText = new Map<string, string>();
  const ownSeqs: number[] = [];
  let shownDelivered = 0;
  let shownRead = 0;
  let exitCode = 0;
  let ended = false;

  const print = (line: string): void => {
    if (s.output.isTTY === true) {
      clearLine(s.output, 0);
      cursorTo(s.output, 0);
      s.output.write(line + '\n');
      rl.prompt(true);
    } else s.output.write(line + '\n');
  };
  const prefix = (c: string): string => (c === conv ? '' : `(${c}) `);

  client.on('message', (m) => {
    print(`${prefix(m.conv)}[${m.seq}] ${m.from}: ${decoder.decode(m.body)}`);
    if (m.conv === conv && m.from !== o.user) client.markRead(conv, m.seq); // the chat is open
  });
  client.on('sent', (e) => {
    const body = pendingText.get(e.cmid);
    pendingText.delete(e.cmid);
    if (e.conv === conv) ownSeqs.push(e.seq);
    print(`${prefix(e.conv)}[${e.seq}] ${o.user}: ${body ?? ''} ✓`);
  });
  client.on('send-failed', (e) => print(`not sent (${e.error.code}): ${pendingText.get(e.cmid) ?? e.cmid}`));
  client.on('receipt', (r) => {
    if (r.conv !== conv || r.user !== o.to) return;
    // One line per receipt that covers messages of ours not yet shown at that level.
    const covered = ownSeqs.filter((seq) => seq <= r.seq && seq > (r.kind === 'read' ? shownRead : shownDelivered));
    if (covered.length === 0) return;
    const upTo = Math.max(...covered);
    if (r.kind === 'read') shownRead = upTo;
    shownDelivered = Math.max(shownDelivered, upTo);
    print(r.kind === 'read' ? `   read up to [${upTo}]` : `   ✓✓ delivered up to [${upTo}]`);
  });
  client.on('state', (e) => {
    if (e.state === 'reconnecting') print(`… reconnecting in ${((e.delayMs ?? 0) / 1000).toFixed(1)} s${e.code !== undefined ? ` (close ${e.code})` : ''}`);
  });
  client.on('hello', (h) => print(`connected to ${h.node} as ${h.user}/${h.device}; chatting with ${o.to}`));
  client.on('gap-expired', (e) => print(`${prefix(e.conv)}messages up to [${e.to}] expired before this device got them`));
  client.on('error', (e) => print(`error: ${e.error.code}: ${e.error.message}`));

  return new Promise<number>((resolve) => {
    client.on('closed', (e) => {
      if (e.code !== 1000) {
        print(`connection closed for good: ${e.code} ${e.reason}`);
        exitCode = 1;
      }
      rl.close();
    });
    rl.on('close', () => {
      if (ended) return;
      ended = true;
      client.close();
      resolve(exitCode);
    });
    rl.on('line', (line) => {
      const textLine = line.trim();
      if (textLine === '/quit') return rl.close();
      if (textLine.startsWith('/history')) return void showHistory(Number(textLine.split(/\s+/)[1] ?? 20));
      if (textLine !== '') {
        client.send({ to: o.to }, new TextEncoder().encode(textLine), { cmid: rememberText(textLine) }).catch(() => undefined); // send-failed prints it
      }
      rl.prompt();
    });
    client.connect().catch(() => undefined); // a terminal close is reported by 'closed'
    rl.prompt();
  });

  function rememberText(textLine: string): string {
    const cmid = globalThis.crypto.randomUUID();
    pendingText.set(cmid, textLine);
    return cmid;
  }

  async function showHistory(n: number): Promise<void> {
    try {
      const page = await client.history(conv, undefined, Number.isInteger(n) && n > 0 ? n : 20);
      for (const m of [...page.messages].reverse()) print(`[${m.seq}] ${m.from}: ${decoder.decode(m.body)}`);
      if (page.messages.length === 0) print('(no messages yet)');
    } catch (err) {
      print(`history failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}
