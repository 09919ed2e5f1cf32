import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  mkdirSync,
} from 'node:fs'
import os from 'node:os'
import { Worker } from 'node:worker_threads'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { RunEvent, RunRequest } from '../api/labApi'
import { createLabService, LabApiError, type LabService } from './labService'
import { tsxWorker, WorkerPool } from './workerPool'

const SCENARIOS = path.join(__dirname, '../../scenarios')
const UPGRADE_TEXT = readFileSync(path.join(SCENARIOS, 'upgrade-loop.smmu-no-btm.yaml'), 'utf8')
const COW_TEXT = readFileSync(path.join(SCENARIOS, 'cow-ordering.invalidate-range-needed.yaml'), 'utf8')

function runRequest(text: string, policies: string[]): RunRequest {
  return {
    text,
    file: null,
    policies,
    mode: 'exhaustive',
    seed: 1,
    executions: 100,
    schedule: [],
    maxStates: 2_000_000,
    timeoutMs: null,
  }
}

/** Collects the events of one run until it ends. */
function eventsOf(svc: LabService, runId: Promise<string>): Promise<RunEvent[]> {
  const seen: RunEvent[] = []
  return new Promise((resolve) => {
    const off = svc.onDidRunEvent((e) => {
      seen.push(e)
      void runId.then((id) => {
        const mine = seen.filter((x) => x.runId === id)
        if (mine.some((x) => x.kind !== 'progress')) {
          off()
          resolve(mine)
        }
      })
    })
  })
}

async function rejection(p: Promise<unknown>): Promise<LabApiError> {
  try {
    await p
  } catch (e) {
    expect(e).toBeInstanceOf(LabApiError)
    return e as LabApiError
  }
  throw new Error('expected a rejection')
}

let dir: string
let outside: string
let svc: LabService

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'lab-svc-'))
  outside = mkdtempSync(path.join(os.tmpdir(), 'lab-out-'))
  writeFileSync(path.join(dir, 'upgrade.yaml'), UPGRADE_TEXT)
  mkdirSync(path.join(dir, 'sub'))
  writeFileSync(path.join(dir, 'sub', 'bad.yaml'), 'title: broken\nbogus: [\n')
  writeFileSync(path.join(dir, 'notes.txt'), 'not a scenario')
  svc = createLabService({ scenariosDir: dir, pool: new WorkerPool(tsxWorker, 2) })
})

afterEach(async () => {
  await svc.close()
  rmSync(dir, { recursive: true, force: true })
  rmSync(outside, { recursive: true, force: true })
})

describe('scenario files', () => {
  it('lists every .yaml file recursively, sorted, with a bad file reported, not thrown', async () => {
    const list = await svc.listScenarios()
    expect(list.map((e) => e.path)).toEqual(['sub/bad.yaml', 'upgrade.yaml'])
    const [bad, good] = list
    expect(bad!.error).toMatch(/^\d+:\d+: /)
    expect(good).toEqual({
      path: 'upgrade.yaml',
      title: 'RO->RW upgrade in place leaves an SMMU without BTM faulting forever',
      source: 'Popple, "mmu_notifiers: Notify on pte permission upgrades" (2023)',
      arch: 'arm64',
      policies: ['start-end', 'invalidate-range', 'arch-hook'],
      error: null,
    })
  })

  it('reads and saves relative .yaml paths, creating folders, atomically', async () => {
    expect((await svc.readScenario({ path: 'upgrade.yaml' })).text).toBe(UPGRADE_TEXT)
    await svc.saveScenario({ path: 'new/deeper/x.yaml', text: 'title: x\n' })
    expect(readFileSync(path.join(dir, 'new/deeper/x.yaml'), 'utf8')).toBe('title: x\n')
    await svc.saveScenario({ path: 'upgrade.yaml', text: 'title: replaced\n' })
    expect(await svc.readScenario({ path: './upgrade.yaml' })).toEqual({
      path: 'upgrade.yaml',
      text: 'title: replaced\n',
    })
    // No temp files left behind.
    expect(readdirSync(dir).filter((f) => f.startsWith('.'))).toEqual([])
    expect(readdirSync(path.join(dir, 'new/deeper'))).toEqual(['x.yaml'])
  })

  it('rejects absolute paths, .. escapes, symlink escapes and non-.yaml names', async () => {
    writeFileSync(path.join(outside, 'secret.yaml'), 'secret')
    symlinkSync(outside, path.join(dir, 'link'))
    symlinkSync(path.join(outside, 'secret.yaml'), path.join(dir, 'file-link.yaml'))
    const bad = [
      path.join(dir, 'upgrade.yaml'),
      '/etc/passwd.yaml',
      '../x.yaml',
      'sub/../../x.yaml',
      'sub\\..\\..\\x.yaml',
      'link/secret.yaml',
      'link/new.yaml',
      'file-link.yaml',
      'notes.txt',
      'upgrade.yml',
    ]
    for (const p of bad) {
      const e = await rejection(svc.readScenario({ path: p }))
      expect(e.message).toMatch(/^path: /)
      await rejection(svc.saveScenario({ path: p, text: 'x' }))
    }
    expect(readFileSync(path.join(outside, 'secret.yaml'), 'utf8')).toBe('secret')
    expect(readdirSync(outside)).toEqual(['secret.yaml'])
    // Links that stay inside are listed; links out are not.
    expect((await svc.listScenarios()).map((e) => e.path)).toEqual(['sub/bad.yaml', 'upgrade.yaml'])
  })

  it('rejects malformed requests, naming the field', async () => {
    const e = await rejection(svc.readScenario({ path: 7 } as never))
    expect(e.message).toMatch(/readScenario: invalid path/)
    const e2 = await rejection(svc.startRun({ ...runRequest(UPGRADE_TEXT, ['arch-hook']), seed: -1 }))
    expect(e2.message).toMatch(/startRun: invalid seed/)
  })
})

describe('validate', () => {
  it('returns [] for a valid scenario and located issues otherwise', async () => {
    expect(await svc.validate({ text: UPGRADE_TEXT, file: null })).toEqual([])
    const broken = UPGRADE_TEXT.replace('C0: [write_fault P]', 'C0: [write_fault Q]')
    const issues = await svc.validate({ text: broken, file: 'x.yaml' })
    expect(issues).toHaveLength(1)
    const line = broken.split('\n').findIndex((l) => l.includes('write_fault Q')) + 1
    expect(issues[0]).toMatchObject({
      line,
      column: broken.split('\n')[line - 1]!.indexOf('Q') + 1,
      length: 1,
    })
    expect(issues[0]!.message).toMatch(/Q/)
  })
})

describe('runs', () => {
  it('streams progress, then the finished result in policy order', async () => {
    const id = svc.startRun(runRequest(UPGRADE_TEXT, ['arch-hook', 'start-end,invalidate-range']))
    const events = await eventsOf(svc, id)
    expect(typeof (await id)).toBe('string')
    const kinds = events.map((e) => e.kind)
    expect(kinds.at(-1)).toBe('finished')
    expect(kinds.slice(0, -1).every((k) => k === 'progress')).toBe(true)
    const lastProgress = events.at(-2)
    expect(lastProgress?.kind).toBe('progress')
    if (lastProgress?.kind !== 'progress') return
    expect(lastProgress.policies.map((p) => p.policy)).toEqual(['arch-hook', 'start-end', 'invalidate-range'])
    expect(lastProgress.policies.every((p) => p.done && p.states > 0)).toBe(true)
    const fin = events.at(-1)
    if (fin?.kind !== 'finished') throw new Error('not finished')
    expect(fin.result.results.map((r) => [r.policy, r.verdict, r.matches])).toEqual([
      ['arch-hook', 'holds', true],
      ['start-end', 'violated', true],
      ['invalidate-range', 'violated', true],
    ])
  })

  it('reports the first violation as soon as found (thread names), and first: true stops there', async () => {
    const events = await eventsOf(svc, svc.startRun(runRequest(UPGRADE_TEXT, ['start-end', 'arch-hook'])))
    const withFirst = events.flatMap((e) =>
      e.kind === 'progress' ? e.policies.filter((p) => p.first !== undefined) : [],
    )
    expect(withFirst.length).toBeGreaterThan(0)
    const f = withFirst[0]!
    expect(f.policy).toBe('start-end')
    expect(f.first!.invariant).toBe('progress')
    expect([...f.first!.schedule, ...(f.first!.cycle ?? [])].every((t) => t === 'C0' || t === 'D0')).toBe(
      true,
    )
    // The schedule replays to the same violation.
    const r = await svc.replay({
      text: UPGRADE_TEXT,
      file: null,
      policy: 'start-end',
      schedule: [...f.first!.schedule, ...(f.first!.cycle ?? [])],
    })
    expect(r.violations.map((v) => v.invariant)).toContain('progress')
    expect(
      events
        .flatMap((e) => (e.kind === 'progress' ? e.policies : []))
        .some((p) => p.policy === 'arch-hook' && p.first),
    ).toBe(false)

    const cow = await eventsOf(svc, svc.startRun({ ...runRequest(COW_TEXT, ['start-end']), first: true }))
    const fin = cow.at(-1)
    if (fin?.kind !== 'finished') throw new Error('not finished')
    const res = fin.result.results[0]!
    expect(res.stats.complete).toBe(false)
    expect(res.stats.cutReason).toMatch(/first violation/)
    expect(res.counterexamples.map((c) => c.invariant)).toEqual(['forbid'])
  })

  it('rejects invalid text with its issues, and bad policies or schedules', async () => {
    const e = await rejection(svc.startRun(runRequest('title: t\nbogus: 1\n', ['arch-hook'])))
    expect(e.issues?.length).toBeGreaterThan(0)
    expect(e.issues![0]).toHaveProperty('line')
    expect(e.message).toMatch(/^the scenario is invalid: line \d+, column \d+/)
    const p = await rejection(svc.startRun(runRequest(UPGRADE_TEXT, ['arch-hook', 'no-such-policy'])))
    expect(p.message).toMatch(/unknown policy 'no-such-policy'/)
    const s = await rejection(
      svc.startRun({ ...runRequest(UPGRADE_TEXT, ['arch-hook']), mode: 'scripted', schedule: ['C0', 'X9'] }),
    )
    expect(s.message).toMatch(/unknown thread 'X9'/)
    // More steps than the run has: refused with the step and the policy, no worker failure.
    const long = await rejection(
      svc.startRun({
        ...runRequest(UPGRADE_TEXT, ['arch-hook']),
        mode: 'scripted',
        schedule: Array.from({ length: 12 }, () => 'C0'),
      }),
    )
    expect(long.message).toMatch(/^schedule: step \d+ under arch-hook: C0 cannot run at step \d+/)
  })

  it('cancelRun stops a long run and emits cancelled', async () => {
    const id = svc.startRun(runRequest(COW_TEXT, ['all']))
    const events = eventsOf(svc, id)
    await svc.cancelRun({ runId: await id })
    const got = await events
    expect(got.at(-1)).toEqual({ kind: 'cancelled', runId: await id })
    expect(got.some((e) => e.kind === 'finished')).toBe(false)
    // Cancelling again is harmless.
    await svc.cancelRun({ runId: await id })
  })

  it('a crashing worker fails its run with a message, and the next run works', async () => {
    let made = 0
    const crashing = createLabService({
      scenariosDir: dir,
      pool: new WorkerPool(
        () => (made++ === 0 ? new Worker("throw new Error('boom')", { eval: true }) : tsxWorker()),
        1,
      ),
    })
    try {
      const first = await eventsOf(crashing, crashing.startRun(runRequest(UPGRADE_TEXT, ['arch-hook'])))
      expect(first.at(-1)).toMatchObject({ kind: 'failed', message: expect.stringMatching(/boom/) })
      const second = await eventsOf(crashing, crashing.startRun(runRequest(UPGRADE_TEXT, ['arch-hook'])))
      expect(second.at(-1)?.kind).toBe('finished')
    } finally {
      await crashing.close()
    }
  })

  it('replays the counterexample schedule to the livelock', async () => {
    const id = svc.startRun(runRequest(UPGRADE_TEXT, ['start-end']))
    const fin = (await eventsOf(svc, id)).at(-1)
    if (fin?.kind !== 'finished') throw new Error('not finished')
    const cx = fin.result.results[0]!.counterexamples.find((c) => c.invariant === 'progress')!
    const schedule = [...cx.schedule, ...(cx.cycle ?? [])]
    const r = await svc.replay({ text: UPGRADE_TEXT, file: null, policy: 'start-end', schedule })
    expect(r.outcome).toBe('livelock')
    expect(r.violations.map((v) => v.invariant)).toContain('progress')
    expect(r.records.length).toBeGreaterThan(0)
    expect(r.registers).toEqual([])
    const e = await rejection(
      svc.replay({ text: UPGRADE_TEXT, file: null, policy: 'start-end', schedule: ['D9'] }),
    )
    expect(e.message).toMatch(/^schedule: .*unknown thread 'D9'/)
  })
})

describe('engineInfo', () => {
  it('describes presets, variants, invariants, the schema and the template', async () => {
    const info = await svc.engineInfo()
    expect(info.presets.map((p) => p.name)).toEqual(['start-end', 'invalidate-range', 'arch-hook'])
    expect(info.variants.every((v) => v.doc.length > 0)).toBe(true)
    expect(info.invariants).toContain('progress')
    expect(info.scenarioSchema).toHaveProperty('type', 'object')
    expect(await svc.validate({ text: info.template, file: null })).toEqual([])
  })
})

describe('pickFile (native dialogs)', () => {
  it('answers null without a native picker: the renderer asks for a path itself', async () => {
    expect(await svc.pickFile({ purpose: 'open', suggestedName: null })).toBeNull()
    await expect(svc.pickFile({ purpose: 'sideways', suggestedName: null } as never)).rejects.toThrow(
      /purpose/,
    )
  })

  it('returns a path relative to the scenarios folder, and refuses a choice outside it', async () => {
    const answers: Array<string | null> = [
      path.join(dir, 'sub', 'x.yaml'),
      path.join(outside, 'y.yaml'),
      null,
      path.join(dir, 'notes.txt'),
    ]
    const seen: Array<[string, string]> = []
    const picking = createLabService({
      scenariosDir: dir,
      pool: new WorkerPool(tsxWorker, 1),
      nativePicker: async (purpose, defaultPath, kind) => {
        expect(kind).toBe('scenario')
        seen.push([purpose, defaultPath])
        return answers.shift() ?? null
      },
    })
    try {
      expect(await picking.pickFile({ purpose: 'save', suggestedName: 'x.yaml' })).toEqual({
        path: 'sub/x.yaml',
      })
      expect(seen[0]).toEqual(['save', path.join(dir, 'x.yaml')])
      await expect(picking.pickFile({ purpose: 'open', suggestedName: null })).rejects.toThrow(
        /outside the scenarios folder/,
      )
      expect(await picking.pickFile({ purpose: 'open', suggestedName: null })).toBeNull()
      await expect(picking.pickFile({ purpose: 'open', suggestedName: null })).rejects.toThrow(
        /not a \.yaml file/,
      )
    } finally {
      await picking.close()
    }
  })

  it('notebooks: starts in the notebooks folder, adds .mnlab.yaml on save, confines unless anywhere', async () => {
    const nbDir = path.join(outside, 'nbs')
    const answers: Array<string | null> = [
      path.join(nbDir, 'mine.yaml'),
      path.join(nbDir, 'sub', 'old.mnlab.yaml'),
      path.join(dir, 'elsewhere.mnlab.yaml'),
    ]
    const seen: Array<[string, string, string]> = []
    const mk = (anywhere: boolean) =>
      createLabService({
        scenariosDir: dir,
        notebooksDir: nbDir,
        notebooksAnywhere: anywhere,
        pool: new WorkerPool(tsxWorker, 1),
        nativePicker: async (purpose, defaultPath, kind) => {
          seen.push([purpose, defaultPath, kind])
          return answers.shift() ?? null
        },
      })
    const confined = mk(false)
    const anywhere = mk(true)
    try {
      expect(
        await confined.pickFile({ purpose: 'save', kind: 'notebook', suggestedName: 'mine.mnlab.yaml' }),
      ).toEqual({ path: path.join(nbDir, 'mine.mnlab.yaml') })
      expect(seen[0]).toEqual(['save', path.join(nbDir, 'mine.mnlab.yaml'), 'notebook'])
      expect(await confined.pickFile({ purpose: 'open', kind: 'notebook', suggestedName: null })).toEqual({
        path: path.join(nbDir, 'sub', 'old.mnlab.yaml'),
      })
      await expect(
        confined.pickFile({ purpose: 'open', kind: 'notebook', suggestedName: null }),
      ).rejects.toThrow(/outside the notebooks folder/)
      answers.push(path.join(dir, 'elsewhere.mnlab.yaml'))
      expect(await anywhere.pickFile({ purpose: 'open', kind: 'notebook', suggestedName: null })).toEqual({
        path: path.join(dir, 'elsewhere.mnlab.yaml'),
      })
      expect(await anywhere.pickFile({ purpose: 'open', kind: 'notebook', suggestedName: null })).toBeNull()
      // Anywhere means what the user chose, not any file a request names.
      const secret = path.join(outside, 'id_rsa')
      writeFileSync(secret, 'PRIVATE KEY\n')
      await expect(anywhere.notebookOpen({ path: secret })).rejects.toThrow(/not chosen in a file dialog/)
      await expect(
        anywhere.notebookSave({
          path: path.join(outside, 'x.mnlab.yaml'),
          text: 'x',
          expectedRevision: null,
        }),
      ).rejects.toThrow(/not chosen in a file dialog/)
      // The chosen one opens (it does not exist yet: a clean not-found, not a refusal).
      await expect(anywhere.notebookOpen({ path: path.join(dir, 'elsewhere.mnlab.yaml') })).rejects.toThrow(
        /not-found/,
      )
    } finally {
      await confined.close()
      await anywhere.close()
    }
  })
})

describe('engine work off the service thread', () => {
  it('a long replay runs in a worker: other requests are answered meanwhile, even with every run worker busy', async () => {
    // Both run workers busy with the COW scenario's three policies.
    const run = svc.startRun(runRequest(COW_TEXT, ['all']))
    const runEvents = eventsOf(svc, run)
    const writes = Array.from({ length: 3_000 }, () => 'write A 1').join(', ')
    const long = `title: one long thread\narch: x86_64\npages:\n  A: { value: 0, prot: rw }\ncpus:\n  C0: [${writes}]\n`
    const order: string[] = []
    const replay = svc
      .replay({
        text: long,
        file: null,
        policy: 'arch-hook',
        schedule: Array.from({ length: 3_000 }, () => 'C0'),
      })
      .then((r) => {
        order.push('replay')
        return r
      })
    await svc.listScenarios().then(() => order.push('list'))
    const r = await replay
    expect(order).toEqual(['list', 'replay'])
    expect(r.records).toHaveLength(3_000)
    // A short replay is not stuck behind the explorations either.
    const quick = await svc.replay({
      text: UPGRADE_TEXT,
      file: null,
      policy: 'start-end',
      schedule: ['C0', 'D0'],
    })
    expect(quick.records.length).toBeGreaterThan(0)
    let finished = false
    void runEvents.then(() => (finished = true))
    expect(finished).toBe(false)
    await svc.cancelRun({ runId: await run })
    await runEvents
    // Checking a 600 KB scenario (60,000 unknown keys) is worker work as well.
    const big = `${UPGRADE_TEXT}${Array.from({ length: 60_000 }, (_, i) => `k${i}: 1`).join('\n')}\n`
    const seen: string[] = []
    const checking = svc.validate({ text: big, file: null }).then((issues) => {
      seen.push('validate')
      return issues
    })
    await svc.listScenarios().then(() => seen.push('list'))
    const issues = await checking
    expect(seen).toEqual(['list', 'validate'])
    expect(issues.at(-1)!.message).toMatch(/^\.\.\. and \d+ more problems/)
    // Bad input from the worker is still bad input.
    const bad = await rejection(
      svc.replay({ text: UPGRADE_TEXT, file: null, policy: 'start-end', schedule: ['X9'] }),
    )
    expect(bad.message).toMatch(/^schedule: .*X9/)
  }, 120_000)
})

describe('a flood of runs', () => {
  it('200 runs queue behind the workers, the service keeps answering, and all 200 cancel cleanly', async () => {
    const ids = await Promise.all(
      Array.from({ length: 200 }, () => svc.startRun(runRequest(COW_TEXT, ['all']))),
    )
    expect(new Set(ids).size).toBe(200)
    // Queued runs hold no worker: the service still answers at once.
    expect((await svc.listScenarios()).length).toBeGreaterThan(0)
    const ended = new Map<string, string>()
    const off = svc.onDidRunEvent((e) => {
      if (e.kind !== 'progress') ended.set(e.runId, e.kind)
    })
    try {
      await Promise.all(ids.map((runId) => svc.cancelRun({ runId })))
      for (let i = 0; i < 100 && ended.size < 200; i++) await new Promise((r) => setTimeout(r, 50))
      expect(ended.size).toBe(200)
      expect([...ended.values()].every((k) => k === 'cancelled')).toBe(true)
    } finally {
      off()
    }
    // And the next run works.
    const events = await eventsOf(svc, svc.startRun(runRequest(UPGRADE_TEXT, ['arch-hook'])))
    expect(events.at(-1)?.kind).toBe('finished')
  }, 120_000)
})
