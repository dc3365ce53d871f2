// Type test (tsc --noEmit, run by `npm run test:types`): the SDK is generic over
// the generated event map. Every `@ts-expect-error` below must be an error,
// or tsc fails ("Unused '@ts-expect-error' directive").

import { createClient, type EventMeta, type OrderStatusChangedPayload } from '../src/index';

const client = createClient({ url: 'http://localhost:3001', token: 'jwt' });

// The example: the payload is the catalog's schema.
client.on('order:status_changed', (p) => p.newStatus);
client.on('order:status_changed', (p, meta: EventMeta) => {
  const s: string = p.newStatus;
  const o: string | number = p.orderId; // ids: string or integer (seed systems send both)
  const offset: number | undefined = meta.offset;
  return [s, o, offset];
});
// @ts-expect-error - a string field is not a number
client.on('order:status_changed', (p) => { const n: number = p.newStatus; return n; });
// Enums from the schema are literal unions.
client.on('alarm', (p) => {
  const sev: 'info' | 'warning' | 'critical' = p.severity;
  // @ts-expect-error - "fatal" is not a severity
  const bad: typeof p.severity = 'fatal';
  return [sev, bad];
});
// Server-generated events are typed too.
client.on('user:online', (p) => p.userId.toUpperCase());
client.on('document:conflict', (p) => p.conflictedFields.join());
// Unknown types fall back to `unknown` payloads (allowUnknown catalogs).
client.on('custom:thing', (p) => {
  // @ts-expect-error - unknown payload needs narrowing
  return p.anything;
});

// publish checks the payload against the event's type.
void client.publish('order:status_changed', { orderId: 'o1', oldStatus: 'a', newStatus: 'b', timestamp: 't' });
// @ts-expect-error - newStatus is required
void client.publish('order:status_changed', { orderId: 'o1', oldStatus: 'a', timestamp: 't' });
const typed: OrderStatusChangedPayload = { orderId: '1', oldStatus: 'a', newStatus: 'b', timestamp: 't' };
void typed;

// A custom event map (from a CATALOG_FILE run of the generator) narrows everything.
interface MyEvents { 'line:speed_changed': { lineId: string; speed: number } }
const mine = createClient<MyEvents>({ url: '', token: async () => 'jwt' });
mine.on('line:speed_changed', (p) => p.speed.toFixed(1));
// @ts-expect-error - speed is a number
mine.on('line:speed_changed', (p) => p.speed.toUpperCase());

// Documents are typed by the caller.
const doc = client.document<{ notes: string; target: number }>('shift', 'today');
const notes: string = doc.getSnapshot().data.notes;
void notes;
void doc.update({ notes: 'x', target: null });
// @ts-expect-error - target is a number
void doc.update({ target: 'ten' });
