/**
 * Op completion, op hover and "did you mean" Quick Fixes for scenario models (*.mnlab.yaml),
 * on top of monaco-yaml's schema-driven ones. The decisions are pure (logic/editorAssist.ts);
 * this file only turns them into Monaco providers.
 */
import { opCompletions, opHover, opSlotAt, quickFixFor, type OpDocs } from '../logic/editorAssist'
import { monaco } from './setup'

/** Marker `source` of the engine's validation issues (ScenarioEditor.vue sets it). */
export const MARKER_SOURCE = 'mnlab'

let docs: OpDocs | null = null
let registered = false

/** The op docs of the engine's scenario schema (null until the engine's info arrives). */
export function setOpDocs(d: OpDocs | null): void {
  docs = d
}

const isScenario = (m: monaco.editor.ITextModel): boolean => m.uri.path.endsWith('.mnlab.yaml')

/** Markdown-escapes a doc line (they name C functions like `handle_mm_fault` and `[Q...]`). */
function md(s: string): string {
  return s.replace(/[\\`*_{}[\]()<>#+!|]/g, '\\$&')
}

/** Registers the providers once; they serve every scenario model. */
export function registerScenarioAssist(): void {
  if (registered) return
  registered = true

  monaco.languages.registerCompletionItemProvider('yaml', {
    // `[` and `,` open a flow-sequence item; a space after them or after `- ` too.
    triggerCharacters: ['[', ',', ' '],
    provideCompletionItems(model, position) {
      if (!docs || !isScenario(model)) return { suggestions: [] }
      const slot = opSlotAt(model.getLinesContent(), position.lineNumber, position.column)
      if (!slot) return { suggestions: [] }
      const range = new monaco.Range(
        position.lineNumber,
        slot.startColumn,
        position.lineNumber,
        Math.max(slot.endColumn, position.column),
      )
      return {
        suggestions: opCompletions(slot, docs).map((c, i) => ({
          label: c.label,
          kind: monaco.languages.CompletionItemKind.Function,
          detail: `${slot.kind === 'cpu' ? 'CPU' : 'device'} op`,
          documentation: c.detail,
          insertText: c.label,
          range,
          sortText: String(i).padStart(4, '0'),
        })),
      }
    },
  })

  monaco.languages.registerHoverProvider('yaml', {
    provideHover(model, position) {
      if (!docs || !isScenario(model)) return null
      const h = opHover(model.getLinesContent(), position.lineNumber, position.column, docs)
      if (!h) return null
      return {
        range: new monaco.Range(position.lineNumber, h.startColumn, position.lineNumber, h.endColumn),
        contents: [{ value: `**${md(h.op)}**` }, { value: md(h.doc) }],
      }
    },
  })

  monaco.languages.registerCodeActionProvider(
    'yaml',
    {
      provideCodeActions(model, _range, context) {
        const actions: monaco.languages.CodeAction[] = []
        if (!isScenario(model)) return { actions, dispose() {} }
        for (const marker of context.markers) {
          if (marker.source !== MARKER_SOURCE) continue
          const range = new monaco.Range(
            marker.startLineNumber,
            marker.startColumn,
            marker.endLineNumber,
            marker.endColumn,
          )
          const fix = quickFixFor({ message: marker.message, text: model.getValueInRange(range) })
          if (!fix) continue
          actions.push({
            title: fix.title,
            kind: 'quickfix',
            diagnostics: [marker],
            isPreferred: true,
            edit: {
              edits: [
                {
                  resource: model.uri,
                  textEdit: { range, text: fix.replacement },
                  versionId: model.getVersionId(),
                },
              ],
            },
          })
        }
        return { actions, dispose() {} }
      },
    },
    { providedCodeActionKinds: ['quickfix'] },
  )
}
