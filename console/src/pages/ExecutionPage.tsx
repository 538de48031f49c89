// One execution: live output while it is queued or running (the SSE
// stream), then the stored record.
import { useState } from 'react';
import { api, call, type Execution } from '../api/client';
import { ExecutionDetail } from '../components/ExecutionDetail';
import { LiveOutput } from '../components/LiveOutput';
import { Loading, PageTitle, useLoad } from '../components/common';

export function ExecutionPage({ id }: { id: string }) {
  const rec = useLoad(() => call(api.GET('/v1/executions/{id}', { params: { path: { id } } })), [id]);
  const [final, setFinal] = useState<Execution>();
  return (
    <>
      <PageTitle>{`Execution ${id}`}</PageTitle>
      <Loading state={rec}>
        {(e) => {
          const shown = final ?? e;
          const live = !final && (e.status === 'queued' || e.status === 'running');
          return (
            <>
              {live ? <LiveOutput id={id} onResult={setFinal} /> : null}
              <ExecutionDetail execution={shown} />
            </>
          );
        }}
      </Loading>
    </>
  );
}
