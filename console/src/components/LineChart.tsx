// A small line chart in plain SVG (no chart library: a few lines of
// geometry cost less than one). Series share the x axis (time).
export interface Series {
  name: string;
  className: string;
  values: (number | null)[];
}

export function LineChart({
  title,
  unit,
  times,
  series,
  height = 140,
}: {
  title: string;
  unit: string;
  times: number[];
  series: Series[];
  height?: number;
}) {
  const width = 420;
  const pad = { l: 44, r: 8, t: 8, b: 20 };
  const all = series.flatMap((s) => s.values.filter((v): v is number => v != null && Number.isFinite(v)));
  const max = Math.max(1e-9, ...all) * 1.1;
  const n = Math.max(2, times.length);
  const x = (i: number) => pad.l + ((width - pad.l - pad.r) * i) / (n - 1);
  const y = (v: number) => pad.t + (height - pad.t - pad.b) * (1 - v / max);
  const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toPrecision(2));
  const latest = series.map((s) => {
    const v = [...s.values].reverse().find((v) => v != null);
    return `${s.name} ${v == null ? '—' : `${fmt(v)} ${unit}`}`;
  });
  return (
    <figure className="chart">
      <figcaption>
        {title} <span className="muted">({latest.join(', ')})</span>
      </figcaption>
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`${title}: ${latest.join(', ')}`}>
        <line className="axis" x1={pad.l} y1={y(0)} x2={width - pad.r} y2={y(0)} />
        <line className="axis" x1={pad.l} y1={pad.t} x2={pad.l} y2={y(0)} />
        <text className="tick" x={pad.l - 4} y={pad.t + 8} textAnchor="end">
          {fmt(max)}
        </text>
        <text className="tick" x={pad.l - 4} y={y(0)} textAnchor="end">
          0
        </text>
        {times.length > 0 ? (
          <text className="tick" x={width - pad.r} y={height - 4} textAnchor="end">
            {new Date(times[times.length - 1]).toLocaleTimeString()}
          </text>
        ) : null}
        {series.map((s) => {
          let d = '';
          s.values.forEach((v, i) => {
            if (v == null || !Number.isFinite(v)) return;
            d += `${d && s.values[i - 1] != null ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
          });
          return <path key={s.name} className={`line ${s.className}`} d={d} />;
        })}
      </svg>
      <ul className="legend">
        {series.map((s) => (
          <li key={s.name}>
            <span className={`swatch ${s.className}`} aria-hidden="true" /> {s.name}
          </li>
        ))}
      </ul>
    </figure>
  );
}
