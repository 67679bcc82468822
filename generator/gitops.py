"""The one git layer (GitPython): scratch clones, fixed-date commits,
format-patch, am, and the few queries the checks make.

Git runs with the user's global and system config ignored, so that nobody's
diff.algorithm or format.* settings change the patches we write.  A git
failure leaves this module as a ToolError (or CheckFailed, for `git am`)
naming the repository and what git said, never as GitCommandError.
"""

import datetime
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import cast

import git
from git.objects.base import IndexObject

from generator.errors import CheckFailed, ToolError

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_COUNT": "0",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
    "TZ": "UTC",
}
BASE_IDENTITY = ("gen-series", "gen-series@localhost")
BASE_DATE = "2000-01-01T00:00:00+00:00"
SYMLINK_MODE = 0o120000     # a tree entry that is a symbolic link
# a repository, as the other modules hold one (they never call it)
Repo = git.Repo


def _run(repo: git.Repo, command: str, *args: str,
         env: Mapping[str, str] | None = None, **kwargs: object) -> str:
    """`git COMMAND ARGS` in `repo`; its stdout, or a ToolError."""
    try:
        with repo.git.custom_environment(**(env or {})):
            out: str = getattr(repo.git, command.replace("-", "_"))(
                *args, **kwargs)
            return out
    except git.GitCommandError as e:
        raise ToolError(f"git {command} in {repo.working_dir}: "
                        f"{git_message(e)}")


def open_repo(path: Path) -> git.Repo:
    repo = git.Repo(path)
    repo.git.update_environment(**GIT_ENV)
    return repo


def user_identity() -> str | None:
    """The user's own identity, 'Name <email>', from git's user.name and
    user.email as the user's git sees them (the current repository's,
    global or system config, or GIT_CONFIG_* variables); None if either is
    unset.  git's guess from the host name is not an identity."""
    values = []
    for key in ("user.name", "user.email"):
        try:
            values.append(git.Git().config("--get", key).strip())
        except git.GitCommandError:
            return None
    name, email = values
    return f"{name} <{email}>" if name and email else None


def identity_env(author: str, date: str) -> dict[str, str]:
    name, _, email = author.partition(" <")
    email = email.rstrip(">")
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email,
            "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}


def init_repo(path: Path) -> git.Repo:
    repo = git.Repo.init(path)
    repo.git.update_environment(**GIT_ENV)
    return repo


def commit_all(repo: git.Repo, message: str, author: str, date: str,
               force: bool = False) -> str:
    """Commit the whole work tree with a fixed identity and date."""
    _run(repo, "add", "-A", *(["-f"] if force else []), ".")
    _run(repo, "commit", "-q", "--no-verify", "--allow-empty-message",
         "-m", message, env=identity_env(author, date))
    return repo.head.commit.hexsha


def scratch_clone(source: Path, commit: str, dest: Path) -> git.Repo:
    """A clone of `source` at `commit` (sharing its objects); `source` is
    only read."""
    try:
        git.Repo.clone_from(str(source), str(dest), shared=True,
                            no_checkout=True, env=GIT_ENV)
    except git.GitCommandError as e:
        raise ToolError(f"cannot clone {source}: {git_message(e)}")
    repo = open_repo(dest)
    try:
        repo.git.checkout("-q", "--detach", commit)
    except git.GitCommandError as e:
        # the clone shares the source's objects: one missing there
        raise ToolError(f"cannot check out {commit[:12]} of {source}: "
                        f"{git_message(e)}")
    return repo


def scratch_repo(source: Path, dest: Path) -> git.Repo:
    """An empty repository at `dest` that sees `source`'s objects (git
    alternates): commits can be written on top of any of its commits
    without a clone or a work tree; `source` is only read."""
    try:
        objects = Path(open_repo(source).common_dir) / "objects"
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as e:
        raise ToolError(f"{source}: not a git repository ({e})")
    repo = init_repo(dest)
    (Path(repo.git_dir) / "objects" / "info" / "alternates").write_text(
        f"{objects.resolve()}\n")
    return repo


def read_files(repo: git.Repo, commit: str,
               paths: Iterable[str]) -> dict[str, tuple[int, bytes]]:
    """{path: (mode, bytes)} of the `paths` that `commit` has (one
    long-lived `git cat-file` serves them all).  A file whose object cannot
    be read is a ToolError, not a missing file."""
    try:
        tree = repo.commit(commit).tree
    except (ValueError, git.BadName, git.GitCommandError) as e:
        raise ToolError(f"git cannot read commit {commit[:12]}: {e}")
    found: dict[str, tuple[int, bytes]] = {}
    for path in paths:
        try:
            blob = tree / path
        except KeyError:
            # not in the tree, which the caller reports; unless a
            # directory on its way is a symbolic link: that one is kept
            link = _symlink_prefix(tree, path)
            if link is not None:
                # (GitPython types a tree entry's path as any PathLike)
                found[cast(str, link.path)] = (link.mode,
                                               link.data_stream.read())
            continue
        try:
            found[path] = (blob.mode, blob.data_stream.read())
        except (ValueError, git.GitCommandError) as e:
            raise ToolError(f"git cannot read {path}: {e}")
    return found


def _symlink_prefix(tree: git.Tree, path: str) -> IndexObject | None:
    """The blob of the first directory on `path`'s way that `tree` holds
    as a symbolic link, if any."""
    parts = path.split("/")
    for i in range(1, len(parts)):
        try:
            entry = tree / "/".join(parts[:i])
        except KeyError:
            return None
        if entry.mode == SYMLINK_MODE:
            return entry
    return None


def stripspace(message: str) -> str:
    """The message as `git commit -m` stores it (git stripspace: trailing
    blanks and surplus blank lines gone, one final newline)."""
    lines = [line.rstrip() for line in message.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""


def write_commits(
        repo: git.Repo, base: str,
        commits: Iterable[tuple[str, Mapping[str, tuple[int, bytes]]]],
        author: str, date: str) -> str:
    """Write `commits` ([(message, {path: (mode, bytes)})], oldest first)
    on top of `base` with one `git fast-import` stream, authored and
    committed by `author` at `date` (ISO 8601); return the last one."""
    name, _, email = author.partition(" <")
    when = datetime.datetime.fromisoformat(date)
    utcoffset = when.utcoffset()
    assert utcoffset is not None    # the spec's date has one (model.py)
    offset = int(utcoffset.total_seconds() // 60)
    stamp = (f"{int(when.timestamp())} {'-' if offset < 0 else '+'}"
             f"{abs(offset) // 60:02d}{abs(offset) % 60:02d}")
    ident = f"{name} <{email.rstrip('>')}> {stamp}".encode()
    ref = b"refs/heads/series"
    stream = bytearray(f"reset {ref.decode()}\nfrom {base}\n\n".encode())
    for message, files in commits:
        text = stripspace(message).encode()
        stream += b"commit " + ref + b"\n"
        stream += b"author " + ident + b"\ncommitter " + ident + b"\n"
        stream += b"data %d\n" % len(text) + text + b"\n"
        for path, (mode, data) in sorted(files.items()):
            stream += b"M %o inline %s\n" % (mode, path.encode())
            stream += b"data %d\n" % len(data) + data + b"\n"
        stream += b"\n"
    # a scratch pack read once by format-patch: not worth compressing
    proc = subprocess.run(["git", "-c", "core.compression=0",
                           "fast-import", "--quiet", "--done", "--depth=0"],
                          input=bytes(stream) + b"done\n",
                          cwd=repo.git_dir, env={**os.environ, **GIT_ENV},
                          capture_output=True)
    if proc.returncode != 0:
        raise ToolError("git fast-import: " + proc.stderr.decode(
            errors="replace").strip())
    return _run(repo, "rev-parse", ref.decode())


def work_tree_top(path: Path) -> Path | None:
    """The top of the git work tree `path` is in; None if it is in none."""
    try:
        top = open_repo(path).working_tree_dir
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    return Path(top) if top else None


def resolve_commit(path: Path, rev: str) -> str | None:
    """The commit `rev` names in the repository at `path`; None if it names
    none (or `path` is no readable repository)."""
    try:
        sha: str = open_repo(path).git.rev_parse("--verify", "-q",
                                                 f"{rev}^{{commit}}")
        return sha
    except (git.InvalidGitRepositoryError, git.NoSuchPathError,
            git.GitCommandError):
        return None


def tag(repo: git.Repo, name: str) -> None:
    _run(repo, "tag", name)


def held_by_git(directory: Path, names: Iterable[str]) -> set[str]:
    """Those of `names` (files in `directory`) whose current contents the
    index of the git work tree around `directory` holds: replacing or
    removing them loses nothing that `git checkout` cannot bring back."""
    names = sorted(names)
    if not names:
        return set()
    cmd = git.Git(str(directory))
    cmd.update_environment(**GIT_ENV)
    try:
        staged = cmd.ls_files("-s", "-z", "--", *names)
        current = cmd.hash_object("--", *names).split()
    except git.CommandError:
        return set()    # not in a work tree, or no git: git holds nothing
    in_index: dict[str, str] = {}
    for entry in filter(None, staged.split("\0")):
        info, _, name = entry.partition("\t")
        in_index[name] = info.split()[1]
    return {name for name, sha in zip(names, current, strict=True)
            if in_index.get(name) == sha}


def git_message(e: git.GitCommandError) -> str:
    """What git itself said, without GitPython's "stderr: '...'" wrapping."""
    text = (e.stderr or e.stdout or str(e)).strip()
    for prefix in ("stderr: '", "stdout: '"):
        if text.startswith(prefix):
            text = text[len(prefix):].rstrip("'").strip()
    return text


def am(repo: git.Repo, patch: Path) -> None:
    """Apply one patch with `git am` (committed by base_committer_env());
    on failure abort and raise CheckFailed."""
    try:
        with repo.git.custom_environment(**base_committer_env()):
            repo.git.am("-q", "--3way", "--keep-cr",
                        str(Path(patch).resolve()))
    except git.GitCommandError as e:
        _abort_am(repo)
        raise CheckFailed(f"{patch.name} does not apply:\n{git_message(e)}")


DIFF_GIT_RE = re.compile(r"^diff --git a/(.+?) b/(.+)$")
INDEX_RE = re.compile(r"^index ([0-9a-f]+)\.\.([0-9a-f]+)(?: \d+)?$")


def patch_claims(text: str) -> tuple[set[str], dict[str, str | None]]:
    """What a format-patch mail says its diff does: every path it changes,
    and for each binary part (GIT binary patch, full index) the blob the
    file must have afterwards (None: deleted)."""
    paths: set[str] = set()
    binary: dict[str, str | None] = {}
    current: tuple[str, str] | None = None
    new_blob = ""
    for line in text.split("\n"):
        m = DIFF_GIT_RE.match(line)
        if m:
            current, new_blob = (m.group(1), m.group(2)), ""
            paths.update(current)
            continue
        if current is None:
            continue
        if line.startswith("rename to ") or line.startswith("copy to "):
            paths.add(line.split(" ", 2)[2])
        m = INDEX_RE.match(line)
        if m:
            new_blob = m.group(2)
        if line == "GIT binary patch" and new_blob:
            binary[current[1]] = None if set(new_blob) == {"0"} \
                else new_blob
    return paths, binary


def applied_differently(repo: git.Repo, patch: Path) -> str | None:
    """How the commit `git am` just made differs from what the patch says
    (a file it changes left alone, a binary file without the blob the
    patch names), or None.  git am exits 0 on a mail cut short in a
    binary part: it applies the rest and drops that file."""
    paths, binary = patch_claims(
        Path(patch).read_bytes().decode("utf-8", errors="replace"))
    changed = set(_run(repo, "diff-tree", "-r", "--no-renames",
                       "--name-only", "--no-commit-id", "HEAD~1",
                       "HEAD").splitlines())
    if paths != changed:
        missing = sorted(paths - changed) or sorted(changed - paths)
        return f"{', '.join(missing)} not changed as the patch says"
    for path, blob in binary.items():
        try:
            got: str | None = _run(repo, "rev-parse", "--verify", "-q",
                                   f"HEAD:{path}")
        except ToolError:
            got = None
        if (got or None) != blob and not (got and blob and
                                          got.startswith(blob)):
            return (f"{path} is not the blob {blob or '(deleted)'} the "
                    "binary patch makes")
    return None


def _abort_am(repo: git.Repo) -> None:
    """End a `git am` left half-way (this run's, or a killed one's).  git
    wants an identity even to abort; if it still refuses, its state
    directory goes: the caller checks out a clean commit next anyway."""
    state = Path(repo.git_dir) / "rebase-apply"
    if not state.exists():
        return
    try:
        with repo.git.custom_environment(**base_committer_env()):
            repo.git.am("--abort")
    except git.GitCommandError:
        shutil.rmtree(state, ignore_errors=True)


def base_committer_env() -> dict[str, str]:
    """A fixed committer and date, which keep the commits `git am` makes
    (and so `git log -L`) stable."""
    return identity_env("%s <%s>" % BASE_IDENTITY, BASE_DATE)


def is_clean(repo: git.Repo) -> bool:
    """No tracked file differs from HEAD (untracked ones do not count)."""
    return not _run(repo, "status", "--porcelain", "--untracked-files=no")


def reset_hard(repo: git.Repo, commit: str,
               keep: tuple[str, ...] = ()) -> None:
    """Check out `commit` detached, dropping every change and untracked file
    but the top-level directories in `keep` (e.g. build dirs)."""
    _abort_am(repo)
    _run(repo, "checkout", "-q", "-f", "--detach", commit)
    _run(repo, "clean", "-q", "-f", "-d", "-x",
         *(f"--exclude=/{d}/" for d in keep))


def restore(repo: git.Repo, path: str) -> None:
    """`path` (a file or directory) as HEAD has it, untracked files gone."""
    _run(repo, "checkout", "-q", "--", path)
    _run(repo, "clean", "-q", "-f", "--", path)


def format_patch(repo: git.Repo, base: str, out: Path, author: str,
                 date: str, subject_prefix: str,
                 tip: str = "HEAD") -> list[Path]:
    """`git format-patch --cover-letter --base` of base..tip into `out`,
    byte-stable: fixed identity and date, zero From line, no signature."""
    _run(repo, "format-patch", f"{base}..{tip}", o=str(out),
         cover_letter=True, base=base, zero_commit=True, no_signature=True,
         numbered=True, subject_prefix=subject_prefix, abbrev=12,
         env=identity_env(author, date))
    return sorted(Path(out).iterdir())


def commits_since(repo: git.Repo, base: str) -> list[str]:
    """The commits of base..HEAD, oldest first."""
    return _run(repo, "log", "--reverse", "--format=%H",
                f"{base}..HEAD").split()


def read(path: Path, *args: str, ok_codes: tuple[int, ...] = (0,)) -> str:
    """The output of a read-only git command in the work tree at `path`
    (`git grep` exits 1 when nothing matches: pass ok_codes=(0, 1))."""
    repo = open_repo(path)
    try:
        out = repo.git.execute(["git", *args], stdout_as_string=False,
                               strip_newline_in_stdout=False)
    except git.GitCommandError as e:
        if e.status in ok_codes:
            return ""       # e.g. git grep's "no match"
        raise ToolError(f"git {args[0]} in {path}: {git_message(e)}")
    return out.decode("utf-8", errors="replace")

def read_blob(repo_path: Path, commit: str, path: str) -> str | None:
    """The text of `path` at `commit`, or None if the commit has no such
    file (read from the object store: no work tree needed)."""
    try:
        blob = open_repo(repo_path).commit(commit).tree / path
    except (KeyError, ValueError, git.BadName, git.InvalidGitRepositoryError,
            git.NoSuchPathError, git.GitCommandError):
        return None
    data: bytes = blob.data_stream.read()
    return data.decode("utf-8", errors="replace")


def fsck(repo_path: Path) -> str | None:
    """What `git fsck` finds wrong with a repository (its first line), or
    None: every object there and readable."""
    proc = subprocess.run(["git", "-C", str(repo_path), "fsck",
                           "--no-dangling", "--no-progress"],
                          env={**os.environ, **GIT_ENV},
                          capture_output=True, text=True, errors="replace")
    if proc.returncode == 0:
        return None
    said = [ln for ln in (proc.stderr + proc.stdout).splitlines()
            if ln.strip()]
    return f"git fsck: {said[0] if said else f'exit {proc.returncode}'}"


def blob_mode(repo_path: Path, commit: str, path: str) -> int | None:
    """The tree-entry mode of `path` at `commit` (0o100644, 0o120000 for a
    symbolic link, ...), or None if the commit has no such entry."""
    try:
        mode: int = (open_repo(repo_path).commit(commit).tree / path).mode
        return mode
    except (KeyError, ValueError, git.BadName, git.InvalidGitRepositoryError,
            git.NoSuchPathError, git.GitCommandError):
        return None


def union_repo(dest: Path, sources: Iterable[Path]) -> git.Repo:
    """An empty repository at `dest` that sees every object of `sources`
    through git's alternates, so that commits of unrelated trees (two
    releases unpacked apart) can be compared without copying them."""
    repo = init_repo(dest)
    alternates = Path(repo.git_dir) / "objects" / "info" / "alternates"
    alternates.parent.mkdir(parents=True, exist_ok=True)
    alternates.write_text("".join(
        f"{Path(open_repo(s).git_dir).resolve() / 'objects'}\n"
        for s in sources))
    return repo


def numstat(repo: git.Repo, old: str, new: str,
            paths: Iterable[str]) -> dict[str, tuple[int, int]]:
    """path -> (lines added, lines removed) between two commits of `repo`;
    a path that did not change is absent."""
    out = _run(repo, "diff", "--numstat", "--no-renames", old, new, "--",
               *sorted(paths))
    stats: dict[str, tuple[int, int]] = {}
    for line in out.splitlines():
        added, removed, path = line.split("\t", 2)
        stats[path] = (int(added) if added != "-" else 0,
                       int(removed) if removed != "-" else 0)
    return stats


def grep(repo_path: Path, commit: str, pattern: str,
         pathspecs: Iterable[str]) -> list[tuple[str, int, str]]:
    """(path, line number, text) of each line at `commit` matching the
    extended regex `pattern`."""
    try:
        out: str = open_repo(repo_path).git.grep("-n", "-E", "-e", pattern,
                                                 commit, "--", *pathspecs)
    except git.GitCommandError as e:
        if e.status == 1:       # no match
            return []
        raise ToolError(f"git grep failed: {git_message(e)}")
    hits = []
    for line in out.splitlines():
        _, path, number, text = line.split(":", 3)
        hits.append((path, int(number), text))
    return hits


def commit_patches(repo: git.Repo, base: str,
                   patches: Iterable[Path | str]) -> str:
    """Commit each format-patch file on top of `base` without a work tree
    (a private index, `git apply --cached`, the message and author from
    `git mailinfo`); return the tip.  A patch that does not apply raises
    CheckFailed."""
    index = Path(repo.git_dir) / f"index-{base[:12]}"
    tip = base
    with repo.git.custom_environment(GIT_INDEX_FILE=str(index)):
        _run(repo, "read-tree", base)
        for patch in patches:
            patch = Path(patch).resolve()
            msg = Path(repo.git_dir) / "mailinfo-msg"
            with open(patch, "rb") as mbox:
                info = _run(repo, "mailinfo", str(msg), os.devnull,
                            istream=mbox)
            headers = dict(line.split(": ", 1) for line in info.splitlines()
                           if ": " in line)
            msg.write_text(headers.get("Subject", "") + "\n\n"
                           + msg.read_text(encoding="utf-8"),
                           encoding="utf-8")
            try:
                repo.git.apply("--cached", str(patch))
            except git.GitCommandError as e:
                raise CheckFailed(f"{patch.name} does not apply:\n"
                                  f"{git_message(e)}")
            tree = _run(repo, "write-tree")
            env = identity_env(f"{headers.get('Author', 'unknown')} "
                               f"<{headers.get('Email', 'unknown')}>",
                               headers.get("Date", BASE_DATE))
            tip = _run(repo, "commit-tree", tree, "-p", tip, "-F", str(msg),
                       env=env)
    index.unlink(missing_ok=True)
    return tip


def range_diff(repo: git.Repo, old: str, new: str) -> str:
    """`git range-diff old new` (two `base..tip` ranges), without colour."""
    try:
        diff: str = repo.git.range_diff("--no-color", old, new)
        return diff
    except git.GitCommandError as e:
        raise ToolError(f"git range-diff failed: {git_message(e)}")


def is_dirty(path: Path) -> bool:
    """Whether the work tree at `path` has changes HEAD does not hold
    (untracked files too; ignored ones aside)."""
    try:
        return bool(_run(open_repo(path), "status", "--porcelain"))
    except ToolError:
        return False


def export_files(repo_path: Path, commit: str, paths: Iterable[str],
                 dest: Path) -> list[str]:
    """Write the files `paths` of `commit` under `dest` (read from the
    object store: the repository may have no work tree); return those the
    commit does not have."""
    try:
        repo = open_repo(repo_path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as e:
        raise ToolError(f"git cannot read {commit[:12]} in {repo_path}: {e}")
    paths = list(paths)
    found = read_files(repo, commit, paths)
    for path in paths:
        if path in found:
            target = Path(dest) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(found[path][1])
    return [path for path in paths if path not in found]
