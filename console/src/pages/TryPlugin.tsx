// Try a plugin in an app: a form generated from the version's input_schema
// by rjsf (types, required fields, enums, arrays, nested objects, defaults,
// descriptions), run asynchronously so the output streams live, then the
// result with its output, metrics and artifacts. App keys cannot read
// manifests, so they get a JSON editor instead of the form.
import { useState } from 'react';
import type { RJSFSchema } from '@rjsf/utils';
import { Link } from 'wouter';
import { api, call, type Execution } from '../api/client';
import { LiveOutput } from '../components/LiveOutput';
import { ExecutionDetail } from '../components/ExecutionDetail';
import { PageTitle, ProblemView, useLoad } from '../components/common';
import { useSession } from '../session';
import { Form, buttonTemplates, validator } from '../form/form';

interface Target {
  version?: string;
  schema?: RJSFSchema;
  description?: string;
}

async function target(app: string, code: string, canRead: boolean): Promise<Target> {
  if (!canRead) return {};
  const installs = await call(api.GET('/v1/apps/{app}/installations', { params: { path: { app } } }));
  const inst = installs.find((i) => i.plugin === code);
  const versions = await call(api.GET('/v1/plugins/{code}/versions', { params: { path: { code } } }));
  const version = inst?.pinned_version ?? [...versions].reverse().find((v) => v.status === 'active')?.version;
  if (!version) return {};
  const manifest = (await call(api.GET('/v1/plugins/{code}/versions/{version}/manifest', { params: { path: { code, version } } }))) as Record<string, unknown>;
  return {
    version,
    schema: (manifest.input_schema as RJSFSchema | undefined) ?? { type: 'object' },
    description: typeof manifest.description === 'string' ? manifest.description : undefined,
  };
}

export default function TryPlugin({ app, code }: { app: string; code: string }) {
  const { can } = useSession();
  const t = useLoad(() => target(app, code, can.listPlugins), [app, code]);
  const [formData, setFormData] = useState<unknown>({});
  const [raw, setRaw] = useState('{}');
  const [error, setError] = useState<unknown>();
  const [running, setRunning] = useState<string>();
  const [result, setResult] = useState<Execution>();

  async function run(event: unknown) {
    setError(undefined);
    setResult(undefined);
    setRunning(undefined);
    try {
      const accepted = await call(
        api.POST('/v1/apps/{app}/plugins/{code}/execute', {
          params: { path: { app, code }, query: { mode: 'async' } },
          body: event as Record<string, never>,
        }),
      );
      setRunning(accepted.id);
    } catch (e) {
      setError(e);
    }
  }

  return (
    <>
      <PageTitle sub={t.data?.description}>{`Try ${code}`}</PageTitle>
      <p>
        In app <Link href={`/apps/${app}`}>{app}</Link>
        {t.data?.version ? `, version ${t.data.version} (from the installation)` : ''}.
      </p>
      <ProblemView error={t.error} />
      {t.data?.schema ? (
        <section className="rjsf-wrap" aria-label="Event">
          <Form
            schema={t.data.schema}
            validator={validator}
            templates={{ ButtonTemplates: buttonTemplates }}
            formData={formData}
            onChange={(e) => setFormData(e.formData)}
            onSubmit={(e) => void run(e.formData)}
            showErrorList="top"
            noHtml5Validate
          >
            <button type="submit" className="primary">
              Run
            </button>
          </Form>
        </section>
      ) : t.data ? (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            try {
              void run(JSON.parse(raw));
            } catch (err) {
              setError(new Error(`The event is not JSON: ${err instanceof Error ? err.message : String(err)}`));
            }
          }}
        >
          <label htmlFor="event-json">Event (JSON)</label>
          <textarea id="event-json" className="code-input" rows={8} value={raw} onChange={(e) => setRaw(e.target.value)} />
          <button type="submit" className="primary">
            Run
          </button>
        </form>
      ) : null}
      <ProblemView error={error} />
      {running ? <LiveOutput id={running} onResult={setResult} /> : null}
      {result ? (
        <section aria-label="Result">
          <h2>Result</h2>
          <ExecutionDetail execution={result} />
        </section>
      ) : null}
    </>
  );
}
