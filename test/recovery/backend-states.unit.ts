// The view of the backends' states a starting pgraid takes from what the backends recorded
// (issue 22, item 3): per backend the latest record wins, a record about oneself counts for nothing.
import t from 'tap'
import type { BackendLogState } from '../../src/recovery/log.ts'
import { latestStates, type RecordedState } from '../../src/recovery/backend-states.ts'

const view = (backend: string, states: [string, string, number][]): BackendLogState => ({
  index: 0,
  backend,
  maxLsn: 0,
  records: 0,
  recent: new Set(),
  createdNow: false,
  states: states.map(([b, state, at]): RecordedState => ({ backend: b, state, reason: null, cause: null, at })),
})
const outcome = (found: BackendLogState[]) => {
  const said: string[][] = []
  const r = latestStates(found, (names) => said.push(names))
  return { states: r.map((x) => `${x.rec.backend}:${x.rec.state}`).sort(), disagreed: said.flat().sort() }
}

t.test('a stale view (a backend that was out) loses to the latest record', async (t) => {
  // pg2 was out while pg1 was disabled and enabled again; pg2 still says pg1 disabled.
  const r = outcome([
    view('pg1', [
      ['pg1', 'enabled', 30],
      ['pg2', 'enabled', 40],
      ['pg3', 'enabled', 0],
    ]),
    view('pg2', [
      ['pg1', 'disabled', 20],
      ['pg2', 'enabled', 0],
      ['pg3', 'enabled', 0],
    ]),
    view('pg3', [
      ['pg1', 'enabled', 30],
      ['pg2', 'enabled', 40],
      ['pg3', 'enabled', 0],
    ]),
  ])
  t.same(r.states, ['pg1:enabled', 'pg2:enabled', 'pg3:enabled'])
  t.same(r.disagreed, ['pg1'], 'the disagreement is reported')
})

t.test('two backends that each record the other out: the later record wins, not both', async (t) => {
  const r = outcome([
    view('pg1', [
      ['pg1', 'enabled', 0],
      ['pg2', 'disabled', 50],
    ]),
    view('pg2', [
      ['pg1', 'disabled', 10],
      ['pg2', 'enabled', 0],
    ]),
  ])
  t.same(r.states, ['pg1:enabled', 'pg2:disabled'], 'pg1 took a record at 50, so it was in service after pg2 recorded it out at 10: only pg2 is out, not both')
  const later = outcome([
    view('pg1', [
      ['pg1', 'enabled', 60],
      ['pg2', 'disabled', 50],
    ]),
    view('pg2', [
      ['pg1', 'disabled', 10],
      ['pg2', 'enabled', 0],
    ]),
    view('pg3', [
      ['pg1', 'enabled', 60],
      ['pg2', 'disabled', 50],
    ]),
  ])
  t.same(later.states, ['pg1:enabled', 'pg2:disabled', 'pg3:enabled'], "pg1 enabled again later: pg2's old record of it is stale")
})

t.test('a backend never takes itself out', async (t) => {
  const r = outcome([view('pg1', [['pg1', 'disabled', 99]])])
  t.same(r.states, ['pg1:enabled'], 'its own record about itself does not count')
})
