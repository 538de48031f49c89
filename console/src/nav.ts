// The navigation: one entry per resource, shown when the signed-in role may
// use it.
import type { Can } from './session';

export interface NavEntry {
  href: string;
  label: string;
  show: (can: Can) => boolean;
}

export const NAV: NavEntry[] = [
  { href: '/review', label: 'Review queue', show: (c) => c.review },
  { href: '/plugins', label: 'Plugins', show: (c) => c.listPlugins },
  { href: '/upload', label: 'Upload', show: (c) => c.upload },
  { href: '/apps', label: 'Apps', show: (c) => c.run },
  { href: '/sessions', label: 'Sessions', show: (c) => c.sessions },
  { href: '/executions', label: 'Executions', show: () => true },
  { href: '/templates', label: 'Templates', show: (c) => c.templates },
  { href: '/signing-keys', label: 'Signing keys', show: (c) => c.signingKeys },
  { href: '/operations', label: 'Operations', show: (c) => c.operations },
  { href: '/keys', label: 'API keys', show: (c) => c.keys },
  { href: '/audit', label: 'Audit log', show: (c) => c.audit },
];
