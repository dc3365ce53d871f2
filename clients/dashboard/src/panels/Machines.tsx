import { memo, useState } from 'react';
import { useEvent } from '../hooks';

/**
 * One tile per machine. Each tile listens through the hooks and keeps its own
 * state, so an event re-renders only the tile whose machine it names.
 */
const MachineTile = memo(function MachineTile({ id, renders }: { id: string; renders: Record<string, number> }) {
  const [status, setStatus] = useState('idle');
  const [load, setLoad] = useState<number | null>(null);
  useEvent('machine:status_changed', (p) => p.machineId === id && setStatus(p.newStatus));
  useEvent('machine:load', (p) => p.machineId === id && setLoad(p.load));
  renders[id] = (renders[id] ?? 0) + 1;
  return (
    <div className={`tile status-${status}`} data-testid={`machine-${id}`} data-status={status} data-load={load ?? ''}>
      <span className="id">{id}</span>
      <span className="status">{status}</span>
      <span className="load">{load === null ? '–' : `${Math.round(load)}%`}</span>
    </div>
  );
});

export function MachineGrid({ count, renders }: { count: number; renders: Record<string, number> }) {
  const ids = Array.from({ length: count }, (_, i) => `m${i + 1}`);
  return (
    <div className="grid">
      {ids.map((id) => (
        <MachineTile key={id} id={id} renders={renders} />
      ))}
    </div>
  );
}
