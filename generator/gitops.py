"""A thin GitPython layer: scratch clones, fixed-date commits, am.

Git runs with the user's global and system config ignored, so that nobody's
diff.algorithm or format.* settings change the patches we write.
"""

import os
from pathlib import Path

import git

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


def identity_env(author: str, date: str) -> dict:
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
    repo.git.add("-A", *(["-f"] if force else []), ".")
    with repo.git.custom_environment(**identity_env(author, date)):
        repo.git.commit("-q", "--no-verify", "--allow-empty-message",
                        "-m", message)
    return repo.head.commit.hexsha


def scratch_clone(source: Path, commit: str, dest: Path,
                  sparse: bool = False) -> git.Repo:
    """A throw-away clone of `source` at `commit`; `source` is only read.

    A sparse clone has the commit in its index but no files in its work
    tree: callers check out the few files they edit (`checkout_file`),
    which is much faster than writing a whole QEMU tree.
    """
    try:
        git.Repo.clone_from(str(source), str(dest), shared=True,
                            no_checkout=True, env=GIT_ENV)
    except git.GitCommandError as e:
        raise ToolError(f"cannot clone {source}: {git_message(e)}")
    repo = open_repo(dest)
    if sparse:
        repo.git.update_ref("--no-deref", "HEAD", commit)
        repo.git.read_tree(commit)
    else:
        repo.git.checkout("-q", "--detach", commit)
    return repo


def checkout_file(repo: git.Repo, path: str) -> None:
    """Bring one file of HEAD into a sparse clone's work tree, if it exists."""
    target = Path(repo.working_tree_dir) / path
    if target.exists():
        return
    try:
        repo.git.checkout("HEAD", "--", path)
    except git.GitCommandError:
        pass    # not in the tree: the caller reports it


def commit_paths(repo: git.Repo, paths, message: str, author: str,
                 date: str) -> bool:
    """Commit `paths` only; False if they did not change anything."""
    repo.git.add("--", *sorted(paths))
    if not repo.git.diff("--cached", "--name-only"):
        return False
    with repo.git.custom_environment(**identity_env(author, date)):
        repo.git.commit("-q", "--no-verify", "-m", message)
    return True


def git_message(e: git.GitCommandError) -> str:
    """What git itself said, without GitPython's "stderr: '...'" wrapping."""
    text = (e.stderr or e.stdout or str(e)).strip()
    for prefix in ("stderr: '", "stdout: '"):
        if text.startswith(prefix):
            text = text[len(prefix):].rstrip("'").strip()
    return text


def am(repo: git.Repo, patch: Path) -> None:
    """Apply one patch with `git am`; on failure abort and raise."""
    try:
        repo.git.am("-q", "--3way", "--keep-cr", str(Path(patch).resolve()))
    except git.GitCommandError as e:
        try:
            repo.git.am("--abort")
        except git.GitCommandError:
            pass
        raise CheckFailed(f"{patch.name} does not apply:\n{git_message(e)}")


def is_dirty(path: Path) -> bool:
    """Whether the work tree at `path` has changes HEAD does not hold
    (untracked files too; ignored ones aside)."""
    try:
        return bool(open_repo(path).git.status("--porcelain"))
    except git.GitCommandError:
        return False


def symlink_on_path(root: Path, file: str) -> str | None:
    """The first of `file` and its parent directories that HEAD of the
    work tree at `root` holds as a symbolic link, if any (a sparse clone
    does not have it on disk yet)."""
    parts = Path(file).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    listing = open_repo(root).git.ls_tree("HEAD", "--", *prefixes)
    links = {line.split("\t", 1)[1] for line in listing.splitlines()
             if line.startswith("120000 ")}
    return next((p for p in prefixes if p in links), None)
