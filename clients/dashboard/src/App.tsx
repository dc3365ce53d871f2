import { AlarmList } from './panels/AlarmList';
import { ConnectionBadge, EventLog, OnlineUsers } from './panels/Status';
import { MachineGrid } from './panels/Machines';
import { OrderBoard } from './panels/Orders';
import { QualityPanel } from './panels/Quality';
import { ShiftNotes } from './panels/ShiftNotes';
import { TelemetryChart } from './panels/Telemetry';

export function App({ user, role, machines, renders }: { user: string; role: string; machines: number; renders: Record<string, number> }) {
  const supervisor = role !== 'operator';
  return (
    <div className="app">
      <header>
        <h1>Factory floor</h1>
        <span className="who" data-testid="who">
          {user} · <b>{role}</b>
        </span>
        <OnlineUsers />
        <ConnectionBadge />
      </header>
      <main>
        <section className="panel wide">
          <h2>Machines</h2>
          <MachineGrid count={machines} renders={renders} />
        </section>
        <section className="panel">
          <h2>Orders</h2>
          <OrderBoard />
        </section>
        <section className="panel">
          <h2>Telemetry · endpoint 59</h2>
          <TelemetryChart endpoint={59} />
        </section>
        <section className="panel">
          <h2>Andon &amp; alarms</h2>
          <AlarmList canAcknowledge={supervisor} />
        </section>
        <section className="panel">
          <h2>Shift notes (shared document)</h2>
          <ShiftNotes />
        </section>
        <section className="panel">
          <h2>Quality alerts</h2>
          <QualityPanel role={role} />
        </section>
        <section className="panel">
          <h2>Durable events received</h2>
          <EventLog />
        </section>
      </main>
    </div>
  );
}
