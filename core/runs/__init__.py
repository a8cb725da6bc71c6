"""The run machinery REER and R2 share: what a stored run needs whatever engine produces its events.

`lease` (one driver per run), `seeds` (per-step seeds), `controls` (the steering base class),
`engine` (an engine's description: its kind, finish event, record and trajectory mapping; the
record and trajectory of a stored run), `driver` (open or resume a run atomically; drive an
engine's event generator under the lease, saving every event) and `batch` (many input items,
one outcome each). Imports neither core.reer nor core.r2: the engines import this.
"""
