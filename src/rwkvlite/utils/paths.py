"""Where the shared data folder is: $RWKVLITE_SHARED, else ../shared beside the working
folder or beside the repository."""
from __future__ import annotations

import os

HERE = os.path.dirname(os.path.abspath(__file__))


def shared_root() -> str | None:
    for root in (os.environ.get("RWKVLITE_SHARED", ""), os.path.join(os.getcwd(), "..", "shared"),
                 os.path.join(HERE, "..", "..", "..", "..", "shared")):
        if root and os.path.isdir(root):
            return os.path.normpath(root)
    return None


def shared_path(*parts: str) -> str:
    """A path inside the shared folder (or ../shared/... when there is none, for the error to name)."""
    return os.path.join(shared_root() or os.path.join("..", "shared"), *parts)


def expand(path: str) -> str:
    """Config paths may start with {shared}/ for the shared data folder."""
    return shared_path(path[len("{shared}/"):]) if path.startswith("{shared}/") else path
