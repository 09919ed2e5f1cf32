/**
 * Files: nothing lost, nothing changed behind the user's back (the reliability issue). Atomic
 * writes keep a file's mode, write through symbolic links and refuse read-only files; `notebook
 * record` never overwrites an edit saved while it ran; write failures are one line, exit 1; an
 * unusable data folder degrades the bookkeeping, never a save or an open; temp files of killed
 * writers are swept.
 */
import { randomUUID } from 'node:crypto'
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Notebook } from '../api/notebook'
import { ReadOnlyFileError, writeFileAtomic } from './atomicFile'
import { mnlab } from './cliTestkit'
import { serializeNotebook } from './notebook/format'
import { createNotebookStore } from './notebook/store'

const ROOT = path.join(__dirname, '../..')
let dir = ''
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'mnlab-files-'))
})
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const sub = (name: string): string => {
  const d = path.join(dir, `${name}-${randomUUID().slice(0, 8)}`)
  mkdirSync(d)
  return d
}

describe('writeFileAtomic', () => {
  it('keeps the mode of the file it replaces (a 0600 notebook stays 0600)', async () => {
    const f = path.join(sub('mode'), 'private.mnlab.yaml')
    writeFileSync(f, 'old\n')
    chmodSync(f, 0o600)
    await writeFileAtomic(f, 'new\n')
    expect(readFileSync(f, 'utf8')).toBe('new\n')
    expect(statSync(f).mode & 0o777).toBe(0o600)
  })

  it('writes through a symbolic link: the target changes, the link stays a link', async () => {
    const d = sub('link')
    const real = path.join(d, 'real.mnlab.yaml')
    const link = path.join(d, 'link.mnlab.yaml')
    writeFileSync(real, 'old\n')
    symlinkSync(real, link)
    await writeFileAtomic(link, 'new\n')
    expect(lstatSync(link).isSymbolicLink()).toBe(true)
    expect(readFileSync(real, 'utf8')).toBe('new\n')
  })

  it('refuses a read-only file and leaves it as it was', async () => {
    const f = path.join(sub('ro'), 'locked.mnlab.yaml')
    writeFileSync(f, 'keep\n')
    chmodSync(f, 0o444)
    await expect(writeFileAtomic(f, 'new\n')).rejects.toBeInstanceOf(ReadOnlyFileError)
    expect(readFileSync(f, 'utf8')).toBe('keep\n')
    expect(readdirSync(path.dirname(f))).toEqual(['locked.mnlab.yaml'])
  })
})

const COW = readFileSync(path.join(ROOT, 'scenarios/cow-ordering.invalidate-range-needed.yaml'), 'utf8')

function notebook(scenario: string): Notebook {
  return {
    format: 1,
    title: 'file safety',
    cells: [
      {
        kind: 'experiment',
        id: 'cow',
        title: 'cow',
        scenario: { inline: scenario },
        recipe: {
          policies: ['start-end', 'invalidate-range', 'arch-hook'],
          mode: 'exhaustive',
          seed: 1,
          executions: 10,
          schedule: [],
          max_states: 2_000_000,
          timeout_ms: null,
        },
        results: [],
      },
    ],
  }
}

describe('mnlab notebook record and export', () => {
  it('an edit saved while record ran is kept: nothing recorded over it, exit 1', async () => {
    const f = path.join(sub('race'), 'race.mnlab.yaml')
    writeFileSync(f, serializeNotebook(notebook(COW)))
    const running = mnlab('notebook', 'record', f)
    // The three COW explorations take seconds; the user saves an edit meanwhile.
    await new Promise((r) => setTimeout(r, 300))
    const edited = serializeNotebook({ ...notebook(COW), title: 'edited while recording' })
    writeFileSync(f, edited)
    const r = await running
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toBe(
      `mnlab: ${f} changed on disk while its experiments ran; nothing recorded in it (run record again)`,
    )
    expect(readFileSync(f, 'utf8')).toBe(edited)
  }, 120_000)

  it('export -o to a path it cannot write: one line naming it, exit 1, no stack trace', async () => {
    const d = sub('export')
    const f = path.join(d, 'n.mnlab.yaml')
    writeFileSync(f, serializeNotebook(notebook(COW)))
    const blocker = path.join(d, 'not-a-folder')
    writeFileSync(blocker, '')
    const r = await mnlab('notebook', 'export', f, '--format', 'md', '-o', path.join(blocker, 'out.md'))
    expect(r.code).toBe(1)
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1)
    expect(r.stderr).toMatch(/^mnlab: cannot write .*not-a-folder\/out\.md: ENOTDIR/)
    const ro = path.join(d, 'out.md')
    writeFileSync(ro, 'mine\n')
    chmodSync(ro, 0o444)
    const r2 = await mnlab('notebook', 'export', f, '--format', 'md', '-o', ro)
    expect(r2.code).toBe(1)
    expect(r2.stderr.trim()).toBe(`mnlab: ${ro} is read-only (no write permission); not overwritten`)
    expect(readFileSync(ro, 'utf8')).toBe('mine\n')
  })
})

describe('the notebook store', () => {
  it('saves and opens with an unusable data folder (Recent and recovery are best effort)', async () => {
    const d = sub('data')
    const blocker = path.join(d, 'file')
    writeFileSync(blocker, '')
    const store = createNotebookStore(path.join(blocker, 'data'))
    const f = path.join(d, 'n.mnlab.yaml')
    const { revision } = await store.save(f, 'title: x\n', { expectedRevision: null })
    expect(readFileSync(f, 'utf8')).toBe('title: x\n')
    expect((await store.read(f)).revision).toBe(revision)
    expect(await store.addRecent(f)).toHaveLength(1)
    expect(await store.recoverable()).toEqual([])
  })

  it('sweeps the temp files of writers that were killed, keeps those of live ones', async () => {
    const data = sub('sweep')
    const rec = path.join(data, 'recovery')
    mkdirSync(rec)
    const dead = path.join(rec, `.k.mnlab.yaml.999999.${randomUUID()}.tmp`)
    const live = path.join(rec, `.k.mnlab.yaml.${process.pid}.${randomUUID()}.tmp`)
    const other = path.join(rec, 'notes.txt')
    for (const x of [dead, live, other]) writeFileSync(x, 'x')
    await createNotebookStore(data).recoverable()
    expect([existsSync(dead), existsSync(live), existsSync(other)]).toEqual([false, true, true])
  })
})
