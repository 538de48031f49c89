// Packages the suite uploads: a plugin whose input_schema exercises the
// generated form and whose handler prints slowly (so its output is seen
// live) and imports subprocess (so the review report has a finding).
import { pack, pythonManifest } from './harness.mjs';

export const GREETER = 'tests.console.greeter';

export const GREETER_SCHEMA = {
  type: 'object',
  title: 'Greeting',
  required: ['name', 'mood'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', title: 'Name', description: 'Who to greet', minLength: 1 },
    times: { type: 'integer', title: 'Times', default: 2, minimum: 1, maximum: 5 },
    mood: { type: 'string', title: 'Mood', enum: ['happy', 'grumpy'] },
    tags: { type: 'array', title: 'Tags', items: { type: 'string' } },
    options: { type: 'object', title: 'Options', properties: { loud: { type: 'boolean', title: 'Loud', default: false } } },
  },
};

export const GREETER_SOURCE = `"""Greets slowly, so the console shows its output live."""
import os
import subprocess  # a review finding (PY-SUBPROCESS), never used
import time


def handler(event):
    for i in range(1, 4):
        print(f"step {i} of 3 for {event['name']}", flush=True)
        time.sleep(0.7)
    word = "HELLO" if event.get("options", {}).get("loud") else "Hello"
    os.makedirs("out", exist_ok=True)
    with open("out/greeting.txt", "w") as f:
        f.write(f"{word}, {event['name']}!\\n")
    return {"greeting": f"{word}, {event['name']}!", "times": event.get("times"), "mood": event["mood"], "tags": event.get("tags", [])}
`;

export function greeter(version = '1.0.0', extra = {}) {
  return pack(
    pythonManifest(GREETER, { version, name: 'Greeter', description: 'Greets someone, slowly.', input_schema: GREETER_SCHEMA, ...extra }),
    { 'main.py': GREETER_SOURCE },
  );
}

/** A package with several problems at once: manifest fields and the archive. */
export function broken() {
  return pack(
    {
      code: 'Not A Code',
      name: 'Broken',
      version: 'one',
      type: 'sandbox',
      runtime: 'python3',
      entrypoint: 'missing.py',
      limits: { timeout_ms: 10000, memory_mb: 999999 },
      input_schema: { type: 'object' },
      output_schema: {},
    },
    { 'main.py': 'def handler(event):\n    return event\n' },
  );
}

export const QUICK = 'tests.console.quick';

/** A plugin that answers at once (and fails when asked to): load for the charts. */
export function quick() {
  return pack(
    pythonManifest(QUICK, {
      name: 'Quick',
      description: 'Echoes its event; fails when the event says so.',
      input_schema: { type: 'object', properties: { fail: { type: 'boolean', title: 'Fail' } } },
    }),
    { 'main.py': 'def handler(event):\n    if event.get("fail"):\n        raise RuntimeError("asked to fail")\n    return {"echo": event}\n' },
  );
}
