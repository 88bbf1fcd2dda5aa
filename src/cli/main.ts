import { isTicksError } from '../lib/errors.js';
import { UsageError, type CliIO, type Command } from './command.js';
import { chatCommand } from './chat.js';
import { tokenCommand } from './token.js';

/**
 * The `ticks` command line (bin/ticks.js). Each subcommand is a Command in its own file; to add one,
 * import it and append it to COMMANDS.
 */
export const COMMANDS: readonly Command[] = [tokenCommand, chatCommand];

function help(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'usage: ticks <command> [arguments]',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    "Run 'ticks <command> --help' for a command's options. The server itself starts with `npm start`.",
  ].join('\n');
}

const defaultIO: CliIO = {
  out: (text) => process.stdout.write(text + '\n'),
  err: (text) => process.stderr.write(text + '\n'),
  env: process.env,
};

/** Runs the CLI; returns the exit code (0 ok, 1 failure, 2 usage). */
export async function main(argv: string[], io: CliIO = defaultIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.err : io.out)(help());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    io.err(`ticks: unknown command ${JSON.stringify(name)}\n\n${help()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(command.usage);
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`ticks ${command.name}: ${err.message}\n\n${command.usage}`);
      return 2;
    }
    io.err(`ticks ${command.name}: ${isTicksError(err) ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 1;
  }
}
