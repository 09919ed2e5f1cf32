/**
 * The browser host: a node:http server on 127.0.0.1 that serves the built renderer and the
 * LabApi over HTTP, for machines without an Electron binary (and for the e2e tests).
 *
 *   POST /api/<method>          JSON request -> 200 {ok:true,result} | 400 {ok:false,error:{message,issues?}}
 *   GET  /api/events?token=...  server-sent events: one `data: <RunEvent JSON>` per event
 *   GET  /?token=...            index.html, with the token in <meta name="lab-token">
 *   GET  /<asset>               the built renderer's files
 *
 * Guards: a per-launch random token on every /api request (the x-lab-token header; ?token= only
 * for the read-only event stream, as EventSource cannot set headers) and on the HTML page (it
 * embeds the token, and the page then drops it from the address bar); a Host header that must
 * name this server exactly (DNS rebinding); Origin and Sec-Fetch-Site, when a browser sends
 * them, must be this server's own (another site's page cannot start runs or write files even
 * with the token); API calls only as application/json (a plain form cannot send that); no CORS
 * headers at all, so other origins cannot read replies; bodies over 2 MiB get a 413; at most 16
 * event streams, each closed when 1 MiB of events waits for a reader that does not read.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { promises as fs } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { API_METHODS, type ApiMethod, type RunEvent } from '../api/labApi'
import { createLabService, LabApiError, toApiError, type LabService } from './labService'
import { COMMON_HEADERS, rendererFile, rendererHeaders } from './rendererFiles'
import { WorkerPool } from './workerPool'

export interface HostOptions {
  /** 0 picks any free port. */
  readonly port: number
  readonly scenariosDir: string
  readonly rendererDir: string
  /** For tests: a service to serve instead of a fresh one (the host then closes it too). */
  readonly service?: LabService
  /** Heartbeat comment interval on the event stream (default 15 s). */
  readonly heartbeatMs?: number
  /** Recovery area and recent list (default: the user's, see createLabService). */
  readonly dataDir?: string
}

export interface Host {
  readonly url: string
  readonly port: number
  readonly token: string
  close(): Promise<void>
}

export const BODY_LIMIT = 2 * 1024 * 1024
const MISSING_TOKEN =
  'bad or missing token: open the full URL that the lab printed at start-up (it ends with ?token=...)'
/** How long an oversized body may take to arrive (and be dropped) before the 413. */
const DRAIN_MS = 5_000
/** Event streams open at once (a tab holds one). */
const MAX_STREAMS = 16
/** Bytes of events that may wait for a stream's reader before the stream is closed. */
const STREAM_BUFFER = 1024 * 1024

function sameToken(a: string | null | undefined, token: string): boolean {
  if (typeof a !== 'string') return false
  const x = Buffer.from(a)
  const y = Buffer.from(token)
  return x.length === y.length && timingSafeEqual(x, y)
}

function send(res: http.ServerResponse, status: number, body: string, type: string): void {
  res.writeHead(status, {
    ...COMMON_HEADERS,
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  })
  res.end(body)
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  send(res, status, JSON.stringify(value), 'application/json; charset=utf-8')
}

class BodyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

/**
 * Reads a request body of at most BODY_LIMIT bytes. A larger one (declared or sent) is read to
 * its end and dropped, then answered 413: answering while the client still sends would reset
 * the connection and the client would never see the status. A client that keeps sending past
 * DRAIN_MS is cut off.
 */
function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const tooLarge = (): BodyError => new BodyError(413, `request body over ${BODY_LIMIT} bytes`)
    const chunks: Buffer[] = []
    let size = 0
    let over = Number(req.headers['content-length'] ?? 0) > BODY_LIMIT
    let settled = false
    const timer = setTimeout(() => {
      if (settled || !over) return
      settled = true
      reject(tooLarge())
      req.destroy()
    }, DRAIN_MS)
    timer.unref()
    req.on('data', (c: Buffer) => {
      if (over) return
      size += c.length
      if (size > BODY_LIMIT) {
        over = true
        chunks.length = 0
        return
      }
      chunks.push(c)
    })
    req.on('end', () => {
      clearTimeout(timer)
      if (settled) return
      settled = true
      if (over) reject(tooLarge())
      else resolve(Buffer.concat(chunks).toString('utf8'))
    })
    req.on('error', (e) => {
      clearTimeout(timer)
      if (settled) return
      settled = true
      reject(e)
    })
  })
}

export async function startHost(options: HostOptions): Promise<Host> {
  const rendererDir = await fs.realpath(path.resolve(options.rendererDir))
  const service =
    options.service ??
    createLabService({ scenariosDir: options.scenariosDir, pool: new WorkerPool(), dataDir: options.dataDir })
  const token = randomBytes(24).toString('hex')
  const heartbeatMs = options.heartbeatMs ?? 15_000
  const streams = new Set<http.ServerResponse>()
  let port = 0

  const hostAllowed = (req: http.IncomingMessage): boolean => {
    const h = req.headers.host
    return h === `127.0.0.1:${port}` || h === `localhost:${port}`
  }
  /**
   * A request from another site (a page on the web, another local port) is refused even with
   * the token: the browser says where it comes from in Origin and Sec-Fetch-Site. Requests
   * without them (curl, the CLI's tests) carry no browser context to forge.
   */
  const crossSite = (req: http.IncomingMessage): string | null => {
    const origin = req.headers.origin
    if (
      origin !== undefined &&
      origin !== `http://127.0.0.1:${port}` &&
      origin !== `http://localhost:${port}`
    )
      return `requests from ${origin.slice(0, 100)} are not accepted`
    const site = req.headers['sec-fetch-site']
    if (site !== undefined && site !== 'same-origin' && site !== 'none')
      return `cross-site requests (Sec-Fetch-Site: ${String(site).slice(0, 40)}) are not accepted`
    return null
  }

  const handleEvents = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (streams.size >= MAX_STREAMS)
      return sendJson(res, 503, {
        ok: false,
        error: { message: `too many event streams open (${MAX_STREAMS}); close another tab` },
      })
    res.writeHead(200, {
      ...COMMON_HEADERS,
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
    })
    res.write(': connected\n\n')
    streams.add(res)
    // A reader that does not read: once STREAM_BUFFER bytes wait for it, the stream is closed
    // (an EventSource reconnects), instead of buffering events without bound.
    const write = (chunk: string): void => {
      if (res.writableLength > STREAM_BUFFER) {
        res.destroy()
        return
      }
      res.write(chunk)
    }
    const unsubscribe = service.onDidRunEvent((e: RunEvent) => write(`data: ${JSON.stringify(e)}\n\n`))
    const beat = setInterval(() => write(': heartbeat\n\n'), heartbeatMs)
    beat.unref()
    const done = (): void => {
      clearInterval(beat)
      unsubscribe()
      streams.delete(res)
    }
    req.on('close', done)
    res.on('close', done)
  }

  const handleApi = async (req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> => {
    const refused = crossSite(req)
    if (refused) return sendJson(res, 403, { ok: false, error: { message: refused } })
    const method = url.pathname.slice('/api/'.length)
    const given = req.headers['x-lab-token']
    if (method === 'events') {
      // EventSource cannot set headers: the event stream (read-only) takes ?token= as well.
      const supplied = typeof given === 'string' ? given : url.searchParams.get('token')
      if (!sameToken(supplied, token))
        return sendJson(res, 403, { ok: false, error: { message: MISSING_TOKEN } })
      if (req.method !== 'GET') return sendJson(res, 405, { ok: false, error: { message: 'use GET' } })
      return handleEvents(req, res)
    }
    // Everything else may change files or start work: the token only in its header (never a
    // URL that could leak through a log or Referer), and a JSON body (a plain HTML form cannot
    // send one).
    if (!sameToken(typeof given === 'string' ? given : null, token))
      return sendJson(res, 403, { ok: false, error: { message: MISSING_TOKEN } })
    if (!Object.prototype.hasOwnProperty.call(API_METHODS, method))
      return sendJson(res, 404, { ok: false, error: { message: `unknown API method '${method}'` } })
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST')
      return sendJson(res, 405, { ok: false, error: { message: 'use POST' } })
    }
    const type = String(req.headers['content-type'] ?? '')
    if (!/^application\/json\s*(;|$)/i.test(type)) {
      req.resume()
      return sendJson(res, 415, { ok: false, error: { message: 'send the request as application/json' } })
    }
    let arg: unknown
    try {
      const body = await readBody(req)
      arg = body.trim() === '' ? undefined : JSON.parse(body)
    } catch (e) {
      if (e instanceof BodyError) return sendJson(res, e.status, { ok: false, error: { message: e.message } })
      return sendJson(res, 400, {
        ok: false,
        error: { message: `request body is not JSON: ${(e as Error).message}` },
      })
    }
    const fn = service[method as ApiMethod] as (a: unknown) => Promise<unknown>
    try {
      const result = await fn(arg)
      sendJson(res, 200, { ok: true, result: result ?? null })
    } catch (e) {
      sendJson(res, e instanceof LabApiError ? 400 : 500, { ok: false, error: toApiError(e) })
    }
  }

  const handleStatic = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
  ): Promise<void> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD')
      return send(res, 405, 'method not allowed\n', 'text/plain; charset=utf-8')
    }
    const f = await rendererFile(rendererDir, url.pathname)
    if (!f) return send(res, 404, 'not found\n', 'text/plain; charset=utf-8')
    const headers = rendererHeaders(f)
    let body: Buffer
    if (f.rel === 'index.html') {
      // Only a holder of the token gets a page with the token in it. Without it, the page comes
      // bare: a tab that had the token keeps it (sessionStorage) across a reload, since the page
      // drops it from the address bar; any other gets 403s from the API that say what to open.
      const html = await fs.readFile(f.file, 'utf8')
      if (sameToken(url.searchParams.get('token'), token)) {
        const meta = `<meta name="lab-token" content="${token}">`
        const injected = /<head[^>]*>/i.test(html)
          ? html.replace(/<head[^>]*>/i, (m) => `${m}\n    ${meta}`)
          : meta + html
        body = Buffer.from(injected)
      } else body = Buffer.from(html)
    } else {
      body = await fs.readFile(f.file)
    }
    headers['Content-Length'] = String(body.length)
    res.writeHead(200, headers)
    res.end(req.method === 'HEAD' ? undefined : body)
  }

  const server = http.createServer((req, res) => {
    if (!hostAllowed(req)) return send(res, 403, 'forbidden host\n', 'text/plain; charset=utf-8')
    let url: URL
    try {
      url = new URL(req.url ?? '/', `http://127.0.0.1:${port}`)
    } catch {
      return send(res, 400, 'bad request\n', 'text/plain; charset=utf-8')
    }
    const work =
      url.pathname === '/api' || url.pathname.startsWith('/api/')
        ? handleApi(req, res, url)
        : handleStatic(req, res, url)
    work.catch((e: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { ok: false, error: toApiError(e) })
      else res.destroy()
    })
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  port = (server.address() as AddressInfo).port
  const url = `http://127.0.0.1:${port}/?token=${token}`

  let closing: Promise<void> | null = null
  return {
    url,
    port,
    token,
    close() {
      closing ??= (async () => {
        for (const s of streams) s.end()
        streams.clear()
        await new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        })
        await service.close()
      })()
      return closing
    },
  }
}
