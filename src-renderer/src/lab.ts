/**
 * The renderer's one door to the lab services, and the only module that reads `window.lab`.
 * In Electron the preload exposes `window.lab` (one function per LabApi method). In a plain
 * browser (the browser host, `npm run web`) the same methods go over HTTP: POST /api/<method>
 * with a JSON body and the per-launch token; run events arrive over server-sent events.
 */
import type { ApiError, LabApi, RunEvent, Unsubscribe, ValidationIssue } from '../../src-main/api/labApi'

declare global {
  interface Window {
    lab?: LabApi
  }
}

/** An error from the lab services; `issues` locate problems in scenario text. */
export class LabError extends Error {
  readonly issues: readonly ValidationIssue[]
  constructor(message: string, issues: readonly ValidationIssue[] = []) {
    super(message)
    this.name = 'LabError'
    this.issues = issues
  }
}

/** Turns anything thrown by a LabApi call into a message and optional issues. */
export function toLabError(e: unknown): LabError {
  if (e instanceof LabError) return e
  if (e && typeof e === 'object') {
    const o = e as { message?: unknown; issues?: unknown }
    const msg = typeof o.message === 'string' ? o.message : String(e)
    // Electron wraps rejections as "Error invoking remote method 'lab:x': Error: msg".
    const clean = msg.replace(/^Error invoking remote method '[^']*': (?:\w*Error: )?/, '')
    return new LabError(clean, Array.isArray(o.issues) ? (o.issues as ValidationIssue[]) : [])
  }
  return new LabError(String(e))
}

/**
 * The browser host's per-launch token: from the page (which embeds it when opened with the
 * printed ?token= URL), kept for this tab in sessionStorage so that a reload works, and dropped
 * from the address bar so it does not linger in history or get copied along with the URL.
 */
function readToken(): string {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="lab-token"]')?.content ?? ''
  const url = new URL(window.location.href)
  const token =
    (meta && !meta.startsWith('%') ? meta : '') ||
    url.searchParams.get('token') ||
    sessionStorage.getItem('lab-token') ||
    ''
  if (token) sessionStorage.setItem('lab-token', token)
  if (url.searchParams.has('token')) {
    url.searchParams.delete('token')
    window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash)
  }
  return token
}

function httpLab(): LabApi {
  const token = readToken()
  async function call<T>(method: string, arg?: unknown): Promise<T> {
    let res: Response
    try {
      res = await fetch(`/api/${method}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-lab-token': token },
        body: JSON.stringify(arg ?? {}),
      })
    } catch (e) {
      throw new LabError(`The lab host is not reachable (${String(e)})`)
    }
    let body: { ok: boolean; result?: T; error?: ApiError }
    try {
      body = (await res.json()) as typeof body
    } catch {
      throw new LabError(`${method}: HTTP ${res.status} ${res.statusText}`)
    }
    if (!body.ok) {
      throw new LabError(body.error?.message ?? `${method} failed`, body.error?.issues ?? [])
    }
    return body.result as T
  }

  const listeners = new Set<(e: RunEvent) => void>()
  let source: EventSource | null = null
  function ensureSource(): void {
    if (source) return
    source = new EventSource(`/api/events?token=${encodeURIComponent(token)}`)
    source.onmessage = (m: MessageEvent<string>) => {
      let ev: RunEvent
      try {
        ev = JSON.parse(m.data) as RunEvent
      } catch {
        return
      }
      for (const l of [...listeners]) l(ev)
    }
  }

  return {
    engineInfo: () => call('engineInfo'),
    listScenarios: () => call('listScenarios'),
    readScenario: (req) => call('readScenario', req),
    saveScenario: (req) => call('saveScenario', req),
    validate: (req) => call('validate', req),
    startRun: (req) => call('startRun', req),
    cancelRun: (req) => call('cancelRun', req),
    replay: (req) => call('replay', req),
    compareSchedule: (req) => call('compareSchedule', req),
    distinguish: (req) => call('distinguish', req),
    pickFile: (req) => call('pickFile', req),
    notebookNew: () => call('notebookNew'),
    notebookOpen: (req) => call('notebookOpen', req),
    notebookSave: (req) => call('notebookSave', req),
    notebookRecent: () => call('notebookRecent'),
    notebookAutosave: (req) => call('notebookAutosave', req),
    notebookRecoverable: () => call('notebookRecoverable'),
    notebookDiscardRecovery: (req) => call('notebookDiscardRecovery', req),
    notebookRunCell: (req) => call('notebookRunCell', req),
    notebookStatus: (req) => call('notebookStatus', req),
    notebookExport: (req) => call('notebookExport', req),
    lkmlTimeline: (req) => call('lkmlTimeline', req),
    startSynthesis: (req) => call('startSynthesis', req),
    cancelSynthesis: (req) => call('cancelSynthesis', req),
    onDidRunEvent(listener): Unsubscribe {
      listeners.add(listener)
      ensureSource()
      return () => {
        listeners.delete(listener)
      }
    },
  }
}

/** Which transport is in use, for the status bar. */
export const transport: 'electron' | 'http' = window.lab ? 'electron' : 'http'

export const lab: LabApi = window.lab ?? httpLab()
