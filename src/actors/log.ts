/** The slice of a pino logger the actor layer uses (a pino Logger satisfies it). */
export interface ActorLog {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export const silentLog: ActorLog = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};
