// A list of any resource the API pages with cursors ({items, next_cursor}):
// one page is loaded at a time and the console never walks the whole list,
// so a store with millions of rows costs one query per page. Pages sessions
// and templates will reuse it as they land.
import { useEffect, useState, type ReactNode } from 'react';
import { ProblemView } from './common';

export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

export interface Column<T> {
  header: string;
  cell: (row: T) => ReactNode;
  className?: string;
}

type Props<T> = {
  /** One page: the cursor of the page to load (undefined for the first). */
  load: (cursor: string | undefined) => Promise<Page<T>>;
  columns: Column<T>[];
  rowKey: (row: T) => string;
  /** Changing this starts again from the first page (the filters). */
  filterKey: string;
  empty: string;
  label: string;
};

/** New filters make a new list (from its first page): one request, not a
 *  request for the old cursor followed by one for the first page. */
export function CursorList<T>(props: Props<T>) {
  return <Pages key={props.filterKey} {...props} />;
}

function Pages<T>({
  load,
  columns,
  rowKey,
  empty,
  label,
}: Props<T>) {
  // The cursors of the pages before this one, so Previous needs no state on the server.
  const [trail, setTrail] = useState<(string | undefined)[]>([]);
  const [cursor, setCursor] = useState<string | undefined>();
  const [page, setPage] = useState<Page<T>>();
  const [error, setError] = useState<unknown>();
  const [loading, setLoading] = useState(false);

  useEffect(() => {
    let live = true;
    setLoading(true);
    load(cursor)
      .then((p) => {
        if (live) {
          setPage(p);
          setError(undefined);
        }
      })
      .catch((e) => live && setError(e))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [cursor]);

  return (
    <div className="cursor-list" aria-busy={loading}>
      <ProblemView error={error} />
      <table aria-label={label}>
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c.header} scope="col">
                {c.header}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {page?.items.map((row) => (
            <tr key={rowKey(row)}>
              {columns.map((c) => (
                <td key={c.header} className={c.className}>
                  {c.cell(row)}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      {page && page.items.length === 0 ? <p className="muted">{empty}</p> : null}
      <nav className="pager" aria-label={`${label} pages`}>
        <button
          type="button"
          disabled={trail.length === 0 || loading}
          onClick={() => {
            setCursor(trail[trail.length - 1]);
            setTrail(trail.slice(0, -1));
          }}
        >
          Previous page
        </button>
        <span className="muted">Page {trail.length + 1}</span>
        <button
          type="button"
          disabled={!page?.next_cursor || loading}
          onClick={() => {
            setTrail([...trail, cursor]);
            setCursor(page?.next_cursor ?? undefined);
          }}
        >
          Next page
        </button>
      </nav>
    </div>
  );
}
