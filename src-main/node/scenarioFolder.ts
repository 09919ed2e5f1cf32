/**
 * The scenarios folder behind LabApi: listing, reading and saving `.yaml` files under one root,
 * with every request path confined to it (no absolute paths, no `..`, no symbolic link out).
 */
import { promises as fs } from 'node:fs'
import path from 'node:path'
import type { LabApi, ScenarioEntry } from '../api/labApi'
import { LabApiError } from './apiErrors'
import { writeFileAtomic } from './atomicFile'
import { loadScenarioText, ScenarioLoadError } from './scenarioFiles'
import { isInside, isMissing, parseRequest } from './serviceRequests'

export interface ScenarioFolder {
  /** The folder's real path (resolved once); a LabApiError when it does not exist. */
  root(): Promise<string>
  /** Resolves a request path to an absolute path under the root, refusing every way out. */
  resolveScenarioPath(rel: string): Promise<{ abs: string; rel: string }>
  listScenarios: LabApi['listScenarios']
  readScenario: LabApi['readScenario']
  saveScenario: LabApi['saveScenario']
}

export function createScenarioFolder(scenariosDir: string): ScenarioFolder {
  let rootReal: string | null = null

  const root = async (): Promise<string> => {
    rootReal ??= await fs.realpath(path.resolve(scenariosDir)).catch((e: unknown) => {
      if (isMissing(e)) throw new LabApiError(`the scenarios folder ${scenariosDir} does not exist`)
      throw e
    })
    return rootReal
  }

  /** Resolves a request path to an absolute path under the root, refusing every way out. */
  const resolveScenarioPath = async (rel: string): Promise<{ abs: string; rel: string }> => {
    const base = await root()
    if (rel.includes('\0')) throw new LabApiError('path: contains a NUL character')
    if (path.isAbsolute(rel) || path.win32.isAbsolute(rel) || /^[a-zA-Z]:/.test(rel))
      throw new LabApiError(`path: '${rel}' must be relative to the scenarios folder`)
    const parts = rel.split(/[\\/]+/).filter((s) => s !== '' && s !== '.')
    if (parts.length === 0) throw new LabApiError('path: empty')
    if (parts.includes('..')) throw new LabApiError(`path: '${rel}' may not contain '..'`)
    if (!parts[parts.length - 1]!.endsWith('.yaml'))
      throw new LabApiError(`path: '${rel}' is not a .yaml file`)
    const abs = path.join(base, ...parts)
    // Symlinks: the deepest existing ancestor (or the file itself) must really be inside the root.
    let probe = abs
    for (;;) {
      try {
        const real = await fs.realpath(probe)
        if (!isInside(base, real))
          throw new LabApiError(`path: '${rel}' leads outside the scenarios folder (symbolic link)`)
        break
      } catch (e) {
        if (!isMissing(e)) throw e
        const up = path.dirname(probe)
        if (up === probe) break
        probe = up
      }
    }
    return { abs, rel: parts.join('/') }
  }

  const walk = async (dir: string, prefix: string, out: string[]): Promise<void> => {
    const base = await root()
    const entries = await fs.readdir(dir, { withFileTypes: true })
    for (const e of entries) {
      if (e.name.startsWith('.')) continue
      const abs = path.join(dir, e.name)
      const rel = prefix ? `${prefix}/${e.name}` : e.name
      let isDir = e.isDirectory()
      let isFile = e.isFile()
      if (e.isSymbolicLink()) {
        const real = await fs.realpath(abs).catch(() => null)
        if (!real || !isInside(base, real)) continue
        const st = await fs.stat(real)
        isDir = st.isDirectory() && !isInside(real, dir) // no cycles through links to an ancestor
        isFile = st.isFile()
      }
      if (isDir) await walk(abs, rel, out)
      else if (isFile && e.name.endsWith('.yaml')) out.push(rel)
    }
  }

  const listScenarios = async (): Promise<ScenarioEntry[]> => {
    const base = await root()
    const files: string[] = []
    await walk(base, '', files)
    files.sort()
    return Promise.all(
      files.map(async (rel): Promise<ScenarioEntry> => {
        try {
          const text = await fs.readFile(path.join(base, rel), 'utf8')
          const sc = loadScenarioText(text, rel)
          return {
            path: rel,
            title: sc.title,
            source: sc.source,
            arch: sc.arch,
            policies: sc.expect.map(([p]) => p),
            error: null,
          }
        } catch (e) {
          const error =
            e instanceof ScenarioLoadError
              ? e.issues.map((i) => `${i.line}:${i.column}: ${i.message}`).join('\n')
              : e instanceof Error
                ? e.message
                : String(e)
          return { path: rel, title: path.basename(rel), source: null, arch: '', policies: [], error }
        }
      }),
    )
  }

  const readScenario: LabApi['readScenario'] = async (req) => {
    const { path: p } = parseRequest('readScenario', req) as { path: string }
    const { abs, rel } = await resolveScenarioPath(p)
    try {
      return { path: rel, text: await fs.readFile(abs, 'utf8') }
    } catch (e) {
      if (isMissing(e)) throw new LabApiError(`no scenario file '${rel}'`)
      if ((e as NodeJS.ErrnoException).code === 'EISDIR') throw new LabApiError(`'${rel}' is a folder`)
      throw e
    }
  }

  const saveScenario: LabApi['saveScenario'] = async (req) => {
    const { path: p, text } = parseRequest('saveScenario', req) as { path: string; text: string }
    const { abs } = await resolveScenarioPath(p)
    await writeFileAtomic(abs, text)
  }

  return { root, resolveScenarioPath, listScenarios, readScenario, saveScenario }
}
