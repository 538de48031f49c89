// Executions: filter by app, plugin, status and time; one page at a time,
// newest first (the API's cursor pages), so a store with millions of
// executions costs one query per page.
import { useState } from 'react';
import { Link, useSearch } from 'wouter';
import { api, call, type Execution } from '../api/client';
import { CursorList } from '../components/CursorList';
import { PageTitle, Status, Time } from '../components/common';
import { useSession } from '../session';

const STATUSES = ['queued', 'running', 'success', 'failed', 'timeout', 'error', 'interrupted'] as const;
type StatusName = (typeof STATUSES)[number];

interface Filters {
  app: string;
  plugin: string;
  status: '' | StatusName;
  since: string;
  until: string;
}

const toMs = (local: string) => (local ? new Date(local).getTime() : undefined);

export function Executions() {
  const { me, can } = useSession();
  const search = new URLSearchParams(useSearch());
  const initial: Filters = {
    app: me?.app ?? search.get('app') ?? '',
    plugin: search.get('plugin') ?? '',
    status: (STATUSES as readonly string[]).includes(search.get('status') ?? '') ? (search.get('status') as StatusName) : '',
    since: '',
    until: '',
  };
  const [draft, setDraft] = useState<Filters>(initial);
  const [f, setF] = useState<Filters>(initial);
  const needsPlugin = me?.role === 'developer' && !f.plugin;
  const set = (k: keyof Filters) => (e: { target: { value: string } }) => setDraft({ ...draft, [k]: e.target.value });
  return (
    <>
      <PageTitle sub="Newest first, one page at a time.">Executions</PageTitle>
      <form
        className="filters"
        aria-label="Filters"
        onSubmit={(e) => {
          e.preventDefault();
          setF(draft);
        }}
      >
        <label htmlFor="f-app">App</label>
        <input id="f-app" value={draft.app} onChange={set('app')} disabled={!!me?.app} className="short" />
        <label htmlFor="f-plugin">Plugin</label>
        <input id="f-plugin" value={draft.plugin} onChange={set('plugin')} required={me?.role === 'developer'} />
        <label htmlFor="f-status">Status</label>
        <select id="f-status" value={draft.status} onChange={set('status')}>
          <option value="">any</option>
          {STATUSES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
        <label htmlFor="f-since">From</label>
        <input id="f-since" type="datetime-local" value={draft.since} onChange={set('since')} />
        <label htmlFor="f-until">Until</label>
        <input id="f-until" type="datetime-local" value={draft.until} onChange={set('until')} />
        <button type="submit">Apply</button>
      </form>
      {needsPlugin ? (
        <p className="muted">Developers list the executions of one of their plugins at a time: enter its code.</p>
      ) : (
        <CursorList<Execution>
          label="Executions"
          filterKey={JSON.stringify(f)}
          empty="No executions match."
          rowKey={(e) => e.id}
          load={(cursor) =>
            call(
              api.GET('/v1/executions', {
                params: {
                  query: {
                    app: f.app || undefined,
                    plugin: f.plugin || undefined,
                    status: f.status || undefined,
                    since: toMs(f.since),
                    until: toMs(f.until),
                    cursor,
                    limit: 50,
                  },
                },
              }),
            )
          }
          columns={[
            { header: 'Id', cell: (e) => <Link href={`/executions/${e.id}`}>{e.id}</Link> },
            { header: 'Status', cell: (e) => <Status value={e.status} /> },
            { header: 'App', cell: (e) => e.app },
            { header: 'Plugin', cell: (e) => (can.listPlugins ? <Link href={`/plugins/${e.plugin}`}>{e.plugin}</Link> : e.plugin) },
            { header: 'Version', cell: (e) => e.version },
            { header: 'Accepted', cell: (e) => <Time ms={e.created_at} /> },
            { header: 'Duration', cell: (e) => (e.duration_ms == null ? '—' : `${e.duration_ms.toFixed(1)} ms`) },
          ]}
        />
      )}
    </>
  );
}
