// Output as it is written: an execution's SSE stream (stdout and stderr
// interleaved in order, then the final record) or a template build's log
// (the installer's output, then the layer's record). Output is text (a
// <pre> of strings), never markup.
import { useEffect, useState } from 'react';
import { followEvents, executionEvents, layerEvents } from '../api/stream';
import type { Execution, Layer } from '../api/client';
import { ProblemView, Status } from './common';

interface Chunk {
  stream: 'stdout' | 'stderr';
  text: string;
}

/** A running execution's output, live. */
export function LiveOutput({ id, onResult }: { id: string; onResult?: (e: Execution) => void }) {
  return <LiveStream<Execution> url={executionEvents(id)} title="Live output" testId="live-output" onResult={onResult} />;
}

/** A template build's log, live, then the layer's record. */
export function LiveBuildLog({ layer, onResult }: { layer: string; onResult?: (l: Layer) => void }) {
  return <LiveStream<Layer> url={layerEvents(layer)} title="Build log" testId="build-log" onResult={onResult} />;
}

function LiveStream<R extends { status: string }>({
  url,
  title,
  testId,
  onResult,
}: {
  url: string;
  title: string;
  testId: string;
  onResult?: (r: R) => void;
}) {
  const [status, setStatus] = useState('connecting');
  const [chunks, setChunks] = useState<Chunk[]>([]);
  const [error, setError] = useState<unknown>();

  useEffect(() => {
    const abort = new AbortController();
    setChunks([]);
    setStatus('connecting');
    followEvents<R>(
      url,
      (e) => {
        if (e.kind === 'status') setStatus(e.status);
        else if (e.kind === 'stdout' || e.kind === 'stderr') setChunks((c) => [...c, { stream: e.kind, text: e.text }]);
        else if (e.kind === 'result') {
          setStatus(e.record.status);
          onResult?.(e.record);
        }
      },
      abort.signal,
    ).catch((e) => {
      if (!abort.signal.aborted) setError(e);
    });
    return () => abort.abort();
  }, [url]);

  return (
    <section className="live" aria-label={title}>
      <h2>
        {title} <Status value={status} />
      </h2>
      <ProblemView error={error} />
      <pre className="output" data-testid={testId} aria-live="polite" tabIndex={0}>
        {chunks.map((c, i) => (
          <span key={i} className={c.stream}>
            {c.text}
          </span>
        ))}
      </pre>
    </section>
  );
}
