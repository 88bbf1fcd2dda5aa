import { opInstrument } from '../instrument.js';

export type SessionsOp = 'put' | 'remove' | 'refresh' | 'list' | 'list_many';

/** Times one session registry operation; only ClusterErrors escape (see opInstrument). */
export const instrument = opInstrument<SessionsOp>(
  'ticks_sessions_op_duration_seconds',
  'Duration of session registry operations by operation, implementation and result (ok or the error code).',
);
