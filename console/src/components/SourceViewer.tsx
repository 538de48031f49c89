// A package file as numbered lines, the lines with findings marked and
// their findings shown under them. Text only.
import { useEffect, useRef } from 'react';

export interface Mark {
  line: number;
  severity: string;
  text: string;
}

export function SourceViewer({ path, text, marks, focusLine }: { path: string; text: string; marks: Mark[]; focusLine?: number }) {
  const lines = text.split('\n');
  const byLine = new Map<number, Mark[]>();
  for (const m of marks) byLine.set(m.line, [...(byLine.get(m.line) ?? []), m]);
  const focused = useRef<HTMLTableRowElement>(null);
  useEffect(() => {
    focused.current?.scrollIntoView({ block: 'center' });
  }, [focusLine, path]);
  return (
    <div className="source" tabIndex={0} aria-label={`Source of ${path}`} role="region">
      <table>
        <tbody>
          {lines.map((l, i) => {
            const n = i + 1;
            const here = byLine.get(n);
            const sev = here?.some((m) => m.severity === 'critical')
              ? 'critical'
              : here?.some((m) => m.severity === 'warning')
                ? 'warning'
                : here
                  ? 'info'
                  : '';
            return (
              <tr key={n} ref={n === focusLine ? focused : undefined} className={here ? `mark mark-${sev}` : undefined} data-line={n}>
                <td className="ln">{n}</td>
                <td className="code">
                  <code>{l}</code>
                  {here?.map((m, j) => (
                    <div key={j} className={`finding-note sev-${m.severity}`}>
                      {m.severity}: {m.text}
                    </div>
                  ))}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
