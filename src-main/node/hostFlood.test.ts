/**
 * The browser host under a flood, as a separate process (the bundled host, as `npm run web`
 * starts it): 200 exhaustive runs at once, twice, with 40 event streams opened that never read.
 * The runs queue and all cancel, at most 16 streams are accepted, other requests are answered
 * while the runs queue, and memory comes back down after each round instead of climbing.
 * (Figures are printed, not asserted as times: responsiveness is measured by the bench.)
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import type { Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const ROOT = path.resolve(__dirname, '..', '..')
const COW = readFileSync(path.join(ROOT, 'scenarios', 'cow-ordering.invalidate-range-needed.yaml'), 'utf8')
const linux = process.platform === 'linux'

let child: ChildProcessByStdio<null, Readable, null> | null = null
let port = 0
let token = ''
let rendererDir = ''

/** Resident and peak resident memory of the host process, in MB (Linux /proc). */
function memory(): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${child!.pid}/status`, 'utf8')
  const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)![1])
  return { rss: Math.round(kb('VmRSS') / 1024), hwm: Math.round(kb('VmHWM') / 1024) }
}

function api(method: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body)
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: `/api/${method}`,
        method: 'POST',
        headers: {
          host: `127.0.0.1:${port}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(data),
          'x-lab-token': token,
        },
      },
      (res) => {
        let b = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => (b += c))
        res.on('end', () => resolve({ status: res.statusCode!, body: b }))
      },
    )
    req.on('error', reject)
    req.end(data)
  })
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

beforeAll(async () => {
  if (!linux) return
  rendererDir = mkdtempSync(path.join(os.tmpdir(), 'mnlab-flood-renderer-'))
  writeFileSync(
    path.join(rendererDir, 'index.html'),
    '<!doctype html><html><head></head><body></body></html>',
  )
  const script = `require(${JSON.stringify(path.join(ROOT, 'bin', 'build.cjs'))}).loadBundle('web').runWeb(['--port', '0', '--scenarios', ${JSON.stringify(path.join(ROOT, 'scenarios'))}], ${JSON.stringify(rendererDir)})`
  child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    child!.stdout.on('data', (d: Buffer) => {
      out += String(d)
      const m = /http:\/\/\S+/.exec(out)
      if (m) resolve(m[0])
    })
    child!.on('exit', (code) =>
      reject(new Error(`the host exited (${code}) before printing its URL: ${out}`)),
    )
  })
  const u = new URL(url)
  port = Number(u.port)
  token = u.searchParams.get('token')!
}, 60_000)

afterAll(() => {
  child?.kill()
  if (rendererDir) rmSync(rendererDir, { recursive: true, force: true })
})

describe('the browser host under a flood', () => {
  if (!linux)
    process.stdout.write("host flood test skipped: it reads the host's memory from /proc (Linux only)\n")
  it.skipIf(!linux)(
    '200 runs twice and 40 unread event streams: runs queue and cancel, 16 streams at most, other requests answered, memory comes back',
    async () => {
      const streams: http.ClientRequest[] = []
      const statuses: number[] = []
      for (let i = 0; i < 40; i++) {
        const req = http.get(
          {
            host: '127.0.0.1',
            port,
            path: `/api/events?token=${token}`,
            headers: { host: `127.0.0.1:${port}` },
          },
          (res) => {
            statuses.push(res.statusCode!)
            res.pause()
          },
        )
        req.on('error', () => {})
        streams.push(req)
      }
      const base = memory()
      const rounds: Array<{ peak: number; after: number }> = []
      for (let round = 0; round < 2; round++) {
        const started = await Promise.all(
          Array.from({ length: 200 }, () =>
            api('startRun', {
              text: COW,
              file: 'cow.yaml',
              policies: ['all'],
              mode: 'exhaustive',
              seed: 1,
              executions: 1,
              schedule: [],
              maxStates: 2_000_000,
              timeoutMs: 600_000,
            }),
          ),
        )
        expect(started.map((r) => r.status)).toEqual(started.map(() => 200))
        let peak = memory().rss
        // While 200 runs queue, the host answers other requests (each listing names the catalogue).
        for (let i = 0; i < 10; i++) {
          const r = await api('listScenarios', {})
          expect(r.status).toBe(200)
          expect(r.body).toContain('cow-ordering.invalidate-range-needed.yaml')
          peak = Math.max(peak, memory().rss)
          await sleep(200)
        }
        const ids = started.map((r) => (JSON.parse(r.body) as { result: string }).result)
        const cancelled = await Promise.all(ids.map((runId) => api('cancelRun', { runId })))
        expect(cancelled.map((r) => r.status)).toEqual(ids.map(() => 200))
        await sleep(3000)
        rounds.push({ peak, after: memory().rss })
      }
      for (const s of streams) s.destroy()
      expect(statuses.filter((s) => s === 200)).toHaveLength(16)
      expect(statuses).toHaveLength(40)
      process.stdout.write(
        `host flood: baseline ${base.rss} MB; ${rounds.map((r, i) => `round ${i + 1}: peak ${r.peak} MB, after cancel ${r.after} MB`).join('; ')}; peak ${memory().hwm} MB\n`,
      )
      // Memory comes back after each round (the workers' heaps are released with their runs),
      // and the second round does not start from where the first one peaked.
      for (const r of rounds) expect(r.after).toBeLessThan(r.peak)
      expect(rounds[1]!.after).toBeLessThan(rounds[0]!.peak)
    },
    120_000,
  )
})
