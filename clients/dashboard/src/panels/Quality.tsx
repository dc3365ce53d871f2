import { useState } from 'react';
import { useEvent } from '../hooks';

/** quality_alert is received by supervisors and up only (catalog receive roles): operators see why it is empty. */
export function QualityPanel({ role }: { role: string }) {
  const [alerts, setAlerts] = useState<Array<{ id: string; text: string }>>([]);
  useEvent('quality_alert', (p) => setAlerts((a) => [{ id: String(p.alertId), text: `${p.parameter} ${p.measuredValue} (${p.severity})` }, ...a].slice(0, 10)));
  return (
    <div data-testid="quality">
      {role === 'operator' && <p className="muted" data-testid="quality-hidden">Quality alerts go to supervisors and up; your role ({role}) does not receive them.</p>}
      {alerts.length === 0 && role !== 'operator' && <p className="empty">No quality alerts.</p>}
      <ul>
        {alerts.map((a) => (
          <li key={a.id} data-testid={`quality-${a.id}`}>
            {a.text}
          </li>
        ))}
      </ul>
    </div>
  );
}
