import { useState } from 'react';
import { useEvent, usePublish } from '../hooks';
import type { AndonEventPayload } from '../catalog.gen';

type Andon = AndonEventPayload & { sending?: boolean; error?: string };

/**
 * Andon calls (company room) and control-panel alarms (room `alarms`).
 * Supervisors acknowledge an andon: a durable publish through the outbox, so
 * an acknowledgement made offline is delivered once when the page is back.
 */
export function AlarmList({ canAcknowledge }: { canAcknowledge: boolean }) {
  const [andons, setAndons] = useState<Record<string, Andon>>({});
  const [alarms, setAlarms] = useState<Array<{ id: string; severity: string; message: string }>>([]);
  const publish = usePublish();
  useEvent('andon_event', (p) => setAndons((a) => ({ ...a, [p.andonId]: { ...p } })));
  useEvent('alarm', (p) => setAlarms((a) => [{ id: String(p.alarmId), severity: p.severity, message: p.message }, ...a].slice(0, 20)), { room: 'alarms' });

  const acknowledge = (a: Andon) => {
    const next: AndonEventPayload = { andonId: a.andonId, lineId: a.lineId, kind: a.kind, status: 'acknowledged' };
    setAndons((s) => ({ ...s, [a.andonId]: { ...a, sending: true } }));
    publish('andon_event', next).then(
      () => setAndons((s) => ({ ...s, [a.andonId]: { ...next } })),
      (e: Error) => setAndons((s) => ({ ...s, [a.andonId]: { ...a, error: e.message } })),
    );
  };

  const list = Object.values(andons).sort((x, y) => String(x.andonId).localeCompare(String(y.andonId)));
  return (
    <div>
      {list.length === 0 && alarms.length === 0 && <p className="empty">All quiet.</p>}
      <ul className="alarms">
        {list.map((a) => (
          <li key={a.andonId} data-testid={`andon-${a.andonId}`} data-status={a.sending ? 'sending' : a.status} className={`andon ${a.status}`}>
            <b>{a.kind}</b> on line {a.lineId} · <span className="st">{a.sending ? 'acknowledging… (queued)' : a.status}</span>
            {a.error && <span className="error"> {a.error}</span>}
            {a.status === 'raised' && !a.sending && (
              <button
                type="button"
                disabled={!canAcknowledge}
                title={canAcknowledge ? 'Acknowledge' : 'Supervisors and up acknowledge andon calls'}
                onClick={() => acknowledge(a)}
              >
                Acknowledge
              </button>
            )}
          </li>
        ))}
        {alarms.map((a) => (
          <li key={a.id} data-testid={`alarm-${a.id}`} className={`alarm ${a.severity}`}>
            ⚠ {a.severity}: {a.message}
          </li>
        ))}
      </ul>
    </div>
  );
}
