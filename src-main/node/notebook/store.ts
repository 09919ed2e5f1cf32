/**
 * Notebook files on disk: atomic writes (temp file in the same directory, fsync, rename, fsync the
 * directory), saves guarded by the revision the caller last saw (a 'conflict' error instead of
 * silently overwriting someone else's change), a recovery area for autosaves, and the Recent list.
 *
 * Layout under dataDir:
 *   recovery/<key>.mnlab.yaml   the autosaved notebook text
 *   recovery/<key>.json         { key, path, savedAt } (written after the text: a listed entry is whole)
 *   recent.json                 [{ path, openedAt }], most recent first, at most 10
 */
import { writeFileAtomic } from '../atomicFile'
import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import type { RecentNotebook, RecoveryEntry } from '../../api/notebook'

/** A recovery copy as stored: its text (the services parse it for the app). */
export type StoredRecovery = Omit<RecoveryEntry, 'notebook' | 'issues'>

export const RECENT_MAX = 10
const KEY = /^[A-Za-z0-9_-]{1,100}$/

/** sha256 (hex) of a file's bytes: the revision a save must expect. */
export function revisionOf(bytes: string | Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

export class NotebookStoreError extends Error {
  constructor(
    message: string,
    readonly code: 'conflict' | 'invalid-key' | 'not-found',
    /** For a conflict: the revision on disk now (null when the file was deleted). */
    readonly currentRevision: string | null = null,
  ) {
    super(message)
    this.name = 'NotebookStoreError'
  }
}

const isMissing = (e: unknown): boolean => (e as NodeJS.ErrnoException).code === 'ENOENT'

function processIsGone(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return false
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

/** Removes temp files a killed writer left next to `file` (those of live processes are kept). */
async function removeStaleTemps(file: string): Promise<void> {
  const dir = path.dirname(file)
  const prefix = `.${path.basename(file)}.`
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue
    const pid = Number(name.slice(prefix.length).split('.')[0])
    if (Number.isInteger(pid) && pid !== process.pid && processIsGone(pid))
      await fs.rm(path.join(dir, name), { force: true })
  }
}

/** Runs bookkeeping that must not fail the user's operation; a failure is logged once. */
let bestEffortLogged = false
async function bestEffort(f: () => Promise<unknown>): Promise<void> {
  try {
    await f()
  } catch (e) {
    if (!bestEffortLogged) console.error(`mnlab: notebook bookkeeping skipped: ${(e as Error).message}`)
    bestEffortLogged = true
  }
}

/** Every writeFileAtomic temp file in `dir` whose writing process is gone. */
async function removeStaleTempsIn(dir: string): Promise<void> {
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    const m = /^\..+\.(\d+)\.[0-9a-f-]{36}\.tmp$/.exec(name)
    if (!m) continue
    const pid = Number(m[1])
    if (pid !== process.pid && processIsGone(pid)) await fs.rm(path.join(dir, name), { force: true })
  }
}

async function readOrNull(file: string): Promise<Buffer | null> {
  try {
    return await fs.readFile(file)
  } catch (e) {
    if (isMissing(e)) return null
    throw e
  }
}

export interface SaveOptions {
  /** The revision the caller opened or last saved; null when the file should not exist yet. */
  readonly expectedRevision: string | null
  /** Overwrite whatever is on disk (after the user said so). */
  readonly force?: boolean
}

export interface NotebookStore {
  readonly dataDir: string
  /** Reads a notebook file's text and revision. */
  read(file: string): Promise<{ text: string; revision: string }>
  /** Atomic save guarded by the expected revision; drops recovery copies of this file. Returns the new revision. */
  save(file: string, text: string, opts: SaveOptions): Promise<{ revision: string }>
  autosave(key: string, file: string | null, text: string): Promise<void>
  recoverable(): Promise<StoredRecovery[]>
  discardRecovery(key: string): Promise<void>
  recent(): Promise<RecentNotebook[]>
  addRecent(file: string): Promise<RecentNotebook[]>
}

export function createNotebookStore(dataDir: string, now: () => Date = () => new Date()): NotebookStore {
  const recoveryDir = path.join(dataDir, 'recovery')
  const recentFile = path.join(dataDir, 'recent.json')
  const checkKey = (key: string): void => {
    if (!KEY.test(key)) throw new NotebookStoreError(`invalid recovery key '${key}'`, 'invalid-key')
  }

  const read: NotebookStore['read'] = async (file) => {
    const bytes = await readOrNull(file)
    if (bytes === null) throw new NotebookStoreError(`no notebook file '${file}'`, 'not-found')
    return { text: bytes.toString('utf8'), revision: revisionOf(bytes) }
  }

  const discardRecovery: NotebookStore['discardRecovery'] = async (key) => {
    checkKey(key)
    // Meta first: an entry without its meta is not listed, so no half-removed entry is offered.
    await fs.rm(path.join(recoveryDir, `${key}.json`), { force: true })
    await fs.rm(path.join(recoveryDir, `${key}.mnlab.yaml`), { force: true })
  }

  let swept = false
  const recoverable: NotebookStore['recoverable'] = async () => {
    // Once per store (the app asks on start): temp files of writers that were killed mid-save.
    if (!swept) {
      swept = true
      await bestEffort(async () => {
        await removeStaleTempsIn(recoveryDir)
        await removeStaleTempsIn(dataDir)
      })
    }
    let names: string[]
    try {
      names = await fs.readdir(recoveryDir)
    } catch (e) {
      if (isMissing(e)) return []
      // An unreadable recovery area offers nothing to recover; it must not fail the app.
      await bestEffort(() => Promise.reject(e as Error))
      return []
    }
    const out: StoredRecovery[] = []
    for (const n of names.filter((x) => x.endsWith('.json')).sort()) {
      const key = n.slice(0, -'.json'.length)
      if (!KEY.test(key)) continue
      try {
        const meta = JSON.parse(await fs.readFile(path.join(recoveryDir, n), 'utf8')) as {
          path?: unknown
          savedAt?: unknown
        }
        const text = await fs.readFile(path.join(recoveryDir, `${key}.mnlab.yaml`), 'utf8')
        out.push({
          key,
          path: typeof meta.path === 'string' ? meta.path : null,
          savedAt: typeof meta.savedAt === 'string' ? meta.savedAt : '',
          text,
        })
      } catch {
        // A damaged or half-written entry is skipped, not fatal.
      }
    }
    out.sort((a, b) => b.savedAt.localeCompare(a.savedAt))
    return out
  }

  const save: NotebookStore['save'] = async (file, text, opts) => {
    const abs = path.resolve(file)
    if (!opts.force) {
      const cur = await readOrNull(abs)
      const rev = cur === null ? null : revisionOf(cur)
      if (rev !== opts.expectedRevision) {
        throw new NotebookStoreError(
          rev === null
            ? `${abs} was deleted on disk since it was opened`
            : opts.expectedRevision === null
              ? `${abs} already exists`
              : `${abs} was changed on disk since it was opened`,
          'conflict',
          rev,
        )
      }
    }
    await writeFileAtomic(abs, text)
    // The notebook is saved. The bookkeeping after it (temp files, recovery copies, Recent) is
    // best effort: an unwritable data folder must not turn a saved file into a failed save.
    await bestEffort(async () => {
      await removeStaleTemps(abs)
      for (const r of await recoverable()) if (r.path === abs) await discardRecovery(r.key)
    })
    await addRecent(abs)
    return { revision: revisionOf(Buffer.from(text, 'utf8')) }
  }

  const autosave: NotebookStore['autosave'] = async (key, file, text) => {
    checkKey(key)
    await writeFileAtomic(path.join(recoveryDir, `${key}.mnlab.yaml`), text)
    const meta = { key, path: file === null ? null : path.resolve(file), savedAt: now().toISOString() }
    await writeFileAtomic(path.join(recoveryDir, `${key}.json`), JSON.stringify(meta, null, 2) + '\n')
  }

  const recent: NotebookStore['recent'] = async () => {
    // An unreadable data folder has no Recent list; it must not fail an open or a save.
    const bytes = await readOrNull(recentFile).catch(() => null)
    if (bytes === null) return []
    try {
      const list = JSON.parse(bytes.toString('utf8')) as unknown
      if (!Array.isArray(list)) return []
      return list
        .filter(
          (x): x is RecentNotebook =>
            !!x && typeof x.path === 'string' && typeof (x as RecentNotebook).openedAt === 'string',
        )
        .slice(0, RECENT_MAX)
    } catch {
      return []
    }
  }

  const addRecent: NotebookStore['addRecent'] = async (file) => {
    const abs = path.resolve(file)
    const list = [
      { path: abs, openedAt: now().toISOString() },
      ...(await recent()).filter((r) => r.path !== abs),
    ].slice(0, RECENT_MAX)
    // Best effort: without a writable data folder, opening and saving notebooks still work.
    await bestEffort(() => writeFileAtomic(recentFile, JSON.stringify(list, null, 2) + '\n'))
    return list
  }

  return { dataDir, read, save, autosave, recoverable, discardRecovery, recent, addRecent }
}
