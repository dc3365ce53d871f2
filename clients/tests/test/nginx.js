// nginx as a child process for the load-balancer suite: the checked-in
// deploy/nginx/switchyard.conf, with only its listen port and upstream
// addresses replaced, wrapped in a main configuration whose pid, logs and
// temp paths live in a temp directory. Started in the foreground (daemon
// off), stopped by its pid. nginx must be installed (scripts/test.sh installs
// Debian's package); there is no fallback.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, freePort, sleep, tcpReachable } from './helpers.js';

export const SITE_CONF = path.join(REPO_ROOT, 'deploy', 'nginx', 'switchyard.conf');

export function nginxBinary() {
  for (const p of ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx']) {
    if (fs.existsSync(p)) return p;
  }
  throw new Error('nginx is not installed: scripts/test.sh installs it (apt-get install -y nginx); this suite does not skip');
}

/** deploy/nginx/switchyard.conf for `port` in front of `upstreams` ("127.0.0.1:1234"). */
export function siteConfig(port, upstreams) {
  const text = fs.readFileSync(SITE_CONF, 'utf8');
  const servers = /^(\s*)server\s+\S+:\d+(\s[^;]*)?;\s*$/gm;
  const originals = text.match(servers) || [];
  if (originals.length === 0) throw new Error(`no upstream server lines in ${SITE_CONF}`);
  let i = 0;
  const withUpstreams = text.replace(servers, (_line, indent, params = '') => {
    // The first original line's slot takes every test node; the rest go.
    if (i++ > 0) return '';
    return upstreams.map((u) => `${indent}server ${u}${params};`).join('\n');
  });
  const listen = /^(\s*)listen\s+80;\s*$/m;
  if (!listen.test(withUpstreams)) throw new Error(`no "listen 80;" line in ${SITE_CONF}`);
  return withUpstreams.replace(listen, `$1listen 127.0.0.1:${port};`);
}

function mainConfig(dir, site) {
  const user = process.getuid && process.getuid() === 0 ? 'user root;\n' : '';
  return `${user}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 1024; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  include ${dir}/switchyard.conf;
}
`;
}

/** Writes the configuration to a temp dir; returns { dir, conf, port }. */
export async function prepare(upstreams) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sy-nginx-'));
  fs.writeFileSync(path.join(dir, 'switchyard.conf'), siteConfig(port, upstreams));
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, mainConfig(dir, 'switchyard.conf'));
  return { dir, conf, port };
}

/** `nginx -t` on a prepared configuration: throws with nginx's output on error. */
export function checkConfig({ dir, conf }) {
  return execFileSync(nginxBinary(), ['-t', '-p', dir, '-c', conf], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Starts nginx in the foreground in front of `upstreams`; resolves once it listens. */
export async function startNginx(upstreams) {
  const prepared = await prepare(upstreams);
  const { dir, conf, port } = prepared;
  const proc = spawn(nginxBinary(), ['-p', dir, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (c) => { out += c; });
  proc.stderr.on('data', (c) => { out += c; });
  let exited = null;
  const exit = new Promise((resolve) => proc.once('exit', (code, signal) => { exited = { code, signal }; resolve(exited); }));
  const logs = () => {
    const read = (f) => { try { return fs.readFileSync(path.join(dir, f), 'utf8').slice(-6000); } catch { return ''; } };
    return `--- nginx output ---\n${out}\n--- nginx error.log ---\n${read('error.log')}`;
  };
  const stop = async () => {
    if (!exited) {
      proc.kill('SIGTERM');
      const done = await Promise.race([exit, sleep(5000).then(() => null)]);
      if (!done) {
        proc.kill('SIGKILL');
        await exit;
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', () => { try { proc.kill('SIGKILL'); } catch { /* gone */ } });
  const deadline = Date.now() + 10000;
  while (!(await tcpReachable('127.0.0.1', port, 500))) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`nginx did not start on port ${port}\n${logs()}`);
    }
    await sleep(50);
  }
  return { url: `http://127.0.0.1:${port}`, port, dir, proc, logs, stop };
}
