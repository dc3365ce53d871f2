// Entry: who am I (URL parameters), where is the server, how do I get tokens.
//   ?user=alice&role=operator&company=acme   identity for the dev token endpoint
//   ?server=http://localhost:3001            switchyard URL (default VITE_SWITCHYARD_URL or :3001)
//   ?ttl=3600                                token lifetime in seconds (short ones show refresh)
//   ?token=JWT                               use this token instead of /dev-token
//   ?machines=12                             number of machine tiles
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { createClient, type ConnectionStatus } from '@switchyard/client';
import { SwitchyardProvider } from '@switchyard/react';
import { App } from './App';
import { EPHEMERAL_TYPES } from './catalog.gen';
import type { Events } from './hooks';
import './style.css';

const q = new URLSearchParams(location.search);
const identity = { user: q.get('user') ?? 'alice', role: q.get('role') ?? 'operator', company: q.get('company') ?? 'acme' };
const server = q.get('server') ?? import.meta.env.VITE_SWITCHYARD_URL ?? 'http://localhost:3001';

// What the tests read: token fetches, every connection status in order, renders per tile.
const probe = { tokenFetches: 0, statuses: [] as ConnectionStatus[], renders: {} as Record<string, number>, durable: [] as string[] };
(window as unknown as { __dashboard: typeof probe }).__dashboard = probe;

const fixed = q.get('token');
const token = fixed ?? (async () => {
  const params = new URLSearchParams({ ...identity, ttl: q.get('ttl') ?? '3600' });
  const res = await fetch(`/dev-token?${params}`, { cache: 'no-store' });
  if (!res.ok) throw new Error(`dev token: ${res.status} ${await res.text()}`);
  probe.tokenFetches++;
  return res.text();
});

const client = createClient<Events>({ url: server, token, ephemeralTypes: EPHEMERAL_TYPES });
client.onState(() => {
  const s = client.getState().status;
  if (probe.statuses[probe.statuses.length - 1] !== s) probe.statuses.push(s);
});
(window as unknown as { __client: typeof client }).__client = client;

createRoot(document.getElementById('root') as HTMLElement).render(
  <StrictMode>
    <SwitchyardProvider client={client}>
      <App user={identity.user} role={identity.role} machines={Number(q.get('machines') ?? 12)} renders={probe.renders} />
    </SwitchyardProvider>
  </StrictMode>,
);
