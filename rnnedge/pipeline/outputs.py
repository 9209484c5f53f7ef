"""What a pipeline run created in its output folder, so a failed run can take exactly that back."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class CreatedFiles:
    """Snapshot of the paths under `root` before a run; `remove_new()` deletes what appeared since.

    Files that existed before (the user's, or an earlier run's) are never removed; an earlier run's
    file that this run rewrote was replaced atomically, so it is whole either way.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root_existed = root.exists()
        self.before = self._paths() if self.root_existed else set()
        # Folders above root that a run would create (mkdir parents=True): removed again if left empty.
        self.missing_parents = [p for p in root.parents if not p.exists()]

    def _paths(self) -> set[Path]:
        found: set[Path] = set()
        for dirpath, dirnames, filenames in os.walk(self.root):
            base = Path(dirpath)
            found.update(base / n for n in dirnames)
            found.update(base / n for n in filenames)
        return found

    def remove_new(self) -> list[Path]:
        """Delete files and folders that were not there before the run (deepest first); returns them."""
        if not self.root.exists():
            return []
        new = sorted(self._paths() - self.before, key=lambda p: len(p.parts), reverse=True)
        removed = []
        for path in new:
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()  # only empty folders: anything the user put inside stays
                else:
                    path.unlink()
                removed.append(path)
        if not self.root_existed:
            for folder in (self.root, *self.missing_parents):
                with contextlib.suppress(OSError):
                    folder.rmdir()
        return removed
