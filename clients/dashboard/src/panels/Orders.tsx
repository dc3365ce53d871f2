import { useState } from 'react';
import { useEvent } from '../hooks';

export function OrderBoard() {
  const [orders, setOrders] = useState<Record<string, { status: string; at: string }>>({});
  useEvent('order:status_changed', (p) => setOrders((o) => ({ ...o, [p.orderId]: { status: p.newStatus, at: p.timestamp } })));
  const ids = Object.keys(orders).sort();
  if (ids.length === 0) return <p className="empty">No order changes yet.</p>;
  return (
    <table className="orders">
      <tbody>
        {ids.map((id) => (
          <tr key={id} data-testid={`order-${id}`} data-status={orders[id].status}>
            <td>#{id}</td>
            <td className={`pill ${orders[id].status}`}>{orders[id].status}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
