"""To: and Cc: of each patch from the target tree's own MAINTAINERS, by its
own `scripts/get_maintainer.pl`, as a QEMU contributor runs it before
`git send-email`.

The base may be a repository without a work tree (a cache import), and a
user's tree may have local edits: the script and MAINTAINERS are taken
from the base commit into a scratch directory, with the few files the
script checks to believe it runs at the top of a QEMU tree.  The patches
name the files they change, so nothing else of the tree is needed.

To: the maintainers (M:) of what a patch changes; Cc: its reviewers (R:)
and mailing lists (L:).  The cover letter goes to the union of them all.
"""

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from generator import gitops
from generator.errors import ToolError
from generator.qemutree import BaseTree

SCRIPT = "scripts/get_maintainer.pl"
# what get_maintainer.pl's top_of_tree() looks for
TOP_FILES = ("MAINTAINERS", "COPYING", "Makefile", "VERSION")
TOP_DIRS = ("docs", "linux-user", "system")
COMMON = ("--no-git", "--no-git-fallback", "--no-rolestats")
ROLES = {"to": ("--m", "--no-r", "--no-l"),
         "cc": ("--no-m", "--r", "--l")}


def maintainers_tree(base: BaseTree, dest: Path) -> Path:
    """A scratch directory where the base's get_maintainer.pl runs."""
    missing = gitops.export_files(base.repo, base.commit,
                                  (SCRIPT, *TOP_FILES), dest)
    if SCRIPT in missing or "MAINTAINERS" in missing:
        raise ToolError(f"--to-maintainers: QEMU {base.version} "
                        f"({base.origin}) has no {SCRIPT} or MAINTAINERS")
    for name in missing:
        (dest / name).write_text("")
    for name in TOP_DIRS:
        (dest / name).mkdir(exist_ok=True)
    return dest


def get_maintainers(tree: Path, patch: Path) -> dict[str, list[str]]:
    """{"to": [...], "cc": [...]} for one patch file, in the script's
    order."""
    if shutil.which("perl") is None:
        raise ToolError("--to-maintainers needs perl to run "
                        f"{SCRIPT}")
    found: dict[str, list[str]] = {}
    for field, roles in ROLES.items():
        proc = subprocess.run(["perl", SCRIPT, *COMMON, *roles,
                               str(Path(patch).resolve())],
                              cwd=tree, capture_output=True, text=True,
                              errors="replace")
        if proc.returncode != 0:
            raise ToolError(f"{SCRIPT} failed on {Path(patch).name}: "
                            f"{proc.stderr.strip()}")
        found[field] = [checked_address(line.strip())
                        for line in proc.stdout.split("\n") if "@" in line]
    return found


def checked_address(address: str) -> str:
    """An address from the tree's MAINTAINERS, refused if it could add or
    change a header (a control character, a line break of any kind)."""
    from generator.spec.shape import header_unsafe
    bad = header_unsafe(address)
    if bad is not None or "\ufffd" in address:
        raise ToolError(f"--to-maintainers: the tree's MAINTAINERS gives "
                        f"{address!r}, which holds "
                        f"{bad or chr(0xfffd)!r}: no address in a mail "
                        "header may")
    return address


def _header(name: str, addresses: list[str]) -> str:
    """A header folded as git format-patch folds --to/--cc."""
    return f"{name}: " + ",\n    ".join(addresses) + "\n"


def _unique(addresses: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for a in addresses:
        key = re.sub(r".*<(.*)>.*", r"\1", a).lower()
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out


def with_headers(data: bytes, to: list[str], cc: list[str]) -> bytes:
    """The mail with To: and Cc: at the end of its header block."""
    text = data.decode("utf-8")
    head, sep, body = text.partition("\n\n")
    cc = [a for a in cc if a not in to]
    extra = (_header("To", to) if to else "") + (_header("Cc", cc) if cc
                                                 else "")
    return (head + "\n" + extra.rstrip("\n") + sep + body).encode("utf-8") \
        if extra else data


def add_recipients(files: dict[str, bytes],
                   base: BaseTree) -> dict[str, bytes]:
    """The series with each patch addressed to the maintainers of what it
    changes, and the cover letter to all of them."""
    out: dict[str, bytes] = {}
    union: dict[str, list[str]] = {"to": [], "cc": []}
    with tempfile.TemporaryDirectory(prefix="gen-series-maint-") as tmp:
        tree = maintainers_tree(base, Path(tmp) / "tree")
        for name, data in sorted(files.items()):
            if name.startswith("0000-"):
                continue
            patch = Path(tmp) / name
            patch.write_bytes(data)
            found = get_maintainers(tree, patch)
            for field in union:
                union[field] += found[field]
            out[name] = with_headers(data, found["to"], found["cc"])
    to = _unique(union["to"])
    cc = [a for a in _unique(union["cc"]) if a not in to]
    cover = next(n for n in files if n.startswith("0000-"))
    out[cover] = with_headers(files[cover], to, cc)
    return out
