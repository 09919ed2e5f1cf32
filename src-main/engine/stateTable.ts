/**
 * Visited-state table: open addressing over the two 32-bit halves of a state hash (64 bits in
 * all; with a million states the chance of any collision is about 3e-8). Much lighter than a
 * Map of long string keys, which was the explorer's hot spot.
 */
export class StateTable {
  private cap = 1 << 16
  private h1 = new Uint32Array(this.cap)
  private h2 = new Uint32Array(this.cap)
  private ids = new Int32Array(this.cap).fill(-1)
  size = 0

  /** Returns the id stored for the hash (a, b), or inserts `id` and returns -1. */
  getOrInsert([a, b]: readonly [number, number], id: number): number {
    const mask = this.cap - 1
    for (let i = (a ^ (b * 0x9e3779b1)) & mask; ; i = (i + 1) & mask) {
      const x = this.ids[i]!
      if (x === -1) {
        this.ids[i] = id
        this.h1[i] = a
        this.h2[i] = b
        if (++this.size * 2 > this.cap) this.grow()
        return -1
      }
      if (this.h1[i] === a && this.h2[i] === b) return x
    }
  }

  /** The id stored for the hash, or -1. */
  get([a, b]: readonly [number, number]): number {
    const mask = this.cap - 1
    for (let i = (a ^ (b * 0x9e3779b1)) & mask; ; i = (i + 1) & mask) {
      const x = this.ids[i]!
      if (x === -1 || (this.h1[i] === a && this.h2[i] === b)) return x
    }
  }

  private grow(): void {
    const { h1, h2, ids } = this
    this.cap *= 2
    this.h1 = new Uint32Array(this.cap)
    this.h2 = new Uint32Array(this.cap)
    this.ids = new Int32Array(this.cap).fill(-1)
    const mask = this.cap - 1
    for (let j = 0; j < ids.length; j++) {
      if (ids[j] === -1) continue
      const a = h1[j]!
      const b = h2[j]!
      let i = (a ^ (b * 0x9e3779b1)) & mask
      while (this.ids[i] !== -1) i = (i + 1) & mask
      this.ids[i] = ids[j]!
      this.h1[i] = a
      this.h2[i] = b
    }
  }
}
