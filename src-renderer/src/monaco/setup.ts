/**
 * Monaco 0.57 + monaco-yaml 5.5.1, wired as verified in the stack notes (§2): tree-shakeable
 * entry points, Vite `?worker` imports, and a createWebWorker adapter, because
 * monaco-worker-manager 2.x still calls the pre-0.55 `{ moduleId, label, createData }` form.
 */
import * as monaco from 'monaco-editor/editor'
import 'monaco-editor/features/register.all'
import 'monaco-editor/languages/definitions/yaml/register'
import { configureMonacoYaml, type MonacoYaml, type MonacoYamlOptions } from 'monaco-yaml'
import EditorWorker from 'monaco-editor/editor/editor.worker?worker'
import YamlWorker from './yaml.worker?worker'

self.MonacoEnvironment = {
  getWorker: (_id: string, label: string) => (label === 'yaml' ? new YamlWorker() : new EditorWorker()),
}

type LegacyOpts = {
  moduleId?: string
  label?: string
  createData?: unknown
  host?: object
  keepIdleModels?: boolean
  worker?: Worker | Promise<Worker>
}

function createWebWorkerCompat(opts: LegacyOpts) {
  if (opts.worker) return monaco.editor.createWebWorker(opts as never)
  const env = self.MonacoEnvironment
  if (!env?.getWorker) throw new Error('MonacoEnvironment.getWorker is not set')
  const worker = Promise.resolve(
    env.getWorker(opts.moduleId ?? 'workerMain.js', opts.label ?? 'editorWorkerService'),
  ).then((w) => {
    // The same handshake as monaco's internal/common/workers.js.
    w.postMessage('ignore')
    w.postMessage(opts.createData)
    return w
  })
  return monaco.editor.createWebWorker({
    worker,
    host: opts.host,
    keepIdleModels: opts.keepIdleModels,
  } as never)
}

let yaml: MonacoYaml | null = null

/**
 * yaml-language-server heads every hover with the closest schema title, which for a node
 * without one (an op, a page name) is the root's: "MMU Notifier Lab scenario" over each hover.
 */
function withoutRootTitle(schema: Record<string, unknown>): Record<string, unknown> {
  const { title: _title, ...rest } = schema
  return rest
}

/**
 * Points monaco-yaml at the engine's scenario schema (for models named *.mnlab.yaml). The schema
 * is copied to plain JSON: a Vue reactive proxy cannot be posted to the worker.
 */
export function configureScenarioSchema(schema: object): void {
  const options: MonacoYamlOptions = {
    enableSchemaRequest: false,
    hover: true,
    completion: true,
    validate: true,
    schemas: [
      {
        uri: 'inmemory://mnlab/scenario.schema.json',
        fileMatch: ['*.mnlab.yaml'],
        schema: withoutRootTitle(JSON.parse(JSON.stringify(schema)) as Record<string, unknown>) as never,
      },
    ],
  }
  if (yaml) {
    void yaml.update(options)
    return
  }
  yaml = configureMonacoYaml(
    {
      ...monaco,
      editor: { ...monaco.editor, createWebWorker: createWebWorkerCompat },
    } as unknown as typeof monaco,
    options,
  )
}

export { monaco }
