/**
 * Crash test for notebook saves (reported, not asserted in CI): `npm run crash-test [-- ROUNDS]`.
 *
 * Each round spawns a child process that alternately autosaves and saves one notebook through
 * the store (two versions, A and B, of a few hundred KB each), printing what it finished. The
 * parent SIGKILLs it at a random moment, then checks:
 *   - the file on disk parses and is exactly A or B, never a mix, a truncation or empty;
 *   - if the child had reported "saved X" since its last "saving", the file is X;
 *   - if the child had reported "autosaved X" and not finished the save that followed, a
 *     recovery copy with X is offered by recoverable() (or the save had already landed X).
 * It prints the counts. Exit status 1 if any check failed.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Notebook } from '../src-main/api/notebook'
import { parseNotebook, serializeNotebook } from '../src-main/node/notebook/format'
import { createNotebookStore } from '../src-main/node/notebook/store'
import { progressBoard, shouldShowProgress } from '../src-main/node/progress'

const KEY = 'crash-test'

function version(tag: 'A' | 'B'): string {
  const para = (i: number): string =>
    `Paragraph ${i} of version ${tag}: the device TLB must be flushed before the PTE is repointed.\n`
  const nb: Notebook = {
    format: 1,
    title: `Crash test, version ${tag}`,
    cells: Array.from({ length: tag === 'A' ? 30 : 45 }, (_, c) => ({
      kind: 'note' as const,
      id: `n${c}`,
      markdown: Array.from({ length: 80 }, (_, i) => para(c * 100 + i)).join(''),
    })),
  }
  return serializeNotebook(nb)
}

const VERSIONS = { A: version('A'), B: version('B') } as const

async function child(file: string, dataDir: string): Promise<void> {
  const store = createNotebookStore(dataDir)
  let { text, revision } = await store.read(file)
  process.stdout.write('ready\n')
  for (;;) {
    const next = text === VERSIONS.A ? 'B' : 'A'
    await store.autosave(KEY, file, VERSIONS[next])
    process.stdout.write(`autosaved ${next}\n`)
    process.stdout.write(`saving ${next}\n`)
    revision = (await store.save(file, VERSIONS[next], { expectedRevision: revision })).revision
    text = VERSIONS[next]
    process.stdout.write(`saved ${next}\n`)
  }
}

interface Round {
  readonly lines: string[]
}

function runChild(file: string, dataDir: string, killAfterMs: number): Promise<Round> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['-r', 'tsx/cjs', __filename, '--child', file, dataDir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    let armed = false
    p.stdout.setEncoding('utf8')
    p.stdout.on('data', (d: string) => {
      out += d
      if (!armed && out.includes('ready\n')) {
        armed = true
        setTimeout(() => p.kill('SIGKILL'), killAfterMs)
      }
    })
    p.on('error', reject)
    p.on('close', (_code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`child ended without being killed: ${out}`))
      else resolve({ lines: out.split('\n').filter(Boolean) })
    })
  })
}

async function parent(rounds: number): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mnlab-crash-'))
  const file = path.join(dir, 'crash.mnlab.yaml')
  const dataDir = path.join(dir, 'data')
  const store = createNotebookStore(dataDir)
  await store.save(file, VERSIONS.A, { expectedRevision: null })
  const counts = {
    kills: 0,
    onDiskA: 0,
    onDiskB: 0,
    corrupt: 0,
    wrongAfterSaved: 0,
    killedInAutosave: 0,
    killedAfterAutosave: 0,
    recoveryOffered: 0,
    saveLanded: 0,
    recoveryMissing: 0,
    savesCompleted: 0,
    leftoverTempFiles: 0,
  }
  const started = Date.now()
  const board = progressBoard({ enabled: shouldShowProgress(false) })
  const task = board.task('crash test', 'kills', rounds)
  try {
    for (let r = 0; r < rounds; r++) {
      const { lines } = await runChild(file, dataDir, Math.floor(Math.random() * 60))
      counts.kills++
      task.update(counts.kills)
      counts.savesCompleted += lines.filter((l) => l.startsWith('saved ')).length
      const text = readFileSync(file, 'utf8')
      const parsed = parseNotebook(text, file)
      const which = text === VERSIONS.A ? 'A' : text === VERSIONS.B ? 'B' : null
      if (!parsed.ok || which === null) {
        counts.corrupt++
        process.stdout.write(`round ${r}: CORRUPT (${text.length} bytes)\n`)
        await store.save(file, VERSIONS.A, { expectedRevision: null, force: true })
        continue
      }
      counts[which === 'A' ? 'onDiskA' : 'onDiskB']++
      const last = lines.at(-1) ?? 'ready'
      const [what, ver] = last.split(' ') as [string, 'A' | 'B' | undefined]
      if (what === 'saved' && which !== ver) {
        counts.wrongAfterSaved++
        process.stdout.write(`round ${r}: reported saved ${ver}, found ${which}\n`)
      }
      if (what === 'ready' || what === 'saved') counts.killedInAutosave++
      if (what === 'autosaved' || what === 'saving') {
        counts.killedAfterAutosave++
        const rec = (await store.recoverable()).find((e) => e.key === KEY)
        if (rec && rec.text === VERSIONS[ver!] && rec.path === file) counts.recoveryOffered++
        else if (which === ver) counts.saveLanded++
        else {
          // The save had not landed either: the autosaved edits would be lost.
          counts.recoveryMissing++
          process.stdout.write(`round ${r}: autosaved ${ver} but no recovery copy offered\n`)
        }
      }
      // Temp files of killed writers are removed by the next save; count those still there.
      counts.leftoverTempFiles = readdirSync(dir).filter((f) => f.endsWith('.tmp')).length
      // The next child starts from whatever is on disk; the recovery copy is the user's to discard.
      await store.discardRecovery(KEY)
    }
  } finally {
    task.done(`${counts.kills} kills, ${counts.corrupt} corrupt`)
    board.stop()
    rmSync(dir, { recursive: true, force: true })
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1)
  process.stdout.write(
    [
      `crash test: ${counts.kills} SIGKILLs during saves in ${secs} s (${counts.savesCompleted} saves completed in all)`,
      `  file on disk afterwards: version A ${counts.onDiskA}, version B ${counts.onDiskB}, corrupt ${counts.corrupt}`,
      `  killed before or during an autosave: ${counts.killedInAutosave}`,
      `  killed after an autosave, during the save that followed: ${counts.killedAfterAutosave}`,
      `    recovery copy offered: ${counts.recoveryOffered}; save had landed (copy already dropped): ${counts.saveLanded}; lost: ${counts.recoveryMissing}`,
      `  file differing from a reported completed save: ${counts.wrongAfterSaved}`,
      `  hidden .tmp files left at the end (a kill's temp file is removed by the next save): ${counts.leftoverTempFiles}`,
      counts.corrupt + counts.recoveryMissing + counts.wrongAfterSaved === 0 ? 'PASS' : 'FAIL',
    ].join('\n') + '\n',
  )
  return counts.corrupt + counts.recoveryMissing + counts.wrongAfterSaved === 0 ? 0 : 1
}

const args = process.argv.slice(2)
if (args[0] === '--child') {
  void child(args[1]!, args[2]!)
} else {
  const rounds = Number(args[0] ?? 300)
  void parent(Number.isInteger(rounds) && rounds > 0 ? rounds : 300).then((code) => (process.exitCode = code))
}
