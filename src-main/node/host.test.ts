import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RunEvent } from '../api/labApi'
import { startHost, type Host } from './host'
import { createLabService } from './labService'
import { tsxWorker, WorkerPool } from './workerPool'

const SCENARIOS = path.join(__dirname, '../../scenarios')
const UPGRADE_TEXT = readFileSync(path.join(SCENARIOS, 'upgrade-loop.smmu-no-btm.yaml'), 'utf8')

interface Reply {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

let host: Host
let tmp: string

function request(
  method: string,
  pathAndQuery: string,
  opts: { headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: host.port,
        method,
        path: pathAndQuery,
        headers: { host: `127.0.0.1:${host.port}`, ...opts.headers },
      },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => (body += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      },
    )
    req.on('error', reject)
    req.end(opts.body)
  })
}

const api = (method: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> =>
  request('POST', `/api/${method}`, {
    headers: { 'x-lab-token': host.token, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })

/** Opens the event stream; resolves with its status once the headers arrive (the caller closes it). */
function openEvents(): Promise<{ req: http.ClientRequest; status: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      {
        host: '127.0.0.1',
        port: host.port,
        path: `/api/events?token=${host.token}`,
        headers: { host: `127.0.0.1:${host.port}` },
      },
      (res) => resolve({ req, status: res.statusCode ?? 0 }),
    )
    req.on('error', reject)
  })
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'lab-host-'))
  const renderer = path.join(tmp, 'renderer')
  mkdirSync(path.join(renderer, 'assets'), { recursive: true })
  writeFileSync(
    path.join(renderer, 'index.html'),
    '<!doctype html><html><head><title>t</title></head><body></body></html>',
  )
  writeFileSync(path.join(renderer, 'assets', 'a.js'), 'console.log(1)')
  writeFileSync(path.join(renderer, 'assets', 'm.wasm'), Buffer.from([0, 97, 115, 109]))
  writeFileSync(path.join(tmp, 'secret.txt'), 'secret')
  const scenarios = path.join(tmp, 'scenarios')
  mkdirSync(scenarios)
  writeFileSync(path.join(scenarios, 'upgrade.yaml'), UPGRADE_TEXT)
  host = await startHost({
    port: 0,
    scenariosDir: scenarios,
    rendererDir: renderer,
    service: createLabService({ scenariosDir: scenarios, pool: new WorkerPool(tsxWorker, 2) }),
  })
})

afterAll(async () => {
  await host.close()
  rmSync(tmp, { recursive: true, force: true })
})

describe('browser host', () => {
  it('listens on 127.0.0.1 and serves index.html with the token injected, under a CSP', async () => {
    expect(host.url).toBe(`http://127.0.0.1:${host.port}/?token=${host.token}`)
    expect(host.token).toMatch(/^[0-9a-f]{48}$/)
    const r = await request('GET', `/?token=${host.token}`)
    expect(r.status).toBe(200)
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(r.body).toContain(`<meta name="lab-token" content="${host.token}">`)
    expect(r.headers['content-security-policy']).toContain("default-src 'self'")
    expect(r.headers['content-security-policy']).toContain("worker-src 'self' blob:")
    // Without the token the page comes bare (a reloaded tab keeps its token in sessionStorage).
    const bare = await request('GET', '/')
    expect(bare.status).toBe(200)
    expect(bare.body).not.toContain(host.token)
    expect(bare.body).not.toContain('lab-token')
  })

  it('serves assets with their content types, and nothing outside the renderer folder', async () => {
    const js = await request('GET', '/assets/a.js')
    expect(js.status).toBe(200)
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8')
    expect((await request('GET', '/assets/m.wasm')).headers['content-type']).toBe('application/wasm')
    for (const p of [
      '/../secret.txt',
      '/assets/../../secret.txt',
      '/%2e%2e/secret.txt',
      '/assets/%2e%2e%2f%2e%2e%2fsecret.txt',
      '/assets',
      '/nope.js',
    ]) {
      const r = await request('GET', p)
      expect([403, 404]).toContain(r.status)
      expect(r.body).not.toContain('secret')
    }
  })

  it('refuses API calls without the token, or with a foreign Host header', async () => {
    const none = await request('POST', '/api/listScenarios', { body: '{}' })
    expect(none.status).toBe(403)
    expect((await api('listScenarios', {}, { 'x-lab-token': 'f'.repeat(48) })).status).toBe(403)
    const rebound = await api('listScenarios', {}, { host: `evil.example:${host.port}` })
    expect(rebound.status).toBe(403)
    expect(
      (await request('GET', `/?token=${host.token}`, { headers: { host: 'evil.example' } })).status,
    ).toBe(403)
    expect((await api('listScenarios', {}, { host: `localhost:${host.port}` })).status).toBe(200)
  })

  it('answers POST /api/<method> with {ok, result} or {ok:false, error}', async () => {
    const list = await api('listScenarios', {})
    expect(list.status).toBe(200)
    const body = JSON.parse(list.body) as { ok: boolean; result: Array<{ path: string }> }
    expect(body.ok).toBe(true)
    expect(body.result.map((e) => e.path)).toEqual(['upgrade.yaml'])

    const badJson = await api('validate', '{"text": ')
    expect(badJson.status).toBe(400)
    expect(JSON.parse(badJson.body)).toMatchObject({
      ok: false,
      error: { message: expect.stringMatching(/not JSON/) },
    })

    const invalid = await api('startRun', {
      text: 'title: t\nbogus: 1\n',
      file: null,
      policies: ['arch-hook'],
      mode: 'exhaustive',
      seed: 1,
      executions: 1,
      schedule: [],
      maxStates: 1000,
      timeoutMs: null,
    })
    expect(invalid.status).toBe(400)
    const err = JSON.parse(invalid.body) as { ok: false; error: { message: string; issues: unknown[] } }
    expect(err.error.issues.length).toBeGreaterThan(0)

    const badField = await api('readScenario', { path: 42 })
    expect(badField.status).toBe(400)
    expect(JSON.parse(badField.body).error.message).toMatch(/invalid path/)

    expect((await api('noSuchMethod', {})).status).toBe(404)
    expect((await api('__proto__', {})).status).toBe(404)
    expect(
      (await request('GET', '/api/listScenarios', { headers: { 'x-lab-token': host.token } })).status,
    ).toBe(405)
    const huge = await api('validate', { text: 'x'.repeat(3 * 1024 * 1024), file: null })
    expect(huge.status).toBe(413)
  })

  it('streams run events over server-sent events', async () => {
    const events: RunEvent[] = []
    // The run starts once the stream is open; its events may arrive before the POST's reply.
    let stream: http.IncomingMessage | null = null
    const finished = new Promise<RunEvent>((resolve, reject) => {
      const req = http.get(
        {
          host: '127.0.0.1',
          port: host.port,
          path: `/api/events?token=${host.token}`,
          headers: { host: `127.0.0.1:${host.port}` },
        },
        (res) => {
          stream = res
          expect(res.statusCode).toBe(200)
          expect(res.headers['content-type']).toMatch(/^text\/event-stream/)
          let buf = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => {
            buf += c
            let end: number
            while ((end = buf.indexOf('\n\n')) >= 0) {
              const frame = buf.slice(0, end)
              buf = buf.slice(end + 2)
              if (!frame.startsWith('data: ')) {
                if (frame === ': connected') started = startRun()
                continue
              }
              const e = JSON.parse(frame.slice('data: '.length)) as RunEvent
              events.push(e)
              if (e.kind === 'finished') resolve(e)
            }
          })
        },
      )
      req.on('error', reject)
    })
    let runId = ''
    let started: Promise<void> = Promise.resolve()
    const startRun = async (): Promise<void> => {
      const r = await api('startRun', {
        text: UPGRADE_TEXT,
        file: 'upgrade.yaml',
        policies: ['all'],
        mode: 'exhaustive',
        seed: 1,
        executions: 1,
        schedule: [],
        maxStates: 100000,
        timeoutMs: 60000,
      })
      expect(r.status).toBe(200)
      runId = (JSON.parse(r.body) as { result: string }).result
    }
    const fin = await finished
    ;(stream as http.IncomingMessage | null)?.destroy()
    expect(fin.kind === 'finished' && fin.result.results.map((x) => x.verdict)).toEqual([
      'violated',
      'violated',
      'holds',
    ])
    expect(events.some((e) => e.kind === 'progress')).toBe(true)
    await started
    expect(fin.runId).toBe(runId)
  })
})

describe('probes from another site or another process on this machine', () => {
  it('another origin, or a cross-site fetch, is refused even with the token', async () => {
    const probes: Array<Record<string, string>> = [
      { origin: 'https://evil.example' },
      { origin: `http://127.0.0.1:${host.port + 1}` },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
    ]
    for (const headers of probes) {
      const r = await api('saveScenario', { path: 'pwned.yaml', text: 'title: x\n' }, headers)
      expect(r.status, JSON.stringify(headers)).toBe(403)
    }
    expect(
      (
        await request('GET', `/api/events?token=${host.token}`, {
          headers: { origin: 'https://evil.example' },
        })
      ).status,
    ).toBe(403)
    // The page's own requests carry its origin and same-origin.
    const own = await api(
      'listScenarios',
      {},
      { origin: `http://127.0.0.1:${host.port}`, 'sec-fetch-site': 'same-origin' },
    )
    expect(own.status).toBe(200)
  })

  it('a form post (token in the query string, form-encoded) writes nothing', async () => {
    const r = await request('POST', `/api/saveScenario?token=${host.token}`, {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'path=pwned.yaml&text=x',
    })
    expect(r.status).toBe(403)
    const typed = await api('saveScenario', 'path=pwned.yaml', { 'content-type': 'text/plain' })
    expect(typed.status).toBe(415)
    const list = JSON.parse((await api('listScenarios', {})).body) as { result: Array<{ path: string }> }
    expect(list.result.map((e) => e.path)).not.toContain('pwned.yaml')
  })

  it('a body over the limit gets a 413 the client can read, even when it is declared up front', async () => {
    const big = 'x'.repeat(40 * 1024 * 1024)
    const r = await api('validate', big)
    expect(r.status).toBe(413)
    expect(JSON.parse(r.body)).toMatchObject({
      ok: false,
      error: { message: expect.stringMatching(/over 2097152 bytes/) },
    })
    // And the host still answers.
    expect((await api('listScenarios', {})).status).toBe(200)
  })

  it('at most 16 event streams; the 17th is refused, and a closed one frees its place', async () => {
    const open: http.ClientRequest[] = []
    const statuses: number[] = []
    for (let i = 0; i < 17; i++) {
      const { req, status } = await openEvents()
      open.push(req)
      statuses.push(status)
    }
    expect(statuses.slice(0, 16).every((s) => s === 200)).toBe(true)
    expect(statuses[16]).toBe(503)
    for (const r of open) r.destroy()
    await new Promise((r) => setTimeout(r, 100))
    const again = await openEvents()
    again.req.destroy()
    expect(again.status).toBe(200)
  })
})
