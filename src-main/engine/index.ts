/** The engine's public surface. Pure TypeScript: no Node, DOM or timers; randomness only from the seeded PRNG passed in. */
export * from './types'
export * from './results'
export * from './synthesisResult'
export * from './policy'
export { validateScenario, TOP_KEYS, CPU_OPS, DEVICE_OPS, definePolicies, POLICY_NAME } from './scenario'
export { parseExpr, evalExpr, exprToString } from './expr'
export { count, plural } from './plural'
export { initialState, hashState, type LabState } from './state'
export { step, enabledThreads, blockedReason, allDone, PROCS } from './step'
export {
  exploreExhaustive,
  runExecution,
  sequentialChooser,
  scriptedChooser,
  pctChooser,
  toCounterexample,
  ScheduleError,
  DEFAULT_BUDGET,
  type Budget,
  type ExploreProgress,
  type Execution,
  type ExploreOutcome,
  type Found,
} from './explore'
export {
  runScenario,
  runResultOf,
  runPolicy,
  defaultRunOptions,
  scheduleIndices,
  ENGINE_VERSION,
  type RunOptions,
} from './run'
export {
  COSTS,
  COST_KEYS,
  COST_TABLE_NAME,
  invalidationCost,
  alignedChunks,
  type CostEntry,
  type CostKey,
  type IommuKind,
  type InvalidationKinds,
} from './costs'
export { explainExecution, hookHint } from './explain'
export {
  synthesize,
  synthRunOptions,
  synthOutcome,
  localEvaluator,
  type SynthEvalRequest,
  type SynthEvalOutcome,
  type SynthEvaluator,
  type SynthOptions,
  type SynthScenarioInput,
} from './synthesize'
export {
  replayLenient,
  distinguish,
  outcomeMask,
  maskNames,
  DEFAULT_DISTINGUISH_STATES,
  type LenientReplay,
  type LenientSkip,
  type DistinguishBudget,
  type DistinguishOutcome,
} from './compare'
export { mulberry32, type Prng } from './prng'
export { scenarioJsonSchema, SCENARIO_TEMPLATE } from './scenarioSchema'
export { PRESET_DOCS, VARIANT_DOCS } from './policy'
