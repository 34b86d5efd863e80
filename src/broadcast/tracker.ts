// Knows when a backend has finished answering one frontend message, from the
// sequence of "unit terminators" it sends (ParseComplete, CommandComplete,
// ErrorResponse, ReadyForQuery, ...). Rows, notices and CopyData are not
// terminators: they belong to the unit that the next terminator closes.

import { B, F } from '../protocol/codes.ts'

const TERMINATORS = new Set<number>([
  B.ParseComplete,
  B.BindComplete,
  B.CloseComplete,
  B.CommandComplete,
  B.EmptyQueryResponse,
  B.ErrorResponse,
  B.PortalSuspended,
  B.NoData,
  B.ParameterDescription,
  B.RowDescription,
  B.ReadyForQuery,
  B.CopyInResponse,
  B.CopyOutResponse,
  B.CopyBothResponse,
  B.CopyDone,
  B.FunctionCallResponse,
])

export function isTerminator(type: number): boolean {
  return TERMINATORS.has(type)
}

/** Frontend messages after which the backend answers nothing, or skips on error. */
export function expectsResponse(code: number): boolean {
  return code !== F.Flush && code !== F.CopyData && code !== F.CopyDone && code !== F.CopyFail
}

export class ResponseTracker {
  private stage = 0
  constructor(
    readonly code: number,
    readonly describeStatement: boolean,
  ) {}

  /** Feeds a terminator; true when the response to the message is complete. */
  step(type: number): boolean {
    if (this.code === F.Query) return type === B.ReadyForQuery
    if (type === B.ErrorResponse) return true
    switch (this.code) {
      case F.Sync:
        return type === B.ReadyForQuery
      case F.Describe:
        if (this.describeStatement && this.stage === 0 && type === B.ParameterDescription) {
          this.stage = 1
          return false
        }
        return true
      case F.Execute:
        if (type === B.CopyInResponse || type === B.CopyOutResponse || type === B.CopyBothResponse || type === B.CopyDone) return false
        return true
      default:
        return true
    }
  }
}
