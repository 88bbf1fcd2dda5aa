/**
 * Latency histograms that cross process boundaries: a load-generator child records into its own
 * HDR histogram (microseconds), ships it to the orchestrator as compressed base64, and the
 * orchestrator merges the children's histograms before reading percentiles. Merging histograms is
 * exact; averaging per-process percentiles would not be.
 */
import * as hdr from 'hdr-histogram-js';

export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

/** Up to 60 s in µs with 3 significant digits, the same shape as stats.ts's `latency()`. */
function build(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
}

export class Recorder {
  private readonly h = build();

  record(us: number): void {
    // Values past the top are clamped rather than thrown: a minute-late delivery is still "very late".
    this.h.recordValue(Math.min(60_000_000, Math.max(1, Math.round(us))));
  }

  get count(): number {
    return this.h.totalCount;
  }

  encode(): string {
    return hdr.encodeIntoCompressedBase64(this.h);
  }

  summary(): LatencySummary {
    return summaryOf(this.h);
  }
}

/** Merges encoded histograms from several processes into one summary. */
export function mergeEncoded(encoded: readonly string[]): LatencySummary {
  const total = build();
  for (const e of encoded) {
    const h = hdr.decodeFromCompressedBase64(e);
    total.add(h);
  }
  return summaryOf(total);
}

function summaryOf(h: hdr.Histogram): LatencySummary {
  if (h.totalCount === 0) return { count: 0, p50: 0, p99: 0, p999: 0, max: 0 };
  return {
    count: h.totalCount,
    p50: h.getValueAtPercentile(50),
    p99: h.getValueAtPercentile(99),
    p999: h.getValueAtPercentile(99.9),
    max: h.maxValue,
  };
}
