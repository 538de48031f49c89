// The server's own Prometheus metrics (GET /metrics, text format 0.0.4),
// parsed into samples, and the figures the operations page charts:
// executions per second, latency percentiles from the duration histogram,
// failures per second. Rates come from two successive scrapes.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) {
      labels[l[1]] = l[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    out.push({ name: m[1], labels, value });
  }
  return out;
}

export function sum(samples: Sample[], name: string, where: (l: Record<string, string>) => boolean = () => true) {
  return samples.filter((s) => s.name === name && where(s.labels)).reduce((a, s) => a + s.value, 0);
}

/** Cumulative bucket counts of a histogram, summed over its other labels. */
export function buckets(samples: Sample[], name: string): Map<number, number> {
  const b = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${name}_bucket`) continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    b.set(le, (b.get(le) ?? 0) + s.value);
  }
  return b;
}

/** The q-quantile (0..1) of the observations between two scrapes, by
 *  linear interpolation inside the bucket (as Prometheus does); null when
 *  nothing was observed. */
export function quantile(q: number, before: Map<number, number>, after: Map<number, number>): number | null {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const counts = bounds.map((le) => (after.get(le) ?? 0) - (before.get(le) ?? 0));
  const total = counts[counts.length - 1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (let i = 0; i < bounds.length; i++) {
    if (counts[i] >= rank) {
      const le = bounds[i];
      if (!Number.isFinite(le)) return prevBound;
      const inBucket = counts[i] - prevCount;
      return inBucket > 0 ? prevBound + ((le - prevBound) * (rank - prevCount)) / inBucket : le;
    }
    prevBound = bounds[i];
    prevCount = counts[i];
  }
  return prevBound;
}

export const FAILED = new Set(['failed', 'timeout', 'error', 'interrupted']);

export interface Point {
  at: number;
  perSecond: number;
  failuresPerSecond: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

/** One point of the charts from two scrapes `dt` seconds apart. */
export function point(at: number, dt: number, before: Sample[], after: Sample[]): Point {
  const total = (s: Sample[]) => sum(s, 'warden_executions_total');
  const failures = (s: Sample[]) => sum(s, 'warden_executions_total', (l) => FAILED.has(l.status));
  const b0 = buckets(before, 'warden_execution_duration_seconds');
  const b1 = buckets(after, 'warden_execution_duration_seconds');
  const rate = (a: number, b: number) => Math.max(0, b - a) / dt;
  return {
    at,
    perSecond: rate(total(before), total(after)),
    failuresPerSecond: rate(failures(before), failures(after)),
    p50: quantile(0.5, b0, b1),
    p95: quantile(0.95, b0, b1),
    p99: quantile(0.99, b0, b1),
  };
}
