/**
 * Counts results in the raw TAP that `tap --reporter=tap` prints for a whole run. tap's own
 * closing comment (`# { total, pass, fail }`) is not enough: a test file that crashes before its
 * first assertion, exits non-zero after passing, or has no tests at all is easy to miss in it.
 *
 * The rules:
 * - every leaf test point (an `ok`/`not ok` that is not the summary of a subtest) counts once:
 *   `ok` is passed, `not ok` is failed, `# SKIP` is skipped, `# TODO` is todo (never failed);
 * - a test file whose own line is `not ok` but that had no failing leaf (crash, timeout, non-zero
 *   exit, unfinished plan) counts as one failed test, and so does a file that tap reported as
 *   `# SKIP no tests found` and a file that never got a result line;
 * - a `not ok` at the top level that belongs to no file (tap's runner-level `timeout!`) and a
 *   `Bail out!` count as one failed each.
 *
 * The shape read here (tap 21 raw output): a file appears as `# Subtest: <file>` at indent 0, its
 * own TAP indented by 4 per nesting level, then `ok N - <file>` at indent 0; YAML diagnostics sit 2
 * spaces deeper than their test point between `---` and `...`. A subtest's summary line follows
 * its children; buffered subtests put a `{` after the summary and close with `}`.
 */

export interface TapTotals {
  passed: number;
  failed: number;
  skipped: number;
  todo: number;
  /** One line per failure: `<file>: <test name>` or `<file>: <why the file failed>`. */
  failures: string[];
}

interface FileState {
  name: string;
  leafFailures: number;
  closed: boolean;
}

interface TopLevelFailure {
  file: string;
  description: string;
  yaml: string[];
}

const POINT = /^(not ok|ok)\b(?:\s+\d+)?(?:\s+-)?\s*(.*)$/;
const DIRECTIVE = /\s#\s*(SKIP|TODO)\b\s*(.*)$/i;

export class TapCounter {
  private buffer = '';
  private readonly childSince: boolean[] = [];
  private lastPointIndent = -1;
  private yamlIndent = -1;
  private yamlTarget: TopLevelFailure | undefined;
  private readonly braceIndents: number[] = [];
  private readonly files = new Map<string, FileState>();
  private current: FileState | undefined;
  private readonly topLevelFailures: TopLevelFailure[] = [];
  private readonly totals: TapTotals = { passed: 0, failed: 0, skipped: 0, todo: 0, failures: [] };

  feed(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      this.line(this.buffer.slice(0, nl).replace(/\r$/, ''));
      this.buffer = this.buffer.slice(nl + 1);
    }
  }

  /** `expectedFiles`: the files tap was asked to run, as tap names them (relative, with '/'). */
  finish(expectedFiles: string[]): TapTotals {
    if (this.buffer !== '') this.line(this.buffer);
    this.buffer = '';
    for (const failure of this.topLevelFailures) {
      const state = this.files.get(failure.file);
      if (state && state.leafFailures > 0) continue;
      this.fail(`${failure.file}: ${describeFileFailure(failure)}`);
    }
    for (const file of expectedFiles) {
      if (!this.files.get(file)?.closed) this.fail(`${file}: no result (the runner never reported this file)`);
    }
    return this.totals;
  }

  private fail(what: string): void {
    this.totals.failed++;
    this.totals.failures.push(what);
  }

  private line(raw: string): void {
    const content = raw.trimStart();
    const indent = raw.length - content.length;
    if (content === '') return;

    if (this.yamlIndent >= 0) {
      if (indent === this.yamlIndent && content === '...') {
        this.yamlIndent = -1;
        this.yamlTarget = undefined;
      } else {
        this.yamlTarget?.yaml.push(content);
      }
      return;
    }
    if (content === '---' && this.lastPointIndent >= 0 && indent === this.lastPointIndent + 2) {
      this.yamlIndent = indent;
      return;
    }

    for (let level = 0; level < indent; level++) this.childSince[level] = true;

    if (content === '}' && this.braceIndents.at(-1) === indent) {
      this.braceIndents.pop();
      return;
    }
    if (/^Bail out!/.test(content)) {
      this.fail(`${this.current?.name ?? 'tap'}: ${content}`);
      return;
    }
    if (indent === 0 && content.startsWith('# Subtest: ')) {
      const name = content.slice('# Subtest: '.length).trim();
      this.current = { name, leafFailures: 0, closed: false };
      this.files.set(name, this.current);
      return;
    }

    const point = POINT.exec(content);
    if (!point) return;
    const ok = point[1] === 'ok';
    let description = point[2] ?? '';
    const opensBlock = description.endsWith('{');
    if (opensBlock) {
      description = description.slice(0, -1).trimEnd();
      this.braceIndents.push(indent);
    }
    this.yamlTarget = undefined;
    const isSummary = opensBlock || this.childSince[indent] === true;
    this.childSince[indent] = false;
    this.lastPointIndent = indent;
    const directive = DIRECTIVE.exec(description);
    const kind = directive?.[1]?.toUpperCase();

    if (indent === 0) {
      this.topLevel(ok, description, kind, directive?.[2] ?? '');
      return;
    }
    if (isSummary) return;
    if (kind === 'TODO') this.totals.todo++;
    else if (kind === 'SKIP') this.totals.skipped++;
    else if (ok) this.totals.passed++;
    else {
      const file = this.current?.name ?? '(unknown file)';
      if (this.current) this.current.leafFailures++;
      this.fail(`${file}: ${description.replace(/\s#\s*time=.*$/, '')}`);
    }
  }

  private topLevel(ok: boolean, description: string, kind: string | undefined, reason: string): void {
    // The file this line closes, unless the runner adds a line of its own after it (`timeout!`).
    const open = this.current && !this.current.closed ? this.current : undefined;
    if (open) open.closed = true;
    const file = open?.name ?? 'tap';
    if (ok) {
      if (kind === 'SKIP' && /no tests found/i.test(reason)) this.fail(`${file}: no tests found`);
      else if (kind === 'SKIP') this.totals.skipped++;
      return;
    }
    if (kind === 'TODO') return;
    const failure: TopLevelFailure = { file, description, yaml: [] };
    this.topLevelFailures.push(failure);
    this.yamlTarget = failure;
  }
}

/** "exited with code 3" / "killed by SIGALRM" from the runner's YAML for the file, else its line. */
function describeFileFailure(failure: TopLevelFailure): string {
  const field = (key: string): string | undefined => {
    const line = failure.yaml.find((l) => l.startsWith(`${key}:`));
    const value = line?.slice(key.length + 1).trim();
    return value === undefined || value === 'null' || value === '' ? undefined : value;
  };
  const signal = field('signal');
  const exitCode = field('exitCode');
  const line = failure.description.replace(/\s#\s*time=.*$/, '');
  const name = line === failure.file ? 'the file failed' : line;
  if (signal) return `${name} (killed by ${signal})`;
  if (exitCode) return `${name} (exited with code ${exitCode})`;
  return name;
}
