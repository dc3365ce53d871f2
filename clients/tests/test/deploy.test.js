// The deploy/ assets are checked against a live node, so a renamed metric
// or a typo in a query fails here, not on an operator's dashboard:
// - deploy/grafana/switchyard.json parses, and every metric its PromQL names
//   is exposed by a fresh node (no traffic);
// - deploy/prometheus/alerts.yml passes `promtool check rules` (Debian's
//   prometheus package, installed by scripts/test.sh) and every metric its
//   expressions name exists on that node. Only when scripts/test.sh could not
//   install promtool (SY_NO_PROMTOOL=1, printed loudly there) does a
//   structure check stand in for it;
// - deploy/nginx/switchyard.conf passes `nginx -t` (it also runs for real in
//   loadbalancer.test.js);
// - deploy/systemd/switchyard.service has what a node needs, and passes
//   `systemd-analyze verify` where systemd is installed.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { REPO_ROOT, binaryPath, cleanup, it, startServer } from './helpers.js';
import { checkConfig, prepare } from './nginx.js';

const DEPLOY = path.join(REPO_ROOT, 'deploy');
/** Series Prometheus makes itself rather than scraping them. */
const SYNTHETIC = new Set(['up']);
const PROMQL_WORDS = new Set([
  'and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset',
  'inf', 'nan',
]);

let exposed; // sample names a fresh node exposes (with _bucket/_sum/_count)

before(async () => {
  const server = await startServer({}, { name: 'fresh-node' });
  const res = await fetch(`${server.url}/metrics`);
  assert.equal(res.status, 200);
  const text = await res.text();
  exposed = new Set(
    text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(/[{ ]/)[0]),
  );
});

after(cleanup);

/**
 * The metric names a PromQL expression reads: identifiers that are not
 * functions (followed by `(`), keywords, label names (in `{}` or in
 * by/without/on/ignoring lists), durations or Grafana variables.
 */
export function metricNames(expr) {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // strings
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges and subqueries
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // label lists
    .replace(/\$\{?\w+\}?/g, ' '); // Grafana variables
  const names = new Set();
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const after = stripped.slice(m.index + m[0].length).trimStart();
    if (after.startsWith('(')) continue; // a function or aggregation
    if (PROMQL_WORDS.has(m[0].toLowerCase())) continue;
    if (/^\d/.test(stripped.slice(m.index - 1, m.index))) continue; // 1e6, 5m
    names.add(m[0]);
  }
  return [...names];
}

/** `expr:` values of a rules file: single-line or `|` block scalars. */
function alertExprs(yaml) {
  const exprs = [];
  const lines = yaml.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    const m = lines[i].match(/^(\s*)expr:\s*(.*)$/);
    if (!m) continue;
    if (m[2] !== '|' && m[2] !== '>') {
      exprs.push(m[2]);
      continue;
    }
    const block = [];
    while (i + 1 < lines.length && (lines[i + 1].trim() === '' || lines[i + 1].search(/\S/) > m[1].length)) {
      block.push(lines[i + 1]);
      i += 1;
    }
    exprs.push(block.join('\n'));
  }
  return exprs;
}

function assertExposed(where, exprs) {
  assert.ok(exprs.length > 0, `no expressions found in ${where}`);
  for (const expr of exprs) {
    const names = metricNames(expr);
    assert.ok(names.length > 0, `${where}: no metric in ${expr}`);
    for (const name of names) {
      if (SYNTHETIC.has(name)) continue;
      assert.ok(exposed.has(name), `${where}: ${name} (in ${expr}) is not exposed by a fresh node`);
    }
  }
}

describe('deploy/ assets', () => {
  it('the PromQL name extraction finds metrics and nothing else', () => {
    assert.deepEqual(
      metricNames('histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y",z=~"$i"}[5m]))) > 60 and sum(rate(b_count[15m])) > 1e6'),
      ['a_bucket', 'b_count'],
    );
    assert.deepEqual(metricNames('c{state="in_use"} / on (instance, pool) d'), ['c', 'd']);
  });

  it('Grafana dashboard: valid JSON, every panel queries metrics a fresh node exposes', () => {
    const dash = JSON.parse(fs.readFileSync(path.join(DEPLOY, 'grafana', 'switchyard.json'), 'utf8'));
    assert.equal(typeof dash.title, 'string');
    const panels = dash.panels.filter((p) => p.type !== 'row');
    assert.ok(panels.length >= 10, `${panels.length} panels`);
    const exprs = panels.flatMap((p) => p.targets.map((t) => t.expr));
    assertExposed('grafana', exprs);
    const text = JSON.stringify(dash);
    for (const needed of [
      'websocket_active_connections', 'websocket_messages_total', 'websocket_message_latency_seconds_bucket',
      'websocket_replayed_messages_total', 'websocket_conflicts_total', 'websocket_refused_total',
      'websocket_slow_consumer_disconnects_total', 'websocket_db_errors_total', 'websocket_redis_errors_total',
      'switchyard_db_pool_connections',
    ]) {
      assert.ok(text.includes(needed), `the dashboard shows ${needed}`);
    }
  });

  it('Prometheus alert rules: promtool check rules, and every metric exists on a fresh node', () => {
    const file = path.join(DEPLOY, 'prometheus', 'alerts.yml');
    const yaml = fs.readFileSync(file, 'utf8');
    if (process.env.SY_NO_PROMTOOL === '1') {
      process.stderr.write('\n*** deploy.test.js: promtool NOT available (SY_NO_PROMTOOL=1): structure check only ***\n');
      assert.match(yaml, /^groups:\n/);
      for (const key of ['- alert:', 'expr:', 'labels:', 'severity:', 'annotations:', 'summary:']) {
        assert.ok(yaml.includes(key), `alerts.yml has ${key}`);
      }
      assert.equal((yaml.match(/- alert:/g) || []).length, (yaml.match(/^\s+expr:/gm) || []).length);
    } else {
      const out = execFileSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
      assert.match(out, /SUCCESS: \d+ rules found/, out);
    }
    const alerts = [...yaml.matchAll(/- alert: (\w+)/g)].map((m) => m[1]);
    for (const a of ['SwitchyardNodeDown', 'SwitchyardDegraded', 'SwitchyardDatabaseErrors', 'SwitchyardRedisErrors',
      'SwitchyardRefusalsSpike', 'SwitchyardSlowConsumers', 'SwitchyardReplayLagHigh', 'SwitchyardDatabasePoolSaturated']) {
      assert.ok(alerts.includes(a), `alerts.yml has ${a}`);
    }
    assertExposed('alerts.yml', alertExprs(yaml));
  });

  it('nginx configuration: nginx -t, WebSocket upgrade, sticky sessions, timeouts above the ping interval', async () => {
    const text = fs.readFileSync(path.join(DEPLOY, 'nginx', 'switchyard.conf'), 'utf8');
    assert.match(text, /^\s*ip_hash;/m, 'long-polling needs sticky sessions');
    assert.match(text, /proxy_set_header Upgrade \$http_upgrade;/);
    assert.match(text, /proxy_http_version 1\.1;/);
    const read = Number(text.match(/proxy_read_timeout (\d+)s;/)[1]);
    assert.ok(read > 25 + 20, `proxy_read_timeout ${read}s must exceed WS_PING_INTERVAL + WS_PING_TIMEOUT (45 s)`);
    assert.match(text, /location \/health\//);
    // A location with a proxy_set_header of its own inherits none of the
    // server's: X-Forwarded-For (TRUSTED_PROXIES) and Host would be lost.
    assert.match(text, /proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;/);
    const code = text.replace(/#.*$/gm, '');
    const locations = code.match(/location[^{]*\{[^}]*\}/g) || [];
    assert.ok(locations.length >= 5, `${locations.length} location blocks found`);
    for (const block of locations) {
      assert.doesNotMatch(block, /proxy_set_header/, `proxy_set_header inside ${block.split('\n')[0]}`);
    }
    checkConfig(await prepare(['127.0.0.1:1', '127.0.0.1:2']));
  });

  it('systemd unit: descriptor limit, restart, SIGTERM with a stop timeout above SHUTDOWN_GRACE', () => {
    const unit = fs.readFileSync(path.join(DEPLOY, 'systemd', 'switchyard.service'), 'utf8');
    const value = (key) => (unit.match(new RegExp(`^${key}=(.*)$`, 'm')) || [])[1];
    assert.ok(Number(value('LimitNOFILE')) >= 65536, 'LimitNOFILE raised');
    assert.equal(value('Restart'), 'on-failure');
    assert.equal(value('KillSignal'), 'SIGTERM');
    const stop = Number(value('TimeoutStopSec').replace(/s$/, ''));
    assert.ok(stop > 10, `TimeoutStopSec ${stop}s must exceed SHUTDOWN_GRACE (10 s default)`);
    assert.ok(value('EnvironmentFile'), 'EnvironmentFile');
    assert.match(value('ExecStart'), /switchyard serve$/);
    let analyze = null;
    try {
      analyze = execFileSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).trim();
    } catch {
      process.stderr.write('\n*** deploy.test.js: systemd-analyze not installed: unit checked by its keys only ***\n');
    }
    if (analyze) {
      // The unit as installed, with ExecStart pointing at the built binary.
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sy-unit-'));
      const copy = path.join(dir, 'switchyard.service');
      fs.writeFileSync(copy, unit.replace(/^ExecStart=\S+/m, `ExecStart=${binaryPath()}`));
      const out = execFileSync(analyze, ['verify', copy], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      assert.doesNotMatch(out, /error|invalid/i, out);
    }
  });
});
