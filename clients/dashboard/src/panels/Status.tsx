import { useState } from 'react';
import type { EventMeta } from '@switchyard/client';
import { useConnectionState, useEvent, usePresence } from '../hooks';

const LABEL = { connecting: 'connecting…', connected: 'live', reconnecting: 'reconnecting…', disconnected: 'disconnected', unauthorized: 'signed out' };

export function ConnectionBadge() {
  const s = useConnectionState();
  return (
    <span className={`badge ${s.status}`} data-testid="connection" data-status={s.status} data-pending={s.pending}>
      <span data-testid="conn-status">{LABEL[s.status]}</span>
      {s.replaying && <span data-testid="replaying"> · replaying {s.replayed} events</span>}
      {s.pending > 0 && <span data-testid="outbox"> · {s.pending} waiting to send</span>}
      {s.lastError && s.status !== 'connected' && <span className="error"> · {s.lastError}</span>}
    </span>
  );
}

export function OnlineUsers() {
  const users = usePresence();
  return (
    <span className="online" data-testid="online">
      online:{' '}
      {users.map((u) => (
        <span key={u.userId} className="user" data-testid={`online-${u.userId}`}>
          {u.userId}
          {u.role ? ` (${u.role})` : ''}
        </span>
      ))}
    </span>
  );
}

type Entry = { key: string; type: string; room: string; offset: number; id: string };

/** Every durable event delivered to this page, newest first (the tests count them). */
export function EventLog() {
  const [log, setLog] = useState<Entry[]>([]);
  const add = (type: string) => (_: unknown, m: EventMeta) => {
    if (typeof m?.offset !== 'number') return;
    (window as unknown as { __dashboard?: { durable: string[] } }).__dashboard?.durable.push(`${m.room}#${m.offset}#${m.id}`);
    setLog((l) => [{ key: `${m.room}#${m.offset}`, type, room: m.room, offset: m.offset as number, id: m.id }, ...l].slice(0, 500));
  };
  useEvent('order:status_changed', add('order:status_changed'));
  useEvent('machine:status_changed', add('machine:status_changed'));
  useEvent('andon_event', add('andon_event'));
  useEvent('alarm', add('alarm'), { room: 'alarms' });
  useEvent('quality_alert', add('quality_alert'));
  return (
    <ol className="log" data-testid="event-log" data-count={log.length}>
      {log.slice(0, 12).map((e) => (
        <li key={e.key} data-id={e.id}>
          <code>{e.room}#{e.offset}</code> {e.type}
        </li>
      ))}
      {log.length > 12 && <li className="muted">… {log.length - 12} more</li>}
    </ol>
  );
}
