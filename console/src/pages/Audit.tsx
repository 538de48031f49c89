// The audit log: append-only, newest first, filtered by plugin, actor,
// action (developers: one of their plugins at a time).
import { useState } from 'react';
import { api, call, type AuditEvent } from '../api/client';
import { CursorList } from '../components/CursorList';
import { Json, PageTitle, Time } from '../components/common';
import { useSession } from '../session';

interface Filters {
  plugin: string;
  actor: string;
  action: string;
}

export function Audit() {
  const { me } = useSession();
  const empty: Filters = { plugin: '', actor: '', action: '' };
  const [draft, setDraft] = useState(empty);
  const [f, setF] = useState(empty);
  const set = (k: keyof Filters) => (e: { target: { value: string } }) => setDraft({ ...draft, [k]: e.target.value });
  const needsPlugin = me?.role === 'developer' && !f.plugin;
  return (
    <>
      <PageTitle sub="Every change to plugins, versions, apps and keys, newest first.">Audit log</PageTitle>
      <form
        className="filters"
        aria-label="Filters"
        onSubmit={(e) => {
          e.preventDefault();
          setF({ plugin: draft.plugin.trim(), actor: draft.actor.trim(), action: draft.action.trim() });
        }}
      >
        <label htmlFor="a-plugin">Plugin</label>
        <input id="a-plugin" value={draft.plugin} onChange={set('plugin')} />
        <label htmlFor="a-actor">Actor</label>
        <input id="a-actor" className="short" value={draft.actor} onChange={set('actor')} />
        <label htmlFor="a-action">Action</label>
        <input id="a-action" className="short" value={draft.action} onChange={set('action')} placeholder="approve" />
        <button type="submit">Apply</button>
      </form>
      {needsPlugin ? (
        <p className="muted">Developers read the audit trail of one of their plugins at a time: enter its code.</p>
      ) : (
        <CursorList<AuditEvent>
          label="Audit events"
          filterKey={JSON.stringify(f)}
          empty="No events match."
          rowKey={(a) => a.id}
          load={(cursor) =>
            call(
              api.GET('/v1/audit', {
                params: { query: { plugin: f.plugin || undefined, actor: f.actor || undefined, action: f.action || undefined, cursor, limit: 50 } },
              }),
            )
          }
          columns={[
            { header: 'When', cell: (a) => <Time ms={a.at} /> },
            { header: 'Actor', cell: (a) => a.actor },
            { header: 'Action', cell: (a) => a.action },
            { header: 'Plugin', cell: (a) => (a.plugin ? `${a.plugin} ${a.version ?? ''}` : '') },
            { header: 'Change', cell: (a) => (a.from_status || a.to_status ? `${a.from_status ?? '—'} → ${a.to_status ?? '—'}` : '') },
            { header: 'Reason', cell: (a) => a.reason, className: 'wrap' },
            { header: 'Detail', cell: (a) => (a.detail == null ? '' : <Json value={a.detail} />) },
          ]}
        />
      )}
    </>
  );
}
