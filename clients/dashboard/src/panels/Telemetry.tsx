import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { useEvent } from '../hooks';

/** A live uPlot chart of one telemetry endpoint (room telemetry:{id}); redrawn at most once per frame. */
export function TelemetryChart({ endpoint }: { endpoint: number }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const data = useRef<[number[], number[]]>([[], []]);
  const frame = useRef(0);
  const count = useRef<HTMLSpanElement>(null);

  useEffect(() => {
    if (!box.current) return;
    plot.current = new uPlot(
      { width: box.current.clientWidth || 360, height: 160, legend: { show: false }, series: [{}, { stroke: '#2563eb', width: 2 }], axes: [{}, { size: 40 }] },
      data.current,
      box.current,
    );
    return () => {
      cancelAnimationFrame(frame.current);
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);

  useEvent(
    'telemetry',
    (p) => {
      const [xs, ys] = data.current;
      xs.push(Date.parse(p.timestamp) / 1000 || Date.now() / 1000);
      ys.push(Number(p.value));
      if (xs.length > 240) (xs.shift(), ys.shift());
      if (count.current) count.current.textContent = String(Number(count.current.textContent) + 1);
      cancelAnimationFrame(frame.current);
      frame.current = requestAnimationFrame(() => plot.current?.setData(data.current));
    },
    { room: `telemetry:${endpoint}` },
  );

  return (
    <div>
      <div ref={box} className="chart" />
      <p className="muted">
        readings: <span ref={count} data-testid="telemetry-count">0</span>
      </p>
    </div>
  );
}
