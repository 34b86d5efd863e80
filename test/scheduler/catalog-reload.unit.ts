// Catalog.get() after invalidate(): a load that started before the invalidation (another session's,
// still in flight when a DDL committed) may not see that DDL (a column's volatile default: planned
// without it, each backend would compute its own value). It must not be handed out after the
// invalidation; a new load starts. The window is hard to hit with a real server on purpose, so the
// loader is the seam here: each load resolves when the test says so.

import t from 'tap'
import { Catalog, emptyCatalog, type CatalogData } from '../../src/scheduler/catalog.ts'

t.test('a load in flight when the catalog is invalidated is not returned to later callers', async (t) => {
  const cat = new Catalog(() => ({ name: 'unused', host: '127.0.0.1', port: 1, user: 'unused' }), 'postgres')
  const pending: ((d: CatalogData) => void)[] = []
  ;(cat as unknown as { load: () => Promise<CatalogData> }).load = () => new Promise<CatalogData>((resolve) => pending.push(resolve))
  const stale = emptyCatalog()
  const fresh = emptyCatalog()
  fresh.sequenceDefaults.add('public.after_ddl')
  const p1 = cat.get()
  t.equal(pending.length, 1, 'one load started')
  cat.invalidate() // a DDL committed while it was in flight
  const p2 = cat.get()
  t.equal(pending.length, 2, 'the next get() starts a load of its own')
  const p3 = cat.get()
  t.equal(pending.length, 2, 'callers after it share that new load')
  pending[0]!(stale)
  pending[1]!(fresh)
  t.equal(await p1, stale, 'the caller from before the invalidation gets what it asked for')
  t.equal(await p2, fresh, 'a caller after it gets the new catalog')
  t.equal(await p3, fresh)
  t.equal(await cat.get(), fresh, 'and the new catalog is what is kept')
  t.equal(pending.length, 2, 'no further load')
})

t.test('the stale load finishing last does not replace the new catalog', async (t) => {
  const cat = new Catalog(() => ({ name: 'unused', host: '127.0.0.1', port: 1, user: 'unused' }), 'postgres')
  const pending: ((d: CatalogData) => void)[] = []
  ;(cat as unknown as { load: () => Promise<CatalogData> }).load = () => new Promise<CatalogData>((resolve) => pending.push(resolve))
  const stale = emptyCatalog()
  const fresh = emptyCatalog()
  const p1 = cat.get()
  cat.invalidate()
  const p2 = cat.get()
  pending[1]!(fresh)
  t.equal(await p2, fresh)
  pending[0]!(stale)
  t.equal(await p1, stale)
  t.equal(await cat.get(), fresh, 'the kept catalog is the one loaded after the invalidation')
})
