import { opInstrument } from '../instrument.js';

export type DirectoryOp = 'register' | 'renew' | 'renew_many' | 'unregister' | 'lookup';

/** Times one directory operation; only ClusterErrors escape (see opInstrument). */
export const instrument = opInstrument<DirectoryOp>(
  'ticks_directory_op_duration_seconds',
  'Duration of directory operations by operation, implementation and result (ok or the error code).',
);
