"""Reading a results file as a git revision or DVC experiment holds it, for the tables that compare runs
(`maskreid compare`, `maskreid check-reproduction`, the ablation's per-query reader): one wrapper of
dvc.api.read, one error type, so each caller keeps its own message and none catches DVC's exceptions itself."""

from __future__ import annotations


class RevisionReadError(LookupError):
    """`path` is not readable at `rev` (unknown revision, file absent there, output not in the cache or remote)."""

    def __init__(self, path: str, rev: str, reason: str) -> None:
        super().__init__(f"{rev}:{path}: {reason}")
        self.path, self.rev, self.reason = path, rev, reason


def read_at_revision(path: str, rev: str) -> str:
    """The text of `path` (relative to the repository root) at `rev`: a branch, tag, commit or experiment name;
    DVC-tracked files come from the cache or the remote."""
    import dvc.api
    from dvc.exceptions import DvcException
    from dvc.scm import RevError

    try:
        return dvc.api.read(path, rev=rev)
    except (DvcException, RevError, FileNotFoundError) as err:
        raise RevisionReadError(path, rev, str(err).splitlines()[0] if str(err) else type(err).__name__) from err
