// Drop a file here, or pick one: the package upload and a session's file
// upload. The input is labelled by its button, so keyboards and screen
// readers get the same choice as a mouse.
import { useState, type ReactNode } from 'react';

export function Dropzone({
  id,
  accept,
  prompt,
  busy,
  onFile,
  testId = 'dropzone',
}: {
  id: string;
  accept?: string;
  prompt: ReactNode;
  busy?: ReactNode;
  onFile: (file: File | undefined) => void;
  testId?: string;
}) {
  const [over, setOver] = useState(false);
  return (
    <div
      className={`dropzone${over ? ' over' : ''}`}
      data-testid={testId}
      onDragOver={(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        e.preventDefault();
        setOver(false);
        onFile(e.dataTransfer.files[0]);
      }}
    >
      <p>{prompt}</p>
      <label className="button" htmlFor={id}>
        Choose a file
      </label>
      <input
        id={id}
        className="sr-only"
        type="file"
        accept={accept}
        onChange={(e) => {
          onFile(e.target.files?.[0]);
          // The same file may be chosen again (a new version of it).
          e.target.value = '';
        }}
      />
      {busy ? <p aria-live="polite">{busy}</p> : null}
    </div>
  );
}
