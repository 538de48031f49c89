// Templates (every role reads them; admins create and build them): the list
// by id, built-ins included, one cursor page at a time.
import { Link } from 'wouter';
import { api, call, type Template } from '../api/client';
import { CursorList } from '../components/CursorList';
import { PageTitle, Status, Time } from '../components/common';
import { useSession } from '../session';

export function Templates() {
  const { can } = useSession();
  return (
    <>
      <PageTitle sub="What a session's box starts from: a runtime, packages (built once into a shared layer), variables, resources, network and seed files.">
        Templates
      </PageTitle>
      {can.manageTemplates ? (
        <p>
          <Link href="/templates/new" className="button primary">
            New template
          </Link>
        </p>
      ) : null}
      <CursorList<Template>
        label="Templates"
        filterKey=""
        empty="No templates."
        rowKey={(t) => t.id}
        load={(cursor) => call(api.GET('/v1/templates', { params: { query: { cursor, limit: 50 } } }))}
        columns={[
          { header: 'Id', cell: (t) => <Link href={`/templates/${t.id}`}>{t.id}</Link> },
          { header: 'Name', cell: (t) => t.name, className: 'wrap' },
          { header: 'Runtime', cell: (t) => t.runtime },
          { header: 'Packages', cell: (t) => t.packages.length },
          { header: 'Layer', cell: (t) => layerState(t) },
          { header: 'Built-in', cell: (t) => (t.builtin ? 'yes' : 'no') },
          { header: 'Changed', cell: (t) => <Time ms={t.updated_at} /> },
        ]}
      />
    </>
  );
}

/** Whether a template's boxes have their packages. */
export function layerState(t: Template) {
  if (t.packages.length === 0) return <span className="muted">none needed</span>;
  return t.layer ? <Status value="ready" /> : <span className="muted">not built</span>;
}
