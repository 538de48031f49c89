// Plugins: search and page through them (developers see their own).
import { useState } from 'react';
import { Link } from 'wouter';
import { api, call, type Plugin } from '../api/client';
import { CursorList } from '../components/CursorList';
import { PageTitle, Time } from '../components/common';
import { useSession } from '../session';

export function Plugins() {
  const { can } = useSession();
  const [search, setSearch] = useState('');
  const [applied, setApplied] = useState('');
  return (
    <>
      <PageTitle sub="Every plugin this key may see, by code.">Plugins</PageTitle>
      <form
        className="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied(search.trim());
        }}
      >
        <label htmlFor="plugin-search">Search</label>
        <input id="plugin-search" type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="code, name or description" />
        <button type="submit">Search</button>
        {can.upload ? (
          <Link href="/upload" className="button">
            Upload a package
          </Link>
        ) : null}
      </form>
      <CursorList<Plugin>
        label="Plugins"
        filterKey={applied}
        empty="No plugins."
        rowKey={(p) => p.code}
        load={(cursor) => call(api.GET('/v1/plugins', { params: { query: { search: applied || undefined, cursor, limit: 50 } } }))}
        columns={[
          { header: 'Code', cell: (p) => <Link href={`/plugins/${p.code}`}>{p.code}</Link> },
          { header: 'Name', cell: (p) => p.name },
          { header: 'Description', cell: (p) => p.description, className: 'wrap' },
          { header: 'Owner', cell: (p) => p.owner },
          { header: 'Updated', cell: (p) => <Time ms={p.updated_at} /> },
        ]}
      />
    </>
  );
}
