import { readFileSync } from 'node:fs';
import t from 'tap';
import { configSchema } from '../../src/config/schema.js';
import {
  CLIENT_MSG_ID_PATTERN,
  DEFAULT_SYNC_LIMIT,
  MAX_INFLIGHT_REQUESTS,
  MAX_PAGE_LIMIT,
  MAX_SYNC_CURSORS,
} from '../../src/protocol/client-frames.js';
import {
  CLIENT_FRAME_TYPES,
  createClientFrameSchemas,
  SERVER_FRAME_SCHEMAS,
  SERVER_FRAME_TYPES,
} from '../../src/protocol/client-frame-schemas.js';
import { CLOSE, ERROR_CODES, isReconnectable, PROTOCOL_ERROR_LIMIT, PROTOCOL_ERROR_WINDOW_S } from '../../src/protocol/codes.js';
import { CONVERSATION_ID_PATTERN, USER_ID_PATTERN } from '../../src/protocol/ids.js';

// docs/PROTOCOL.md is the contract clients are written against; these tests keep it equal to the
// code: the same error codes, close codes, frames and fields.

const doc = readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');
const lines = doc.split('\n');

/** The rows (cells, backticks stripped) of the first table after `heading`, header excluded. */
function tableAfter(heading: string): string[][] {
  const start = lines.findIndex((l) => l.trim() === heading);
  if (start < 0) throw new Error(`docs/PROTOCOL.md has no heading ${JSON.stringify(heading)}`);
  const rows: string[][] = [];
  let i = start + 1;
  while (i < lines.length && !lines[i]!.startsWith('|')) {
    if (lines[i]!.startsWith('#')) throw new Error(`no table under ${JSON.stringify(heading)}`);
    i++;
  }
  for (; i < lines.length && lines[i]!.startsWith('|'); i++) {
    rows.push(lines[i]!.slice(1, -1).split('|').map((c) => c.trim().replace(/^`(.*)`$/, '$1')));
  }
  return rows.slice(2);
}

function shapeKeys(schema: unknown): string[] {
  const shape = (schema as { shape?: Record<string, unknown> }).shape;
  if (shape === undefined) throw new Error('schema has no object shape');
  return Object.keys(shape);
}

t.test('the documented error codes are exactly ERROR_CODES, with the same retry flags', async (t) => {
  const rows = tableAfter('## 5. Error codes');
  t.same(rows.map((r) => r[0]).sort(), Object.keys(ERROR_CODES).sort());
  for (const [code, retry] of rows) {
    const info = ERROR_CODES[code as keyof typeof ERROR_CODES];
    t.equal(retry === 'yes', info.retry, `${code} retry`);
  }
});

t.test('the documented close codes are exactly CLOSE, with the same reconnect rule', async (t) => {
  const rows = tableAfter('## 6. Close codes');
  t.same(rows.map((r) => Number(r[0])).sort(), Object.values(CLOSE).sort());
  for (const [code, , reconnect] of rows) {
    t.equal(reconnect!.startsWith('yes'), isReconnectable(Number(code)), `${code} reconnect`);
  }
});

t.test('every frame type is documented with exactly its fields', async (t) => {
  const clientSchemas = createClientFrameSchemas(1);
  const documented = lines.filter((l) => /^#### `[^`]+`$/.test(l)).map((l) => l.slice(6, -1));
  t.same(documented.sort(), [...CLIENT_FRAME_TYPES, ...SERVER_FRAME_TYPES].sort(), 'no frame missing, none extra');
  for (const type of CLIENT_FRAME_TYPES) {
    const fields = tableAfter(`#### \`${type}\``).map((r) => r[0]);
    t.same(fields.sort(), shapeKeys(clientSchemas[type]).sort(), `${type} fields`);
  }
  for (const type of SERVER_FRAME_TYPES) {
    const fields = tableAfter(`#### \`${type}\``).map((r) => r[0]);
    t.same(fields.sort(), shapeKeys(SERVER_FRAME_SCHEMAS[type]).sort(), `${type} fields`);
  }
});

t.test('hello limits and message entry fields are documented', async (t) => {
  const limitsRow = tableAfter('#### `hello`').find((r) => r[0] === 'limits');
  const limitKeys = shapeKeys((SERVER_FRAME_SCHEMAS.hello as unknown as { shape: { limits: unknown } }).shape.limits);
  for (const key of limitKeys) t.match(limitsRow?.[2] ?? '', `\`${key}\``, `hello.limits.${key}`);
  const start = doc.indexOf('#### Message entries');
  const section = doc.slice(start, doc.indexOf('\n## ', start));
  const page = SERVER_FRAME_SCHEMAS['history.page'] as unknown as { shape: { msgs: { element: unknown } } };
  for (const key of shapeKeys(page.shape.msgs.element)) t.match(section, `\`${key}\``, `message entry field ${key}`);
});

const limitRows = tableAfter('## 4. Limits');
const documentedDefaults = new Map(limitRows.map((r) => [r[0]!, Number(/^\d+/.exec(r[1]!)?.[0])]));

t.test('the limits table names the gateway config keys with their defaults', async (t) => {
  t.same(Object.fromEntries(documentedDefaults), {
    'gateway.maxFrameBytes': 65536,
    'gateway.maxBodyBytes': 49152,
    'gateway.framesPerSecond': 50,
    'gateway.idleTimeoutS': 60,
    'gateway.maxBackpressureBytes': 1048576,
  });
});

t.test('the documented limit defaults are the config schema defaults', async (t) => {
  const gateway = configSchema.parse({}).gateway as Record<string, unknown>;
  for (const [key, value] of documentedDefaults) {
    t.equal(gateway[key.slice('gateway.'.length)], value, key);
  }
});

t.test('the fixed limits and id syntax in the docs are the constants in the code', async (t) => {
  const flat = doc.replace(/\s+/g, ' ');
  t.match(flat, `at most ${MAX_INFLIGHT_REQUESTS} requests`);
  t.match(flat, `\`history.limit\` at most ${MAX_PAGE_LIMIT} (\`sync\` default ${DEFAULT_SYNC_LIMIT})`);
  t.match(flat, `\`sync.cursors\` at most ${MAX_SYNC_CURSORS}`);
  t.match(flat, `at most ${PROTOCOL_ERROR_LIMIT} \`unknown_type\` or \`invalid_field\` errors per connection within ${PROTOCOL_ERROR_WINDOW_S} s`);
  t.match(doc, `| \`${USER_ID_PATTERN.source}\` |`, 'user id syntax');
  t.match(doc, `| \`${CONVERSATION_ID_PATTERN.source}\` |`, 'conversation id syntax');
  t.equal(CLIENT_MSG_ID_PATTERN.source, '^[\\x21-\\x7e]{1,64}$', 'cmid syntax is what the docs describe (printable ASCII without space, 1 to 64)');
});
