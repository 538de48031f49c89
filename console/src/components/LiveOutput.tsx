// A running execution's output as it is printed: the SSE stream of
// /v1/executions/{id}/events, stdout and stderr interleaved in order, then
// the final record. Output is text (a <pre> of strings), never markup.
import { useEffect, useState } from 'react';
import { followExecution } from '../api/stream';
import type { Execution } from '../api/client';
import { ProblemView, Status } from './common';

interface Chunk {
  stream: 'stdout' | 'stderr';
  text: string;
}

export function LiveOutput({ id, onResult }: { id: string; onResult?: (e: Execution) => void }) {
  const [status, setStatus] = useState('connecting');
  const [chunks, setChunks] = useState<Chunk[]>([]);
  const [error, setError] = useState<unknown>();

  useEffect(() => {
    const abort = new AbortController();
    setChunks([]);
    setStatus('connecting');
    followExecution(
      id,
      (e) => {
        if (e.kind === 'status') setStatus(e.status);
        else if (e.kind === 'stdout' || e.kind === 'stderr') setChunks((c) => [...c, { stream: e.kind, text: e.text }]);
        else if (e.kind === 'result') {
          setStatus(e.execution.status);
          onResult?.(e.execution);
        }
      },
      abort.signal,
    ).catch((e) => {
      if (!abort.signal.aborted) setError(e);
    });
    return () => abort.abort();
  }, [id]);

  return (
    <section className="live" aria-label="Live output">
      <h2>
        Live output <Status value={status} />
      </h2>
      <ProblemView error={error} />
      <pre className="output" data-testid="live-output" aria-live="polite" tabIndex={0}>
        {chunks.map((c, i) => (
          <span key={i} className={c.stream}>
            {c.text}
          </span>
        ))}
      </pre>
    </section>
  );
}
