/** The scenario being edited: which file, its text, whether it is saved, and its problems. */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import type { ScenarioEntry, ValidationIssue } from '../../../src-main/api/labApi'
import { lab, toLabError } from '../lab'

export const VALIDATE_DELAY_MS = 300

export const useScenarioStore = defineStore('scenario', () => {
  const entries = ref<ScenarioEntry[]>([])
  const listError = ref<string | null>(null)
  const loadingList = ref(false)
  /** Path relative to scenarios/, or null for an unsaved buffer. */
  const file = ref<string | null>(null)
  const text = ref('')
  const savedText = ref('')
  /** Bumped whenever the text is replaced from outside the editor (open, new). */
  const revision = ref(0)
  const issues = ref<ValidationIssue[]>([])
  const validateError = ref<string | null>(null)
  const fileError = ref<string | null>(null)
  const busy = ref(false)
  /** Set by Ctrl+S on an unsaved buffer: the browser shows its path field. */
  const askingPath = ref(false)
  const dirty = computed(() => text.value !== savedText.value)
  const entry = computed(() => entries.value.find((e) => e.path === file.value) ?? null)

  let timer: ReturnType<typeof setTimeout> | null = null
  let validateSeq = 0

  async function loadList(): Promise<void> {
    loadingList.value = true
    try {
      entries.value = await lab.listScenarios()
      listError.value = null
    } catch (e) {
      listError.value = toLabError(e).message
    } finally {
      loadingList.value = false
    }
  }

  function replace(path: string | null, body: string, saved: string): void {
    file.value = path
    text.value = body
    savedText.value = saved
    revision.value++
    issues.value = []
    scheduleValidate(0)
  }

  async function open(path: string): Promise<boolean> {
    busy.value = true
    try {
      const r = await lab.readScenario({ path })
      replace(r.path, r.text, r.text)
      fileError.value = null
      return true
    } catch (e) {
      fileError.value = `Cannot open ${path}: ${toLabError(e).message}`
      return false
    } finally {
      busy.value = false
    }
  }

  function newFromTemplate(template: string): void {
    // An untouched template is not worth a 'discard changes?' question.
    replace(null, template, template)
    fileError.value = null
  }

  /** Saves to `path` (relative to scenarios/) or to the current file. */
  async function save(path?: string): Promise<boolean> {
    const target = path ?? file.value
    if (!target) {
      askingPath.value = true
      return false
    }
    busy.value = true
    try {
      const body = text.value
      await lab.saveScenario({ path: target, text: body })
      file.value = target
      savedText.value = body
      fileError.value = null
      askingPath.value = false
      await loadList()
      return true
    } catch (e) {
      fileError.value = `Cannot save ${target}: ${toLabError(e).message}`
      return false
    } finally {
      busy.value = false
    }
  }

  /**
   * A native open/save dialog where the host has one (Electron): the chosen path relative to
   * scenarios/, or null (cancelled, or no native dialogs: the browser asks inline instead).
   */
  async function pickFile(purpose: 'open' | 'save', suggestedName: string | null): Promise<string | null> {
    try {
      return (await lab.pickFile({ purpose, suggestedName }))?.path ?? null
    } catch (e) {
      fileError.value = toLabError(e).message
      return null
    }
  }

  /** The editor reports every change here. */
  function setText(t: string): void {
    if (t === text.value) return
    text.value = t
    scheduleValidate(VALIDATE_DELAY_MS)
  }

  function scheduleValidate(delay: number): void {
    if (timer) clearTimeout(timer)
    timer = setTimeout(() => {
      timer = null
      void validateNow()
    }, delay)
  }

  async function validateNow(): Promise<void> {
    const seq = ++validateSeq
    const body = text.value
    try {
      const found = await lab.validate({ text: body, file: file.value })
      if (seq !== validateSeq) return // a newer edit is being validated
      issues.value = found
      validateError.value = null
    } catch (e) {
      if (seq !== validateSeq) return
      const err = toLabError(e)
      issues.value = [...err.issues]
      validateError.value = err.issues.length ? null : err.message
    }
  }

  /** Issues reported by a failed run (the same text) replace the markers. */
  function setIssues(found: readonly ValidationIssue[]): void {
    issues.value = [...found]
  }

  return {
    entries,
    listError,
    loadingList,
    file,
    text,
    savedText,
    revision,
    issues,
    validateError,
    fileError,
    busy,
    askingPath,
    dirty,
    entry,
    loadList,
    open,
    newFromTemplate,
    save,
    pickFile,
    setText,
    validateNow,
    setIssues,
  }
})
