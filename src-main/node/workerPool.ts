/**
 * A small pool of worker threads that run exploration jobs (one policy of one scenario each)
 * off the calling thread. A worker that crashes fails its job with a message and is replaced;
 * `cancel` terminates the worker running a job.
 */
import type { ValidationIssue } from '../api/labApi'
import { LabApiError } from './apiErrors'
import type { TaskName } from './engineTasks'
import { existsSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import type {
  ExploreMode,
  ExploreProgress,
  InvariantName,
  Policy,
  PolicyResult,
  RunOptions,
  Scenario,
} from '../engine'

/** Plain-data run options (no callbacks: they cannot cross a thread boundary). */
export interface WorkerRunOptions {
  readonly mode: ExploreMode
  readonly seed: number
  readonly executions: number
  readonly schedule: readonly string[]
  readonly maxStates: number
  readonly maxSteps: number
  readonly reduction?: boolean
  readonly order?: 'bfs' | 'dfs'
  /** Stop at the first violation: of any invariant, or of one of those named (Budget.stopAt). */
  readonly first?: 'any' | readonly InvariantName[]
  /** false: `--reduction none` (Budget.canonicalFrames). */
  readonly canonicalFrames?: boolean
  /** `--reduction persistent` (Budget.persistent). */
  readonly persistent?: boolean
  /** `--reduction merge` (Budget.merge). */
  readonly merge?: boolean
  /** Components (Budget.components; the default). */
  readonly components?: boolean
  /** Note the sites the run asks about (RunOptions.tallySites: PolicyResult.sitesReached). */
  readonly tallySites?: boolean
  /**
   * Memory budget per policy in MiB (the worker's heap and external memory); over it the run
   * stops with `unknown`. At most 85% of the worker's heap limit and the pool's share of 70% of
   * the machine's memory (the default), so neither V8 nor the OS kills a run.
   */
  readonly maxMemoryMb?: number | null
  readonly timeoutMs: number | null
  /**
   * When the time budget runs out (epoch ms), shared by every policy of a run (or a whole
   * command): a policy still queued when it passes stops at once with `unknown`.
   */
  readonly deadline?: number | null
}

export type MainToWorker =
  | {
      readonly kind: 'run'
      readonly id: number
      readonly scenario: Scenario
      /** The policy, or its name as the scenario's policies resolve it (parsePolicy). */
      readonly policy: Policy | string
      readonly opts: WorkerRunOptions
    }
  | { readonly kind: 'task'; readonly id: number; readonly task: TaskName; readonly arg: unknown }
export type WorkerToMain =
  | { readonly kind: 'progress'; readonly id: number; readonly progress: ExploreProgress }
  | { readonly kind: 'done'; readonly id: number; readonly result: PolicyResult }
  | { readonly kind: 'value'; readonly id: number; readonly value: unknown }
  | {
      readonly kind: 'failed'
      readonly id: number
      readonly message: string
      /** Bad input (a LabApiError in the worker), with its issues: not a worker failure. */
      readonly badInput?: { readonly issues?: readonly ValidationIssue[] }
    }

export function toWorkerOptions(
  o: RunOptions,
  timeoutMs: number | null,
  deadline: number | null = timeoutMs === null ? null : Date.now() + timeoutMs,
): WorkerRunOptions {
  return {
    mode: o.mode,
    seed: o.seed,
    executions: o.executions,
    schedule: o.schedule,
    maxStates: o.budget.maxStates,
    maxSteps: o.budget.maxSteps,
    reduction: o.budget.reduction,
    order: o.budget.order,
    canonicalFrames: o.budget.canonicalFrames,
    persistent: o.budget.persistent,
    merge: o.budget.merge,
    components: o.budget.components,
    timeoutMs,
    deadline,
  }
}

/** The engine's stop predicate for a plain-data `first` (functions cannot cross to a worker). */
export function stopAtOf(first: WorkerRunOptions['first']): ((inv: InvariantName) => boolean) | undefined {
  if (first === undefined) return undefined
  if (first === 'any') return () => true
  return (inv) => first.includes(inv)
}

/** Starts the worker from TypeScript source through tsx (tests, which run the sources). */
export function tsxWorker(): Worker {
  const file = path.join(__dirname, 'exploreWorker.ts')
  return new Worker(`require('tsx/cjs'); require(${JSON.stringify(file)})`, { eval: true })
}

/**
 * The worker for code running from a bundle: bin/build.cjs writes exploreWorker.cjs beside
 * the CLI and host bundles (out/node). From the sources (vitest), the tsx worker.
 */
export function defaultWorker(): Worker {
  const bundled = path.join(__dirname, 'exploreWorker.cjs')
  return existsSync(bundled) ? new Worker(bundled) : tsxWorker()
}

interface Job {
  readonly msg: MainToWorker
  readonly resolve: (r: never) => void
  readonly reject: (e: Error) => void
  readonly onProgress?: (p: ExploreProgress) => void
}

/** A job handle: its result, and a way to cancel it alone. */
export interface RunHandle {
  readonly result: Promise<PolicyResult>
  cancel(): void
}

interface Slot {
  worker: Worker
  job: Job | null
}

export class WorkerPool {
  private readonly slots: Slot[] = []
  private readonly queue: Job[] = []
  private nextId = 1
  private closed = false
  /** Every worker may fill its memory budget at once: they share 70% of the machine's memory. */
  private readonly memoryShareMb: number

  constructor(
    private readonly createWorker: () => Worker = defaultWorker,
    readonly size = Math.max(1, Math.min(4, os.availableParallelism?.() ?? os.cpus().length)),
  ) {
    this.memoryShareMb = Math.floor((os.totalmem() * 0.7) / size / (1024 * 1024))
  }

  /** Runs one policy of one scenario; resolves with its result, rejects if the worker failed. */
  run(scenario: Scenario, policy: Policy | string, opts: WorkerRunOptions): Promise<PolicyResult> {
    return this.start(scenario, policy, opts).result
  }

  /**
   * Starts a job with progress reports; `cancel()` drops it from the queue, or terminates the
   * worker running it (the pool starts a fresh one), within a fraction of a second.
   */
  start(
    scenario: Scenario,
    policy: Policy | string,
    opts: WorkerRunOptions,
    onProgress?: (p: ExploreProgress) => void,
  ): RunHandle {
    const id = this.nextId++
    let job: Job | null = null
    const result = new Promise<PolicyResult>((resolve, reject) => {
      if (this.closed) return reject(new Error('worker pool is closed'))
      const share = this.memoryShareMb
      const withMemory = { ...opts, maxMemoryMb: Math.min(opts.maxMemoryMb ?? share, share) }
      job = { msg: { kind: 'run', id, scenario, policy, opts: withMemory }, resolve, reject, onProgress }
      this.queue.push(job)
      this.pump()
    })
    const cancel = (): void => {
      if (!job) return
      const q = this.queue.indexOf(job)
      if (q >= 0) {
        this.queue.splice(q, 1)
        job.reject(new Error('cancelled'))
        return
      }
      const slot = this.slots.find((s) => s.job === job)
      if (!slot) return
      slot.job = null
      this.slots.splice(this.slots.indexOf(slot), 1)
      job.reject(new Error('cancelled'))
      void slot.worker.terminate()
      this.pump()
    }
    return { result, cancel }
  }

  /** Terminates every worker; queued and running jobs are rejected. */
  async close(): Promise<void> {
    this.closed = true
    for (const j of this.queue.splice(0)) j.reject(new Error('cancelled'))
    await Promise.all(
      this.slots.map(async (s) => {
        s.job?.reject(new Error('cancelled'))
        s.job = null
        await s.worker.terminate()
      }),
    )
    this.slots.length = 0
  }

  /**
   * Runs one engine task (engineTasks.ts: a replay, a timeline) in a worker. Tasks go ahead of
   * queued runs and may use one worker beyond `size`, so a request for a trace is not stuck
   * behind long explorations. Bad input rejects with a LabApiError.
   */
  task(task: TaskName, arg: unknown): Promise<unknown> {
    const id = this.nextId++
    return new Promise<unknown>((resolve, reject) => {
      if (this.closed) return reject(new Error('worker pool is closed'))
      const firstRun = this.queue.findIndex((j) => j.msg.kind === 'run')
      const job: Job = {
        msg: { kind: 'task', id, task, arg },
        resolve: resolve as (r: never) => void,
        reject,
      }
      this.queue.splice(firstRun < 0 ? this.queue.length : firstRun, 0, job)
      this.pump()
    })
  }

  private pump(): void {
    for (;;) {
      const busyRuns = this.slots.filter((s) => s.job?.msg.kind === 'run').length
      const i = this.queue.findIndex((j) => j.msg.kind === 'task' || busyRuns < this.size)
      if (i < 0) return
      const job = this.queue[i]!
      let slot = this.slots.find((s) => s.job === null)
      if (!slot) {
        const limit = job.msg.kind === 'task' ? this.size + 1 : this.size
        if (this.slots.length >= limit) return
        slot = this.spawn()
      }
      this.queue.splice(i, 1)
      slot.job = job
      slot.worker.ref()
      slot.worker.postMessage(job.msg)
    }
  }

  private spawn(): Slot {
    const slot: Slot = { worker: this.createWorker(), job: null }
    slot.worker.on('message', (m: WorkerToMain) => {
      const job = slot.job
      if (!job || job.msg.id !== m.id) return
      if (m.kind === 'progress') {
        job.onProgress?.(m.progress)
        return
      }
      slot.job = null
      slot.worker.unref()
      if (m.kind === 'done') job.resolve(m.result as never)
      else if (m.kind === 'value') job.resolve(m.value as never)
      else if (m.badInput) job.reject(new LabApiError(m.message, m.badInput.issues))
      else
        job.reject(new Error(`${job.msg.kind === 'run' ? 'exploration' : job.msg.task} failed: ${m.message}`))
      this.pump()
    })
    const fail = (why: string): void => {
      const job = slot.job
      slot.job = null
      const i = this.slots.indexOf(slot)
      if (i >= 0) this.slots.splice(i, 1)
      job?.reject(new Error(`worker crashed: ${why}`))
      if (!this.closed) this.pump()
    }
    slot.worker.on('error', (e) => fail(e.message))
    slot.worker.on('exit', (code) => {
      if (!this.closed && this.slots.includes(slot)) fail(`exit code ${code}`)
    })
    // An idle worker must not keep the process alive; a busy one must.
    slot.worker.unref()
    this.slots.push(slot)
    return slot
  }
}
