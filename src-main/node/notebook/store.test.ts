import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createNotebookStore, NotebookStoreError, RECENT_MAX, revisionOf, type NotebookStore } from './store'

let dir: string
let data: string
let store: NotebookStore
let clock = 0

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nb-store-'))
  data = path.join(dir, 'data')
  clock = Date.parse('2026-01-01T14:02:00Z')
  store = createNotebookStore(data, () => new Date((clock += 1000)))
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

async function conflict(p: Promise<unknown>): Promise<NotebookStoreError> {
  try {
    await p
  } catch (e) {
    expect(e).toBeInstanceOf(NotebookStoreError)
    return e as NotebookStoreError
  }
  throw new Error('expected a conflict')
}

describe('notebook store: saves', () => {
  it('creates, then saves against the revision it was opened with', async () => {
    const f = path.join(dir, 'sub', 'a.mnlab.yaml')
    const { revision: r1 } = await store.save(f, 'one\n', { expectedRevision: null })
    expect(readFileSync(f, 'utf8')).toBe('one\n')
    expect(r1).toBe(revisionOf('one\n'))
    expect(await store.read(f)).toEqual({ text: 'one\n', revision: r1 })
    const { revision: r2 } = await store.save(f, 'two\n', { expectedRevision: r1 })
    expect(readFileSync(f, 'utf8')).toBe('two\n')
    expect(r2).not.toBe(r1)
    // No temp files left behind.
    expect(readdirSync(path.dirname(f))).toEqual(['a.mnlab.yaml'])
  })

  it('refuses with a conflict when the file changed on disk, unless forced', async () => {
    const f = path.join(dir, 'a.mnlab.yaml')
    const { revision } = await store.save(f, 'mine\n', { expectedRevision: null })
    writeFileSync(f, 'someone else\n')
    const e = await conflict(store.save(f, 'mine again\n', { expectedRevision: revision }))
    expect(e.code).toBe('conflict')
    expect(e.message).toMatch(/changed on disk/)
    expect(e.currentRevision).toBe(revisionOf('someone else\n'))
    expect(readFileSync(f, 'utf8')).toBe('someone else\n')
    await store.save(f, 'mine again\n', { expectedRevision: revision, force: true })
    expect(readFileSync(f, 'utf8')).toBe('mine again\n')
  })

  it('refuses to overwrite an existing file as new, and to recreate a deleted one silently', async () => {
    const f = path.join(dir, 'a.mnlab.yaml')
    writeFileSync(f, 'there\n')
    expect((await conflict(store.save(f, 'x', { expectedRevision: null }))).message).toMatch(/already exists/)
    const rev = revisionOf('there\n')
    rmSync(f)
    const e = await conflict(store.save(f, 'x', { expectedRevision: rev }))
    expect(e.message).toMatch(/deleted on disk/)
    expect(e.currentRevision).toBeNull()
  })

  it('read of a missing file is a not-found error', async () => {
    const e = await conflict(store.read(path.join(dir, 'nope.mnlab.yaml')))
    expect(e.code).toBe('not-found')
  })
})

describe('notebook store: recovery area', () => {
  it('autosave is listed, newest first, and dropped by discard or by saving that file', async () => {
    const f = path.join(dir, 'a.mnlab.yaml')
    await store.autosave('k1', f, 'draft 1\n')
    await store.autosave('k2', null, 'untitled draft\n')
    const list = await store.recoverable()
    expect(list.map((e) => [e.key, e.path, e.text])).toEqual([
      ['k2', null, 'untitled draft\n'],
      ['k1', f, 'draft 1\n'],
    ])
    expect(list[1]!.savedAt).toBe('2026-01-01T14:02:01.000Z')
    await store.discardRecovery('k2')
    expect((await store.recoverable()).map((e) => e.key)).toEqual(['k1'])
    await store.save(f, 'saved\n', { expectedRevision: null })
    expect(await store.recoverable()).toEqual([])
    expect(readdirSync(path.join(data, 'recovery'))).toEqual([])
  })

  it('a later autosave replaces the earlier one; bad keys are refused', async () => {
    await store.autosave('k', null, 'a')
    await store.autosave('k', null, 'b')
    expect((await store.recoverable()).map((e) => e.text)).toEqual(['b'])
    await expect(store.autosave('../evil', null, 'x')).rejects.toThrow(/invalid recovery key/)
    await expect(store.discardRecovery('a/b')).rejects.toThrow(/invalid recovery key/)
  })

  it('half-written or damaged entries are skipped, not fatal', async () => {
    await store.autosave('ok', null, 'fine')
    writeFileSync(path.join(data, 'recovery', 'lonely.json'), '{"path": null}') // no text file
    writeFileSync(path.join(data, 'recovery', 'broken.json'), '{not json')
    writeFileSync(path.join(data, 'recovery', 'broken.mnlab.yaml'), 'x')
    writeFileSync(path.join(data, 'recovery', 'textonly.mnlab.yaml'), 'x') // meta not written yet
    expect((await store.recoverable()).map((e) => e.key)).toEqual(['ok'])
  })
})

describe('notebook store: Recent', () => {
  it('most recent first, no duplicates, at most 10; a damaged list reads as empty', async () => {
    expect(await store.recent()).toEqual([])
    for (let i = 0; i < 12; i++) await store.addRecent(path.join(dir, `n${i}.mnlab.yaml`))
    await store.addRecent(path.join(dir, 'n5.mnlab.yaml'))
    const list = await store.recent()
    expect(list).toHaveLength(RECENT_MAX)
    expect(list.map((r) => path.basename(r.path))).toEqual([
      'n5.mnlab.yaml',
      'n11.mnlab.yaml',
      'n10.mnlab.yaml',
      'n9.mnlab.yaml',
      'n8.mnlab.yaml',
      'n7.mnlab.yaml',
      'n6.mnlab.yaml',
      'n4.mnlab.yaml',
      'n3.mnlab.yaml',
      'n2.mnlab.yaml',
    ])
    writeFileSync(path.join(data, 'recent.json'), '[{"path": 3}, {"path": "/x", "openedAt": "t"}]')
    expect(await store.recent()).toEqual([{ path: '/x', openedAt: 't' }])
    writeFileSync(path.join(data, 'recent.json'), 'garbage')
    expect(await store.recent()).toEqual([])
  })

  it('a save puts the file at the top of Recent', async () => {
    const f = path.join(dir, 'a.mnlab.yaml')
    await store.save(f, 'x', { expectedRevision: null })
    expect((await store.recent())[0]!.path).toBe(f)
  })
})

describe('notebook store: temp files of killed writers', () => {
  it('a save removes temp files whose process is gone, and keeps those of live ones', async () => {
    const f = path.join(dir, 'a.mnlab.yaml')
    const dead = path.join(dir, '.a.mnlab.yaml.999999999.x.tmp')
    const live = path.join(dir, `.a.mnlab.yaml.${process.ppid}.y.tmp`)
    writeFileSync(dead, 'half')
    writeFileSync(live, 'busy')
    await store.save(f, 'x', { expectedRevision: null })
    expect(
      readdirSync(dir)
        .filter((n) => n !== 'data')
        .sort(),
    ).toEqual([`.a.mnlab.yaml.${process.ppid}.y.tmp`, 'a.mnlab.yaml'])
  })
})
