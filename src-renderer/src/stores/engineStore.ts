/** What the engine offers: presets, variants, invariants, the scenario schema and template. */
import { defineStore } from 'pinia'
import { ref } from 'vue'
import type { EngineInfo } from '../../../src-main/api/labApi'
import { lab, toLabError } from '../lab'

export const useEngineStore = defineStore('engine', () => {
  const info = ref<EngineInfo | null>(null)
  const error = ref<string | null>(null)

  async function load(): Promise<EngineInfo | null> {
    try {
      info.value = await lab.engineInfo()
      error.value = null
    } catch (e) {
      error.value = toLabError(e).message
    }
    return info.value
  }

  return { info, error, load }
})
