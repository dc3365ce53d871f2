#!/usr/bin/env python3
"""Turns bench/run.sh's results.jsonl into a Markdown table: every run of
both servers side by side, the ratio of the means (Switchyard / reference),
and each issue target met or missed (and by how much).

usage: summarize.py results.jsonl [more.jsonl ...] [machine.txt ...]

Several results files (passes of run.sh) are merged: the runs of the second
are numbered after those of the first, and so on.
"""
import json
import statistics
import sys

# point -> [(label, path into "results", target)]; a target is
# (kind, value): "ratio>=" ours/ref mean, "ours<=" / "ours>=" an absolute
# bound on our mean, "ours<=ref" our mean no worse than the reference's,
# "all-true" every run of ours true.
METRICS = {
    "connect": [
        ("connects/s", "connects_per_s", ("ratio>=", 5)),
        ("RSS per connection, KiB", "rss_per_conn_kib", ("ours<=", 12)),
        ("failed connections", "failed", None),
        ("connect latency p99, ms", "connect_latency.p99_ms", None),
        ("server CPU µs per connect", "server_cpu_us_per_connect", None),
        ("server CPU % while connecting", "cpu_during_connect.server_cpu_pct", None),
    ],
    "connect-presence": [
        ("connects/s, 10,000 in one company, presence on", "connects_per_s", ("ratio>=", 5)),
        ("RSS per connection, KiB", "rss_per_conn_kib", None),
        ("failed connections", "failed", None),
        ("connect latency p99, ms", "connect_latency.p99_ms", None),
        ("server CPU µs per connect", "server_cpu_us_per_connect", None),
    ],
    "storm": [
        ("time to all sessions, s", "time_to_all_sessions_s", ("ours<=", 10)),
        ("peak RSS / steady RSS", "rss_peak_over_steady", ("ours<=", 1.5)),
        ("failed reconnections", "failed", None),
        ("reconnect latency p99, ms", "reconnect_latency.p99_ms", None),
        ("server CPU µs per reconnect", "server_cpu_us_per_reconnect", None),
    ],
    "ack": [
        ("acks/s", "acks_per_s", None),
        ("ack p50, ms", "latency.p50_ms", None),
        ("ack p99, ms", "latency.p99_ms", ("ours<=ref", None)),
        ("ack max, ms", "latency.max_ms", None),
        ("server CPU µs per ack", "server_cpu_us_per_ack", None),
        ("server CPU %", "cpu.server_cpu_pct", None),
        ("load generator CPU %", "cpu.loadgen_cpu_pct", None),
    ],
    "ack-paced": [
        ("acks/s (offered 10,000)", "acks_per_s", None),
        ("ack p50, ms", "latency.p50_ms", None),
        ("ack p99, ms", "latency.p99_ms", ("ours<=ref", None)),
        ("ack max, ms", "latency.max_ms", None),
        ("server CPU µs per ack", "server_cpu_us_per_ack", None),
        ("server CPU %", "cpu.server_cpu_pct", None),
    ],
    "fanout": [
        ("deliveries/s (duplicates not counted)", "deliveries_per_s", ("ratio>=", 10)),
        ("publishes/s", "publishes_per_s", None),
        ("lost deliveries", "lost", None),
        ("duplicated deliveries", "duplicates", None),
        ("publishes never acknowledged", "unacked", None),
        ("delivery p50, ms", "latency.p50_ms", None),
        ("delivery p99, ms", "latency.p99_ms", None),
        ("server CPU µs per delivery", "server_cpu_us_per_delivery", None),
        ("server CPU %", "cpu.server_cpu_pct", None),
        ("load generator CPU %", "cpu.loadgen_cpu_pct", None),
    ],
    "fanout-paced": [
        ("deliveries/s (offered 50,450)", "deliveries_per_s", None),
        ("lost deliveries", "lost", None),
        ("duplicated deliveries", "duplicates", None),
        ("delivery p50, ms", "latency.p50_ms", None),
        ("delivery p99, ms", "latency.p99_ms", None),
        ("server CPU µs per delivery", "server_cpu_us_per_delivery", None),
        ("server CPU %", "cpu.server_cpu_pct", None),
    ],
    "durable-socket": [
        ("events/s (reference: not durable)", "events_per_s", ("ours>=", 10000)),
        ("offsets gapless", "offsets.gapless", ("all-true", None)),
        ("publish->delivery p99, ms", "latency.p99_ms", None),
        ("publish->ack p99, ms", "ack_latency.p99_ms", None),
        ("server CPU µs per event", "server_cpu_us_per_event", None),
        ("server CPU %", "cpu.server_cpu_pct", None),
    ],
    "durable-rooms": [
        ("events/s, 10 rooms (reference: not durable)", "events_per_s", ("ours>=", 10000)),
        ("offsets gapless", "offsets.gapless", ("all-true", None)),
        ("publish->delivery p99, ms", "latency.p99_ms", None),
        ("server CPU µs per event", "server_cpu_us_per_event", None),
        ("server CPU %", "cpu.server_cpu_pct", None),
    ],
    "durable-http": [
        ("events/s", "events_per_s", ("ours>=", 10000)),
        ("offsets gapless", "offsets.gapless", ("all-true", None)),
        ("publish->delivery p99, ms", "latency.p99_ms", None),
        ("request p99, ms", "ack_latency.p99_ms", None),
        ("server CPU µs per event", "server_cpu_us_per_event", None),
        ("server CPU %", "cpu.server_cpu_pct", None),
    ],
    "durable-2k": [
        ("events/s offered 2,000", "events_per_s", None),
        ("publish->delivery p50, ms", "latency.p50_ms", None),
        ("publish->delivery p99, ms", "latency.p99_ms", ("ours<=", 50)),
        ("offsets gapless", "offsets.gapless", ("all-true", None)),
        ("server CPU %", "cpu.server_cpu_pct", None),
    ],
    "documents": [
        ("updates/s, one hot document", "updates_per_s", ("ours>=", 1000)),
        ("update ack p99, ms", "ack_latency.p99_ms", None),
        ("converged", "consistent", ("all-true", None)),
    ],
    "documents-spread": [
        ("updates/s over 1,000 documents", "updates_per_s", ("ours>=", 3000)),
        ("update ack p99, ms", "ack_latency.p99_ms", None),
        ("converged", "consistent", ("all-true", None)),
    ],
    "replay": [
        ("time to deliver all, s", "time_to_all_s", ("ours<=", 10)),
        ("delivered", "delivered", None),
        ("expected", "expected", None),
    ],
}


def get(d, path):
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def mean(vals):
    nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.mean(nums) if nums else None


def verdict(target, ours, ref):
    if target is None:
        return ""
    kind, bound = target
    m, r = mean(ours), mean(ref)
    if kind == "all-true":
        if not ours:
            return "no data"
        return "met" if all(v is True for v in ours) else "**missed**"
    if m is None:
        return "no data"
    if kind == "ratio>=":
        if r is None or r == 0:
            return "no reference"
        ratio = m / r
        return f"met (≥{bound}×)" if ratio >= bound else f"**missed**: {ratio:.2f}× of ≥{bound}×"
    if kind == "ours<=":
        return f"met (≤{bound})" if m <= bound else f"**missed** by {m - bound:.3g} ({m / bound:.2f}× the bound {bound})"
    if kind == "ours>=":
        return f"met (≥{bound:,})" if m >= bound else f"**missed**: {m:,.0f} = {m / bound:.0%} of {bound:,}"
    if kind == "ours<=ref":
        if r is None:
            return "no reference"
        return "met" if m <= r else f"**missed**: {m / r:.2f}× the reference"
    return ""


def main():
    rows, offset = [], 0
    for path in (a for a in sys.argv[1:] if a.endswith(".jsonl")):
        got = [json.loads(l) for l in open(path) if l.strip()]
        for r in got:
            r["run"] += offset
        offset = max((r["run"] for r in got), default=offset)
        rows += got
    for path in (a for a in sys.argv[1:] if a.endswith(".txt")):
        print("```")
        print(open(path).read().rstrip())
        print("```\n")
    # Columns: the most runs any point has for one server.
    per = {}
    for r in rows:
        key = (r["point"], r["result"].get("server"))
        per[key] = per.get(key, 0) + 1
    runs = max(per.values(), default=1)
    head = ["point", "metric"]
    head += [f"Switchyard #{i}" for i in range(1, runs + 1)]
    head += [f"Node #{i}" for i in range(1, runs + 1)]
    head += ["ratio (mean S / mean N)", "target"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    points = []
    for r in rows:
        if r["point"] not in points:
            points.append(r["point"])
    for point in points:
        def of(server):
            got = sorted((r for r in rows if r["point"] == point and r["result"].get("server") == server),
                         key=lambda r: r["run"])
            return got
        ours, ref = of("switchyard"), of("reference")
        for r in ours + ref:
            status = r["result"].get("status")
            if status != "ok":
                reason = get(r["result"], "results.reason") or ""
                print(f"| {point} | {r['result'].get('server')} run {r['run']}: **{status}** | "
                      + f"{reason[:160]} |" + " |" * (len(head) - 3))
        meter = "cpu"
        if point in ("connect", "connect-presence"):
            meter = "cpu_during_connect"
        elif point == "storm":
            meter = "cpu_during_storm"
        # What else the machine spent: interference on the server's core,
        # PostgreSQL's own CPU (Node's reference uses none), both cores' load.
        contention = [
            ("others' CPU on the server's core, %", f"{meter}.others_on_server_core_pct", None),
            ("PostgreSQL CPU, s", f"{meter}.database_cpu_s", None),
            ("whole machine busy, % of all cores", f"{meter}.machine_busy_pct", None),
        ]
        for label, path, target in METRICS.get(point, []) + contention:
            o = [get(r["result"].get("results", {}), path) for r in ours if r["result"].get("status") == "ok"]
            n = [get(r["result"].get("results", {}), path) for r in ref if r["result"].get("status") == "ok"]
            if not o and not n:
                continue
            cells = [point, label]
            cells += [fmt(o[i]) if i < len(o) else "" for i in range(runs)]
            cells += [fmt(n[i]) if i < len(n) else "" for i in range(runs)]
            mo, mn = mean(o), mean(n)
            cells.append(f"{mo / mn:.2f}×" if mo is not None and mn not in (None, 0) else "")
            cells.append(verdict(target, o, n))
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
