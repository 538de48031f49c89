// Upload a package: drop a zip (or pick one). A refused package shows every
// problem at its location: the archive path or the manifest field.
import { useState } from 'react';
import { Link } from 'wouter';
import { ApiError, api, call, uploadPackage, type Version } from '../api/client';
import { Action, PageTitle, ProblemView, Status } from '../components/common';
import { Dropzone } from '../components/Dropzone';

export function Upload() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [uploaded, setUploaded] = useState<Version>();
  const [name, setName] = useState<string>();

  async function send(file: File | undefined) {
    if (!file) return;
    setName(file.name);
    setBusy(true);
    setError(undefined);
    setUploaded(undefined);
    try {
      setUploaded(await uploadPackage(file));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
      <PageTitle sub="A zip made by `warden plugin pack`: a new plugin, a new version, or a fixed package for a draft or rejected version.">
        Upload a package
      </PageTitle>
      <Dropzone
        id="package-file"
        accept=".zip,application/zip"
        prompt="Drop the package here, or"
        busy={busy ? `Uploading ${name}…` : null}
        onFile={(f) => void send(f)}
      />
      {error instanceof ApiError && error.problem.errors?.length ? (
        <h2>{error.problem.errors.length} problem(s) in {name}</h2>
      ) : null}
      <ProblemView error={error} />
      {uploaded ? (
        <section className="uploaded" aria-live="polite">
          <h2>Uploaded</h2>
          <p>
            <Link href={`/plugins/${uploaded.plugin}/versions/${uploaded.version}`}>
              {uploaded.plugin} {uploaded.version}
            </Link>{' '}
            is <Status value={uploaded.status} />.
          </p>
          {uploaded.status === 'draft' ? (
            <Action
              label="Submit for review"
              className="primary"
              run={async () =>
                setUploaded(
                  await call(
                    api.POST('/v1/plugins/{code}/versions/{version}/submit', {
                      params: { path: { code: uploaded.plugin, version: uploaded.version } },
                    }),
                  ),
                )
              }
            />
          ) : null}
        </section>
      ) : null}
    </>
  );
}
