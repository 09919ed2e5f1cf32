// Sandboxed preload (must stay CommonJS: keep package.json free of "type": "module"). It may
// import only 'electron'; labApi is imported for types. One function per LabApi method, each a
// thin ipcRenderer.invoke('lab:<method>', req). Never expose ipcRenderer itself.
// Errors reject with a plain { message, issues? } (ApiError): contextBridge would strip an Error's
// extra fields.
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron'
import type { ApiError, ApiMethod, LabApi, RunEvent } from '../api/labApi'

type Envelope = { ok: true; result: unknown } | { ok: false; error: ApiError }

// Must list every key of API_METHODS (type-checked below); not imported, because labApi pulls in zod.
const METHODS = [
  'engineInfo',
  'listScenarios',
  'readScenario',
  'saveScenario',
  'validate',
  'startRun',
  'cancelRun',
  'replay',
  'compareSchedule',
  'distinguish',
  'pickFile',
  'notebookNew',
  'notebookOpen',
  'notebookSave',
  'notebookRecent',
  'notebookAutosave',
  'notebookRecoverable',
  'notebookDiscardRecovery',
  'notebookRunCell',
  'notebookStatus',
  'notebookExport',
  'lkmlTimeline',
  'startSynthesis',
  'cancelSynthesis',
] as const satisfies readonly ApiMethod[]
type AssertNone<T extends never> = T
export type _EveryMethodListed = AssertNone<Exclude<ApiMethod, (typeof METHODS)[number]>>

const call =
  (method: ApiMethod) =>
  async (req?: unknown): Promise<unknown> => {
    const r = (await ipcRenderer.invoke('lab:' + method, req)) as Envelope
    if (r.ok) return r.result
    throw r.error.issues ? { message: r.error.message, issues: r.error.issues } : { message: r.error.message }
  }

const api = Object.fromEntries(METHODS.map((m) => [m, call(m)])) as unknown as Omit<LabApi, 'onDidRunEvent'>

contextBridge.exposeInMainWorld('lab', {
  ...api,
  onDidRunEvent(listener: (e: RunEvent) => void): () => void {
    const handler = (_e: IpcRendererEvent, ev: RunEvent): void => listener(ev)
    ipcRenderer.on('lab:event', handler)
    return () => {
      ipcRenderer.removeListener('lab:event', handler)
    }
  },
} satisfies LabApi)
