// Private Postgres and Redis instances for fault tests: the shared services are
// never stopped or restarted. Each instance lives in a temp dir on a free port
// and is removed by stop(); a process exit handler kills what is left.
//
// Postgres: initdb + pg_ctl as the `postgres` OS user (initdb refuses root),
// trust auth, fsync off, listening on 127.0.0.1 only.
// Redis: redis-server --save "" --appendonly no on 127.0.0.1.

import { execFile, execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, sleep, tcpReachable } from './helpers.js';

const PG_BIN = process.env.SY_TEST_PG_BIN || '/usr/lib/postgresql/15/bin';
const running = new Set();

const run = promisify(execFile);

// Asynchronous, so that clients in the same process keep answering heartbeats.
function asPostgres(args) {
  return run('runuser', ['-u', 'postgres', '--', ...args], { timeout: 60000 });
}

async function waitReachable(port, up, ms, what) {
  const deadline = Date.now() + ms;
  while ((await tcpReachable('127.0.0.1', port, 500)) !== up) {
    if (Date.now() > deadline) throw new Error(`${what} on port ${port} did not ${up ? 'start' : 'stop'} within ${ms} ms`);
    await sleep(50);
  }
}

/** A private PostgreSQL cluster. Returns { url, port, stop(), start(), kill() }. */
export async function startPostgres() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sy-pg-'));
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  fs.chownSync(dir, uid, gid);
  const data = path.join(dir, 'data');
  await asPostgres([`${PG_BIN}/initdb`, '-D', data, '--auth=trust', '-U', 'postgres', '--no-sync']);
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200`;
  const pg = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async start() {
      await asPostgres([`${PG_BIN}/pg_ctl`, '-D', data, '-o', opts, '-l', path.join(dir, 'log'), '-w', '-t', '30', 'start']);
      await waitReachable(port, true, 10000, 'postgres');
    },
    /** Fast shutdown: sessions are terminated, new connections refused. */
    async stop() {
      try {
        await asPostgres([`${PG_BIN}/pg_ctl`, '-D', data, '-m', 'fast', '-w', '-t', '30', 'stop']);
      } catch {
        // already stopped
      }
      await waitReachable(port, false, 10000, 'postgres');
    },
    async remove() {
      running.delete(pg);
      await pg.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
    killNow() {
      try {
        execFileSync('runuser', ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, '-D', data, '-m', 'immediate', 'stop'], { stdio: 'ignore', timeout: 10000 });
      } catch {
        // gone
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  running.add(pg);
  await pg.start();
  return pg;
}

/** A private Redis. Returns { url, port, start(), stop(), cli(...args), remove() }. */
export async function startRedis() {
  const port = await freePort();
  let proc = null;
  const redis = {
    url: `redis://127.0.0.1:${port}`,
    port,
    async start() {
      proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
      await waitReachable(port, true, 10000, 'redis');
    },
    /** SIGKILL: connections drop at once, all subscriptions are gone. */
    async stop() {
      if (proc && proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGKILL');
        await exited;
      }
      proc = null;
      await waitReachable(port, false, 10000, 'redis');
    },
    async cli(...args) {
      return (await run('redis-cli', ['-p', String(port), ...args], { timeout: 10000 })).stdout.trim();
    },
    async remove() {
      running.delete(redis);
      await redis.stop();
    },
    killNow() {
      proc?.kill('SIGKILL');
    },
  };
  running.add(redis);
  await redis.start();
  return redis;
}

process.on('exit', () => {
  for (const s of running) {
    try {
      s.killNow();
    } catch {
      // best effort
    }
  }
});
